"""Figs. 8 and 9: kernel densities of small users' consumption and surplus with no
aggregator (small users and the large user alone) against 2 aggregators using social
welfare (8) and proportional fairness (9); every small user of every run pooled."""

from __future__ import annotations

import numpy as np

from aggregame.studies.common import (DEFAULT, aggregated_players, alone_players,
                                      large_K, paper_price, small_users)
from aggregame.studies.outcome import evidence, solve_players
from aggregame.studies.plots import figure, save, title
from aggregame.studies.variants import (DEFAULT_NAME, choices_in, domain_of,
                                        with_variants)

DESCRIPTION = "distributions of small users' consumption and surplus (KDE)"
DEFAULT_RUNS = 20
NONE = "no aggregator"
CONFIGS = {NONE: None, "social welfare": 0, "proportional fairness": 1}
CONFIG_KEYS = ("config",)


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    base = [{"run": r, "seed": seed + r, "config": c, "backend": backend}
            for c in CONFIGS for r in range(runs)]
    return with_variants(base, lambda p: choices_in(
        None if CONFIGS[p["config"]] is None else [CONFIGS[p["config"]]] * 2, True))


def run(params: dict) -> list[dict]:
    users = small_users(params.get("users", 200), params["seed"])
    domain, alpha = domain_of(params["domain"]), CONFIGS[params["config"]]
    players = alone_players(users, with_large=large_K(users, domain.large)) \
        if alpha is None else aggregated_players(users, [alpha, alpha], domain)
    outcome = solve_players(players, paper_price(), params["backend"])
    x, s = outcome.small_users()
    base = {"run": params["run"], "domain": params["domain"],
            "config": params["config"], **evidence(outcome)}
    ok = outcome.equilibrium
    return [{**base, "user": i, "consumption": float(x[i]) if ok else None,
             "surplus": float(s[i]) if ok else None} for i in range(x.size)]


def _kde(ax, values, label):
    from scipy.stats import gaussian_kde

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size > 1 and np.ptp(values) > 0:
        grid = np.linspace(values.min(), values.max(), 300)
        ax.plot(grid, gaussian_kde(values)(grid), label=label)


def figures(df, out) -> list[str]:
    df = df[df["domain"] == DEFAULT_NAME]
    names = []
    for other, fig_name in (("social welfare", "fig8"),
                            ("proportional fairness", "fig9")):
        fig, axes = figure(2, 1, (7, 6.4))
        for ax, col, unit in ((axes[0], "consumption", "consumption [energy units]"),
                              (axes[1], "surplus", "surplus [$]")):
            for config in (NONE, other):
                _kde(ax, df[df["config"] == config][col], config)
            ax.set_xlabel(f"small user's {unit}")
            ax.set_ylabel("density")
            ax.legend(fontsize=8)
        failed = df[~df["equilibrium"].astype(bool)].groupby("run").ngroups
        title(fig, f"{'Fig. 8' if fig_name == 'fig8' else 'Fig. 9'}: small users, "
                   f"{df['run'].nunique()} runs pooled (Gaussian KDE; {failed} run(s) "
                   f"without equilibrium)", DEFAULT.label(maxmin=False))
        names += save(fig, out, fig_name)
    return names
