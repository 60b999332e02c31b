"""Figs. 6 and 7: average small-user surplus (6) and consumption (7) for 200 small
users alone, with the large user and no aggregators, and with 2 aggregators under
social welfare, proportional fairness and max-min; mean and spread over runs.

Each run also records the distribution of its small users' surplus (mean, median,
quartiles, SD, IQR, CV: stats.summary), for claims about "improving" small users.
Runs of one seed share their small users, so configurations compare run by run
(paired)."""

from __future__ import annotations

from aggregame.studies.common import (DEFAULT, MAXMIN_LABEL, aggregated_players,
                                      alone_players, large_K, paper_price, small_users)
from aggregame.studies.outcome import evidence, solve_players
from aggregame.studies.plots import bars, figure, save, title
from aggregame.studies.stats import summary
from aggregame.studies.variants import (DEFAULT_NAME, choices_in, domain_of,
                                        with_variants)

DESCRIPTION = "small-user surplus and consumption across market configurations"
DEFAULT_RUNS = 50
ALONE, LARGE = "small users alone", "with large user"
CONFIGS = (ALONE, LARGE, "social welfare", "proportional fairness", MAXMIN_LABEL)
#: alpha of each aggregated configuration.
ALPHAS = {"social welfare": 0, "proportional fairness": 1, MAXMIN_LABEL: "inf"}
CONFIG_KEYS = ("config",)


def _choices(params: dict):
    alpha = ALPHAS.get(params["config"])
    return choices_in(None if alpha is None else [alpha] * 2,
                      large=params["config"] != ALONE)


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    base = [{"run": r, "seed": seed + r, "config": c, "backend": backend}
            for c in CONFIGS for r in range(runs)]
    return with_variants(base, _choices)


def build(config: str, domain, users):
    """The players of ``config`` in ``domain``."""
    if config == ALONE:
        return alone_players(users)
    if config == LARGE:
        return alone_players(users, with_large=large_K(users, domain.large))
    return aggregated_players(users, [ALPHAS[config]] * 2, domain)


def run(params: dict) -> list[dict]:
    users = small_users(params.get("users", 200), params["seed"])
    domain = domain_of(params["domain"])
    outcome = solve_players(build(params["config"], domain, users), paper_price(),
                            params["backend"])
    x, s = outcome.small_users()
    ok = outcome.equilibrium
    dist = {f"s_{k}": (v if ok else None) for k, v in summary(s).items()}
    return [{"run": params["run"], "domain": params["domain"],
             "config": params["config"],
             "K": None if params["config"] == ALONE else large_K(users, domain.large),
             "avg_surplus": float(s.mean()) if ok else None,
             "avg_consumption": float(x.mean()) if ok else None,
             "price": outcome.price if ok else None, **dist, **evidence(outcome)}]


def summary_table(df):
    """Mean and SD over runs of each configuration, with its runs without
    equilibrium."""
    ok = df[df["equilibrium"].astype(bool)]
    stats = ok.groupby("config", sort=False)[["avg_surplus", "avg_consumption"]].agg(
        ["mean", "std"])
    stats[("runs", "")] = ok.groupby("config", sort=False).size()
    stats[("failed", "")] = df[~df["equilibrium"].astype(bool)].groupby(
        "config").size().reindex(stats.index).fillna(0).astype(int)
    return stats.reindex([c for c in CONFIGS if c in stats.index])


def figures(df, out) -> list[str]:
    df = df[df["domain"] == DEFAULT_NAME]
    stats = summary_table(df)
    names = []
    for col, fig_name, label in (("avg_surplus", "fig6",
                                  "average small-user surplus [$]"),
                                 ("avg_consumption", "fig7",
                                  "average small-user consumption [energy units]")):
        fig, ax = figure(size=(9, 4.8))
        labels = [f"{c}\n({n} run(s) without equilibrium)" if n else c
                  for c, n in zip(stats.index, stats["failed"])]
        bars(ax, labels, stats[(col, "mean")], stats[(col, "std")].fillna(0), label)
        title(fig, f"{'Fig. 6' if fig_name == 'fig6' else 'Fig. 7'}: 200 small users, "
                   f"{int(stats['runs'].max())} runs (mean +- sd)", DEFAULT.label())
        names += save(fig, out, fig_name)
    return names
