"""Figs. 10 and 11: average small-user surplus as alpha grows, with both aggregators
raising alpha together (10) and with aggregator 1 at alpha = 0 while aggregator 2
raises it (11); the large user present. Rows are per aggregator, so Fig. 11 shows
each aggregator's users as well as all small users."""

from __future__ import annotations

import math

import numpy as np

from aggregame.studies.common import (CHOICES, DEFAULT, aggregated_players,
                                      paper_price, small_users)
from aggregame.studies.outcome import evidence, solve_players
from aggregame.studies.plots import figure, save, title
from aggregame.studies.variants import (DEFAULT_NAME, choices_in, domain_of,
                                        with_variants)

DESCRIPTION = "small-user surplus as the aggregators' alpha grows (both, or one)"
DEFAULT_RUNS = 10
VARIANTS = ("both", "second only")
CONFIG_KEYS = ("variant", "alpha")


def alphas_of(variant: str, alpha: float | str) -> list[float | str]:
    return [alpha, alpha] if variant == "both" else [0, alpha]


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    base = [{"run": r, "seed": seed + r, "variant": v, "backend": backend,
             "alpha": "inf" if math.isinf(a) else a}
            for v in VARIANTS for a in CHOICES.alpha_grid for r in range(runs)]
    return with_variants(base, lambda p: choices_in(alphas_of(p["variant"],
                                                              p["alpha"]), True))


def run(params: dict) -> list[dict]:
    alpha = params["alpha"]
    users = small_users(params.get("users", 200), params["seed"])
    players = aggregated_players(users, alphas_of(params["variant"], alpha),
                                 domain_of(params["domain"]))
    outcome = solve_players(players, paper_price(), params["backend"])
    base = {"run": params["run"], "domain": params["domain"],
            "variant": params["variant"], "alpha": float(alpha), **evidence(outcome)}
    return [{**base, "aggregator": p.name,
             "avg_surplus": float(np.mean(p.s)) if outcome.equilibrium else None,
             "members": len(p.members)} for p in outcome.players[:2]]


def per_run(part):
    """Average surplus of all small users per (run, alpha), each aggregator weighted
    by its members; NaN where the run has no equilibrium."""
    part = part.assign(total=part["avg_surplus"] * part["members"])
    g = part.groupby(["run", "alpha"])[["total", "members"]].sum(min_count=1)
    return (g["total"] / g["members"]).unstack("alpha")


def _ticks(ax, alphas):
    ax.set_xticks(range(len(alphas)))
    ax.set_xticklabels(["max-min" if math.isinf(a) else f"{a:g}" for a in alphas])


def figures(df, out) -> list[str]:
    df = df[df["domain"] == DEFAULT_NAME]
    names = []
    for variant, fig_name in (("both", "fig10"), ("second only", "fig11")):
        part = df[df["variant"] == variant]
        wide = per_run(part)
        alphas = sorted(wide.columns)
        fig, ax = figure(size=(7, 4.2))
        lines = [("all small users", wide)]
        if variant == "second only":
            lines += [(f"users of {name}", part[part["aggregator"] == name].pivot(
                index="run", columns="alpha", values="avg_surplus"))
                for name in sorted(set(part["aggregator"]))]
        for label, table in lines:
            table = table.reindex(columns=alphas)
            ax.errorbar(range(len(alphas)), table.mean(), yerr=table.std().fillna(0),
                        marker="o", capsize=3, label=label)
        _ticks(ax, alphas)
        ax.set_xlabel("alpha of both aggregators" if variant == "both" else
                      "alpha of aggregator 2 (aggregator 1 at alpha = 0)")
        ax.set_ylabel("average small-user surplus [$]")
        ax.legend(fontsize=8)
        failed = int(wide.isna().sum().sum())
        title(fig, f"{'Fig. 10' if variant == 'both' else 'Fig. 11'}: "
                   f"{part['run'].nunique()} runs, mean +- sd ({failed} run(s) "
                   f"without equilibrium)", DEFAULT.label())
        names += save(fig, out, fig_name)
    return names
