"""Fig. 5: 200 small users and one large user trading alone; average small-user
surplus as the large user's size K = b/a grows from 0 to 400, and at the other
reading of its size, K = the sum of b/a of the run's small users (common.large_K)."""

from __future__ import annotations

from aggregame.studies.common import (LARGE_READINGS, alone, large_K,
                                      small_user_outcomes, small_users, solve)
from aggregame.studies.plots import figure, save

DESCRIPTION = "200 small users + 1 large user alone: small-user surplus against K"
DEFAULT_RUNS = 20
K_GRID = tuple(range(0, 401, 40))
#: The K of the "as large as the sum of the small users" reading, per run.
SUM = LARGE_READINGS[1]


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "K": K, "backend": backend}
            for K in K_GRID + (SUM,) for r in range(runs)]


def run(params: dict) -> list[dict]:
    users = small_users(params.get("users", 200), params["seed"])
    reading = SUM if params["K"] == SUM else "grid"
    K = large_K(users, SUM) if reading == SUM else float(params["K"])
    eq = solve(alone(users, with_large=K), params["backend"])
    x, s = small_user_outcomes(eq)
    return [{"run": params["run"], "reading": reading, "K": K,
             "avg_surplus": float(s.mean()), "avg_consumption": float(x.mean()),
             "price": eq.price}]


def figures(df, out) -> list[str]:
    grid = df[df["reading"] == "grid"]
    stats = grid.groupby("K")["avg_surplus"].agg(["mean", "std"]).reset_index()
    fig, ax = figure(size=(8, 4))
    ax.bar(stats["K"], stats["mean"], width=25, yerr=stats["std"].fillna(0), capsize=3,
           label="K on the grid 0..400")
    other = df[df["reading"] == SUM]
    if len(other):
        ax.axhline(other["avg_surplus"].mean(), color="tab:red", ls="--",
                   label=f"K = sum of b/a (mean K {other['K'].mean():.0f})")
    ax.set_xlabel("large user's size K = b / a")
    ax.set_ylabel("average small-user surplus [$]")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"small users + 1 large user, no aggregators "
                 f"({df['run'].nunique()} runs, mean +- sd)")
    return save(fig, out, "fig5")
