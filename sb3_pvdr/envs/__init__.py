"""Image-goal Meta-World environments (and an RLBench adapter) for PVDR.

``import sb3_pvdr.envs`` registers the gymnasium ids (``reach-v2``, ``reach-v3``...); metaworld and
MuJoCo are imported only when an env is built.
"""

from sb3_pvdr.envs.goals import default_goal_cache_dir, get_scripted_policy
from sb3_pvdr.envs.metaworld_env import ImageGoalMetaWorldEnv, make_metaworld_env
from sb3_pvdr.envs.registration import register_envs, registered_ids
from sb3_pvdr.envs.rlbench import ImageGoalRLBenchEnv, make_rlbench_env
from sb3_pvdr.envs.tasks import (
    CAMERAS,
    METAWORLD_TASKS,
    PAPER_TASKS,
    TASK_CAMERAS,
    TASK_SETS,
    TaskSpec,
    resolve_task,
    valid_task_names,
)

register_envs()

__all__ = [
    "CAMERAS",
    "METAWORLD_TASKS",
    "PAPER_TASKS",
    "TASK_CAMERAS",
    "TASK_SETS",
    "ImageGoalMetaWorldEnv",
    "ImageGoalRLBenchEnv",
    "TaskSpec",
    "default_goal_cache_dir",
    "get_scripted_policy",
    "make_metaworld_env",
    "make_rlbench_env",
    "register_envs",
    "registered_ids",
    "resolve_task",
    "valid_task_names",
]
