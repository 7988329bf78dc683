"""Low-level readers: find the episodes in a file and read frames from one of them.

Every reader gives frames as ``uint8 (T, H, W, 3)`` (channels-last RGB). Supported inputs:

- video files (``.mp4 .gif .webm .avi .mov .mkv .m4v``), decoded with imageio (ffmpeg / pillow);
- ``.npy`` arrays and ``.npz`` archives (key ``frames`` by default, else the only frames-shaped array);
- HDF5 files (``.h5 .hdf5``) holding a frames dataset (key given, or searched for);
- TFRecord files in the BAIR robot-pushing schema (softmotion30_44k): one ``tf.train.Example`` per
  video, feature ``"{t}/image_aux1/encoded"`` holding the raw ``uint8`` bytes of frame ``t``
  (64x64x3), read with the ``tfrecord`` package, without TensorFlow.

Arrays of shape ``(N, T, H, W, 3)`` (npy, npz, HDF5) hold ``N`` episodes. Any problem with a file
raises :class:`~sb3_pvdr.common.errors.DataError` naming that file.
"""

from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from sb3_pvdr.common.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv", ".m4v")
ARRAY_SUFFIXES = (".npy", ".npz")
HDF5_SUFFIXES = (".h5", ".hdf5")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")

# HDF5 datasets tried in order when no key is given (common layouts of robot-learning datasets).
HDF5_DEFAULT_KEYS = (
    "frames",
    "images",
    "video",
    "videos",
    "rgb",
    "observations/images",
    "observations/rgb",
    "obs/images",
    "obs/rgb",
)

BAIR_FRAME_KEY = re.compile(r"^(\d+)/(.+)/encoded$")


@dataclass(frozen=True)
class EpisodeRef:
    """Where one episode lives and its (native) size.

    :param path: the file
    :param fmt: ``"video"``, ``"npy"``, ``"npz"``, ``"hdf5"`` or ``"tfrecord"``
    :param key: array name in an npz / dataset path in an HDF5 file / camera of a BAIR record
    :param index: episode index inside an ``(N, T, H, W, 3)`` array, or record index in a TFRecord
    :param offset: byte offset of the record in a TFRecord file
    :param n_frames: number of frames ``T``
    :param height: frame height in pixels
    :param width: frame width in pixels
    """

    path: str
    fmt: str
    key: Optional[str]
    index: Optional[int]
    offset: Optional[int]
    n_frames: int
    height: int
    width: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name(self) -> str:
        """Human-readable name: the file, plus the episode inside it when there are several."""
        return self.path if self.index is None else f"{self.path}[{self.index}]"


def file_format(path: Union[str, Path]) -> Optional[str]:
    """The reader for ``path`` from its suffix, or ``None`` if it is not a supported file."""
    name = Path(path).name.lower()
    if name.endswith(VIDEO_SUFFIXES):
        return "video"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(HDF5_SUFFIXES):
        return "hdf5"
    # BAIR shards are named like "traj_0_to_255.tfrecords"; also accept "x.tfrecord-00000-of-00010".
    if name.endswith(TFRECORD_SUFFIXES) or ".tfrecord" in name:
        return "tfrecord"
    return None


def check_frames(shape: tuple[int, ...], dtype: Any, path: Union[str, Path], what: str = "frames array") -> None:
    """Raise a DataError unless ``shape``/``dtype`` describe ``uint8 (T, H, W, 3)`` or ``(N, T, H, W, 3)`` frames."""
    if np.dtype(dtype) != np.uint8:
        raise DataError(
            f"{path}: {what} has dtype {np.dtype(dtype)}, expected uint8 RGB frames (T, H, W, 3); "
            "convert with (x * 255).round().astype(np.uint8) if they are floats in [0, 1]"
        )
    if len(shape) not in (4, 5) or shape[-1] != 3:
        raise DataError(f"{path}: {what} has shape {tuple(shape)}, expected uint8 RGB frames (T, H, W, 3)")
    if min(shape) == 0:
        raise DataError(f"{path}: {what} has an empty shape {tuple(shape)}")


