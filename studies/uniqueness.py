"""Is a game's equilibrium unique? One function decides it for the report.

:func:`decide_uniqueness` is THE HOOK for the aggregate-space engine (issue 21): that
engine is to prove uniqueness (or exhibit every equilibrium) from each player's
replies to the total purchase Y (the game is aggregative: players meet only through
the price p(Y)). Until it is plugged in, the function runs what exists - the
multistart probe of aggregame.solvers.compare (best response with the scan strategy,
and the stacked KKT solve where it models the game) - and its answers say so:

* NOT_UNIQUE when two or more distinct end points pass the regret certificate: a
  counterexample found by sampling, each equilibrium with its evidence;
* UNDECIDED otherwise, whatever the probe found: random starts find equilibria,
  they never exclude one, so the probe never returns PROVED_UNIQUE.

Only a decision whose ``is_proof`` is True may be counted as a proof; the report
labels every other one with its ``method``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from aggregame import Game

#: The method label of the probe's decisions.
PROBE = "probe (random starts), not a proof"


class Uniqueness(str, enum.Enum):
    PROVED_UNIQUE = "proved unique"
    NOT_UNIQUE = "not unique"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class UniquenessDecision:
    """A decision on uniqueness and what it rests on."""

    status: Uniqueness
    method: str
    is_proof: bool
    equilibria: tuple[tuple[float, ...], ...]
    prices: tuple[float, ...]
    regrets: tuple[float, ...]
    evidence: str


def probe(game: Game, *, starts: int, seed: int, kkt: bool = True):
    """The multistart probe (best response, and the KKT solve if ``kkt``): an
    aggregame.solvers.compare.uniqueness.UniquenessReport."""
    from aggregame.solvers.compare.uniqueness import probe_uniqueness

    methods = ("best-response", "kkt") if kkt else ("best-response",)
    return probe_uniqueness(game, starts=starts, seed=seed, methods=methods)


def decide_uniqueness(game: Game, *, starts: int, seed: int, kkt: bool = True,
                      runs=None) -> UniquenessDecision:
    """Whether ``game`` has exactly one Nash equilibrium, with the evidence.

    HOOK (issue 21): replace this body by the aggregate-space engine; keep the
    signature and the result type. The placeholder probes from ``starts`` random
    profiles (``kkt``: also the stacked KKT solve, which does not model leximin
    players), or reads ``runs``, a probe of this game made already (:func:`probe`);
    the engine may ignore both.
    """
    runs = runs if runs is not None else probe(game, starts=starts, seed=seed, kkt=kkt)
    methods = tuple(dict.fromkeys(runs.runs["method"])) if len(runs.runs) else ()
    found = runs.equilibria
    profiles = tuple(tuple(float(v) for v in c.profile) for c in found)
    prices = tuple(float(game.price.value(float(np.sum(c.profile)))) for c in found)
    status = Uniqueness.NOT_UNIQUE if len(found) >= 2 else Uniqueness.UNDECIDED
    evidence = (f"{len(found)} certified equilibri{'um' if len(found) == 1 else 'a'} "
                f"and {len(runs.not_equilibria)} uncertified end point(s) from "
                f"{len(runs.runs)} run(s) (random starts x {', '.join(methods)})")
    return UniquenessDecision(status, PROBE, False, profiles, prices,
                              tuple(float(c.max_regret) for c in found), evidence)
