"""Watch or evaluate a trained agent, RL Baselines3 Zoo style.

    python enjoy.py --algo pvdr --env reach-v2 -f logs/ --load-best

rl_zoo3's enjoy with our algorithms and envs (``python enjoy.py -h``); ``sb3_pvdr/enjoy.py`` lists what
differs. Record a video of the agent with ``python -m sb3_pvdr.record_agent`` (same options, plus ``--out``).
"""

import os

# Headless MuJoCo rendering (software EGL works on CPU-only machines); must precede the mujoco import.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from sb3_pvdr.enjoy import main  # noqa: E402

if __name__ == "__main__":
    main()
