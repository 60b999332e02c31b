"""Conjecture 1 (uniqueness of the Nash equilibrium) and Sec. IV-B's "best response
always converges to the same equilibrium, regardless of how it is initiated".

Two parts:

* the counterexample ``data/two_equilibria.toml``: two users under a concave,
  saturating price, which satisfies Assumption 1 as the paper states it. The
  aggregate-space engine finds both equilibria and proves there is no third; each is
  certified by regret (the scan) and by SCIP's global certificate (a proved bound on
  every deviation);
* small instances of every study's games (the paper's linear price, a few members
  per aggregator, so that SCIP's certificate is cheap), each decided by
  studies.uniqueness.decide_uniqueness (the aggregate-space engine: proved unique,
  not unique, or undecided where it finds equilibria without proving them all) and
  probed by best response from random starts for Sec. IV-B. The social-welfare
  class (users alone and alpha = 0 aggregators, ``alpha0``) is the one the engine
  decides by a theorem. Robustness variants run as in every study.
"""

from __future__ import annotations

import json

import numpy as np

from aggregame import Game
from aggregame.solvers.certify.certificate import Verdict
from aggregame.solvers.certify.scan import certify
from aggregame.studies.common import (DEFAULT, K_TOP, aggregated_players, alone_players,
                                      individual, large_K, large_user, paper_price,
                                      small_users)
from aggregame.studies.plots import figure, save, title
from aggregame.studies.uniqueness import decide_uniqueness, probe
from aggregame.studies.variants import (DEFAULT_NAME, choices_in, domain_of,
                                        with_variants)

DESCRIPTION = ("Conjecture 1: a counterexample, and distinct equilibria on small "
               "instances")
DEFAULT_RUNS = 3
#: Small users of the studies' games, against which K = 400 is scaled.
PAPER_USERS = 200
#: Small users per instance (a few members per aggregator).
USERS = 6
#: Random starting profiles per method (TINY_STARTS below USERS users: tests).
STARTS = 3
TINY_STARTS = 2
#: SCIP's time limit per player (seconds).
TIME_LIMIT = 5
#: The counterexample: a shipped scenario, probed with a fixed seed and more starts
#: (its second equilibrium has a small basin).
COUNTEREXAMPLE = "two_equilibria"
COUNTER_FAMILY = "counterexample (data/two_equilibria.toml)"
COUNTER_STARTS, COUNTER_SEED = 6, 1
#: family -> (figures whose game it is, aggregators' alphas or None for users alone,
#: whether the large user plays).
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
CONFIG_KEYS = ("family",)


def tasks(runs: int, seed: int, backend: str) -> list[dict]:
    base = [{"run": r, "seed": seed + r, "family": f} for f in FAMILIES
            for r in range(runs)]
    out = with_variants(base, lambda p: choices_in(FAMILIES[p["family"]][1],
                                                   FAMILIES[p["family"]][2]))
    return [{"run": 0, "seed": COUNTER_SEED, "family": COUNTER_FAMILY,
             "domain": DEFAULT_NAME}] + out


def applies(params: dict) -> bool:
    """Every aggregator needs a member: families with more aggregators than users are
    skipped."""
    if params["family"] == COUNTER_FAMILY:
        return True
    alphas = FAMILIES[params["family"]][1] or ()
    return len(alphas) <= min(params.get("users", USERS), USERS)


def instance_K(users, domain) -> float:
    """The large user's K for an instance: the sum of b/a of its users, or the
    studies' 400 scaled to the instance (400 n / 200), so it weighs what it weighs in
    the studies."""
    if domain.large == "K=400":
        return K_TOP * len(users) / PAPER_USERS
    return large_K(users, domain.large)


def build(family: str, users, domain=DEFAULT) -> Game:
    _, alphas, large = FAMILIES[family]
    if alphas is None:
        return Game(alone_players(users, instance_K(users, domain) if large else None),
                    paper_price())
    players = aggregated_players(users, list(alphas), domain, large=False)
    if large:
        players += (individual(large_user(instance_K(users, domain))),)
    return Game(players, paper_price())


