"""Is a game's equilibrium unique? One function decides it for the report.

:func:`decide_uniqueness` asks the aggregate-space engine
(aggregame.solvers.equilibrium.aggregate.find_equilibria): the game is aggregative
(players meet only through the price p(Y)), so every equilibrium total is a root of
Z(Y) = sum_j b_j(Y) - Y, b_j a player's backward replies; the engine finds the roots,
certifies each profile, and proves that it found them all where a theorem or a
validated bound allows (``complete``). The decision reads:

* PROVED_UNIQUE: one certified equilibrium and the search proved complete;
* NOT_UNIQUE: two or more certified equilibria (two certified equilibria prove it
  whether or not the search is complete);
* NO_EQUILIBRIUM: none, and the search proved complete;
* UNDECIDED: otherwise (``found N``, not proved to be all): an equilibrium found is
  not a proof that it is the only one.

:func:`probe` (random starts) stays for Sec. IV-B's claim about where best response
ends; it never decides uniqueness.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aggregame import Game

#: The method label of the engine's decisions.
ENGINE = "aggregate-space engine (search over the total)"


class Uniqueness(str, enum.Enum):
    PROVED_UNIQUE = "proved unique"
    NOT_UNIQUE = "not unique"
    NO_EQUILIBRIUM = "no equilibrium (proved)"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class UniquenessDecision:
    """A decision on uniqueness and what it rests on.

    ``is_proof``: the status is proved (complete search, or two certified
    equilibria); ``verdict`` and ``why``: the engine's own words.
    """

    status: Uniqueness
    method: str
    is_proof: bool
    equilibria: tuple[tuple[float, ...], ...]
    prices: tuple[float, ...]
    regrets: tuple[float, ...]
    evidence: str
    verdict: str = ""
    why: str = ""


def probe(game: Game, *, starts: int, seed: int, kkt: bool = True):
    """The multistart probe (best response, and the KKT solve if ``kkt``): an
    aggregame.solvers.compare.uniqueness.UniquenessReport."""
    from aggregame.solvers.compare.uniqueness import probe_uniqueness

    methods = ("best-response", "kkt") if kkt else ("best-response",)
    return probe_uniqueness(game, starts=starts, seed=seed, methods=methods)


def decide_uniqueness(game: Game) -> UniquenessDecision:
    """Whether ``game`` has exactly one Nash equilibrium, with the evidence (module
    docstring): the certified equilibria the engine found, their prices and
    certificate regrets, and its argument for completeness or why it has none."""
    from aggregame.solvers.equilibrium.aggregate import find_equilibria

    found = find_equilibria(game)
    count = len(found.equilibria)
    if count >= 2:
        status = Uniqueness.NOT_UNIQUE
    elif not found.complete:
        status = Uniqueness.UNDECIDED
    else:
        status = Uniqueness.PROVED_UNIQUE if count == 1 else Uniqueness.NO_EQUILIBRIUM
    is_proof = count >= 2 or found.complete
    evidence = (f"{found.verdict()}; {len(found.rejected)} candidate(s) rejected by "
                f"the certificate; {found.why}")
    return UniquenessDecision(
        status, ENGINE, is_proof,
        tuple(tuple(float(v) for v in eq.profile) for eq in found.equilibria),
        tuple(float(eq.price) for eq in found.equilibria),
        tuple(float(eq.max_regret) for eq in found.equilibria), evidence,
        found.verdict(), found.why)
