"""Online-stage planning (paper §4.2): the planning wrapper, the planner of eq. (2), reward relabelling of eq. (6)."""

from sb3_pvdr.planning.planner import PlanResult, Planner, blur_frames, load_planning_models, plan_goal_distance
from sb3_pvdr.planning.relabel import context_indices, episode_last, frame_distance, future_counts, future_window, planning_term, pvdr_rewards
from sb3_pvdr.planning.wrapper import PlanningWrapper

__all__ = [
    "PlanResult",
    "Planner",
    "PlanningWrapper",
    "blur_frames",
    "context_indices",
    "episode_last",
    "frame_distance",
    "future_counts",
    "future_window",
    "load_planning_models",
    "plan_goal_distance",
    "planning_term",
    "pvdr_rewards",
]
