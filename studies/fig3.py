"""Fig. 3: 400 small users trading alone; consumption and surplus over best-response
rounds (Gauss-Seidel from zero). No choice of the domain enters this game (no large
user, no aggregator), so it has no robustness variants."""

from __future__ import annotations

import numpy as np

from aggregame.studies.common import alone_players, paper_price, small_users
from aggregame.studies.outcome import evidence, solve_players
from aggregame.studies.plots import figure, save, title
from aggregame.studies.variants import DEFAULT_NAME

DESCRIPTION = "400 small users trading alone: consumption and surplus over rounds"
DEFAULT_RUNS = 1
USERS = 400
#: Columns that identify a configuration (none: one configuration).
CONFIG_KEYS: tuple[str, ...] = ()


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "backend": backend, "domain": DEFAULT_NAME}
            for r in range(runs)]


def run(params: dict) -> list[dict]:
    users = small_users(params.get("users", USERS), params["seed"])
    outcome = solve_players(alone_players(users), paper_price(), params["backend"])
    a = np.array([u.utility.a for u in users])
    b = np.array([u.utility.b for u in users])
    base = {"run": params["run"], "domain": params["domain"], **evidence(outcome)}
    rows = []
    for k, y in enumerate(np.array(outcome.path)):
        price = float(paper_price().value(y.sum()))
        surplus = b * y - a * y**2 - price * y
        rows += [{**base, "round": k, "user": i, "consumption": float(y[i]),
                  "surplus": float(surplus[i])} for i in range(len(users))]
    return rows


def figures(df, out) -> list[str]:
    fig, axes = figure(2, 1, (7, 6), sharex=True)
    first = df[df["run"] == df["run"].min()]
    for ax, col, label in ((axes[0], "consumption", "consumption x_i [energy units]"),
                           (axes[1], "surplus", "surplus s_i [$]")):
        wide = first.pivot(index="round", columns="user", values=col)
        ax.plot(wide.index, wide.to_numpy(), color="tab:blue", alpha=0.15, lw=0.8)
        ax.set_ylabel(label)
    axes[1].set_xlabel("best-response round (Gauss-Seidel, from zero)")
    title(fig, f"Fig. 3: {first['user'].nunique()} small users trading alone "
               f"(p = 0.001 Y)", "no large user, no aggregator: no K, eps, rule or "
                                 "max-min reading enters")
    return save(fig, out, "fig3")
