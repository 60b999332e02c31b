"""What every best-response search shares: candidates, the counted solver, the roots.

A search evaluates purchases through a player's inner solver (``Counted`` counts them
and keeps the rows a refinement would otherwise solve twice), ranks the payoffs it saw
(``Candidate``: max-min compares (level, total surplus) lexicographically), and
refines: brentq on the sign of the total derivative (``root_of_slope``), golden
section or a grid-and-shrink zoom where only an order exists (``golden``).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from aggregame.solvers.inner.batch import InnerBatch, InnerSolver

#: Refinements for solvers that are not batched (each purchase one solver run):
#: Newton probes on the slope where rows carry a curvature (else one probe on the
#: side the sign points to), a secant stop inside brentq, golden section handing
#: over to the tie-break's slope where the max-min level is flat, evaluated rows
#: kept (the secant stop applies to batched solvers too). False gives the search
#: they had before (benchmarks/bench_pyomo.py's reference).
SEQUENTIAL_SEARCH = True


#: Purchases closer than this (relative to the interval) are the same best response.
Y_RTOL = 1e-12


#: Welfare values closer than this (relative) are ties, broken by total surplus.
TIE_RTOL = 1e-11


#: Interval width (relative) at which golden section stops.
GOLDEN_RTOL = 1e-9


#: Accuracy a dynamics round asks of a max-min best response, relative to the
#: player's last move: a round that follows a long move need not locate its maximum
#: to 1e-9 of y_max, and the rounds converge to the same point (the last ones,
#: whose moves are tiny, get GOLDEN_RTOL).
INEXACT_RTOL = 1e-3


#: How far (in xtol) the point a secant stop goes through may be from the new one.
SETTLE_REACH = 1e4


#: Points per batch of the zoom search that replaces golden section on batched backends.
ZOOM_POINTS = 17


_GOLDEN = (math.sqrt(5) - 1) / 2


_TINY = float(np.finfo(float).tiny)


@dataclass(frozen=True)
class Candidate:
    """A purchase and the payoff it gives."""

    y: float
    welfare: float
    tiebreak: float

    def beats(self, other: "Candidate", maxmin: bool, rtol: float = TIE_RTOL) -> bool:
        """Strictly better payoff (lexicographic with total surplus for max-min).

        ``rtol`` makes near-equal payoffs ties; golden section passes 0, since it only
        needs an ordering and a tolerance there would stop it ~sqrt(rtol) short.
        """
        if not math.isfinite(self.welfare) or not math.isfinite(other.welfare):
            return self.welfare > other.welfare  # -inf loses to any finite payoff
        # Relative to the payoffs themselves, never to 1: a game at scale 1e-3 has
        # levels ~1e-5, and a floor of 1 would make level gains of 1e-11 ties that
        # the tie-break then decides (a best response past max-min's kink).
        scale = max(abs(self.welfare), abs(other.welfare), _TINY)
        if self.welfare > other.welfare + rtol * scale:
            return True
        if maxmin and abs(self.welfare - other.welfare) <= TIE_RTOL * scale:
            tscale = max(abs(self.tiebreak), abs(other.tiebreak), _TINY)
            return self.tiebreak > other.tiebreak + rtol * tscale
        return False


def candidates(batch: InnerBatch) -> list[Candidate]:
    return [Candidate(float(y), float(w), float(t)) for y, w, t in
            zip(batch.y, batch.welfare, batch.tiebreak)]


def best_candidate(cands: list[Candidate], maxmin: bool) -> Candidate:
    return cands[best_index(cands, maxmin)]


def best_index(cands: list[Candidate], maxmin: bool, rtol: float = TIE_RTOL) -> int:
    """Index of the best candidate; the first one wins ties."""
    best = 0
    for k, c in enumerate(cands):
        if c.beats(cands[best], maxmin, rtol):
            best = k
    return best


@dataclass(frozen=True)
class BestResponse:
    """The chosen purchase, its payoff, and how it was found."""

    y: float
    welfare: float
    tiebreak: float
    strategy: str
    evaluations: int
    y_max: float
    #: Payoff of the ``current`` purchase passed in (None if none was).
    current: "Candidate | None" = None
    #: True when the search already ranked ``y`` against the current purchase in the
    #: player's own order (leximin): the dynamics move to ``y`` without comparing.
    decided: bool = False


class Counted:
    """Wraps an inner solver to count evaluated purchases.

    A solver that is not batched (one solver run per purchase) keeps each single
    purchase's row, so the root a refinement returns is not solved twice; a batched
    one keeps its last single row, for the same reason (brentq returns the purchase
    it evaluated last, or ``settled`` does: a tenth of a best response's solves).
    """

    def __init__(self, inner: InnerSolver, others_total: float) -> None:
        self.inner, self.others_total, self.count = inner, others_total, 0
        self.sequential = SEQUENTIAL_SEARCH and not getattr(inner, "batched", False)
        self._rows: dict[float, InnerBatch] = {}

    def __call__(self, ys) -> InnerBatch:
        ys = np.atleast_1d(np.asarray(ys, dtype=float))
        key = float(ys[0]) if ys.size == 1 else None
        if key in self._rows:
            return self._rows[key]
        self.count += ys.size
        batch = self.inner.solve(ys, self.others_total)
        if key is not None and SEQUENTIAL_SEARCH:
            if not self.sequential:
                self._rows.clear()  # a batched solver keeps its last single row
            self._rows[key] = batch
        return batch

    def known(self, y: float) -> InnerBatch | None:
        """The kept row of purchase ``y`` (sequential solvers), if evaluated."""
        return self._rows.get(float(y))

    def kept_within(self, lo: float, hi: float) -> list[float]:
        """The kept purchases in [lo, hi], in increasing order."""
        return sorted(y for y in self._rows if lo <= y <= hi)

    def slope(self, y: float, tiebreak: bool = False) -> float:
        """Sign source for bisection (see ``slopes``)."""
        return float(slopes(self(y), tiebreak)[0])


def slopes(batch: InnerBatch, tiebreak: bool = False) -> np.ndarray:
    """The total derivative, with the sign of the way out where J = -inf.

    J = -inf (alpha >= 1 without a floor) happens at y = 0, where every member has
    zero surplus (go right), and at high prices, where the strict rule counts a
    priced-out member or everyone sits at zero surplus (go left). With ``tiebreak``
    it is the derivative of the max-min tie-break (total surplus) instead.
    """
    source = batch.tiebreak_derivative if tiebreak else batch.derivative
    d = np.nan_to_num(source, nan=-1.0, posinf=1.0, neginf=-1.0)
    dead = ~np.isfinite(batch.welfare)
    return np.where(dead, np.where(batch.y <= 0, 1.0, -1.0), d)


class _Settled(Exception):
    """Raised inside brentq when the root is already resolved (``settled``)."""

    def __init__(self, y: float) -> None:
        super().__init__(y)
        self.y = y


def root_of_slope(f: Counted, lo: float, hi: float, d_lo: float, d_hi: float,
                   xtol: float, tiebreak: bool = False) -> float:
    if d_lo <= 0:
        return lo
    if d_hi >= 0:
        return hi
    last = [(lo, d_lo), (hi, d_hi)]

    # The ends' signs are known; re-solving there could flip a derivative that is
    # zero to rounding, which brentq would refuse.
    def slope(y: float) -> float:
        if y == lo or y == hi:
            return d_lo if y == lo else d_hi
        d = f.slope(y, tiebreak)
        if SEQUENTIAL_SEARCH and settled(y, d, last, xtol):
            raise _Settled(y)
        last.append((y, d))
        return d

    try:
        return float(brentq(slope, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps,
                            maxiter=200))
    except _Settled as done:
        return done.y


def settled(y: float, d: float, seen: list[tuple[float, float]], xtol: float
             ) -> bool:
    """True when the secant step from ``y`` (slope through the nearest point seen)
    is within xtol: brentq's last steps only close its bracket to xtol, one
    inner solve each (an Ipopt run on sequential solvers), around a root the
    secant has already found. The root still competes with the probes as a
    candidate.

    Only a nearby point (within SETTLE_REACH xtol) makes a secant: through a far
    one (a bracket's end, where the slope may be 1e74 at alpha = 5, or the +-1 that
    ``slopes`` puts where J = -inf) the step is tiny wherever y is, and the search
    would stop at points that are not roots (55 of 300 random games, measured).
    """
    if d == 0:
        return True
    y0, d0 = min(seen, key=lambda p: abs(p[0] - y))
    if y0 == y or d0 == d or abs(y - y0) > SETTLE_REACH * xtol:
        return False
    step = d * (y - y0) / (d - d0)
    return (d - d0) / (y - y0) < 0 and abs(step) <= xtol


def _zoom(f: Counted, lo: float, hi: float, maxmin: bool, xtol: float
          ) -> list[Candidate]:
    """Grid-and-shrink search of a unimodal payoff for backends whose batches are
    cheap: each call evaluates ZOOM_POINTS purchases and keeps the two cells around
    the best, shrinking the interval 8-fold per call (golden section: 1.6-fold per
    single evaluation)."""
    seen: list[Candidate] = []
    while True:
        pts = np.linspace(lo, hi, ZOOM_POINTS)
        cands = candidates(f(pts))
        seen += cands
        k = best_index(cands, maxmin, rtol=0.0)
        lo, hi = float(pts[max(k - 1, 0)]), float(pts[min(k + 1, ZOOM_POINTS - 1)])
        if hi - lo <= xtol:
            return seen


def golden(f: Counted, lo: float, hi: float, maxmin: bool, xtol: float
            ) -> list[Candidate]:
    """Golden-section search of a unimodal payoff; returns every point it evaluated."""
    if getattr(f.inner, "batched", False):
        return _zoom(f, lo, hi, maxmin, xtol)
    seen: list[Candidate] = []
    a, b = lo, hi
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    fc, fd = candidates(f([c])) + candidates(f([d])) if f.sequential else \
        candidates(f([c, d]))
    seen += [fc, fd]
    while b - a > xtol:
        if fc.beats(fd, maxmin, rtol=0.0) or not fd.beats(fc, maxmin, rtol=0.0):
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = candidates(f([c]))[0]
            seen.append(fc)
        else:
            a, c, fc = c, d, fd
            if maxmin and f.sequential and flat_level(f.known(a), maxmin):
                return seen + _tiebreak_root(f, a, b, xtol)
            d = a + _GOLDEN * (b - a)
            fd = candidates(f([d]))[0]
            seen.append(fd)
    return seen


def _tiebreak_root(f: Counted, a: float, b: float, xtol: float
                   ) -> list[Candidate]:
    """Golden section's bracket [a, b] once the level is flat at a (so on all of
    it): the tie-break, which has a derivative, orders the payoffs there, and the
    root of that derivative among the evaluated rows replaces the remaining ~40
    golden steps (one solver run each on a sequential solver)."""
    extra = [] if f.known(b) is not None else candidates(f([b]))
    ys = f.kept_within(a, b)
    ds = [float(slopes(f.known(y), tiebreak=True)[0]) for y in ys]
    down = next((k for k, d in enumerate(ds) if d <= 0), len(ys))
    if down == 0:
        root = a
    elif down == len(ys):
        root = b
    else:
        root = root_of_slope(f, ys[down - 1], ys[down], ds[down - 1], ds[down],
                              xtol, tiebreak=True)
    return extra + candidates(f([root]))


class Strategy(str, enum.Enum):
    """How a best response searches (a str, so callers may pass the plain name).

    ``AUTO`` is the dynamics' choice (bisection, then scan if the certificate
    fails); a single best response is either ``BISECTION`` or ``SCAN``.
    """

    AUTO = "auto"
    BISECTION = "bisection"
    SCAN = "scan"


def flat_level(batch: InnerBatch | None, maxmin: bool) -> bool:
    """Max-min with a flat level at the first row (flat at y means flat for every
    larger purchase; at y = 0 on the whole interval): the tie-break, which has a
    derivative, decides."""
    return maxmin and batch is not None and batch.tiebreak_derivative is not None \
        and bool(np.isfinite(batch.tiebreak_derivative[0]))
