"""Fig. 3: 400 small users trading alone; consumption and surplus over best-response
rounds (Gauss-Seidel from zero)."""

from __future__ import annotations

import numpy as np

from aggregame.studies.common import alone, small_users, solve
from aggregame.studies.plots import figure, save

DESCRIPTION = "400 small users trading alone: consumption and surplus over rounds"
DEFAULT_RUNS = 1
USERS = 400


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "backend": backend} for r in range(runs)]


def run(params: dict) -> list[dict]:
    users = small_users(params.get("users", USERS), params["seed"])
    game = alone(users)
    eq = solve(game, params["backend"])
    a = np.array([u.utility.a for u in users])
    b = np.array([u.utility.b for u in users])
    rows = []
    for k, y in enumerate(eq.path):
        price = float(game.price.value(y.sum()))
        surplus = b * y - a * y**2 - price * y
        rows += [{"run": params["run"], "round": k, "user": i, "consumption": float(y[i]),
                  "surplus": float(surplus[i])} for i in range(len(users))]
    return rows


def figures(df, out) -> list[str]:
    fig, axes = figure(2, 1, (7, 6), sharex=True)
    first = df[df["run"] == df["run"].min()]
    for col, ax, label in ((("consumption"), axes[0], "consumption x_i [energy units]"),
                           ("surplus", axes[1], "surplus s_i [$]")):
        wide = first.pivot(index="round", columns="user", values=col)
        ax.plot(wide.index, wide.to_numpy(), color="tab:blue", alpha=0.15, lw=0.8)
        ax.set_ylabel(label)
    axes[1].set_xlabel("best-response round (Gauss-Seidel, from zero)")
    axes[0].set_title(f"{first['user'].nunique()} small users trading alone "
                      f"(p = 0.001 Y)")
    return save(fig, out, "fig3")
