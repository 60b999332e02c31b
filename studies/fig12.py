"""Figs. 12 and 13: average small-user surplus and consumption against the number of
aggregators (2, 4, 8, ...), all using social welfare (12) or proportional fairness
(13); the large user present, users split round-robin."""

from __future__ import annotations

from aggregame.studies.common import aggregated, small_user_outcomes, small_users, solve
from aggregame.studies.plots import figure, save

DESCRIPTION = "small-user surplus and consumption against the number of aggregators"
DEFAULT_RUNS = 10
COUNTS = (2, 4, 8, 16, 32)
ALPHAS = {"social welfare": 0, "proportional fairness": 1}


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "objective": o, "aggregators": m,
             "backend": backend} for o in ALPHAS for m in COUNTS for r in range(runs)]


def applies(params: dict) -> bool:
    """Every aggregator needs a member: fewer users than aggregators is skipped."""
    return params["aggregators"] <= params.get("users", 200)


def run(params: dict) -> list[dict]:
    alpha = ALPHAS[params["objective"]]
    eq = solve(aggregated(small_users(params.get("users", 200), params["seed"]),
                          [alpha] * params["aggregators"]), params["backend"])
    x, s = small_user_outcomes(eq)
    return [{"run": params["run"], "objective": params["objective"],
             "aggregators": params["aggregators"], "avg_surplus": float(s.mean()),
             "avg_consumption": float(x.mean())}]


def figures(df, out) -> list[str]:
    names = []
    for objective, fig_name in (("social welfare", "fig12"),
                                ("proportional fairness", "fig13")):
        part = df[df["objective"] == objective]
        stats = part.groupby("aggregators")[["avg_surplus", "avg_consumption"]].agg(
            ["mean", "std"])
        fig, axes = figure(1, 2, (10, 3.8))
        for ax, col, label in ((axes[0], "avg_surplus", "average small-user surplus [$]"),
                               (axes[1], "avg_consumption",
                                "average small-user consumption [units]")):
            ax.errorbar(stats.index, stats[(col, "mean")],
                        yerr=stats[(col, "std")].fillna(0), marker="o", capsize=3)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("number of aggregators")
            ax.set_ylabel(label)
        axes[0].set_title(f"{objective}, {part['run'].nunique()} runs, mean +- sd")
        names += save(fig, out, fig_name)
    return names