def _array_refs(path: Path, fmt: str, key: Optional[str], shape: tuple[int, ...]) -> list[EpisodeRef]:
    """One EpisodeRef per episode of a (T, H, W, 3) or (N, T, H, W, 3) array."""
    if len(shape) == 4:
        t, h, w, _ = shape
        return [EpisodeRef(str(path), fmt, key, None, None, int(t), int(h), int(w))]
    n, t, h, w, _ = shape
    return [EpisodeRef(str(path), fmt, key, i, None, int(t), int(h), int(w)) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# probing: find the episodes of a file (reads headers only, unless full_check)
# ---------------------------------------------------------------------------------------------


def probe_file(
    path: Union[str, Path],
    *,
    array_key: str = "frames",
    hdf5_key: Optional[str] = None,
    bair_camera: str = "image_aux1",
    bair_image_size: int = 64,
    full_check: bool = False,
) -> list[EpisodeRef]:
    """List the episodes in ``path`` and check their frames' shape and dtype.

    Array files are checked through their headers (no decoding) unless ``full_check``; videos and
    TFRecords are decoded / parsed once (there is no reliable header for their frame count).

    :param path: the file
    :param array_key: array name in ``.npz`` files (falls back to the only frames-shaped array)
    :param hdf5_key: dataset path in HDF5 files (``None``: try :data:`HDF5_DEFAULT_KEYS`, then the
        only frames-shaped dataset)
    :param bair_camera: camera name in BAIR records (``"{t}/<camera>/encoded"``)
    :param bair_image_size: side of the (square) raw BAIR frames
    :param full_check: also decode every array to catch corrupt payloads
    :raises DataError: unreadable, corrupt or wrongly shaped file
    """
    path = Path(path)
    fmt = file_format(path)
    if fmt is None:
        raise DataError(f"{path}: unsupported file type (use one of {VIDEO_SUFFIXES + ARRAY_SUFFIXES + HDF5_SUFFIXES + TFRECORD_SUFFIXES})")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if fmt == "video":
            frames = _decode_video(path)
            return _array_refs(path, fmt, None, frames.shape)
        if fmt == "npy":
            return _probe_npy(path, full_check)
        if fmt == "npz":
            return _probe_npz(path, array_key, full_check)
        if fmt == "hdf5":
            return _probe_hdf5(path, hdf5_key, full_check)
        return _probe_tfrecord(path, bair_camera, bair_image_size)
    except DataError:
        raise
    except Exception as exc:  # every library has its own exceptions for a bad file
        raise DataError(f"{path}: cannot read {fmt} file ({type(exc).__name__}: {_short(exc)})") from exc


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split("=== stderr ===")[0].split())  # imageio appends ffmpeg's whole log
    return text if len(text) <= limit else text[:limit] + "..."


def _probe_npy(path: Path, full_check: bool) -> list[EpisodeRef]:
    # mmap checks that the file really holds the bytes its header announces, without reading them
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    check_frames(array.shape, array.dtype, path)
    if full_check:
        np.asarray(array).sum()
    return _array_refs(path, "npy", None, array.shape)


