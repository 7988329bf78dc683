"""Task table: the paper's 12 Meta-World tasks, their Table-3 task sets, default cameras and name aliases.

Metaworld 3.x only ships ``*-v3`` tasks; the paper (ECCV 2024) and older code used the ``*-v2`` names.
For every task we accept the v3 name, the v2 name as an alias of it, and the bare name: ``reach-v3``,
``reach-v2`` and ``reach`` are the same task (so are ``door-open-v3``, ``door-open-v2``, ``door-open``). The list of metaworld task names is kept here (and checked against
``metaworld.env_dict`` by the tests) so that ``import sb3_pvdr.envs`` stays cheap: metaworld and
MuJoCo are only imported when an environment is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sb3_pvdr.common.errors import ConfigError

# Every Meta-World 3.x task (``metaworld.env_dict.ALL_V3_ENVIRONMENTS``), without the version suffix.
METAWORLD_TASKS: tuple[str, ...] = (
    "assembly", "basketball", "bin-picking", "box-close", "button-press-topdown",
    "button-press-topdown-wall", "button-press", "button-press-wall", "coffee-button", "coffee-pull",
    "coffee-push", "dial-turn", "disassemble", "door-close", "door-lock", "door-open", "door-unlock",
    "hand-insert", "drawer-close", "drawer-open", "faucet-open", "faucet-close", "hammer",
    "handle-press-side", "handle-press", "handle-pull-side", "handle-pull", "lever-pull",
    "peg-insert-side", "pick-place-wall", "pick-out-of-hole", "reach", "push-back", "push",
    "pick-place", "plate-slide", "plate-slide-side", "plate-slide-back", "plate-slide-back-side",
    "peg-unplug-side", "soccer", "stick-push", "stick-pull", "push-wall", "reach-wall", "shelf-place",
    "sweep-into", "sweep", "window-open", "window-close",
)  # fmt: skip

# Paper Table 3: the 12 tasks, grouped in the three task sets that share PPO/PVDR hyperparameters.
TASK_SETS: dict[str, int] = {
    "button-press-topdown": 1,
    "dial-turn": 1,
    "drawer-close": 1,
    "reach": 1,
    "window-open": 1,
    "button-press": 2,
    "plate-slide": 2,
    "plate-slide-back": 2,
    "window-close": 2,
    "plate-slide-side": 3,
    "hand-insert": 3,
    "drawer-open": 3,
}
PAPER_TASKS: tuple[str, ...] = tuple(TASK_SETS)

# Cameras of Meta-World's scene (``xyz_base.xml``). The ``corner*`` cameras are rolled by ~180 degrees
# in the model, so their frames are rotated by 180 degrees (``img[::-1, ::-1]``); a vertical flip
# alone would mirror them.
CAMERAS: tuple[str, ...] = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
ROTATED_CAMERAS: frozenset[str] = frozenset({"corner", "corner2", "corner3", "corner4"})

# Default camera per task: one fixed view that shows both the arm and the object at 64 px (chosen by
# looking at start and goal frames of each paper task from every camera; ``assets/goal_strip.png``
# shows the result). ``corner`` is the closest view of the table; for the tasks whose object travels
# across the table (plate sliding, hand insertion) the arm hides it there, and the higher ``corner3``
# view shows the object, its goal and the arm. Tasks not listed use ``DEFAULT_CAMERA``.
DEFAULT_CAMERA = "corner"
TASK_CAMERAS: dict[str, str] = {
    "plate-slide": "corner3",
    "plate-slide-back": "corner3",
    "plate-slide-side": "corner3",
    "plate-slide-back-side": "corner3",
    "hand-insert": "corner3",
}

# Validity rules for ``image_size`` (square frames): a multiple of 8 so that the tokenizer's
# downsampling (64 -> 8x8 tokens) divides evenly, and within what the offscreen buffer supports.
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 512


@dataclass(frozen=True)
class TaskSpec:
    """One Meta-World task as sb3_pvdr knows it.

    :param name: bare task name, e.g. ``"reach"``
    :param camera: default camera for this task
    :param task_set: paper Table-3 task set (1, 2 or 3), ``None`` for tasks outside the paper
    """

    name: str
    camera: str
    task_set: int | None

    @property
    def metaworld_name(self) -> str:
        """Metaworld 3.x id, e.g. ``"reach-v3"``."""
        return f"{self.name}-v3"

    @property
    def paper_name(self) -> str:
        """The paper's id, e.g. ``"reach-v2"``."""
        return f"{self.name}-v2"


def valid_task_names() -> list[str]:
    """All accepted task names: ``<task>-v3`` for every metaworld task, plus ``-v2`` and bare aliases."""
    names = [f"{t}-v3" for t in METAWORLD_TASKS]
    names += [f"{t}-v2" for t in METAWORLD_TASKS]
    names += list(METAWORLD_TASKS)
    return names


def resolve_task(task: str) -> TaskSpec:
    """Map a task name (``reach``, ``reach-v2``, ``reach-v3``) to its :class:`TaskSpec`.

    :param task: task name as given by the user
    :return: the task's spec
    :raises ConfigError: unknown name (the message lists the valid names)
    """
    if not isinstance(task, str):
        raise ConfigError(f"task must be a string like 'reach-v2', got {task!r}")
    match = re.fullmatch(r"(?P<base>[a-z\-]+?)(?:-v(?P<version>[23]))?", task.strip())
    base = match.group("base") if match else None
    version = match.group("version") if match else None
    # metaworld 3 dropped v2: every v2 name is an alias of the task's v3 env.
    if base not in METAWORLD_TASKS:
        paper = ", ".join(f"{t}-v2" for t in PAPER_TASKS)
        raise ConfigError(
            f"unknown Meta-World task {task!r}; the paper's tasks are: {paper}; other metaworld tasks: "
            f"{', '.join(f'{t}-v2' for t in METAWORLD_TASKS if t not in TASK_SETS)} "
            f"(each also accepted as '<task>-v3' or bare '<task>')"
        )
    assert base is not None
    return TaskSpec(name=base, camera=TASK_CAMERAS.get(base, DEFAULT_CAMERA), task_set=TASK_SETS.get(base))


def check_image_size(image_size: object) -> int:
    """Validate a frame size (square frames).

    :param image_size: the requested size in pixels
    :return: the size as an int
    :raises ConfigError: not an int, outside [16, 512], or not a multiple of 8
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise ConfigError(f"image_size must be an int (e.g. 64), got {image_size!r}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE or image_size % 8 != 0:
        raise ConfigError(
            f"image_size={image_size} is invalid: use a multiple of 8 between {MIN_IMAGE_SIZE} and "
            f"{MAX_IMAGE_SIZE} (64 for the cpu profile, 128 for the paper's)"
        )
    return image_size


def check_camera(camera: object) -> str:
    """Validate a camera name against Meta-World's scene cameras.

    :raises ConfigError: unknown camera (the message lists the valid ones)
    """
    if camera not in CAMERAS:
        raise ConfigError(f"unknown camera {camera!r}; valid cameras: {', '.join(CAMERAS)}")
    return str(camera)
