"""Clip datasets over every supported format, bad inputs, and token folders."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sb3_pvdr.common.errors import ConfigError, DataError
from sb3_pvdr.video import TokenClipDataset, VideoClipDataset, read_token_folder, write_token_folder
from sb3_pvdr.video.datasets import INDEX_CACHE_NAME


def ramp_frames(n: int, h: int = 16, w: int = 16, offset: int = 0) -> np.ndarray:
    """Frames whose pixels all equal ``offset + t`` (so a clip's content tells where it came from)."""
    values = (offset + np.arange(n)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, h, w, 3)).copy()


def frame_ids(clip: torch.Tensor) -> list[int]:
    return [int(v) for v in clip[:, 0, 0, 0]]


def write_bair(path: Path, videos: list[np.ndarray], camera: str = "image_aux1") -> None:
    """A TFRecord in the BAIR softmotion30_44k schema: one Example per video, raw uint8 bytes per frame."""
    from tfrecord.writer import TFRecordWriter

    writer = TFRecordWriter(str(path))
    for video in videos:
        datum = {}
        for t, frame in enumerate(video):
            datum[f"{t}/{camera}/encoded"] = (frame.tobytes(), "byte")
            datum[f"{t}/action"] = ([0.1, -0.2, 0.0, 0.3], "float")
            datum[f"{t}/endeffector_pos"] = ([0.5, 0.1, 0.2], "float")
        writer.write(datum)
    writer.close()


# ---------------------------------------------------------------------------------------------
# each format
# ---------------------------------------------------------------------------------------------


def test_npz_windows_at_episode_boundaries(tmp_path):
    np.savez_compressed(tmp_path / "a.npz", frames=ramp_frames(10, offset=0), actions=np.zeros((10, 4), np.float32))
    np.savez_compressed(tmp_path / "b.npz", frames=ramp_frames(9, offset=100))
    ds = VideoClipDataset(tmp_path, m=2, l=6, image_size=16)
    # 10 - 8 + 1 = 3 windows, then 9 - 8 + 1 = 2: none straddles a.npz and b.npz
    assert len(ds) == 5
    assert [frame_ids(ds[i]) for i in range(len(ds))] == [
        list(range(0, 8)),
        list(range(1, 9)),
        list(range(2, 10)),
        list(range(100, 108)),
        list(range(101, 109)),
    ]
    clip = ds[0]
    assert clip.dtype == torch.uint8 and clip.shape == (8, 16, 16, 3)
    assert (tmp_path / INDEX_CACHE_NAME).is_file()
    with pytest.raises(IndexError):
        ds[5]


def test_stride_and_frame_step(tmp_path):
    np.save(tmp_path / "a.npy", ramp_frames(12))
    ds = VideoClipDataset(tmp_path, m=1, l=2, image_size=None, stride=4, frame_step=2)
    # a window covers (3 - 1) * 2 + 1 = 5 raw frames; starts 0, 4 (8 + 5 > 12)
    assert [frame_ids(ds[i]) for i in range(len(ds))] == [[0, 2, 4], [4, 6, 8]]


def test_npy_and_batched_npy(tmp_path):
    np.save(tmp_path / "one.npy", ramp_frames(8, offset=10))
    np.save(tmp_path / "many.npy", np.stack([ramp_frames(9, offset=50), ramp_frames(9, offset=70)]))
    ds = VideoClipDataset(tmp_path, image_size=16)
    assert len(ds.episodes) == 3 and len(ds) == 2 + 2 + 1
    clips = sorted(frame_ids(ds[i])[0] for i in range(len(ds)))
    assert clips == [10, 50, 51, 70, 71]


