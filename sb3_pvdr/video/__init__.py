"""Action-free video data for pre-training: clip datasets over videos, token folders, the recorder.

- :class:`VideoClipDataset`: windows of ``m + l`` frames, ``uint8 (m + l, H, W, 3)``, from video files,
  ``.npy``/``.npz`` arrays, HDF5 files or BAIR robot-pushing TFRecords.
- :func:`write_token_folder` / :class:`TokenClipDataset`: the dataset encoded by the tokenizer,
  memory-mapped, windows ``(x (m, h, w), y (l, h, w))`` of token ids.
- ``python -m sb3_pvdr.video.record``: record Meta-World videos with the scripted policies
  (imported on demand: it needs MuJoCo).
"""

from sb3_pvdr.video.datasets import VideoClipDataset, find_video_files, resize_frames
from sb3_pvdr.video.readers import EpisodeRef, probe_file, read_episode, read_frames
from sb3_pvdr.video.tokens import TokenClipDataset, read_token_folder, token_dtype, write_token_folder

__all__ = [
    "VideoClipDataset",
    "find_video_files",
    "resize_frames",
    "EpisodeRef",
    "probe_file",
    "read_episode",
    "read_frames",
    "TokenClipDataset",
    "read_token_folder",
    "token_dtype",
    "write_token_folder",
]
