"""Fig. 5: 200 small users and one large user trading alone; average small-user
surplus as the large user's size K = b/a grows from 0 to 400."""

from __future__ import annotations

from aggregame.studies.common import alone, small_user_outcomes, small_users, solve
from aggregame.studies.plots import figure, save

DESCRIPTION = "200 small users + 1 large user alone: small-user surplus against K"
DEFAULT_RUNS = 20
K_GRID = tuple(range(0, 401, 40))


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "K": K, "backend": backend}
            for K in K_GRID for r in range(runs)]


def run(params: dict) -> list[dict]:
    eq = solve(alone(small_users(params.get("users", 200), params["seed"]), with_large=params["K"]),
               params["backend"])
    x, s = small_user_outcomes(eq)
    return [{"run": params["run"], "K": params["K"], "avg_surplus": float(s.mean()),
             "avg_consumption": float(x.mean()), "price": eq.price}]


def figures(df, out) -> list[str]:
    stats = df.groupby("K")["avg_surplus"].agg(["mean", "std"]).reset_index()
    fig, ax = figure()
    ax.bar(stats["K"], stats["mean"], width=25, yerr=stats["std"].fillna(0), capsize=3)
    ax.set_xlabel("large user's size K = b / a")
    ax.set_ylabel("average small-user surplus [$]")
    ax.set_title(f"200 small users + 1 large user, no aggregators "
                 f"({df['run'].nunique()} runs, mean +- sd)")
    return save(fig, out, "fig5")