def _game(params: dict) -> tuple[Game, int]:
    if params["family"] == COUNTER_FAMILY:
        from aggregame.scenario import load_scenario

        return load_scenario(COUNTEREXAMPLE).game, COUNTER_STARTS
    n = min(params.get("users", USERS), USERS)
    game = build(params["family"], small_users(n, params["seed"]),
                 domain_of(params["domain"]))
    return game, STARTS if n >= USERS else TINY_STARTS


def in_alpha0_class(family: str) -> bool:
    """Whether a family's games are the linear price's social-welfare class: every
    player a user alone or an alpha = 0 aggregator."""
    alphas = FAMILIES[family][1] if family in FAMILIES else ("counterexample",)
    return alphas is None or all(a == 0 for a in alphas)


def run(params: dict) -> list[dict]:
    game, starts = _game(params)
    # The stacked KKT system and SCIP's certificate model max-min by an epigraph, the
    # minimum only: games with leximin players are probed by best response alone.
    modelled = not any(p.fairness.is_leximin for p in game.players)
    runs = probe(game, starts=starts, seed=params["seed"], kkt=modelled)
    decision = decide_uniqueness(game)
    proofs = [certify(game, np.asarray(y), method="global", time_limit=TIME_LIMIT)
              for y in decision.equilibria] if modelled else []
    br = runs.runs[runs.runs["method"] == "best-response"]
    br_ok = br[br["converged"].astype(bool) & br["certified"].astype(bool)]
    return [{"run": params["run"], "domain": params["domain"],
             "family": params["family"],
             "figures": FAMILIES.get(params["family"], ("Conjecture 1",))[0],
             "alpha0": in_alpha0_class(params["family"]),
             "players": len(game.players),
             "members": sum(p.size for p in game.players),
             "equilibria": len(decision.equilibria),
             "decision": decision.status.value, "method": decision.method,
             "is_proof": decision.is_proof, "verdict": decision.verdict,
             "why": decision.why, "evidence": decision.evidence,
             "br_runs": len(br), "br_certified": len(br_ok),
             "br_clusters": int(br_ok["cluster"].nunique()),
             "profiles": json.dumps([[round(v, 6) for v in p]
                                     for p in decision.equilibria]),
             "prices": json.dumps([round(p, 6) for p in decision.prices]),
             "names": json.dumps(list(game.names)),
             "global": json.dumps([_worst(p.verdicts) for p in proofs] if modelled
                                  else ["not modelled (leximin)"] * len(
                                      decision.equilibria)),
             "global_bound": json.dumps([float(p.max_regret) for p in proofs]),
             "global_certified": modelled and bool(proofs) and all(
                 p.certified for p in proofs),
             "global_modelled": modelled,
             "max_regret": max(decision.regrets, default=None)}]


def _worst(verdicts) -> str:
    """The least certain of the players' verdicts (a profile is as certain as that)."""
    return max((Verdict(v) for v in verdicts), key=lambda v: v.severity,
               default=None).value if verdicts else "none"


def figures(df, out) -> list[str]:
    df = df[(df["domain"] == DEFAULT_NAME) & (df["family"] != COUNTER_FAMILY)]
    counts = df.pivot_table(index="family", columns="decision", values="run",
                            aggfunc="count", fill_value=0).reindex(
        [f for f in FAMILIES if f in set(df["family"])])
    fig, ax = figure(size=(9, 4.4))
    bottom = None
    colours = {"proved unique": "tab:green", "not unique": "tab:red",
               "undecided": "tab:grey", "no equilibrium (proved)": "tab:purple"}
    for decision, colour in colours.items():
        if decision not in counts:
            continue
        ax.bar(range(len(counts)), counts[decision], bottom=bottom, label=decision,
               color=colour)
        bottom = counts[decision] if bottom is None else bottom + counts[decision]
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(counts.index, rotation=20, ha="right")
    ax.set_ylabel("instances (seeds)")
    ax.legend(fontsize=8)
    method = df["method"].iloc[0] if len(df) else ""
    title(fig, f"Conjecture 1 on the linear price: decisions by {method}, "
               f"{df['members'].max() if len(df) else 0} members at most",
          DEFAULT.label())
    return save(fig, out, "conj1")
