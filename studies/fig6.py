"""Figs. 6 and 7: average small-user surplus (6) and consumption (7) for 200 small
users alone, with the large user and no aggregators, and with 2 aggregators under
social welfare, proportional fairness and max-min; mean and spread over runs.

Max-min is shown under the floor rule (the default, where it behaves like social
welfare, docs/model.md, section "Max-min") and under the viable rule (priced-out
members leave the minimum)."""

from __future__ import annotations

from aggregame.errors import SolverError
from aggregame.studies.common import (CHOICES, aggregated, alone, small_user_outcomes,
                                      small_users, solve)
from aggregame.studies.plots import bars, figure, save

DESCRIPTION = "small-user surplus and consumption across market configurations"
DEFAULT_RUNS = 50
CONFIGS = ("small users alone", "with large user", "social welfare",
           "proportional fairness", "max-min (floor)", "max-min (viable)")


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "config": c, "backend": backend}
            for c in CONFIGS for r in range(runs)]


def build(config: str, users):
    if config == "small users alone":
        return alone(users)
    if config == "with large user":
        return alone(users, with_large=CHOICES.large_K)
    alpha = {"social welfare": 0, "proportional fairness": 1}.get(config, "inf")
    rule = "viable" if config.endswith("(viable)") else None
    return aggregated(users, [alpha, alpha], rule=rule)


def run(params: dict) -> list[dict]:
    game = build(params["config"], small_users(params.get("users", 200), params["seed"]))
    try:
        eq = solve(game, params["backend"])
    except SolverError as err:  # recorded, never averaged in
        return [{"run": params["run"], "config": params["config"], "equilibrium": False,
                 "avg_surplus": None, "avg_consumption": None, "reason": str(err)}]
    x, s = small_user_outcomes(eq)
    return [{"run": params["run"], "config": params["config"], "equilibrium": True,
             "avg_surplus": float(s.mean()), "avg_consumption": float(x.mean()),
             "reason": None}]


def summary(df):
    ok = df[df["equilibrium"]]
    stats = ok.groupby("config", sort=False)[["avg_surplus", "avg_consumption"]].agg(
        ["mean", "std"])
    stats[("runs", "")] = ok.groupby("config", sort=False).size()
    stats[("failed", "")] = df[~df["equilibrium"]].groupby("config").size().reindex(
        stats.index).fillna(0).astype(int)
    return stats.reindex([c for c in CONFIGS if c in stats.index])


def figures(df, out) -> list[str]:
    stats = summary(df)
    names = []
    for col, fig_name, label in (("avg_surplus", "fig6", "average small-user surplus [$]"),
                                 ("avg_consumption", "fig7",
                                  "average small-user consumption [energy units]")):
        fig, ax = figure(size=(8, 4.2))
        labels = [f"{c}\n({n} run(s) without equilibrium)" if n else c
                  for c, n in zip(stats.index, stats["failed"])]
        bars(ax, labels, stats[(col, "mean")], stats[(col, "std")].fillna(0),
             label, f"200 small users, {int(stats['runs'].max())} runs (mean +- sd)")
        names += save(fig, out, fig_name)
    return names
