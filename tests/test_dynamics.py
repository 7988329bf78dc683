"""Visual dynamics model (issue 4): ST transformer masks, KL, cached generation, loss, persistence."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from sb3_pvdr.common.checkpoint import save_checkpoint
from sb3_pvdr.common.errors import CheckpointError, ConfigError, DataError
from sb3_pvdr.dynamics import DiagonalGaussian, DynamicsConfig, STTransformer, VisualDynamicsModel
from sb3_pvdr.dynamics.st_transformer import TemporalAttention

TINY = DynamicsConfig(
    codebook_size=16,
    grid=(4, 4),
    m=2,
    l=3,
    z_dim=4,
    dim=32,
    ff_dim=64,
    heads=2,
    depth_encoder=1,
    depth_prior=1,
    depth_decoder=2,
    window=(2, 2),
)


@pytest.fixture
def model() -> VisualDynamicsModel:
    torch.manual_seed(0)
    return VisualDynamicsModel(TINY).eval()


def clip(batch: int = 3, config: DynamicsConfig = TINY, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, config.codebook_size, (batch, config.m, *config.grid), generator=g)
    y = torch.randint(0, config.codebook_size, (batch, config.l, *config.grid), generator=g)
    return x, y


# ---------------------------------------------------------------- config
def test_config_profiles_and_validation(tmp_path):
    paper = DynamicsConfig.profile("paper")
    assert paper.grid == (16, 16) and paper.window == (4, 4) and paper.z_dim == 32
    assert (paper.dim, paper.ff_dim, paper.embed_dim, paper.heads) == (512, 512, 1024, 4)
    assert (paper.depth_encoder, paper.depth_prior, paper.depth_decoder) == (6, 6, 3)
    assert DynamicsConfig.profile() == DynamicsConfig()
    assert DynamicsConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ConfigError, match="depth_encodr"):
        DynamicsConfig.from_dict({"depth_encodr": 3})
    with pytest.raises(ConfigError, match="window"):
        DynamicsConfig(grid=(8, 8), window=(3, 3))
    with pytest.raises(ConfigError, match="profile"):
        DynamicsConfig.profile("gpu")
    path = tmp_path / "dyn.yaml"
    path.write_text("profile: paper\ndepth_decoder: 4\ngrid: [8, 8]\n")
    cfg = DynamicsConfig.from_spec(path)
    assert cfg.depth_decoder == 4 and cfg.grid == (8, 8) and cfg.dim == 512


# ---------------------------------------------------------------- ST transformer
def test_st_transformer_causal_mask():
    torch.manual_seed(0)
    st = STTransformer(dim=16, depth=2, heads=2, ff_dim=32, window=(2, 2), causal=True).eval()
    x = torch.randn(2, 5, 4, 4, 16)
    k = 2
    x2 = x.clone()
    x2[:, k] += torch.randn_like(x2[:, k])
    out, out2 = st(x), st(x2)
    assert out.shape == x.shape
    torch.testing.assert_close(out[:, :k], out2[:, :k], atol=1e-6, rtol=0)
    assert (out[:, k:] - out2[:, k:]).abs().amax(dim=(0, 2, 3, 4)).min() > 1e-3  # frames >= k do see it


def test_st_transformer_noncausal_sees_future():
    torch.manual_seed(0)
    st = STTransformer(dim=16, depth=1, heads=2, ff_dim=32, window=(2, 2), causal=False).eval()
    x = torch.randn(1, 3, 4, 4, 16)
    x2 = x.clone()
    x2[:, 2, 0, 0] += torch.randn(16)  # not a constant shift: LayerNorm would erase it
    assert (st(x)[:, 0] - st(x2)[:, 0]).abs().max() > 1e-4


def test_temporal_attention_window_locality():
    torch.manual_seed(0)
    attn = TemporalAttention(dim=16, heads=2, window=(2, 2)).eval()
    x = torch.randn(2, 3, 4, 4, 16)
    x2 = x.clone()
    x2[:, 1, 0, 0] += torch.randn(16)  # a token of window (0, 0)
    out, _ = attn(x)
    out2, _ = attn(x2)
    # windows (0, 1), (1, 0), (1, 1) at every frame: unchanged
    torch.testing.assert_close(out[:, :, :, 2:], out2[:, :, :, 2:], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, :, 2:, :2], out2[:, :, 2:, :2], atol=1e-6, rtol=0)
    # the other tokens of window (0, 0), in every frame, attend to it
    assert (out[:, :, :2, :2] - out2[:, :, :2, :2]).abs().amax(dim=(0, 4)).min() > 1e-4


def test_st_transformer_cache_matches_full_pass():
    torch.manual_seed(0)
    st = STTransformer(dim=16, depth=2, heads=2, ff_dim=32, window=(2, 2), causal=True).eval()
    x = torch.randn(2, 6, 4, 4, 16)
    full = st(x)
    cache = st.new_cache()
    parts = [st(x[:, :3], cache=cache), st(x[:, 3:4], cache=cache), st(x[:, 4:], cache=cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)
    assert cache.n_frames == 6
    with pytest.raises(ValueError):
        STTransformer(dim=16, depth=1, heads=2, ff_dim=32, window=(2, 2)).new_cache()


@pytest.mark.parametrize("causal", [False, True])
def test_st_transformer_frames_out_equals_sliced_full_pass(causal):
    torch.manual_seed(0)
    st = STTransformer(dim=16, depth=2, heads=2, ff_dim=32, window=(2, 2), causal=causal).eval()
    x = torch.randn(2, 5, 4, 4, 16)
    full = st(x)
    for frames in (slice(0, 1), slice(-1, None), slice(1, 3)):
        torch.testing.assert_close(st(x, frames_out=frames), full[:, frames], atol=1e-5, rtol=0)
    if causal:  # with a cache, every new frame's keys/values are kept, whichever frames are returned
        cache, cache_full = st.new_cache(), st.new_cache()
        last = st(x[:, :3], cache=cache, frames_out=slice(-1, None))
        st(x[:, :3], cache=cache_full)
        torch.testing.assert_close(last, full[:, 2:3], atol=1e-5, rtol=0)
        torch.testing.assert_close(st(x[:, 3:4], cache=cache), st(x[:, 3:4], cache=cache_full), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="contiguous"):
        st(x, frames_out=slice(0, 4, 2))


# ---------------------------------------------------------------- distributions
def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    q = DiagonalGaussian(torch.randn(6) * 0.5, torch.randn(6) * 0.5)
    p = DiagonalGaussian(torch.randn(6) * 0.5, torch.randn(6) * 0.5)
    samples = q.mean + q.std * torch.randn(200_000, 6)
    mc_p = (q.log_prob(samples) - p.log_prob(samples)).mean(0)
    std_normal = DiagonalGaussian(torch.zeros(6), torch.zeros(6))
    mc_0 = (q.log_prob(samples) - std_normal.log_prob(samples)).mean(0)
    torch.testing.assert_close(q.kl(p), mc_p, atol=0.03, rtol=0.03)
    torch.testing.assert_close(q.kl(), mc_0, atol=0.03, rtol=0.03)
    torch.testing.assert_close(q.kl(std_normal), q.kl())
    assert q.kl(q).abs().max() < 1e-6 and (q.kl(p) >= 0).all()
    assert q.mode() is q.mean and q.sample().shape == (6,)
    big = DiagonalGaussian(torch.zeros(2), torch.tensor([-100.0, 100.0]))
    assert torch.isfinite(big.kl()).all()


# ---------------------------------------------------------------- model
def test_shapes_and_input_errors(model):
    x, y = clip()
    q, p = model.posterior(x, y), model.prior(x)
    assert q.shape == p.shape == (3, 4, 4, 4) and model.z_shape == (4, 4, 4)
    assert model.decode_logits(x, y, q.sample()).shape == (3, 3, 4, 4, 16)
    with pytest.raises(DataError, match="x must be"):
        model.prior(x[:, :1])
    with pytest.raises(DataError, match="integer"):
        model.prior(x.float())
    with pytest.raises(DataError, match="z must be"):
        model.generate(x, torch.zeros(3, 4, 4, 5))


def test_decoder_causal_mask(model):
    x, y = clip()
    z = model.prior(x).sample()
    logits = model.decode_logits(x, y, z)
    for k in range(TINY.l):
        y2 = y.clone()
        y2[:, k] = (y2[:, k] + 1) % TINY.codebook_size
        logits2 = model.decode_logits(x, y2, z)
        # the prediction of frame j uses y_<j only: frames 0..k are unchanged
        torch.testing.assert_close(logits[:, : k + 1], logits2[:, : k + 1], atol=1e-6, rtol=0)
        if k + 1 < TINY.l:
            assert (logits[:, k + 1] - logits2[:, k + 1]).abs().max() > 1e-4
    z2 = z.clone()
    z2[:, 0, 0] += 1.0
    assert (model.decode_logits(x, y, z2)[:, 0] - logits[:, 0]).abs().max() > 1e-4  # z conditions frame 1


def test_generate_cached_equals_uncached_and_teacher_forcing(model):
    x, _ = clip(batch=1)
    z = torch.randn(5, *model.z_shape)  # 5 candidates share one context
    with torch.no_grad():
        tokens, logits = model.generate(x, z, return_logits=True)
        tokens_nc, logits_nc = model.generate(x, z, use_cache=False, return_logits=True)
        tf_logits = model.decode_logits(x, tokens, z)
        tokens_rep = model.generate(x.expand(5, -1, -1, -1), z)
    assert tokens.shape == (5, TINY.l, 4, 4) and tokens.dtype == torch.long
    assert logits.shape == (5, TINY.l, 4, 4, TINY.codebook_size)
    assert torch.equal(tokens, tokens_nc) and torch.equal(tokens, tokens_rep)
    torch.testing.assert_close(logits, logits_nc, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, tf_logits, atol=1e-5, rtol=0)
    assert torch.equal(tokens, logits.argmax(-1))
    assert len(torch.unique(tokens.flatten(1), dim=0)) > 1  # different z, different plans


def test_goal_loss_gradient_reaches_z(model):
    x, _ = clip(batch=1)
    z = torch.randn(2, *model.z_shape, requires_grad=True)
    with torch.no_grad():
        tokens = model.generate(x, z)
    probs = model.decode_logits(x, tokens, z).softmax(-1)
    probs[..., 0].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def _grads(module: torch.nn.Module) -> list:
    return [p.grad for p in module.parameters()]


def test_loss_gradients_follow_stop_gradient(model):
    x, y = clip()
    model.train()
    total, parts = model.loss(x, y)
    assert set(parts._fields) == {"recon", "kl_bottleneck", "kl_prior", "accuracy", "prior_decode"}
    assert not parts.accuracy.requires_grad and 0 <= parts.accuracy <= 1
    torch.testing.assert_close(total, parts.recon + 1e-3 * parts.kl_bottleneck + parts.kl_prior)
    groups = model.parameter_groups()
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    assert len({id(p) for g in groups.values() for p in g}) == len(list(model.parameters()))
    total.backward(retain_graph=True)  # every parameter gets a gradient: DDP needs no find_unused_parameters
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.zero_grad(set_to_none=True)

    posterior = [model.encoder, model.posterior_head]
    prior = [model.prior_net, model.prior_head]
    parts.kl_prior.backward(retain_graph=True)  # KL(p || sg[q]) trains only the prior
    assert all(g is None for mod in posterior + [model.decoder] for g in _grads(mod))
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(model.prior_head))
    assert any(g is not None and g.abs().sum() > 0 for g in _grads(model.prior_net))

    model.zero_grad(set_to_none=True)
    parts.kl_bottleneck.backward(retain_graph=True)
    assert all(g is None for mod in prior for g in _grads(mod))
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(model.posterior_head))

    model.zero_grad(set_to_none=True)
    parts.recon.backward()  # reaches the encoder through the reparameterised sample
    assert all(g is None for mod in prior for g in _grads(mod))
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(model.posterior_head))
    assert model.decoder.to_logits.weight.grad.abs().sum() > 0


def test_loss_reductions(model):
    x, y = clip()
    torch.manual_seed(1)
    _, parts = model.loss(x, y)
    q, p = model.posterior(x, y), model.prior(x)
    n_tokens = TINY.l * TINY.grid[0] * TINY.grid[1]
    torch.testing.assert_close(parts.kl_bottleneck, q.kl().sum((1, 2, 3)).mean() / n_tokens)
    torch.testing.assert_close(parts.kl_prior, p.kl(q).sum((1, 2, 3)).mean() / n_tokens)


def test_overfit_one_batch():
    torch.manual_seed(0)
    model = VisualDynamicsModel(TINY).train()
    x, y = clip(batch=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        total, parts = model.loss(x, y)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert parts.accuracy > 0.5


def test_bf16_autocast(model):
    x, y = clip()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, parts = model.loss(x, y)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert model.decoder.to_logits.weight.grad is not None
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        tokens, logits = model.generate(x, model.prior(x).mode(), return_logits=True)
    assert tokens.shape == (3, TINY.l, 4, 4)
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(tokens, logits.argmax(dim=-1))  # the fp32 cast before argmax picks the same codes


@pytest.mark.parametrize("masked", [False, True])
def test_bf16_training_attention_matches_sdpa(masked):
    """Under bf16 autocast with grad on a CPU, Attention uses matmuls + fp32 softmax instead of SDPA: same outputs
    and gradients as fp32 SDPA up to bf16 rounding."""
    from sb3_pvdr.dynamics.st_transformer import Attention, block_causal_mask

    torch.manual_seed(0)
    attn = Attention(dim=32, heads=4).eval()
    x = torch.randn(3, 8, 32)
    mask = block_causal_mask(2, 4) if masked else None
    ref_x = x.clone().requires_grad_(True)
    ref, _ = attn(ref_x, mask=mask)  # fp32: SDPA
    ref.square().sum().backward()
    bf_x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attn(bf_x, mask=mask)
        with torch.no_grad():
            out_sdpa, _ = attn(x, mask=mask)  # forward-only: SDPA in bf16
    out.float().square().sum().backward()
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(out.float(), out_sdpa.float(), atol=3e-2, rtol=3e-2)
    assert (bf_x.grad - ref_x.grad).norm() < 0.05 * ref_x.grad.norm()


# ---------------------------------------------------------------- persistence
def test_save_load_round_trip(model, tmp_path):
    x, y = clip()
    z = model.prior(x).mode()
    path = tmp_path / "dyn.pt"
    model.save(path, step=7)
    loaded = VisualDynamicsModel.load(path).eval()
    assert loaded.config == TINY
    torch.testing.assert_close(loaded.decode_logits(x, y, z), model.decode_logits(x, y, z), atol=0, rtol=0)
    torch.testing.assert_close(loaded.posterior(x, y).mean, model.posterior(x, y).mean, atol=0, rtol=0)
    assert torch.equal(loaded.generate(x, z), model.generate(x, z))
    assert torch.load(path, weights_only=False)["step"] == 7


def test_load_rejects_bad_checkpoints(model, tmp_path):
    save_checkpoint(tmp_path / "tok.pt", "vq_tokenizer", config={}, state_dict={})
    with pytest.raises(CheckpointError, match="vq_tokenizer"):
        VisualDynamicsModel.load(tmp_path / "tok.pt")
    bigger = dataclasses.replace(TINY, dim=64).to_dict()
    save_checkpoint(tmp_path / "bad.pt", "visual_dynamics", config=bigger, state_dict=model.state_dict())
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        VisualDynamicsModel.load(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not found"):
        VisualDynamicsModel.load(tmp_path / "missing.pt")


def test_check_tokenizer(model):
    model.check_tokenizer(SimpleNamespace(codebook_size=16, grid_size=(4, 4)))
    model.check_tokenizer({"K": 16, "grid": [4, 4]})
    with pytest.raises(CheckpointError, match="codebook 256"):
        model.check_tokenizer(SimpleNamespace(codebook_size=256, grid_size=(4, 4)))
    with pytest.raises(CheckpointError, match=r"grid \(8, 8\)"):
        model.check_tokenizer({"codebook_size": 16, "grid_size": [8, 8]})
    with pytest.raises(CheckpointError, match="cannot read"):
        model.check_tokenizer(object())


@pytest.mark.slow
def test_z_carries_dynamics_on_synthetic_clips():
    """A random token field stands still in the context, then rolls in a random direction that only y
    reveals: after a short training, generation from the posterior z beats z = 0 by a wide margin."""
    cfg = dataclasses.replace(TINY, codebook_size=8, l=2, dim=64, ff_dim=128, heads=4)
    moves = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    g = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        field = torch.randint(0, cfg.codebook_size, (n, *cfg.grid), generator=g)
        dirs = torch.randint(0, 4, (n,), generator=g).tolist()
        y = torch.stack(
            [torch.stack([f.roll(((t + 1) * moves[k][0], (t + 1) * moves[k][1]), (0, 1)) for t in range(cfg.l)])
             for f, k in zip(field, dirs)]
        )
        return field[:, None].repeat(1, cfg.m, 1, 1), y

    torch.manual_seed(0)
    model = VisualDynamicsModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(400):
        total, _ = model.loss(*batch(32))
        opt.zero_grad()
        total.backward()
        opt.step()
    model.eval()
    x, y = batch(256)
    with torch.no_grad():
        acc_posterior = (model.generate(x, model.posterior(x, y).mode()) == y).float().mean()
        acc_zero = (model.generate(x, torch.zeros(256, *model.z_shape)) == y).float().mean()
    assert acc_posterior > acc_zero + 0.1, (acc_posterior, acc_zero)


def test_prior_kl_direction():
    from sb3_pvdr.dynamics import DiagonalGaussian, DynamicsConfig, VisualDynamicsModel

    tiny = dict(codebook_size=8, grid=(4, 4), m=2, l=2, z_dim=2, dim=8, ff_dim=16, heads=2, depth_encoder=1,
                depth_prior=1, depth_decoder=1, window=(2, 2))
    wide = DiagonalGaussian(torch.zeros(1, 4, 4, 2), torch.zeros(1, 4, 4, 2))  # std 1
    narrow = DiagonalGaussian(torch.zeros(1, 4, 4, 2), torch.full((1, 4, 4, 2), -4.0))  # std e^-2
    reverse = VisualDynamicsModel(DynamicsConfig(**tiny)).prior_divergence(wide, narrow)
    forward = VisualDynamicsModel(DynamicsConfig(**tiny, prior_kl="forward")).prior_divergence(wide, narrow)
    torch.testing.assert_close(reverse, wide.kl(narrow))
    torch.testing.assert_close(forward, narrow.kl(wide))
    # a prior wider than the posterior is what the reverse direction punishes hard
    assert reverse.mean() > 5 * forward.mean()
    with pytest.raises(ConfigError, match="prior_kl"):
        DynamicsConfig(**tiny, prior_kl="both")


def test_goal_conditioned_prior_reads_the_goal_and_starts_from_a_context_prior():
    torch.manual_seed(0)
    base = VisualDynamicsModel(TINY).eval()
    goal_model = VisualDynamicsModel(dataclasses.replace(TINY, prior_goal=True)).eval()
    x, y = clip(2)
    g = torch.randint(0, TINY.codebook_size, (2, *TINY.grid))
    with pytest.raises(DataError, match="goal"):
        goal_model.prior(x)
    p1, p2 = goal_model.prior(x, g), goal_model.prior(x, (g + 1) % TINY.codebook_size)
    assert p1.mean.shape == (2, *goal_model.z_shape)
    assert not torch.allclose(p1.mean, p2.mean)  # the goal frame reaches the prior
    shared = goal_model.prior(x, g[:1])  # one goal shared by the batch
    torch.testing.assert_close(shared.mean[0], p1.mean[0])
    torch.testing.assert_close(base.prior(x, g).mean, base.prior(x).mean)  # a context-only prior ignores it
    total, parts = goal_model.loss(x, y, goal=g)
    assert torch.isfinite(total) and parts.kl_prior > 0
    # initialised from a context-only model: every weight carried over, the goal frame's time row kept
    goal_model.load_weights_from(base)
    for name, value in base.state_dict().items():
        own = goal_model.state_dict()[name]
        if name == "prior_net.pos.time":
            assert own.shape[0] == value.shape[0] + 1
            torch.testing.assert_close(own[: value.shape[0]], value)
        else:
            torch.testing.assert_close(own, value)
    with pytest.raises(CheckpointError):
        VisualDynamicsModel(dataclasses.replace(TINY, dim=16, heads=2)).load_weights_from(base)
    with pytest.raises(ConfigError, match="prior_goal"):
        DynamicsConfig(prior_goal="yes")


def fit_prior(net: VisualDynamicsModel, x: torch.Tensor, y: torch.Tensor, steps: int = 30) -> None:
    """``steps`` Adam steps of ``net.loss`` on the prior alone (as ``train_only: [prior]`` re-fits it)."""
    for name, param in net.named_parameters():
        param.requires_grad_(name.startswith("prior"))
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss, _ = net.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_prior_decode_loss_trains_the_prior_mean_to_decode_the_future():
    import torch.nn.functional as F
    from einops import rearrange

    torch.manual_seed(0)
    x, y = clip(8)
    x = x[:1].repeat(8, 1, 1, 1)  # one context, eight futures: only z tells them apart
    off = VisualDynamicsModel(TINY).eval()
    total, parts = off.loss(x, y)
    assert float(parts.prior_decode) == 0.0  # the paper's loss by default
    torch.testing.assert_close(total, parts.recon + 1e-3 * parts.kl_bottleneck + parts.kl_prior)
    with pytest.raises(ConfigError, match="prior_decode"):
        dataclasses.replace(TINY, prior_decode=-1.0)

    model = VisualDynamicsModel(dataclasses.replace(TINY, prior_decode=2.0)).eval()  # eval: no input corruption
    model.load_state_dict(off.state_dict())
    total, parts = model.loss(x, y)
    expected = F.cross_entropy(rearrange(model.decoder(x, y, model.prior(x).mean), "b t h w k -> (b t h w) k"),
                               rearrange(y, "b t h w -> (b t h w)"))
    torch.testing.assert_close(parts.prior_decode, expected)
    torch.testing.assert_close(total, parts.recon + 1e-3 * parts.kl_bottleneck + parts.kl_prior + 2.0 * expected)
    # as the prior re-fit runs it (train_only: [prior]): the gradient reaches P through the frozen decoder
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("prior"))
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.prior_head.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())

    # a frozen decoder whose logits depend on z (z projection and logits scaled up), then 30 steps of the prior alone,
    # with the decoding loss and (control) without it
    with torch.no_grad():
        model.decoder.z_proj.weight.mul_(20.0)
        model.decoder.to_logits.weight.mul_(20.0)
    control = VisualDynamicsModel(TINY).eval()
    control.load_state_dict(model.state_dict())
    _, before = model.loss(x, y)

    fit_prior(model, x, y)
    fit_prior(control, x, y)
    _, after = model.loss(x, y)
    control.config.prior_decode = 1.0  # only to read its prior's decoding loss
    _, after_control = control.loss(x, y)
    assert after.prior_decode < before.prior_decode - 0.05, (before.prior_decode, after.prior_decode)
    assert after.prior_decode < after_control.prior_decode - 0.05, (after.prior_decode, after_control.prior_decode)


def test_prior_decode_generated_inputs_scores_the_free_running_decoding_of_the_prior_mean():
    import torch.nn.functional as F
    from einops import rearrange

    torch.manual_seed(0)
    x, y = clip(8)
    x = x[:1].repeat(8, 1, 1, 1)
    with pytest.raises(ConfigError, match="prior_decode_inputs"):
        dataclasses.replace(TINY, prior_decode=1.0, prior_decode_inputs="sampled")
    teacher = VisualDynamicsModel(dataclasses.replace(TINY, prior_decode=1.0)).eval()
    model = VisualDynamicsModel(dataclasses.replace(TINY, prior_decode=1.0, prior_decode_inputs="generated")).eval()
    model.load_state_dict(teacher.state_dict())
    with torch.no_grad():  # a decoder whose greedy frames depend on z, so generated and teacher-forced inputs differ
        for net in (model, teacher):
            net.decoder.z_proj.weight.mul_(20.0)
            net.decoder.to_logits.weight.mul_(20.0)
    total, parts = model.loss(x, y)
    _, logits = model.generate(x, model.prior(x).mean, return_logits=True)
    expected = F.cross_entropy(rearrange(logits.float(), "b t h w k -> (b t h w) k"), rearrange(y, "b t h w -> (b t h w)"))
    torch.testing.assert_close(parts.prior_decode, expected)
    assert abs(float(parts.prior_decode) - float(teacher.loss(x, y)[1].prior_decode)) > 1e-3  # not the teacher-forced term
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("prior"))
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.prior_head.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())

    # 30 prior-only steps on this loss lower the free-running decoding loss of the prior's mean
    fit_prior(model, x, y)
    _, after = model.loss(x, y)
    assert after.prior_decode < parts.prior_decode - 0.05, (parts.prior_decode, after.prior_decode)
