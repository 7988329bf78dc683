"""Learning curves of an experiment, paper Fig. 4 style: success rate vs env steps (or wall-clock), mean and std
band over seeds, one panel per env.

rl_zoo3's ``plots/all_plots.py`` reads the same ``evaluations.npz`` but one rl-zoo folder per seed: it cannot
merge the segments of a resumed run, has no wall-clock axis, and needs seaborn; so curves are drawn from our
``curves.csv`` here (matplotlib only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _mean_std_curve(rows: list[dict[str, Any]], x_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds aligned on evaluation steps: for each step reached by any seed, mean/std over seeds that reached it.
    ``x`` is the mean of ``x_key`` at that step (the step itself for ``timesteps``)."""
    steps = sorted({r["timesteps"] for r in rows})
    xs, means, stds = [], [], []
    for step in steps:
        at = [r for r in rows if r["timesteps"] == step]
        values = [r["success_rate"] for r in at]
        xs.append(np.mean([r[x_key] for r in at]))
        means.append(np.mean(values))
        stds.append(np.std(values))
    return np.array(xs), 100 * np.array(means), 100 * np.array(stds)


def plot_curves(rows: list[dict[str, Any]], path: Path, x_key: str = "timesteps", title: str = "") -> None:
    """Write a PNG with one panel per env and one line (mean) + band (std over seeds) per label.

    :param rows: ``curves.csv`` rows
    :param path: output PNG
    :param x_key: ``"timesteps"`` (env steps) or ``"wall_time_s"`` (wall-clock seconds)
    :param title: figure title
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env"] for r in rows)) or ["(no evaluations yet)"]
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        env_rows = [r for r in rows if r["env"] == env]
        for label in dict.fromkeys(r["label"] for r in env_rows):
            label_rows = [r for r in env_rows if r["label"] == label]
            x, mean, std = _mean_std_curve(label_rows, x_key)
            n = len({r["seed"] for r in label_rows})
            if x_key == "wall_time_s":
                x = x / 60.0
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=f"{label} ({n} seeds)")
            ax.fill_between(x, np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100), color=line.get_color(), alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("env steps" if x_key == "timesteps" else "wall-clock (min)")
        ax.set_ylabel("success rate (%)")
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
        if env_rows:
            ax.legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


__all__ = ["plot_curves"]
