"""Gymnasium registration: ``gym.make("reach-v2")`` builds the image-goal Meta-World env.

Registered on ``import sb3_pvdr.envs``: ``<task>-v3`` for every metaworld 3.x task and the
``<task>-v2`` alias of each (the paper's names for its 12 tasks; metaworld 2.x names for the rest). ``gym.make(id, **kwargs)`` passes the keyword arguments of
:func:`sb3_pvdr.envs.make_metaworld_env` through (``image_size=128``, ``variant=3``...), except
``max_episode_steps``, which gymnasium's ``make`` keeps for itself (it adds a ``TimeLimit`` counting
*agent* steps); the env's own simulator-step horizon stays at its default of 500 then.
"""

from __future__ import annotations

import re
import warnings

import gymnasium as gym

from sb3_pvdr.envs.tasks import METAWORLD_TASKS

ENTRY_POINT = "sb3_pvdr.envs.metaworld_env:make_metaworld_env"


def registered_ids() -> list[str]:
    """The gymnasium ids this module registers."""
    ids = [f"{task}-v3" for task in METAWORLD_TASKS]
    ids += [f"{task}-v2" for task in METAWORLD_TASKS]
    return ids


def register_envs() -> None:
    """Register every id of :func:`registered_ids` (idempotent)."""
    # The v2 names are deliberate aliases: silence gymnasium's "reach-v2 is out of date".
    tasks = "|".join(re.escape(task) for task in METAWORLD_TASKS)
    warnings.filterwarnings("ignore", message=rf".*environment ({tasks})-v2 is out of date")
    for env_id in registered_ids():
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs={"task": env_id})
