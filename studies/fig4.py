"""Fig. 4: two aggregators (about 100 small users each) and one large user; purchases
over best-response rounds, for social welfare, proportional fairness and max-min."""

from __future__ import annotations

import math

from aggregame.studies.common import (DEFAULT, aggregated_players, paper_price,
                                      small_users)
from aggregame.studies.outcome import evidence, solve_players
from aggregame.studies.plots import figure, save, title
from aggregame.studies.variants import (DEFAULT_NAME, choices_in, domain_of,
                                        with_variants)

DESCRIPTION = "2 aggregators + 1 large user: purchases over best-response rounds"
DEFAULT_RUNS = 1
ALPHAS = (0.0, 1.0, math.inf)
CONFIG_KEYS = ("alpha",)


def _alpha(a: float) -> float | str:
    return "inf" if math.isinf(a) else a


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    base = [{"run": r, "seed": seed + r, "alpha": _alpha(a), "backend": backend}
            for r in range(runs) for a in ALPHAS]
    return with_variants(base, lambda p: choices_in([p["alpha"]] * 2, large=True))


def run(params: dict) -> list[dict]:
    alpha = params["alpha"]
    users = small_users(params.get("users", 200), params["seed"])
    players = aggregated_players(users, [alpha, alpha], domain_of(params["domain"]))
    outcome = solve_players(players, paper_price(), params["backend"])
    base = {"run": params["run"], "domain": params["domain"], "alpha": float(alpha),
            **evidence(outcome)}
    return [{**base, "round": k, "player": name, "purchase": float(y[j])}
            for k, y in enumerate(outcome.path) for j, name in enumerate(outcome.names)]


def figures(df, out) -> list[str]:
    df = df[df["domain"] == DEFAULT_NAME]
    alphas = list(dict.fromkeys(df["alpha"]))
    fig, axes = figure(1, len(alphas), (4 * len(alphas), 3.8), sharey=True)
    axes = axes if isinstance(axes, list) else [axes]
    first = df[df["run"] == df["run"].min()]
    for ax, alpha in zip(axes, alphas):
        part = first[first["alpha"] == alpha].pivot(index="round", columns="player",
                                                    values="purchase")
        for name in part.columns:
            ax.plot(part.index, part[name], marker="o", ms=3, label=name)
        ax.set_title("max-min" if math.isinf(alpha) else f"alpha = {alpha:g}",
                     fontsize=9)
        ax.set_xlabel("best-response round")
    axes[0].set_ylabel("purchase y_j [energy units]")
    axes[0].legend(fontsize=8)
    title(fig, "Fig. 4: 2 aggregators + 1 large user, purchases over rounds",
          DEFAULT.label())
    return save(fig, out, "fig4")
