"""What a certificate says of a profile: every player's regret, and how it is known.

regret_j = sup over feasible y_j' of J_j(y_j', y_-j) - J_j(y), relative to the scale
of the player's payoff (docs/model.md, section "Certificate"). Each player's verdict
says how its regret is known:

* ``proved``: no purchase gains more than the tolerance, by a bound that holds between
  the samples (solvers/certify/bounds.py) or by SCIP closing its gap;
* ``bounded``: a proven bound, above the tolerance (``bound``: the regret is at most
  that, but no deviation gaining that much was found);
* ``searched``: no gain found on the samples, and no argument excludes one between
  them: not a proof;
* ``refuted``: a deviation gains more than the tolerance (the profile is not an
  equilibrium);
* ``failed``: nothing is known (the reason says why).

A profile is certified when every player's verdict is ``proved``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from aggregame.errors import GameDefinitionError

#: A profile is an equilibrium when every relative regret is proved below this.
CERTIFICATE_RTOL = 1e-6
#: Largest tolerance accepted: beyond it "certified" would not mean an equilibrium.
MAX_CERTIFICATE_RTOL = 1e-2


class CertificateMethod(str, enum.Enum):
    """How regrets are measured: samples and bounds between them, or SCIP."""

    SCAN = "scan"
    GLOBAL = "global"


class Verdict(str, enum.Enum):
    """How one player's regret is known (module docstring)."""

    PROVED = "proved"
    BOUNDED = "bounded"
    SEARCHED = "searched"
    REFUTED = "refuted"
    FAILED = "failed"

    @property
    def severity(self) -> int:
        """Rank from best (proved) to worst (refuted: known not an equilibrium)."""
        return _SEVERITY.index(self)


_SEVERITY = (Verdict.PROVED, Verdict.BOUNDED, Verdict.SEARCHED, Verdict.FAILED,
             Verdict.REFUTED)


def check_rtol(rtol: float) -> float:
    """The certificate tolerance as a float in (0, MAX_CERTIFICATE_RTOL], or an error."""
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not (
            0 < float(rtol) <= MAX_CERTIFICATE_RTOL):
        raise GameDefinitionError(
            f"settings: field 'certificate_rtol' must be a number in (0, "
            f"{MAX_CERTIFICATE_RTOL:g}], got {rtol!r}")
    return float(rtol)


@dataclass(frozen=True)
class PlayerRegret:
    """One player's regret at the profile.

    Attributes
    ----------
    regret, relative_regret : the largest gain found (payoff units, and over the
        payoff's scale); 0 where nothing beats the profile.
    deviation : the best purchase found.
    welfare : J_j at the profile.
    bound : proven bound on the relative regret (inf where none is proven).
    verdict : how the regret is known.
    evaluations : payoffs evaluated for this player.
    reason : why the verdict is not ``proved`` (empty otherwise).
    """

    regret: float
    relative_regret: float
    deviation: float
    welfare: float
    bound: float
    verdict: Verdict
    evaluations: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Certificate:
    """Regret of each player at ``profile``, and how each is known."""

    profile: np.ndarray
    players: tuple[PlayerRegret, ...]
    rtol: float
    method: CertificateMethod = CertificateMethod.SCAN

    @property
    def regrets(self) -> np.ndarray:
        return np.array([p.regret for p in self.players])

    @property
    def relative_regrets(self) -> np.ndarray:
        return np.array([p.relative_regret for p in self.players])

    @property
    def deviations(self) -> np.ndarray:
        return np.array([p.deviation for p in self.players])

    @property
    def welfare(self) -> np.ndarray:
        return np.array([p.welfare for p in self.players])

    @property
    def bounds(self) -> np.ndarray:
        """Proven bound on each relative regret (inf where none is proven)."""
        return np.array([p.bound for p in self.players])

    @property
    def verdicts(self) -> tuple[str, ...]:
        return tuple(p.verdict.value for p in self.players)

    @property
    def worst_verdict(self) -> Verdict:
        """The least favourable verdict over the players (proved when none)."""
        return max((p.verdict for p in self.players), key=lambda v: v.severity,
                   default=Verdict.PROVED)

    @property
    def evaluations(self) -> int:
        return sum(p.evaluations for p in self.players)

    @property
    def max_regret(self) -> float:
        """Largest relative regret found (0 for a game without players)."""
        return float(np.max(self.relative_regrets)) if self.players else 0.0

    @property
    def max_bound(self) -> float:
        """Largest proven bound on a relative regret (inf where one is unproven)."""
        return float(np.max(self.bounds)) if self.players else 0.0

    @property
    def certified(self) -> bool:
        """Every player's regret proved below the tolerance."""
        return all(p.verdict is Verdict.PROVED and p.relative_regret <= self.rtol
                   for p in self.players)

    def summary(self, names: list[str] | None = None) -> str:
        """One line: certified, or the players that are not and why."""
        if self.certified:
            return (f"certified: every regret proved below {self.rtol:g} "
                    f"(largest bound {self.max_bound:.3g})")
        names = names or [f"player {k}" for k in range(len(self.players))]
        worst = [f"{name} {verdict_text(p)}" for name, p in zip(names, self.players)
                 if p.verdict is not Verdict.PROVED or p.relative_regret > self.rtol]
        return "not certified: " + "; ".join(worst)


def verdict_text(p: PlayerRegret) -> str:
    """A player's verdict in words: 'proved', 'bounded by 0.025', 'refuted (gains
    0.31)', 'searched', 'failed: <reason>'."""
    if p.verdict is Verdict.BOUNDED:
        return f"bounded by {p.bound:.3g}"
    if p.verdict is Verdict.REFUTED:
        return f"refuted (a deviation gains {p.relative_regret:.3g})"
    if p.verdict is Verdict.FAILED:
        return f"failed: {p.reason}" if p.reason else "failed"
    return p.verdict.value
