import os

# Headless MuJoCo rendering on CPU-only machines (software EGL). Must be set before mujoco imports.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
