"""VQ frame tokenizer (paper §3.2, Appendix A.1 / Table 1): frames <-> grids of discrete visual tokens.

- :class:`VQTokenizer`: ``encode`` uint8 frames to token grids, ``decode`` / ``decode_soft`` back to frames.
- :class:`TokenizerConfig`: sizes and hyperparameters, profiles ``"cpu"`` (default) and ``"paper"``.
- ``python -m sb3_pvdr.tokenizer.train``: training CLI; ``python -m sb3_pvdr.tokenizer.tokenize``: encode
  a dataset once into a token folder for the dynamics model.
"""

from sb3_pvdr.tokenizer.config import PROFILES, TokenizerConfig
from sb3_pvdr.tokenizer.model import VQTokenizer

__all__ = ["PROFILES", "TokenizerConfig", "VQTokenizer"]
