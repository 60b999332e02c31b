"""Figs. 12 and 13: average small-user surplus and consumption against the number of
aggregators (2, 4, 8, ...), all using social welfare (12) or proportional fairness
(13); the large user present, users split round-robin."""

from __future__ import annotations

from aggregame.studies.common import (DEFAULT, aggregated_players, paper_price,
                                      small_users)
from aggregame.studies.outcome import evidence, solve_players
from aggregame.studies.plots import figure, save, title
from aggregame.studies.variants import (DEFAULT_NAME, choices_in, domain_of,
                                        with_variants)

DESCRIPTION = "small-user surplus and consumption against the number of aggregators"
DEFAULT_RUNS = 10
COUNTS = (2, 4, 8, 16, 32)
ALPHAS = {"social welfare": 0, "proportional fairness": 1}
CONFIG_KEYS = ("objective", "aggregators")


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    base = [{"run": r, "seed": seed + r, "objective": o, "aggregators": m,
             "backend": backend} for o in ALPHAS for m in COUNTS for r in range(runs)]
    return with_variants(base, lambda p: choices_in([ALPHAS[p["objective"]]], True))


def applies(params: dict) -> bool:
    """Every aggregator needs a member: fewer users than aggregators is skipped."""
    return params["aggregators"] <= params.get("users", 200)


def run(params: dict) -> list[dict]:
    alpha = ALPHAS[params["objective"]]
    users = small_users(params.get("users", 200), params["seed"])
    players = aggregated_players(users, [alpha] * params["aggregators"],
                                 domain_of(params["domain"]))
    outcome = solve_players(players, paper_price(), params["backend"])
    x, s = outcome.small_users()
    ok = outcome.equilibrium
    return [{"run": params["run"], "domain": params["domain"],
             "objective": params["objective"], "aggregators": params["aggregators"],
             "avg_surplus": float(s.mean()) if ok else None,
             "avg_consumption": float(x.mean()) if ok else None,
             **evidence(outcome)}]


def figures(df, out) -> list[str]:
    df = df[df["domain"] == DEFAULT_NAME]
    names = []
    for objective, fig_name in (("social welfare", "fig12"),
                                ("proportional fairness", "fig13")):
        part = df[df["objective"] == objective]
        stats = part.groupby("aggregators")[["avg_surplus", "avg_consumption"]].agg(
            ["mean", "std"])
        fig, axes = figure(1, 2, (10, 4))
        for ax, col, label in ((axes[0], "avg_surplus",
                                "average small-user surplus [$]"),
                               (axes[1], "avg_consumption",
                                "average small-user consumption [units]")):
            ax.errorbar(stats.index, stats[(col, "mean")],
                        yerr=stats[(col, "std")].fillna(0), marker="o", capsize=3)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("number of aggregators")
            ax.set_ylabel(label)
        failed = int((~part["equilibrium"].astype(bool)).sum())
        title(fig, f"{'Fig. 12' if fig_name == 'fig12' else 'Fig. 13'}: {objective}, "
                   f"{part['run'].nunique()} runs, mean +- sd ({failed} run(s) without "
                   f"equilibrium)", DEFAULT.label(
                       aggregators=objective != "social welfare", maxmin=False))
        names += save(fig, out, fig_name)
    return names
