"""Train an agent on an image-goal Meta-World task, RL Baselines3 Zoo style.

    python train.py --algo ppo --env reach-v2 -n 2000

Hyperparameters come from ``zoo_configs/<algo>.yml`` (env id -> kwargs, merged over ``default:``);
override them with ``-params key:value ...`` and the env's with ``--env-kwargs key:value ...``.
All rl_zoo3 options work (``python train.py -h``); ``sb3_pvdr/zoo.py`` lists what differs.
"""

import os
from pathlib import Path

# Headless MuJoCo rendering (software EGL works on CPU-only machines); must precede the mujoco import.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from sb3_pvdr.zoo import main  # noqa: E402

if __name__ == "__main__":  # subprocess envs re-import this file: train only in the main process
    main(config_dir=Path(__file__).resolve().parent / "zoo_configs")
