"""Visual dynamics model: a Transformer CVAE over token clips whose latent grid z is the visual
dynamics representation.

Paper: PVDR (Luo, Zhou, Lu, ECCV 2024), §4.1 eq. (1), Appendix A.1 (Figs. 8-9, Table 2).

Design choices:

- Token embedding: ``nn.Embedding(K, token_dim)``, followed by ``Linear(token_dim, dim)`` when
  ``token_dim != dim`` (Table 2: token embedding 1024, attention dimension 512). E, P and D are
  separate modules (Fig. 8), each with its own embedding and positional tables.
- Encoder E(x, y) and prior P(x) share one structure (Fig. 8, left): a learned *query frame*
  (h, w, dim) is prepended in time to the embedded frames ([q, x_1..x_m, y_1..y_l] for E,
  [q, x_1..x_m] for P), a non-causal ST transformer runs over them, and the hidden state of the
  query frame, one vector per grid cell, goes through a linear head (``posterior_head`` /
  ``prior_head``) to the mean and log-variance of z ``(h, w, d_z)``. The query frame reads every frame
  through windowed temporal attention and mixes across the grid through spatial attention.
- Decoder D(x, z) (Fig. 8, right): z is projected to ``dim`` and placed as frame 0, a grid of prompts
  before the token grids: [z, x_1..x_m, y_1..y_{l-1}] (m + l frames). A causal ST transformer runs over
  it and the hidden state of frame k predicts the tokens of frame k + 1 (``Linear(dim, K)`` logits),
  so the hidden states of x_m, y_1..y_{l-1} give the logits of y_1..y_l. Training uses teacher
  forcing (``decode_logits``).
- ``generate``: greedy decoding frame by frame (A.1: the most probable code per token, no beam
  search) for a batch of N candidates at once. With ``use_cache=True`` the prefix [z, x] is run once
  and each new frame only runs its own tokens, reading earlier frames from a frame KV cache of the
  temporal attentions. ``generate`` does not switch off autograd: under grad its logits are
  differentiable w.r.t. z and the decoder parameters (argmax tokens are not): the online goal loss
  (eq. (4)) back-propagates through ``generate(..., return_logits=True)``. Teacher forcing on the generated
  tokens (``decode_logits(x, tokens, z)``) gives the same logits as one parallel pass, but after a generation
  it is a second decoder pass (twice the time of back-propagating through the cached generation on a CPU).
- Loss (eq. (1)), per sample normalised by the number of predicted tokens l*h*w so every term reads
  as nats per future token (this is eq. (1) with sums, divided by a constant, so lambda_1 = 1e-3 keeps
  the paper's balance between reconstruction and bottleneck):
  ``recon`` = token cross-entropy averaged over tokens; ``kl_bottleneck`` = KL(q || N(0, I)) and
  ``kl_prior`` = KL(p || sg[q]) summed over the z grid (h, w, d_z), divided by l*h*w, averaged over the
  batch. ``total = recon + lambda_1 * kl_bottleneck + kl_prior``. The stop-gradient means the prior
  KL trains only the prior; z = reparameterised sample of q.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Mapping
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from sb3_pvdr.common.checkpoint import load_checkpoint, save_checkpoint
from sb3_pvdr.common.errors import CheckpointError, DataError
from sb3_pvdr.dynamics.config import DynamicsConfig
from sb3_pvdr.dynamics.distributions import DiagonalGaussian
from sb3_pvdr.dynamics.st_transformer import STPositionalEmbedding, STTransformer

# b - batch (or n candidates), t - time (frames), h w - token grid, d - feature dimension,
# k - codebook size, z - latent channels d_z

CHECKPOINT_KIND = "visual_dynamics"

# prior_decode: the decoding loss of the prior's mean (DynamicsConfig.prior_decode; 0 when off)
LossBreakdown = namedtuple("LossBreakdown", ["recon", "kl_bottleneck", "kl_prior", "accuracy", "prior_decode"], defaults=(0.0,))


def _greedy(logits: Tensor) -> Tensor:
    """argmax over codes; bf16 logits are cast to fp32 first (exact, and 3.5x faster on a CPU than a bf16 argmax:
    ~2.6 ms of a ~55 ms planning call, paired A/B in one process, one thread)."""
    return (logits.float() if logits.dtype == torch.bfloat16 else logits).argmax(dim=-1)


class TokenEmbedding(nn.Module):
    """K codes -> ``dim``: an embedding table of width ``token_dim``, projected to ``dim`` if they differ.

    :param codebook_size: K
    :param token_dim: embedding table width
    :param dim: output width
    """

    def __init__(self, codebook_size: int, token_dim: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(codebook_size, token_dim)
        self.proj = nn.Linear(token_dim, dim) if token_dim != dim else nn.Identity()

    def forward(self, tokens: Tensor) -> Tensor:
        return self.proj(self.table(tokens))


class LatentEncoder(nn.Module):
    """Trunk of E(x, y) and P(x) (Fig. 8, left): [query frame, frames] -> non-causal ST transformer
    -> hidden state of the query frame ``(b, h, w, dim)`` (the caller's head maps it to mean/logvar).

    :param config: model configuration
    :param n_frames: number of token frames it reads (m + l for E, m for P)
    :param depth: ST transformer depth
    """

    def __init__(self, config: DynamicsConfig, n_frames: int, depth: int) -> None:
        super().__init__()
        c = config
        self.n_frames = n_frames
        self.embed = TokenEmbedding(c.codebook_size, c.embed_dim, c.dim)
        self.query = nn.Parameter(torch.randn(*c.grid, c.dim) * 0.02)
        self.pos = STPositionalEmbedding(c.dim, n_frames + 1, c.grid)
        self.transformer = STTransformer(c.dim, depth, c.heads, c.ff_dim, c.window, causal=False, dropout=c.dropout)

    def forward(self, frames: Tensor) -> Tensor:
        """:param frames: tokens ``(b, t, h, w)`` :return: ``(b, h, w, dim)``"""
        tokens = self.embed(frames)
        query = repeat(self.query, "h w d -> b 1 h w d", b=frames.shape[0]).to(tokens.dtype)
        hidden = self.transformer(self.pos(torch.cat((query, tokens), dim=1)), frames_out=slice(0, 1))
        return hidden[:, 0]


class Decoder(nn.Module):
    """D(x, z) (Fig. 8, right): [z prompt, x, y_<l] -> causal ST transformer -> logits of the next frame.

    :param config: model configuration
    """

    def __init__(self, config: DynamicsConfig) -> None:
        super().__init__()
        c = config
        self.m, self.l = c.m, c.l
        self.embed = TokenEmbedding(c.codebook_size, c.embed_dim, c.dim)
        self.z_proj = nn.Linear(c.z_dim, c.dim)
        self.pos = STPositionalEmbedding(c.dim, c.m + c.l, c.grid)
        self.transformer = STTransformer(
            c.dim, c.depth_decoder, c.heads, c.ff_dim, c.window, causal=True, dropout=c.dropout
        )
        self.to_logits = nn.Linear(c.dim, c.codebook_size)

    def prefix(self, x: Tensor, z: Tensor) -> Tensor:
        """Embedded frames [z, x_1..x_m] ``(b, 1 + m, h, w, d)`` (without positions)."""
        prompt = rearrange(self.z_proj(z), "b h w d -> b 1 h w d")
        tokens = self.embed(x)
        return torch.cat((prompt.to(tokens.dtype), tokens), dim=1)

    def forward(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """Teacher forcing. :param y: ``(b, l, h, w)`` :return: logits ``(b, l, h, w, k)``"""
        frames = torch.cat((self.prefix(x, z), self.embed(y[:, :-1])), dim=1)
        hidden = self.transformer(self.pos(frames))
        return self.to_logits(hidden[:, self.m :])


class VisualDynamicsModel(nn.Module):
    """PVDR visual dynamics model: a CVAE with encoder E(z | x, y), prior P(z | x) and decoder D(y | x, z),
    all ST transformers over token grids.

    Paper: "Pre-trained Visual Dynamics Representations for Efficient Policy Learning", ECCV 2024, §4.1

    Submodules: ``encoder`` + ``posterior_head`` (E; the online stage fine-tunes only ``posterior_head``),
    ``prior_net`` + ``prior_head`` (P), ``decoder`` (D).

    :param config: sizes (``DynamicsConfig.profile("cpu")`` by default)
    """

    def __init__(self, config: Optional[DynamicsConfig] = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else DynamicsConfig()
        c = config
        self.encoder = LatentEncoder(c, c.m + c.l, c.depth_encoder)
        self.posterior_head = nn.Linear(c.dim, 2 * c.z_dim)
        self.prior_net = LatentEncoder(c, c.m + int(c.prior_goal), c.depth_prior)
        self.prior_head = nn.Linear(c.dim, 2 * c.z_dim)
        self.decoder = Decoder(c)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.trunc_normal_(module.weight, std=0.02)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of E (``encoder`` + ``posterior_head``), P (``prior_net`` + ``prior_head``) and D.

        Clip gradient norms per group: the prior KL of eq. (1) trains only P and grows large once the
        posterior sharpens (tens of nats per token), so one global clip would shrink E's and D's updates.
        """
        return {
            "encoder": [*self.encoder.parameters(), *self.posterior_head.parameters()],
            "prior": [*self.prior_net.parameters(), *self.prior_head.parameters()],
            "decoder": list(self.decoder.parameters()),
        }

    # ------------------------------------------------------------------ shapes
    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.config.grid)  # type: ignore[return-value]

    @property
    def z_shape(self) -> tuple[int, int, int]:
        """Shape of one latent z: ``(h, w, d_z)``."""
        return (*self.config.grid, self.config.z_dim)  # type: ignore[return-value]

    def _check_tokens(self, tokens: Tensor, n_frames: int, name: str) -> Tensor:
        expected = (n_frames, *self.config.grid)
        if tokens.dim() != 4 or tuple(tokens.shape[1:]) != expected:
            raise DataError(f"{name} must be tokens (B, {', '.join(map(str, expected))}), got {tuple(tokens.shape)}")
        if tokens.is_floating_point():
            raise DataError(f"{name} must hold integer token ids, got {tokens.dtype}")
        return tokens.long()

    def _check_z(self, z: Tensor) -> Tensor:
        if z.dim() != 4 or tuple(z.shape[1:]) != self.z_shape:
            raise DataError(f"z must be (B, {', '.join(map(str, self.z_shape))}), got {tuple(z.shape)}")
        return z

    def _match_batch(self, x: Tensor, z: Tensor) -> Tensor:
        """Broadcast a context of batch 1 over N candidates z (planning)."""
        if x.shape[0] == z.shape[0]:
            return x
        if x.shape[0] == 1:
            return x.expand(z.shape[0], *x.shape[1:])
        raise DataError(f"batch of x ({x.shape[0]}) and z ({z.shape[0]}) differ; x may have batch 1 to share it")

    # ------------------------------------------------------------------ E, P, D
    def posterior(self, x: Tensor, y: Tensor) -> DiagonalGaussian:
        """E(z | x, y). :param x: ``(B, m, h, w)`` :param y: ``(B, l, h, w)`` :return: Gaussian over ``(B, h, w, d_z)``"""
        return self.posterior_from_features(self.posterior_features(x, y))

    def posterior_features(self, x: Tensor, y: Tensor) -> Tensor:
        """E's trunk without its head: the query frame's hidden state ``(B, h, w, dim)``. The online stage freezes
        the trunk (footnote 3), so one trunk pass can serve several head updates (:meth:`posterior_from_features`).
        :param x: ``(B, m, h, w)`` :param y: ``(B, l, h, w)``"""
        x = self._check_tokens(x, self.config.m, "x")
        y = self._check_tokens(y, self.config.l, "y")
        return self.encoder(torch.cat((x, y), dim=1))

    def posterior_from_features(self, features: Tensor) -> DiagonalGaussian:
        """E's head on :meth:`posterior_features`: Gaussian over ``(B, h, w, d_z)``."""
        mean, logvar = self.posterior_head(features).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def prior(self, x: Tensor, goal: Optional[Tensor] = None) -> DiagonalGaussian:
        """P(z | x), or P(z | x, g) with ``config.prior_goal``.

        :param x: ``(B, m, h, w)``
        :param goal: the goal's tokens ``(B, h, w)`` (or ``(1, h, w)``, shared); required with ``config.prior_goal``,
            ignored without it (so callers that know the goal can always pass it)
        :return: Gaussian over ``(B, h, w, d_z)``
        """
        x = self._check_tokens(x, self.config.m, "x")
        if self.config.prior_goal:
            if goal is None:
                raise DataError("this dynamics model's prior is goal-conditioned (prior_goal): pass the goal's tokens")
            goal = self._check_tokens(goal.unsqueeze(1) if goal.dim() == 3 else goal, 1, "goal")
            x = torch.cat((x, goal.expand(x.shape[0], *goal.shape[1:])), dim=1)  # (B, m + 1, h, w)
        mean, logvar = self.prior_head(self.prior_net(x)).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode_logits(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """D(y | x, z) with teacher forcing: logits of frame j depend on x, z and y_<j only.

        :param x: context tokens ``(B or 1, m, h, w)``
        :param y: future tokens ``(B, l, h, w)`` (ground truth, or tokens from :meth:`generate`)
        :param z: latent grid ``(B, h, w, d_z)``
        :return: logits ``(B, l, h, w, K)``
        """
        z = self._check_z(z)
        x = self._match_batch(self._check_tokens(x, self.config.m, "x"), z)
        y = self._check_tokens(y, self.config.l, "y")
        return self.decoder(x, y, z)

    def generate(
        self,
        x: Tensor,
        z: Tensor,
        use_cache: bool = True,
        return_logits: bool = False,
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """Greedy frame-by-frame decoding: each token of frame j is the argmax code given x, z, y_<j.

        Runs under the caller's grad mode and train/eval mode: wrap in ``torch.no_grad()`` and call
        ``.eval()`` for planning (with dropout on, cached and uncached runs differ).

        :param x: context tokens ``(B or 1, m, h, w)`` (batch 1 is shared by all candidates)
        :param z: latent grids ``(N, h, w, d_z)``, one per candidate
        :param use_cache: reuse the temporal keys/values of earlier frames (same result, faster)
        :param return_logits: also return the logits of the generated frames
        :return: tokens ``(N, l, h, w)`` (and logits ``(N, l, h, w, K)``)
        """
        z = self._check_z(z)
        x = self._match_batch(self._check_tokens(x, self.config.m, "x"), z)
        dec, m, l = self.decoder, self.config.m, self.config.l
        frames: list[Tensor] = []
        logits: list[Tensor] = []
        if use_cache:
            cache = dec.transformer.new_cache()
            hidden = dec.transformer(dec.pos(dec.prefix(x, z)), cache=cache, frames_out=slice(-1, None))[:, -1]
            for j in range(l):
                if j > 0:  # feed the frame generated last: sequence index 1 + m + (j - 1)
                    step = rearrange(dec.embed(frames[-1]), "b h w d -> b 1 h w d")
                    hidden = dec.transformer(dec.pos(step, t_offset=m + j), cache=cache)[:, -1]
                logits.append(dec.to_logits(hidden))
                frames.append(_greedy(logits[-1]))
        else:
            prefix = dec.prefix(x, z)
            for j in range(l):
                seq = prefix if j == 0 else torch.cat((prefix, dec.embed(torch.stack(frames, dim=1))), dim=1)
                hidden = dec.transformer(dec.pos(seq), frames_out=slice(-1, None))[:, -1]
                logits.append(dec.to_logits(hidden))
                frames.append(_greedy(logits[-1]))
        tokens = torch.stack(frames, dim=1)
        if return_logits:
            return tokens, torch.stack(logits, dim=1)
        return tokens

    # ------------------------------------------------------------------ loss
    def prior_divergence(self, p: DiagonalGaussian, q: DiagonalGaussian) -> Tensor:
        """Per-element prior loss between the prior ``p`` and the (detached) posterior ``q``, in the direction of
        ``config.prior_kl``: KL(p || q) (``"reverse"``, eq. (1)) or KL(q || p) (``"forward"``)."""
        return p.kl(q) if self.config.prior_kl == "reverse" else q.kl(p)

    def corrupt_inputs(self, y: Tensor) -> Tensor:
        """Teacher-forced inputs with a share ``config.input_corruption`` of tokens replaced by random codes
        (training mode only; the loss still targets the clean ``y``). :param y: ``(B, l, h, w)``"""
        p = float(self.config.input_corruption)
        if not self.training or p <= 0.0:
            return y
        noise = torch.randint_like(y, self.config.codebook_size)
        return torch.where(torch.rand(y.shape, device=y.device) < p, noise, y)

    def loss(
        self, x: Tensor, y: Tensor, lambda_1: float = 1e-3, goal: Optional[Tensor] = None
    ) -> tuple[Tensor, LossBreakdown]:
        """Pre-training loss L_pre of eq. (1): reconstruction + lambda_1 * bottleneck KL + prior KL.

        :param x: context tokens ``(B, m, h, w)``
        :param y: future tokens ``(B, l, h, w)``
        :param lambda_1: weight of KL(q || N(0, I)) (Table 2: 1e-3)
        :param goal: goal tokens ``(B, h, w)`` for a goal-conditioned prior (``config.prior_goal``)
        :return: total loss and ``LossBreakdown(recon, kl_bottleneck, kl_prior, accuracy, prior_decode)`` (see the
            module docstring for the reductions; ``accuracy`` is detached)
        """
        x = self._check_tokens(x, self.config.m, "x")
        y = self._check_tokens(y, self.config.l, "y")
        q = self.posterior(x, y)
        p = self.prior(x, goal)
        logits = self.decoder(x, self.corrupt_inputs(y), q.sample()).float()
        # reconstruction: -log D(y | x, z ~ E(x, y)), mean over the l*h*w future tokens
        recon = F.cross_entropy(rearrange(logits, "b t h w k -> (b t h w) k"), rearrange(y, "b t h w -> (b t h w)"))
        n_tokens = y[0].numel()
        # information bottleneck: KL(E(.|x, y) || N(0, I))
        kl_bottleneck = q.kl().flatten(1).sum(1).mean() / n_tokens
        # prior loss: KL(P(.|x) || sg[E(.|x, y)]) (config.prior_kl: "reverse", eq. (1)) or KL(sg[E] || P), trains P only
        kl_prior = self.prior_divergence(p, q.detach()).flatten(1).sum(1).mean() / n_tokens
        with torch.no_grad():
            accuracy = (logits.argmax(dim=-1) == y).float().mean()
        total = recon + lambda_1 * kl_bottleneck + kl_prior
        prior_decode = torch.zeros((), device=y.device)
        if self.config.prior_decode > 0:  # -log D(y | x, mu_P(x)): the prior's mean as a latent that decodes the future
            if self.config.prior_decode_inputs == "generated":  # free-running, as planning decodes: (B, l, h, w, K)
                logits_p = self.generate(x, p.mean, return_logits=True)[1].float()
            else:
                logits_p = self.decoder(x, self.corrupt_inputs(y), p.mean).float()
            prior_decode = F.cross_entropy(rearrange(logits_p, "b t h w k -> (b t h w) k"), rearrange(y, "b t h w -> (b t h w)"))
            total = total + self.config.prior_decode * prior_decode
        return total, LossBreakdown(recon, kl_bottleneck, kl_prior, accuracy, prior_decode)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike], **extra: Any) -> None:
        """Atomic checkpoint of kind ``"visual_dynamics"`` holding the config and weights (plus ``extra``)."""
        save_checkpoint(path, CHECKPOINT_KIND, config=self.config.to_dict(), state_dict=self.state_dict(), **extra)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> VisualDynamicsModel:
        """Load a model written by :meth:`save` (raises :class:`CheckpointError` on a bad file)."""
        data = load_checkpoint(path, CHECKPOINT_KIND, map_location=map_location)
        try:
            model = cls(DynamicsConfig.from_dict(data["config"]))
            model.load_state_dict(data["state_dict"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot rebuild the visual dynamics model: {exc}") from exc
        return model.to(map_location)

    def load_weights_from(self, other: VisualDynamicsModel) -> None:
        """Copy ``other``'s weights into this model, which may differ from it only in ``config.prior_goal``: a
        prior that gains the goal frame keeps ``other``'s prior and its frames' time embeddings (the goal's row
        keeps its initialisation), so it starts as ``other``'s P(z | x) and learns to read the goal.

        :param other: a model with the same sizes
        """
        own = self.state_dict()
        state = dict(other.state_dict())
        key = "prior_net.pos.time"
        if key in state and state[key].shape[1:] == own[key].shape[1:] and state[key].shape != own[key].shape:
            n = min(state[key].shape[0], own[key].shape[0])
            table = own[key].clone()
            table[:n] = state[key][:n]
            state[key] = table
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"cannot initialise this dynamics model from the given one: {exc}") from exc

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise :class:`CheckpointError` unless the tokenizer's codebook size and grid match this model.

        :param tokenizer: an object with ``codebook_size`` and ``grid_size`` (``VQTokenizer``), or a
            mapping such as a token folder's ``meta.json`` (keys ``codebook_size`` or ``K``, and
            ``grid_size`` or ``grid``)
        """
        if isinstance(tokenizer, Mapping):
            k = tokenizer.get("codebook_size", tokenizer.get("K"))
            grid = tokenizer.get("grid_size", tokenizer.get("grid"))
        else:
            k = getattr(tokenizer, "codebook_size", None)
            grid = getattr(tokenizer, "grid_size", None)
        if k is None or grid is None:
            raise CheckpointError(f"cannot read codebook size and grid from {type(tokenizer).__name__}")
        grid = (int(grid), int(grid)) if isinstance(grid, int) else tuple(int(g) for g in grid)
        if int(k) != self.codebook_size or grid != self.grid_size:
            raise CheckpointError(
                f"tokenizer (codebook {int(k)}, grid {grid}) does not match the dynamics model "
                f"(codebook {self.codebook_size}, grid {self.grid_size}); use the tokenizer the model was "
                "pre-trained with or a dynamics config with the same codebook_size and grid"
            )


__all__ = ["CHECKPOINT_KIND", "Decoder", "LatentEncoder", "LossBreakdown", "TokenEmbedding", "VisualDynamicsModel"]
