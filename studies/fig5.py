"""Fig. 5: 200 small users and one large user trading alone; average small-user
surplus as the large user's size K = b/a grows from 0 to 400, and at the other
reading of its size, K = the sum of b/a of the run's small users (common.large_K).
K is this figure's axis and no aggregator plays, so it has no robustness variants."""

from __future__ import annotations

from aggregame.studies.common import alone_players, large_K, paper_price, small_users
from aggregame.studies.outcome import evidence, solve_players
from aggregame.studies.plots import figure, save, title
from aggregame.studies.variants import DEFAULT_NAME

DESCRIPTION = "200 small users + 1 large user alone: small-user surplus against K"
DEFAULT_RUNS = 20
K_GRID = tuple(range(0, 401, 40))
#: The K of the "as large as the sum of the small users" reading, per run.
SUM = "K=sum b/a"
CONFIG_KEYS = ("reading", "K")


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "K": K, "backend": backend,
             "domain": DEFAULT_NAME} for K in K_GRID + (SUM,) for r in range(runs)]


def run(params: dict) -> list[dict]:
    users = small_users(params.get("users", 200), params["seed"])
    reading = SUM if params["K"] == SUM else "grid"
    K = large_K(users, SUM) if reading == SUM else float(params["K"])
    outcome = solve_players(alone_players(users, with_large=K), paper_price(),
                            params["backend"])
    x, s = outcome.small_users()
    ok = outcome.equilibrium
    return [{"run": params["run"], "domain": params["domain"], "reading": reading,
             "K": K, "avg_surplus": float(s.mean()) if ok else None,
             "avg_consumption": float(x.mean()) if ok else None,
             "price": outcome.price if ok else None, **evidence(outcome)}]


def figures(df, out) -> list[str]:
    ok = df[df["equilibrium"].astype(bool)]
    grid = ok[ok["reading"] == "grid"]
    stats = grid.groupby("K")["avg_surplus"].agg(["mean", "std"]).reset_index()
    fig, ax = figure(size=(8, 4.2))
    ax.bar(stats["K"], stats["mean"], width=25, yerr=stats["std"].fillna(0), capsize=3,
           label="K on the grid 0..400")
    other = ok[ok["reading"] == SUM]
    if len(other):
        ax.axhline(other["avg_surplus"].mean(), color="tab:red", ls="--",
                   label=f"K = sum of b/a (mean K {other['K'].mean():.0f})")
    ax.set_xlabel("large user's size K = b / a")
    ax.set_ylabel("average small-user surplus [$]")
    ax.legend(fontsize=8, loc="lower left")
    failed = int((~df["equilibrium"].astype(bool)).sum())
    title(fig, f"Fig. 5: small users + 1 large user, no aggregators "
               f"({df['run'].nunique()} runs, mean +- sd; {failed} run(s) without "
               f"equilibrium)", "K is the axis; no aggregator: eps, rule and max-min "
                                "reading do not enter")
    return save(fig, out, "fig5")
