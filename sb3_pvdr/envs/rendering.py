"""Fast headless rendering of a Meta-World scene from one fixed camera, the right way up.

Metaworld's default render settings (4x multisampling, 4096-px shadow maps, reflections) cost
~13 frames/s in software EGL on a CPU-only machine at any frame size. The settings below keep the
look (same geometry, textures, lights) but drop multisampling, shadows and reflections, and size the
offscreen buffer to the frame, which makes small frames several times faster.

Each :class:`SceneRenderer` owns its own OpenGL context (made current before every render by
``mujoco.Renderer``), so several environments in one process do not corrupt each other's frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sb3_pvdr.envs.tasks import ROTATED_CAMERAS, check_camera


def speed_up_model_rendering(model: Any, image_size: int) -> None:
    """Set a MuJoCo model's visual quality for fast small offscreen frames.

    Must run before the first render context is made for ``model``.

    :param model: ``mujoco.MjModel``
    :param image_size: frame size in pixels (the offscreen buffer is made this size)
    """
    model.vis.quality.offsamples = 0  # no multisampling
    model.vis.quality.shadowsize = 64  # tiny shadow map (shadows are also switched off in the scene)
    model.vis.global_.offwidth = image_size
    model.vis.global_.offheight = image_size


class SceneRenderer:
    """Renders ``uint8 (H, W, 3)`` frames of a MuJoCo model/data pair from one fixed camera.

    :param model: ``mujoco.MjModel`` (its visual settings are changed for speed)
    :param data: ``mujoco.MjData`` to render
    :param image_size: frame height and width in pixels
    :param camera: camera name in the model (see :data:`sb3_pvdr.envs.tasks.CAMERAS`)
    :param hide_sites: don't draw sites (Meta-World's goal markers and other debug dots)
    :param fast: apply :func:`speed_up_model_rendering` and turn off shadows/reflections; ``False``
        renders with the model's own (slow) settings, as raw metaworld does
    """

    def __init__(
        self,
        model: Any,
        data: Any,
        image_size: int,
        camera: str,
        hide_sites: bool = True,
        fast: bool = True,
    ) -> None:
        import mujoco

        self.camera = check_camera(camera)
        self.image_size = image_size
        self.rotate = camera in ROTATED_CAMERAS
        self._data = data
        if fast:
            speed_up_model_rendering(model, image_size)
        else:
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, image_size)
            model.vis.global_.offheight = max(model.vis.global_.offheight, image_size)
        self._renderer: Any = mujoco.Renderer(model, height=image_size, width=image_size)
        if fast:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._option = mujoco.MjvOption()
        if hide_sites:
            self._option.sitegroup[:] = 0
        self._camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)

    def render(self) -> np.ndarray:
        """Render the current state (no ``mj_forward``: the caller's data is drawn as it is).

        :return: ``uint8 (H, W, 3)`` frame, the right way up
        """
        if self._renderer is None:
            raise RuntimeError("render() called after close()")
        self._renderer.update_scene(self._data, camera=self._camera_id, scene_option=self._option)
        frame = self._renderer.render()
        if self.rotate:
            frame = frame[::-1, ::-1]
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        """Free the OpenGL context (idempotent; never raises)."""
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            try:
                renderer.close()
            except Exception:  # noqa: BLE001 - freeing a dead EGL context at exit must not raise
                pass
