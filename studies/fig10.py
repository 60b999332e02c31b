"""Figs. 10 and 11: average small-user surplus as alpha grows, with both aggregators
raising alpha together (10) and with aggregator 1 at alpha = 0 while aggregator 2
raises it (11); the large user present."""

from __future__ import annotations

import math

import numpy as np

from aggregame.studies.common import CHOICES, aggregated, small_users, solve
from aggregame.studies.plots import figure, save

DESCRIPTION = "small-user surplus as the aggregators' alpha grows (both, or one)"
DEFAULT_RUNS = 10
VARIANTS = ("both", "second only")


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "variant": v, "backend": backend,
             "alpha": "inf" if math.isinf(a) else a}
            for v in VARIANTS for a in CHOICES.alpha_grid for r in range(runs)]


def run(params: dict) -> list[dict]:
    alpha = params["alpha"]
    alphas = [alpha, alpha] if params["variant"] == "both" else [0, alpha]
    users = small_users(params.get("users", 200), params["seed"])
    eq = solve(aggregated(users, alphas), params["backend"])
    rows = []
    for j, name in enumerate(eq.game.names[:2]):
        s = eq.surpluses[j]
        rows.append({"run": params["run"], "variant": params["variant"],
                     "alpha": float(alpha), "aggregator": name,
                     "avg_surplus": float(np.mean(s)), "members": int(s.size)})
    return rows


def figures(df, out) -> list[str]:
    names = []
    for variant, fig_name in (("both", "fig10"), ("second only", "fig11")):
        part = df[df["variant"] == variant]
        # Average over all small users: weight each aggregator by its members.
        part = part.assign(total=part["avg_surplus"] * part["members"])
        per_run = part.groupby(["alpha", "run"]).agg(total=("total", "sum"),
                                                     members=("members", "sum"))
        per_run["avg"] = per_run["total"] / per_run["members"]
        stats = per_run.groupby("alpha")["avg"].agg(["mean", "std"]).sort_index()
        fig, ax = figure()
        ax.errorbar(range(len(stats)), stats["mean"], yerr=stats["std"].fillna(0),
                    marker="o", capsize=3)
        ax.set_xticks(range(len(stats)))
        ax.set_xticklabels([f"{a:g}" for a in stats.index])  # inf prints as inf
        ax.set_xlabel("alpha of both aggregators" if variant == "both" else
                      "alpha of aggregator 2 (aggregator 1 at alpha = 0)")
        ax.set_ylabel("average small-user surplus [$]")
        ax.set_title(f"{part['run'].nunique()} runs, mean +- sd")
        names += save(fig, out, fig_name)
    return names
