"""Goal images: a rendered frame of a task variant's goal state, and their on-disk cache.

A goal image is obtained by running metaworld's scripted policy on the variant until the task reports
success, then rendering that state with the same camera, size and marker setting as the observations
(so goal and observation frames are pixel-comparable). Where the scripted policy does not reach
success, the variant is recorded as failed (with the reason) and never used, rather than shipping a
wrong goal. Both outcomes are cached per task/variant/camera/size/marker setting, so a variant's
rollout runs once per machine.

Cache layout (``goal_cache_dir`` defaults to ``$SB3_PVDR_GOAL_CACHE`` or ``~/.cache/sb3_pvdr/goals``)::

    <goal_cache_dir>/mw<metaworld version>-c<CACHE_VERSION>/<task>-v3/
        variants_seed0.npy      # the 50 MT1 layouts (rand_vecs), saves ~1-3 s per env build
        <camera>_<size>px_<markers>/
            variant_07.png      # the goal frame, uint8 RGB, lossless
            variant_13.failed   # one line: why this variant has no goal image
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sb3_pvdr.common.checkpoint import atomic_write_bytes
from sb3_pvdr.envs.tasks import resolve_task

logger = logging.getLogger(__name__)

# Bump when anything that changes goal frames changes (render settings, settle rule...).
CACHE_VERSION = 1
# Simulator steps the scripted policy gets to reach success (metaworld's own episode length).
GOAL_ROLLOUT_STEPS = 500
# After the first success step, keep following the policy for up to this many steps while the task
# still reports success, so the goal frame shows a settled state rather than the first touch.
GOAL_SETTLE_STEPS = 10


def get_scripted_policy(task: str) -> Any:
    """Metaworld's scripted (expert) policy for a task.

    :param task: task name (``reach``, ``reach-v2``, ``reach-v3``...)
    :return: a ``metaworld.policies.policy.Policy``; call ``get_action(state)`` with the 39-d state
        from ``env.unwrapped.state_observation()``
    """
    from metaworld.policies import ENV_POLICY_MAP

    spec = resolve_task(task)
    return ENV_POLICY_MAP[spec.metaworld_name]()


def default_goal_cache_dir() -> Path:
    """``$SB3_PVDR_GOAL_CACHE`` if set, else ``~/.cache/sb3_pvdr/goals``."""
    env = os.environ.get("SB3_PVDR_GOAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sb3_pvdr" / "goals"


def versioned_cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """``<cache_dir>/mw<metaworld version>-c<CACHE_VERSION>``: entries of other versions are never reused."""
    from importlib.metadata import version as package_version

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_goal_cache_dir()
    return root / f"mw{package_version('metaworld')}-c{CACHE_VERSION}"


class GoalImageCache:
    """On-disk cache of goal frames (PNG) and failed variants for one task/camera/size/marker setting.

    :param cache_dir: root folder (``None``: :func:`default_goal_cache_dir`)
    :param task: metaworld task id, e.g. ``"reach-v3"``
    :param camera: camera name
    :param image_size: frame size in pixels
    :param hide_goal_markers: whether goal marker sites are hidden in the frames
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike | None,
        task: str,
        camera: str,
        image_size: int,
        hide_goal_markers: bool,
    ) -> None:
        markers = "nomarkers" if hide_goal_markers else "markers"
        self.folder = versioned_cache_root(cache_dir) / task / f"{camera}_{image_size}px_{markers}"
        self.image_size = image_size

    def image_path(self, variant: int) -> Path:
        return self.folder / f"variant_{variant:02d}.png"

    def failure_path(self, variant: int) -> Path:
        return self.folder / f"variant_{variant:02d}.failed"

    def load(self, variant: int) -> np.ndarray | None:
        """The cached goal frame, or ``None`` if absent or unreadable (then it is regenerated)."""
        import imageio.v3 as iio

        path = self.image_path(variant)
        if not path.is_file():
            return None
        try:
            image = np.asarray(iio.imread(path))
        except Exception as exc:  # noqa: BLE001 - a corrupt cache entry is rebuilt, not fatal
            logger.warning("ignoring unreadable goal image %s (%s)", path, exc)
            return None
        if image.shape != (self.image_size, self.image_size, 3) or image.dtype != np.uint8:
            logger.warning("ignoring goal image %s of shape %s", path, image.shape)
            return None
        return image

    def failure(self, variant: int) -> str | None:
        """The recorded reason this variant has no goal image, or ``None``."""
        path = self.failure_path(variant)
        if not path.is_file():
            return None
        return path.read_text().strip() or "unknown reason"

    def save(self, variant: int, image: np.ndarray) -> None:
        import imageio.v3 as iio

        atomic_write_bytes(self.image_path(variant), iio.imwrite("<bytes>", image, extension=".png"))

    def save_failure(self, variant: int, reason: str) -> None:
        atomic_write_bytes(self.failure_path(variant), (reason.strip() + "\n").encode())


def rollout_to_goal(
    mw_env: Any,
    policy: Any,
    render: Callable[[], np.ndarray],
    max_steps: int = GOAL_ROLLOUT_STEPS,
    settle_steps: int = GOAL_SETTLE_STEPS,
) -> tuple[np.ndarray | None, str]:
    """Run a scripted policy on a reset metaworld env until success and render the goal frame.

    :param mw_env: metaworld env, already ``set_task`` to the variant (it is reset here)
    :param policy: scripted policy (``get_action(state) -> action``)
    :param render: renders the current state of ``mw_env`` as ``uint8 (H, W, 3)``
    :param max_steps: simulator steps allowed to reach success
    :param settle_steps: extra steps taken while success holds; the last success state is rendered
    :return: ``(frame, "")`` on success, ``(None, reason)`` when the policy never succeeds
    """
    state, _ = mw_env.reset()
    frame = None
    with warnings.catch_warnings():
        # metaworld's `move` warns on every clipped action ("Constant(s) may be too high").
        warnings.simplefilter("ignore")
        for step in range(max_steps):
            state, _, _, _, info = mw_env.step(policy.get_action(state))
            if info["success"]:
                frame = render()
                for _ in range(min(settle_steps, max_steps - step - 1)):
                    state, _, _, _, info = mw_env.step(policy.get_action(state))
                    if not info["success"]:
                        break
                    frame = render()
                return frame, ""
    return None, f"scripted policy {type(policy).__name__} did not reach success in {max_steps} simulator steps"
