"""Sensitivity to the floor rule's eps: the Fig. 10 family (2 aggregators with the
same alpha, 200 small users, the large user at K = 400) for proportional fairness,
alpha = 2 and max-min, each at eps = 0.001, 0.01, 0.1 and 1 (the aggregators' eps;
the large user, a one-member player, is unaffected by its eps)."""

from __future__ import annotations

from aggregame.errors import SolverError
from aggregame.studies.common import (MAXMIN_LABEL, aggregated, small_user_outcomes,
                                      small_users, solve)
from aggregame.studies.plots import figure, save

DESCRIPTION = "sensitivity of small-user surplus to the floor eps (Fig. 10 family)"
DEFAULT_RUNS = 10
EPS_GRID = (0.001, 0.01, 0.1, 1.0)
#: Objectives of the table and their alpha.
OBJECTIVES = {"proportional fairness": 1, "alpha = 2": 2, MAXMIN_LABEL: "inf"}


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "objective": o, "eps": e, "backend": backend}
            for o in OBJECTIVES for e in EPS_GRID for r in range(runs)]


def run(params: dict) -> list[dict]:
    alpha = OBJECTIVES[params["objective"]]
    users = small_users(params.get("users", 200), params["seed"])
    base = {"run": params["run"], "objective": params["objective"],
            "eps": params["eps"]}
    try:
        eq = solve(aggregated(users, [alpha, alpha], eps=params["eps"]),
                   params["backend"])
    except SolverError as err:  # recorded, never averaged in
        return [{**base, "equilibrium": False, "avg_surplus": None,
                 "avg_consumption": None, "reason": str(err)}]
    x, s = small_user_outcomes(eq)
    return [{**base, "equilibrium": True, "avg_surplus": float(s.mean()),
             "avg_consumption": float(x.mean()), "reason": None}]


def figures(df, out) -> list[str]:
    ok = df[df["equilibrium"].astype(bool)]
    fig, ax = figure(size=(7, 4))
    for objective in OBJECTIVES:
        part = ok[ok["objective"] == objective].groupby("eps")["avg_surplus"]
        stats = part.agg(["mean", "std"])
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0),
                    marker="o", capsize=3, label=objective)
    ax.set_xscale("log")
    ax.set_xlabel("floor eps of both aggregators [$]")
    ax.set_ylabel("average small-user surplus [$]")
    ax.set_title(f"Fig. 10 family, {df['run'].nunique()} runs, mean +- sd")
    ax.legend(fontsize=8)
    return save(fig, out, "eps")