def _npz_member_header(zf: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an ``.npz`` from its header (decompresses a few bytes only)."""
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), dtype


def _find_npz_key(path: Path, zf: zipfile.ZipFile, array_key: str) -> tuple[str, tuple[int, ...], np.dtype]:
    names = [n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")]
    if array_key in names:
        shape, dtype = _npz_member_header(zf, array_key + ".npy")
        return array_key, shape, dtype
    headers = {n: _npz_member_header(zf, n + ".npy") for n in names}
    candidates = [n for n, (s, d) in headers.items() if len(s) in (4, 5) and s[-1] == 3 and d == np.uint8]
    if len(candidates) == 1:
        return candidates[0], *headers[candidates[0]]
    if not candidates:
        described = ", ".join(f"{n} {d} {s}" for n, (s, d) in headers.items()) or "nothing"
        raise DataError(f"{path}: no uint8 (T, H, W, 3) frames array (holds {described})")
    raise DataError(f"{path}: several frames arrays {candidates}; pick one with array_key=")


def _probe_npz(path: Path, array_key: str, full_check: bool) -> list[EpisodeRef]:
    with zipfile.ZipFile(path) as zf:
        key, shape, dtype = _find_npz_key(path, zf, array_key)
        check_frames(shape, dtype, path, what=f"array '{key}'")
        if full_check:
            with np.load(path, allow_pickle=False) as data:
                data[key].sum()
    return _array_refs(path, "npz", key, shape)


def _find_hdf5_key(path: Path, f: Any, hdf5_key: Optional[str]) -> str:
    import h5py

    if hdf5_key is not None:
        if hdf5_key not in f or not isinstance(f[hdf5_key], h5py.Dataset):
            raise DataError(f"{path}: no dataset '{hdf5_key}' (check hdf5_key)")
        return hdf5_key
    for key in HDF5_DEFAULT_KEYS:
        if key in f and isinstance(f[key], h5py.Dataset):
            return key
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim in (4, 5) and obj.shape[-1] == 3 and obj.dtype == np.uint8:
            found.append(name)

    f.visititems(visit)
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{path}: no uint8 (T, H, W, 3) frames dataset found; name it with hdf5_key=")
    raise DataError(f"{path}: several frames datasets {found}; pick one with hdf5_key=")


def _probe_hdf5(path: Path, hdf5_key: Optional[str], full_check: bool) -> list[EpisodeRef]:
    import h5py

    with h5py.File(path, "r") as f:
        key = _find_hdf5_key(path, f, hdf5_key)
        dataset = f[key]
        check_frames(dataset.shape, dataset.dtype, path, what=f"dataset '{key}'")
        if full_check:
            dataset[()].sum()
        return _array_refs(path, "hdf5", key, dataset.shape)


def _scan_tfrecord(path: Path):
    """Yield ``(offset, record_bytes)`` for each record, checking the masked CRC32C of length and data."""
    from tfrecord.writer import TFRecordWriter

    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            header = f.read(12)
            if len(header) != 12:
                raise DataError(f"{path}: truncated TFRecord (record header at byte {offset})")
            length_bytes, length_crc = header[:8], header[8:]
            if TFRecordWriter.masked_crc(length_bytes) != length_crc:
                raise DataError(f"{path}: corrupt TFRecord (bad length checksum at byte {offset})")
            (length,) = struct.unpack("<Q", length_bytes)
            data = f.read(length)
            data_crc = f.read(4)
            if len(data) != length or len(data_crc) != 4:
                raise DataError(f"{path}: truncated TFRecord (record at byte {offset})")
            if TFRecordWriter.masked_crc(data) != data_crc:
                raise DataError(f"{path}: corrupt TFRecord (bad data checksum at byte {offset})")
            yield offset, data
            offset += 12 + length + 4


def _read_tfrecord_at(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        header = f.read(12)
        if len(header) != 12:
            raise DataError(f"{path}: truncated TFRecord (record header at byte {offset})")
        (length,) = struct.unpack("<Q", header[:8])
        data = f.read(length)
        if len(data) != length:
            raise DataError(f"{path}: truncated TFRecord (record at byte {offset})")
    return data


def _bair_frame_features(path: Path, record: bytes, camera: str, record_index: int) -> list[bytes]:
    """The encoded frames ``"{t}/<camera>/encoded"``, t = 0..T-1, of one BAIR example."""
    from tfrecord import example_pb2

    example = example_pb2.Example()
    example.ParseFromString(record)
    features = example.features.feature
    frames: dict[int, bytes] = {}
    for key, feature in features.items():
        match = BAIR_FRAME_KEY.match(key)
        if match and match.group(2) == camera:
            values = feature.bytes_list.value
            if len(values) != 1:
                raise DataError(f"{path}: record {record_index} feature '{key}' holds {len(values)} byte strings, expected 1")
            frames[int(match.group(1))] = values[0]
    if not frames:
        raise DataError(
            f"{path}: record {record_index} has no '{{t}}/{camera}/encoded' features (not the BAIR schema, "
            "or another camera: set bair_camera=)"
        )
    if sorted(frames) != list(range(len(frames))):
        raise DataError(f"{path}: record {record_index} frame indices {sorted(frames)} are not 0..T-1")
    return [frames[t] for t in range(len(frames))]


def _decode_bair_frame(path: Path, data: bytes, side: int, record_index: int, t: int) -> np.ndarray:
    """Raw ``uint8`` bytes of a ``side x side x 3`` frame; PNG/JPEG bytes are decoded as a fallback."""
    if len(data) == side * side * 3:
        return np.frombuffer(data, dtype=np.uint8).reshape(side, side, 3)
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(
            f"{path}: record {record_index} frame {t} has {len(data)} bytes, expected {side * side * 3} "
            f"raw bytes of a {side}x{side}x3 frame (set bair_image_size=) or an encoded image"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _probe_tfrecord(path: Path, camera: str, side: int) -> list[EpisodeRef]:
    refs = []
    for index, (offset, record) in enumerate(_scan_tfrecord(path)):
        features = _bair_frame_features(path, record, camera, index)
        first = _decode_bair_frame(path, features[0], side, index, 0)
        for t, data in enumerate(features[1:], start=1):
            if len(data) != len(features[0]):
                raise DataError(f"{path}: record {index} frame {t} has {len(data)} bytes, frame 0 has {len(features[0])}")
        h, w, _ = first.shape
        refs.append(EpisodeRef(str(path), "tfrecord", camera, index, offset, len(features), h, w))
    if not refs:
        raise DataError(f"{path}: empty TFRecord file")
    return refs


def _decode_video(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    frames = np.asarray(iio.imread(path, index=None))
    if frames.ndim == 3:  # a single-frame gif comes back as (H, W, 3)
        frames = frames[None]
    if frames.ndim == 4 and frames.shape[-1] == 4:  # RGBA gif/webm: drop alpha
        frames = frames[..., :3]
    check_frames(frames.shape, frames.dtype, path)
    return np.ascontiguousarray(frames)


# ---------------------------------------------------------------------------------------------
# reading: frames [start, stop) of one episode
# ---------------------------------------------------------------------------------------------


def read_episode(ref: EpisodeRef, bair_image_size: int = 64) -> np.ndarray:
    """All frames of one episode, ``uint8 (T, H, W, 3)``."""
    return read_frames(ref, 0, ref.n_frames, bair_image_size=bair_image_size)


def read_frames(ref: EpisodeRef, start: int, stop: int, bair_image_size: int = 64) -> np.ndarray:
    """Frames ``[start, stop)`` of an episode as ``uint8 (stop - start, H, W, 3)``.

    Array formats read only the requested slice (npy is memory-mapped, HDF5 sliced); videos, npz
    members and BAIR records are decoded whole (callers cache them, see
    :class:`~sb3_pvdr.video.datasets.VideoClipDataset`).

    :raises DataError: the file changed or is corrupt
    """
    path = Path(ref.path)
    try:
        if ref.fmt == "npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            frames = array[start:stop] if ref.index is None else array[ref.index, start:stop]
        elif ref.fmt == "npz":
            with np.load(path, allow_pickle=False) as data:
                array = data[ref.key]
            frames = array[start:stop] if ref.index is None else array[ref.index, start:stop]
        elif ref.fmt == "hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                dataset = f[ref.key]
                frames = dataset[start:stop] if ref.index is None else dataset[ref.index, start:stop]
        elif ref.fmt == "tfrecord":
            assert ref.offset is not None and ref.index is not None and ref.key is not None
            record = _read_tfrecord_at(path, ref.offset)
            features = _bair_frame_features(path, record, ref.key, ref.index)
            frames = np.stack(
                [_decode_bair_frame(path, features[t], bair_image_size, ref.index, t) for t in range(start, stop)]
            )
        elif ref.fmt == "video":
            frames = _decode_video(path)[start:stop]
        else:
            raise DataError(f"{path}: unknown format '{ref.fmt}'")
        frames = np.ascontiguousarray(frames)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{ref.name}: cannot read frames {start}:{stop} ({type(exc).__name__}: {_short(exc)})") from exc
    expected = (stop - start, ref.height, ref.width, 3)
    if frames.shape != expected or frames.dtype != np.uint8:
        raise DataError(
            f"{ref.name}: read {frames.dtype} {frames.shape} for frames {start}:{stop}, expected uint8 {expected} "
            "(did the file change since it was indexed? delete the index cache)"
        )
    return frames


__all__ = [
    "EpisodeRef",
    "VIDEO_SUFFIXES",
    "ARRAY_SUFFIXES",
    "HDF5_SUFFIXES",
    "TFRECORD_SUFFIXES",
    "HDF5_DEFAULT_KEYS",
    "file_format",
    "check_frames",
    "probe_file",
    "read_episode",
    "read_frames",
]
