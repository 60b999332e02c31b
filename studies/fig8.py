"""Figs. 8 and 9: kernel densities of small users' consumption and surplus with no
aggregator (small users and the large user alone) against 2 aggregators using social
welfare (8) and proportional fairness (9); every small user of every run pooled."""

from __future__ import annotations

import numpy as np

from aggregame.studies.common import (CHOICES, aggregated, alone, small_user_outcomes,
                                      small_users, solve)
from aggregame.studies.plots import figure, save

DESCRIPTION = "distributions of small users' consumption and surplus (KDE)"
DEFAULT_RUNS = 20
CONFIGS = {"no aggregator": None, "social welfare": 0, "proportional fairness": 1}


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "config": c, "backend": backend}
            for c in CONFIGS for r in range(runs)]


def run(params: dict) -> list[dict]:
    users = small_users(params.get("users", 200), params["seed"])
    alpha = CONFIGS[params["config"]]
    game = alone(users, with_large=CHOICES.large_K) if alpha is None else \
        aggregated(users, [alpha, alpha])
    x, s = small_user_outcomes(solve(game, params["backend"]))
    return [{"run": params["run"], "config": params["config"], "user": i,
             "consumption": float(x[i]), "surplus": float(s[i])} for i in range(x.size)]


def _kde(ax, values, label):
    from scipy.stats import gaussian_kde

    values = np.asarray(values)
    grid = np.linspace(values.min(), values.max(), 300)
    if np.ptp(values) > 0:
        ax.plot(grid, gaussian_kde(values)(grid), label=label)


def figures(df, out) -> list[str]:
    names = []
    for other, fig_name in (("social welfare", "fig8"), ("proportional fairness", "fig9")):
        fig, axes = figure(2, 1, (7, 6))
        for ax, col, unit in ((axes[0], "consumption", "consumption [energy units]"),
                              (axes[1], "surplus", "surplus [$]")):
            for config in ("no aggregator", other):
                _kde(ax, df[df["config"] == config][col], config)
            ax.set_xlabel(f"small user's {unit}")
            ax.set_ylabel("density")
            ax.legend()
        axes[0].set_title(f"small users, {df['run'].nunique()} runs pooled "
                          f"(Gaussian KDE)")
        names += save(fig, out, fig_name)
    return names
