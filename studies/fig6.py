"""Figs. 6 and 7: average small-user surplus (6) and consumption (7) for 200 small
users alone, with the large user and no aggregators, and with 2 aggregators under
social welfare, proportional fairness and max-min; mean and spread over runs.

Every configuration with the large user runs under both readings of its size
(common.LARGE_READINGS: K = 400, and K = the sum of b/a of the run's small users).
One priced-out rule for every bar: floor with eps (common.CHOICES). Runs of one seed
share their small users, so configurations compare run by run (paired)."""

from __future__ import annotations

from aggregame.errors import SolverError
from aggregame.studies.common import (LARGE_READINGS, MAXMIN_LABEL, aggregated, alone,
                                      large_K, small_user_outcomes, small_users, solve)
from aggregame.studies.plots import bars, figure, save

DESCRIPTION = "small-user surplus and consumption across market configurations"
DEFAULT_RUNS = 50
CONFIGS = ("small users alone", "with large user", "social welfare",
           "proportional fairness", MAXMIN_LABEL)
#: alpha of each aggregated configuration.
ALPHAS = {"social welfare": 0, "proportional fairness": 1, MAXMIN_LABEL: "inf"}
#: The reading recorded for the configuration without a large user.
NO_LARGE = "none"


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    out = []
    for c in CONFIGS:
        for large in ((NO_LARGE,) if c == "small users alone" else LARGE_READINGS):
            out += [{"run": r, "seed": seed + r, "config": c, "large": large,
                     "backend": backend} for r in range(runs)]
    return out


def build(config: str, large: str, users):
    if config == "small users alone":
        return alone(users)
    K = large_K(users, large)
    if config == "with large user":
        return alone(users, with_large=K)
    return aggregated(users, [ALPHAS[config]] * 2, with_large=K)


def run(params: dict) -> list[dict]:
    users = small_users(params.get("users", 200), params["seed"])
    large = params.get("large", LARGE_READINGS[0])
    base = {"run": params["run"], "config": params["config"], "large": large,
            "K": None if large == NO_LARGE else large_K(users, large)}
    try:
        eq = solve(build(params["config"], large, users), params["backend"])
    except SolverError as err:  # recorded, never averaged in
        return [{**base, "equilibrium": False, "avg_surplus": None,
                 "avg_consumption": None, "price": None, "reason": str(err)}]
    x, s = small_user_outcomes(eq)
    return [{**base, "equilibrium": True, "avg_surplus": float(s.mean()),
             "avg_consumption": float(x.mean()), "price": eq.price, "reason": None}]


def summary(df):
    df = df.assign(label=[c if lg == NO_LARGE else f"{c}, {lg}"
                          for c, lg in zip(df["config"], df["large"])])
    ok = df[df["equilibrium"].astype(bool)]
    stats = ok.groupby("label", sort=False)[["avg_surplus", "avg_consumption"]].agg(
        ["mean", "std"])
    stats[("runs", "")] = ok.groupby("label", sort=False).size()
    stats[("failed", "")] = df[~df["equilibrium"].astype(bool)].groupby(
        "label").size().reindex(stats.index).fillna(0).astype(int)
    order = [f"{c}, {lg}" for lg in LARGE_READINGS for c in CONFIGS]
    return stats.reindex(["small users alone"] + [k for k in order if k in stats.index])


def figures(df, out) -> list[str]:
    stats = summary(df)
    names = []
    for col, fig_name, label in (("avg_surplus", "fig6", "average small-user surplus [$]"),
                                 ("avg_consumption", "fig7",
                                  "average small-user consumption [energy units]")):
        fig, ax = figure(size=(11, 5))
        labels = [f"{c}\n({n} run(s) without equilibrium)" if n else c
                  for c, n in zip(stats.index, stats["failed"])]
        bars(ax, labels, stats[(col, "mean")], stats[(col, "std")].fillna(0),
             label, f"200 small users, {int(stats['runs'].max())} runs (mean +- sd)")
        names += save(fig, out, fig_name)
    return names
