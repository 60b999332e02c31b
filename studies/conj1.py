"""Conjecture 1 (uniqueness of the Nash equilibrium) on small instances of every
study's games: multistart best response and the stacked KKT solve
(``probe_uniqueness``), then SCIP's global certificate of each distinct equilibrium.

An instance is *unique* when its runs found exactly one certified equilibrium,
*multiple* when they found two or more, *unknown* when they found none. Instances are
small (FAMILY members per aggregator: a few), so the global certificate is cheap.
"""

from __future__ import annotations

import json
import time

from aggregame.solvers.certify.scan import certify
from aggregame.solvers.compare.uniqueness import probe_uniqueness
from aggregame.studies.common import CHOICES, aggregated, alone, small_users
from aggregame.studies.plots import figure, save

DESCRIPTION = "Conjecture 1: distinct equilibria on small instances of every study"
DEFAULT_RUNS = 3
#: Small users of the studies' games, against which the large user's K is set.
PAPER_USERS = 200
#: Small users per instance (a few members per aggregator).
USERS = 6
#: Random starting profiles per method (TINY_STARTS below USERS users: tests).
STARTS = 3
TINY_STARTS = 2
#: SCIP's time limit per player (seconds).
TIME_LIMIT = 5
#: family -> (figures whose game it is, aggregators' alphas or None for users alone,
#: whether the large user plays). Its K is the studies' 400 scaled to the instance
#: (400 n / 200 for n small users), so it weighs what it weighs in the studies.
FAMILIES = {
    "users alone": ("Fig. 3", None, False),
    "alone + large user": ("Figs. 5-6", None, True),
    "2 x social welfare": ("Figs. 4, 6, 8, 10", (0, 0), True),
    "2 x proportional": ("Figs. 4, 6, 9, 10", (1, 1), True),
    "2 x max-min": ("Figs. 4, 6, 10", ("inf", "inf"), True),
    "2 x alpha 2": ("Fig. 10", (2, 2), True),
    "alpha 0 vs max-min": ("Fig. 11", (0, "inf"), True),
    "3 x social welfare": ("Fig. 12", (0, 0, 0), True),
    "3 x proportional": ("Fig. 13", (1, 1, 1), True),
}


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    return [{"run": r, "seed": seed + r, "family": f} for f in FAMILIES
            for r in range(runs)]


def applies(params: dict) -> bool:
    """Every aggregator needs a member: families with more aggregators than users are
    skipped."""
    alphas = FAMILIES[params["family"]][1] or ()
    return len(alphas) <= min(params.get("users", USERS), USERS)


def build(family: str, users):
    _, alphas, large = FAMILIES[family]
    K = CHOICES.large_K * len(users) / PAPER_USERS if large else None
    return alone(users, with_large=K) if alphas is None else \
        aggregated(users, list(alphas), with_large=K)


def run(params: dict) -> list[dict]:
    n = min(params.get("users", USERS), USERS)
    game = build(params["family"], small_users(n, params["seed"]))
    start = time.perf_counter()
    # The stacked KKT system and SCIP's certificate model max-min by an epigraph, the
    # minimum only: games with leximin players are probed by best response alone.
    modelled = not any(p.fairness.is_leximin for p in game.players)
    probe = probe_uniqueness(game, starts=STARTS if n >= USERS else TINY_STARTS,
                             seed=params["seed"],
                             methods=("best-response", "kkt") if modelled
                             else ("best-response",))
    found = probe.equilibria
    proofs = [certify(game, c.profile, method="global", time_limit=TIME_LIMIT)
              for c in found] if modelled else []
    br = probe.runs[probe.runs["method"] == "best-response"]
    count = len(found)
    return [{"run": params["run"], "family": params["family"],
             "figures": FAMILIES[params["family"]][0], "players": len(game.players),
             "members": sum(p.size for p in game.players),
             "equilibria": count,
             "verdict": "unique" if count == 1 else ("multiple" if count else "unknown"),
             "not_equilibria": len(probe.not_equilibria),
             "br_clusters": int(br["cluster"].nunique()),
             "profiles": json.dumps([[round(float(v), 6) for v in c.profile]
                                     for c in found]),
             "names": json.dumps(list(game.names)),
             "global": json.dumps([_worst(p.verdicts) for p in proofs] if modelled
                                  else ["not modelled (leximin)"] * count),
             "global_certified": modelled and all(p.certified for p in proofs),
             "global_modelled": modelled,
             "max_regret": max((c.max_regret for c in found), default=None),
             "seconds": time.perf_counter() - start}]


def _worst(verdicts) -> str:
    for worst in ("failed", "bounded", "proved"):
        if worst in verdicts:
            return worst
    return verdicts[0] if verdicts else "none"


def figures(df, out) -> list[str]:
    counts = df.pivot_table(index="family", columns="verdict", values="run",
                            aggfunc="count", fill_value=0).reindex(
        [f for f in FAMILIES if f in set(df["family"])])
    fig, ax = figure(size=(9, 4))
    bottom = None
    colours = {"unique": "tab:green", "multiple": "tab:red", "unknown": "tab:grey"}
    for verdict in ("unique", "multiple", "unknown"):
        if verdict not in counts:
            continue
        ax.bar(range(len(counts)), counts[verdict], bottom=bottom, label=verdict,
               color=colours[verdict])
        bottom = counts[verdict] if bottom is None else bottom + counts[verdict]
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(counts.index, rotation=20, ha="right")
    ax.set_ylabel("instances (seeds)")
    ax.set_title(f"Conjecture 1: distinct certified equilibria, {STARTS} starts per "
                 f"method, {df['members'].max()} members at most")
    ax.legend(fontsize=8)
    return save(fig, out, "conj1")
