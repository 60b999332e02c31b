"""Fig. 4: two aggregators (about 100 small users each) and one large user; purchases
over best-response rounds, for social welfare, proportional fairness and max-min."""

from __future__ import annotations

import math

from aggregame.studies.common import aggregated, small_users, solve
from aggregame.studies.plots import figure, save

DESCRIPTION = "2 aggregators + 1 large user: purchases over best-response rounds"
DEFAULT_RUNS = 1
ALPHAS = (0.0, 1.0, math.inf)


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "alpha": "inf" if math.isinf(a) else a,
             "backend": backend} for r in range(runs) for a in ALPHAS]


def run(params: dict) -> list[dict]:
    alpha = params["alpha"]
    game = aggregated(small_users(params.get("users", 200), params["seed"]), [alpha, alpha])
    eq = solve(game, params["backend"])
    return [{"run": params["run"], "alpha": float(alpha), "round": k, "player": name,
             "purchase": float(y[j])}
            for k, y in enumerate(eq.path) for j, name in enumerate(game.names)]


def figures(df, out) -> list[str]:
    alphas = list(dict.fromkeys(df["alpha"]))
    fig, axes = figure(1, len(alphas), (4 * len(alphas), 3.6), sharey=True)
    axes = axes if isinstance(axes, list) else [axes]
    first = df[df["run"] == df["run"].min()]
    for ax, alpha in zip(axes, alphas):
        part = first[first["alpha"] == alpha].pivot(index="round", columns="player",
                                                    values="purchase")
        for name in part.columns:
            ax.plot(part.index, part[name], marker="o", ms=3, label=name)
        ax.set_title(f"alpha = {alpha:g}")
        ax.set_xlabel("best-response round")
    axes[0].set_ylabel("purchase y_j [energy units]")
    axes[0].legend(fontsize=8)
    return save(fig, out, "fig4")