def test_hdf5_default_search_and_key(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("observations/images", data=ramp_frames(9, offset=3))
        f.create_dataset("actions", data=np.zeros((9, 4)))
    ds = VideoClipDataset(tmp_path / "a.h5", image_size=16)
    assert [frame_ids(ds[i])[0] for i in range(len(ds))] == [3, 4]

    with h5py.File(tmp_path / "b.hdf5", "w") as f:
        f.create_dataset("cam0", data=ramp_frames(8))
        f.create_dataset("cam1", data=ramp_frames(8, offset=40))
    with pytest.raises(DataError, match="b.hdf5.*several frames datasets"):
        VideoClipDataset(tmp_path / "b.hdf5", image_size=16)
    ds = VideoClipDataset(tmp_path / "b.hdf5", image_size=16, hdf5_key="cam1")
    assert frame_ids(ds[0])[0] == 40


def test_video_files_mp4_gif(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(np.repeat((rng.random((9, 8, 8, 3)) * 255).astype(np.uint8), 4, axis=1), 4, axis=2)
    iio.imwrite(tmp_path / "a.gif", frames, loop=0)
    iio.imwrite(tmp_path / "b.mp4", frames, fps=10)
    ds = VideoClipDataset(tmp_path, image_size=32, cache_index=False)
    assert [Path(ref.path).name for ref in ds.episodes] == ["a.gif", "b.mp4"]
    assert [ref.n_frames for ref in ds.episodes] == [9, 9] and len(ds) == 4
    gif_clip, mp4_clip = ds[0].numpy(), ds[2].numpy()
    # gif is lossless up to palette quantisation, mp4 is lossy: compare loosely with the originals
    assert np.abs(gif_clip.astype(int) - frames[:8]).mean() < 20
    assert np.abs(mp4_clip.astype(int) - frames[:8]).mean() < 40


def test_bair_tfrecord_schema(tmp_path):
    videos = [ramp_frames(30, 64, 64, offset=0), ramp_frames(30, 64, 64, offset=100)]
    write_bair(tmp_path / "traj_0_to_1.tfrecords", videos)
    ds = VideoClipDataset(tmp_path, image_size=32)
    assert len(ds.episodes) == 2 and all(ref.n_frames == 30 for ref in ds.episodes)
    assert len(ds) == 2 * (30 - 8 + 1)
    clip = ds[23]  # first window of the second record
    assert clip.shape == (8, 32, 32, 3) and frame_ids(clip) == list(range(100, 108))
    assert frame_ids(ds[22]) == list(range(22, 30))
    np.testing.assert_array_equal(ds.read_episode(1)[:, :1, :1, 0].ravel(), np.arange(100, 130))


def test_resize_center_crop(tmp_path):
    frames = np.zeros((8, 20, 40, 3), np.uint8)
    frames[:, :, 10:30] = 200  # centre square bright, side bands dark
    np.save(tmp_path / "wide.npy", frames)
    cropped = VideoClipDataset(tmp_path, image_size=(10, 10), cache_index=False)[0]
    assert cropped.shape == (8, 10, 10, 3) and int(cropped.min()) == 200
    stretched = VideoClipDataset(tmp_path, image_size=(10, 10), center_crop=False, cache_index=False)[0]
    assert int(stretched[:, :, 0].max()) == 0  # the dark side band survives a stretch


def test_dataloader_with_workers(tmp_path):
    for i in range(3):
        np.savez_compressed(tmp_path / f"ep_{i}.npz", frames=ramp_frames(10, offset=20 * i))
    ds = VideoClipDataset(tmp_path, image_size=8)
    batches = list(DataLoader(ds, batch_size=4, num_workers=2, shuffle=False))
    clips = torch.cat(batches)
    assert clips.shape == (9, 8, 8, 8, 3)
    assert [frame_ids(c)[0] for c in clips] == [0, 1, 2, 20, 21, 22, 40, 41, 42]


def test_index_cache_is_reused_and_refreshed(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "a.npz", frames=ramp_frames(8))
    VideoClipDataset(tmp_path, image_size=8)
    import sb3_pvdr.video.datasets as datasets

    calls = []
    real_probe = datasets.probe_file
    monkeypatch.setattr(datasets, "probe_file", lambda *a, **k: calls.append(a) or real_probe(*a, **k))
    VideoClipDataset(tmp_path, image_size=8)
    assert calls == []  # served from the cache
    np.savez_compressed(tmp_path / "a.npz", frames=ramp_frames(12))
    ds = VideoClipDataset(tmp_path, image_size=8)
    assert len(calls) == 1 and ds.episodes[0].n_frames == 12


# ---------------------------------------------------------------------------------------------
# bad inputs: DataError naming the file, or a warning and a skip with skip_bad=True
# ---------------------------------------------------------------------------------------------


def _bad_file(tmp_path: Path, kind: str) -> Path:
    if kind == "too_short_npz":
        path = tmp_path / "short.npz"
        np.savez(path, frames=ramp_frames(5))
    elif kind == "too_short_gif":
        path = tmp_path / "short.gif"
        iio.imwrite(path, ramp_frames(4), loop=0)
    elif kind == "too_short_bair":
        path = tmp_path / "short.tfrecords"
        write_bair(path, [ramp_frames(7, 64, 64)])
    elif kind == "corrupt_mp4":
        path = tmp_path / "corrupt.mp4"
        path.write_bytes(b"not a video at all" * 50)
    elif kind == "corrupt_npz":
        path = tmp_path / "corrupt.npz"
        path.write_bytes(b"PK\x03\x04 garbage" * 20)
    elif kind == "truncated_npy":
        path = tmp_path / "truncated.npy"
        np.save(path, ramp_frames(10))
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == "corrupt_hdf5":
        path = tmp_path / "corrupt.h5"
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    elif kind == "corrupt_bair":
        path = tmp_path / "corrupt.tfrecords"
        write_bair(path, [ramp_frames(30, 64, 64)])
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte: caught by the record checksum
        path.write_bytes(bytes(data))
    elif kind == "wrong_shape_gray":
        path = tmp_path / "gray.npy"
        np.save(path, ramp_frames(10)[..., 0])
    elif kind == "wrong_dtype_float":
        path = tmp_path / "float.npz"
        np.savez(path, frames=ramp_frames(10).astype(np.float32) / 255)
    elif kind == "wrong_channels_hdf5":
        path = tmp_path / "rgba.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("frames", data=np.zeros((10, 8, 8, 4), np.uint8))
    elif kind == "wrong_bair_size":
        path = tmp_path / "size.tfrecords"
        write_bair(path, [ramp_frames(30, 32, 32)])  # 32x32 frames, reader expects 64x64 raw bytes
    else:
        raise AssertionError(kind)
    return path


BAD_KINDS = {
    "too_short_npz": "too short",
    "too_short_gif": "too short",
    "too_short_bair": "too short",
    "corrupt_mp4": "cannot read",
    "corrupt_npz": "cannot read",
    "truncated_npy": "cannot read",
    "corrupt_hdf5": "cannot read",
    "corrupt_bair": "corrupt TFRecord",
    "wrong_shape_gray": "expected uint8 RGB frames",
    "wrong_dtype_float": "dtype float32",
    "wrong_channels_hdf5": r"shape \(10, 8, 8, 4\)",
    "wrong_bair_size": "expected 12288 raw bytes",
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_input_raises_naming_the_file(tmp_path, kind):
    bad = _bad_file(tmp_path, kind)
    with pytest.raises(DataError, match=BAD_KINDS[kind]) as info:
        VideoClipDataset(tmp_path, image_size=16)
    assert bad.name in str(info.value)


@pytest.mark.parametrize("kind", ["too_short_npz", "corrupt_mp4", "wrong_shape_gray", "corrupt_bair"])
def test_skip_bad_warns_and_skips(tmp_path, kind):
    bad = _bad_file(tmp_path, kind)
    np.savez(tmp_path / "good.npz", frames=ramp_frames(9))
    with pytest.warns(UserWarning, match=bad.name):
        ds = VideoClipDataset(tmp_path, image_size=16, skip_bad=True)
    assert [Path(ref.path).name for ref in ds.episodes] == ["good.npz"] and len(ds) == 2
    assert len(ds.skipped) == 1 and bad.name in ds.skipped[0]


def test_nothing_usable(tmp_path):
    with pytest.raises(DataError, match="no video files"):
        VideoClipDataset(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        VideoClipDataset(tmp_path / "missing")
    np.savez(tmp_path / "short.npz", frames=ramp_frames(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no episode with at least 8 frames"):
            VideoClipDataset(tmp_path, skip_bad=True)
    with pytest.raises(ConfigError):
        VideoClipDataset(tmp_path, m=0)


def test_file_changed_after_indexing(tmp_path):
    np.save(tmp_path / "a.npy", ramp_frames(10))
    ds = VideoClipDataset(tmp_path, image_size=16, cache_index=False)
    np.save(tmp_path / "a.npy", ramp_frames(10, 8, 8))
    with pytest.raises(DataError, match="a.npy.*did the file change"):
        ds[0]


# ---------------------------------------------------------------------------------------------
# token folders
# ---------------------------------------------------------------------------------------------


def test_token_folder_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [rng.integers(0, 256, size=(t, 4, 4)) for t in (10, 7, 9)]
    episodes[1] = torch.as_tensor(episodes[1])  # tensors are accepted too
    out = write_token_folder(tmp_path / "tok", iter(episodes), {"codebook_size": 256, "image_size": 64, "tokenizer": "x.pt"})
    tokens, bounds, meta = read_token_folder(out)
    assert tokens.dtype == np.uint8 and tokens.shape == (26, 4, 4)
    assert bounds.tolist() == [[0, 10], [10, 17], [17, 26]]
    assert meta["grid"] == [4, 4] and meta["num_episodes"] == 3 and meta["tokenizer"] == "x.pt"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    mode = os.umask(0)
    os.umask(mode)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mode  # a plain mkdir's mode, not mkdtemp's private 0700

    ds = TokenClipDataset(out, m=2, l=6)
    # 10 -> 3 windows, 7 -> none (too short), 9 -> 2
    assert len(ds) == 5 and ds.num_short_episodes == 1
    assert ds.grid_size == (4, 4) and ds.codebook_size == 256
    x, y = ds[3]
    assert x.dtype == torch.long and x.shape == (2, 4, 4) and y.shape == (6, 4, 4)
    np.testing.assert_array_equal(torch.cat([x, y]).numpy(), episodes[2][:8])
    x, y = ds[2]
    np.testing.assert_array_equal(torch.cat([x, y]).numpy(), episodes[0][2:10])
    xs, ys = next(iter(DataLoader(ds, batch_size=5, num_workers=2)))
    assert xs.shape == (5, 2, 4, 4) and ys.shape == (5, 6, 4, 4)


def test_token_windows_with_a_frame_step(tmp_path):
    """frame_step k: every k-th frame of a window spanning (m + l - 1) k + 1 frames, never across episodes."""
    episodes = [np.arange(t)[:, None, None].repeat(4, 1).repeat(4, 2) for t in (10, 6)]  # frame i holds code i
    out = write_token_folder(tmp_path / "tok", iter(episodes), {"codebook_size": 256, "image_size": 64})
    ds = TokenClipDataset(out, m=2, l=2, frame_step=3)
    assert ds.span == 10 and len(ds) == 1 and ds.num_short_episodes == 1  # the 6-frame episode is too short
    x, y = ds[0]
    assert x[:, 0, 0].tolist() == [0, 3] and y[:, 0, 0].tolist() == [6, 9]
    assert len(TokenClipDataset(out, m=2, l=2, frame_step=2)) == 4  # span 7: starts 0-3 of the 10-frame episode
    with pytest.raises(DataError, match="13 frames"):
        TokenClipDataset(out, m=2, l=3, frame_step=3)
    with pytest.raises(ConfigError):
        TokenClipDataset(out, m=2, l=2, frame_step=0)


def test_token_folder_uint16_and_overwrite(tmp_path):
    episodes = [np.full((8, 2, 3), 1000), np.full((8, 2, 3), 1023)]
    out = write_token_folder(tmp_path / "tok", episodes, {"codebook_size": 1024})
    assert np.load(out / "tokens.npy", mmap_mode="r").dtype == np.uint16
    with pytest.raises(DataError, match="already exists"):
        write_token_folder(out, episodes, {"codebook_size": 1024})
    write_token_folder(out, episodes[:1], {"codebook_size": 1024}, overwrite=True)
    x, y = TokenClipDataset(out, m=2, l=6)[0]
    assert len(TokenClipDataset(out, m=2, l=6)) == 1 and int(x.max()) == 1000


@pytest.mark.parametrize(
    "episodes, meta, match",
    [
        ([np.zeros((8, 2, 2))], {}, "codebook_size"),
        ([np.full((8, 2, 2), 256)], {"codebook_size": 256}, r"outside \[0, 256\)"),
        ([np.zeros((8, 2, 2), int), np.zeros((8, 3, 2), int)], {"codebook_size": 16}, "differs"),
        ([np.zeros((8, 4), int)], {"codebook_size": 16}, r"\(T, h, w\)"),
        ([], {"codebook_size": 16}, "no episodes"),
    ],
)
def test_token_writer_rejects_bad_input(tmp_path, episodes, meta, match):
    with pytest.raises((DataError, ConfigError), match=match):
        write_token_folder(tmp_path / "tok", episodes, meta)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_token_folder_missing_or_corrupt(tmp_path):
    with pytest.raises(DataError, match="token folder not found"):
        TokenClipDataset(tmp_path / "nope", 2, 6)
    out = write_token_folder(tmp_path / "tok", [np.zeros((8, 2, 2), int)], {"codebook_size": 16})
    (out / "tokens.npy").write_bytes((out / "tokens.npy").read_bytes()[:-10])
    with pytest.raises(DataError, match="tok.*corrupt"):
        TokenClipDataset(out, 2, 6)
    out = write_token_folder(tmp_path / "tok2", [np.zeros((8, 2, 2), int)], {"codebook_size": 16})
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "grid": [4, 4]}))
    with pytest.raises(DataError, match="does not match meta.json"):
        TokenClipDataset(out, 2, 6)
    (out / "episodes.npy").unlink()
    with pytest.raises(DataError, match="missing episodes.npy"):
        TokenClipDataset(out, 2, 6)
    out = write_token_folder(tmp_path / "tok3", [np.zeros((5, 2, 2), int)], {"codebook_size": 16})
    with pytest.raises(DataError, match="no episode has"):
        TokenClipDataset(out, 2, 6)
