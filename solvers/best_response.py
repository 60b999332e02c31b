"""Best response of one player to the others' total purchase (paper eq. 11, Alg. 1).

Two strategies over the feasible interval [0, y_max(Y_-j)] (docs/model.md, section
"Quasiconcavity and the best response"):

* ``bisection``: the paper's quasiconcave search, on the sign of the *total*
  derivative dJ_j/dy_j (not lambda alone: the price moves with y_j). Fast, and right
  wherever J_j is quasiconcave.

One-member quadratic players under an affine price have a concave payoff; both
strategies take their closed form, which is exact.
* ``scan``: does not trust quasiconcavity. Samples J_j and dJ_j/dy_j on a grid plus
  both sides of every price-out point (where a member's U'(0) equals the price),
  refines every sign change of the derivative and keeps the best candidate. This is
  also the certificate's search (solvers/certificate.py).

Max-min players have no derivative where the minimum changes hands; they use golden
section on (J, total surplus) compared lexicographically (docs/model.md,
section "Max-min").
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import brentq

from aggregame.solvers.inner import InnerBatch, InnerSolver

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
#: Grid of the scan: points spread over the interval, before price-out points.
SCAN_POINTS = 48
#: Price-out points a scan samples at most (both sides of each), and of those how
#: many nearest each known purchase (see ``price_out_points``).
MAX_PRICE_OUT_POINTS = 256
NEAR_PRICE_OUT_POINTS = 32

#: Accuracy a dynamics round asks of a max-min best response, relative to the
#: player's last move: a round that follows a long move need not locate its maximum
#: to 1e-9 of y_max, and the rounds converge to the same point (the last ones,
#: whose moves are tiny, get GOLDEN_RTOL).
INEXACT_RTOL = 1e-3
#: How far (in xtol) the point a secant stop goes through may be from the new one.
SETTLE_REACH = 1e4
#: Newton probes at most before brentq refines a bracket (sequential solvers).
NEWTON_PROBES = 6
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
        # levels ~1e-5, and a floor of 1 once made level gains of 1e-11 ties that
        # the tie-break then decided (a best response past max-min's kink).
        scale = max(abs(self.welfare), abs(other.welfare), _TINY)
        if self.welfare > other.welfare + rtol * scale:
            return True
        if maxmin and abs(self.welfare - other.welfare) <= TIE_RTOL * scale:
            tscale = max(abs(self.tiebreak), abs(other.tiebreak), _TINY)
            return self.tiebreak > other.tiebreak + rtol * tscale
        return False


def _candidates(batch: InnerBatch) -> list[Candidate]:
    return [Candidate(float(y), float(w), float(t)) for y, w, t in
            zip(batch.y, batch.welfare, batch.tiebreak)]


def _best(cands: list[Candidate], maxmin: bool) -> Candidate:
    return cands[_best_index(cands, maxmin)]


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


class _Counted:
    """Wraps an inner solver to count evaluated purchases.

    A solver that is not batched (one solver run per purchase) keeps each single
    purchase's row, so the root a refinement returns is not solved twice; a batched
    one keeps its last single row, for the same reason (brentq returns the purchase
    it evaluated last, or ``_settled`` does: a tenth of a best response's solves).
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
    """Raised inside brentq when the root is already resolved (``_settled``)."""

    def __init__(self, y: float) -> None:
        super().__init__(y)
        self.y = y


def _root_of_slope(f: _Counted, lo: float, hi: float, d_lo: float, d_hi: float,
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
        if SEQUENTIAL_SEARCH and _settled(y, d, last, xtol):
            raise _Settled(y)
        last.append((y, d))
        return d

    try:
        return float(brentq(slope, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps,
                            maxiter=200))
    except _Settled as done:
        return done.y


def _settled(y: float, d: float, seen: list[tuple[float, float]], xtol: float
             ) -> bool:
    """True when the secant step from ``y`` (slope through the nearest point seen)
    is within xtol: brentq's last steps only close its bracket to xtol, one
    inner solve each (an Ipopt run on sequential solvers), around a root the
    secant has already found. The root still competes with the probes as a
    candidate.

    Only a nearby point (within SETTLE_REACH xtol) makes a secant: through a far
    one (a bracket's end, where the slope may be 1e74 at alpha = 5, or the +-1 that
    ``slopes`` puts where J = -inf) the step is tiny wherever y is, and it once
    stopped searches at points that were not roots (found by review: 55 of 300
    random games).
    """
    if d == 0:
        return True
    y0, d0 = min(seen, key=lambda p: abs(p[0] - y))
    if y0 == y or d0 == d or abs(y - y0) > SETTLE_REACH * xtol:
        return False
    step = d * (y - y0) / (d - d0)
    return (d - d0) / (y - y0) < 0 and abs(step) <= xtol


def _zoom(f: _Counted, lo: float, hi: float, maxmin: bool, xtol: float
          ) -> list[Candidate]:
    """Grid-and-shrink search of a unimodal payoff for backends whose batches are
    cheap: each call evaluates ZOOM_POINTS purchases and keeps the two cells around
    the best, shrinking the interval 8-fold per call (golden section: 1.6-fold per
    single evaluation)."""
    seen: list[Candidate] = []
    while True:
        pts = np.linspace(lo, hi, ZOOM_POINTS)
        cands = _candidates(f(pts))
        seen += cands
        k = _best_index(cands, maxmin, rtol=0.0)
        lo, hi = float(pts[max(k - 1, 0)]), float(pts[min(k + 1, ZOOM_POINTS - 1)])
        if hi - lo <= xtol:
            return seen


def _golden(f: _Counted, lo: float, hi: float, maxmin: bool, xtol: float
            ) -> list[Candidate]:
    """Golden-section search of a unimodal payoff; returns every point it evaluated."""
    if getattr(f.inner, "batched", False):
        return _zoom(f, lo, hi, maxmin, xtol)
    seen: list[Candidate] = []
    a, b = lo, hi
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    fc, fd = _candidates(f([c])) + _candidates(f([d])) if f.sequential else \
        _candidates(f([c, d]))
    seen += [fc, fd]
    while b - a > xtol:
        if fc.beats(fd, maxmin, rtol=0.0) or not fd.beats(fc, maxmin, rtol=0.0):
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = _candidates(f([c]))[0]
            seen.append(fc)
        else:
            a, c, fc = c, d, fd
            if maxmin and f.sequential and _flat_level(f.known(a), maxmin):
                return seen + _tiebreak_root(f, a, b, xtol)
            d = a + _GOLDEN * (b - a)
            fd = _candidates(f([d]))[0]
            seen.append(fd)
    return seen


def _tiebreak_root(f: _Counted, a: float, b: float, xtol: float
                   ) -> list[Candidate]:
    """Golden section's bracket [a, b] once the level is flat at a (so on all of
    it): the tie-break, which has a derivative, orders the payoffs there, and the
    root of that derivative among the evaluated rows replaces the remaining ~40
    golden steps (one solver run each on a sequential solver)."""
    extra = [] if f.known(b) is not None else _candidates(f([b]))
    ys = f.kept_within(a, b)
    ds = [float(slopes(f.known(y), tiebreak=True)[0]) for y in ys]
    down = next((k for k, d in enumerate(ds) if d <= 0), len(ys))
    if down == 0:
        root = a
    elif down == len(ys):
        root = b
    else:
        root = _root_of_slope(f, ys[down - 1], ys[down], ds[down - 1], ds[down],
                              xtol, tiebreak=True)
    return extra + _candidates(f([root]))


class Strategy(str, enum.Enum):
    """How a best response searches (a str, so callers may pass the plain name).

    ``AUTO`` is the dynamics' choice (bisection, then scan if the certificate
    fails); a single best response is either ``BISECTION`` or ``SCAN``.
    """

    AUTO = "auto"
    BISECTION = "bisection"
    SCAN = "scan"


@dataclass(frozen=True)
class _Search:
    """One best-response search: the player, its interval and tolerances."""

    f: _Counted
    maxmin: bool
    y_max: float
    xtol: float
    #: Golden section compares payoffs, which resolve y only to ~1e-8 relative.
    golden_xtol: float
    #: Purchases always among the candidates: both ends and the current one.
    fixed: tuple[float, ...]


def _search(inner: InnerSolver, others_total: float, current: float | None
            ) -> _Search:
    game, j = inner.game, inner.index
    y_max = game.feasible_max(j, others_total)
    xtol = max(Y_RTOL * max(y_max, 1.0), 1e-14)
    fixed = (0.0, y_max) + ((min(max(current, 0.0), y_max),) if current is not None
                            else ())
    return _Search(_Counted(inner, others_total), math.isinf(game.players[j].alpha),
                   y_max, xtol, max(xtol, GOLDEN_RTOL * y_max), fixed)


def _flat_level(batch: InnerBatch | None, maxmin: bool) -> bool:
    """Max-min with a flat level at the first row (flat at y means flat for every
    larger purchase; at y = 0 on the whole interval): the tie-break, which has a
    derivative, decides."""
    return maxmin and batch is not None and batch.tiebreak_derivative is not None \
        and bool(np.isfinite(batch.tiebreak_derivative[0]))


def _bisection(s: _Search, current: float | None, step_hint: float | None,
               accuracy: float | None = None) -> list[Candidate]:
    """Candidates of the quasiconcave search: the refined root first, then probes."""
    probes = list(s.fixed)
    hinted = step_hint is not None and current is not None
    width = 2.0 * max(step_hint or 0.0, s.xtol)
    if hinted and not s.f.sequential:
        # Dynamics near convergence move y_j a little each round: probing
        # current +- 2 * last move usually brackets the root tightly, so brentq
        # needs 3-4 evaluations instead of ~10 on the whole interval.
        probes += [min(max(current - width, 0.0), s.y_max),
                   min(max(current + width, 0.0), s.y_max)]
    ends = s.f(np.array(probes))
    cands = _candidates(ends)
    tiebreak = _flat_level(ends, s.maxmin)
    if s.maxmin and not tiebreak:
        lo, hi = _bracket(cands, s)
        xtol = max(s.golden_xtol, accuracy or 0.0)
        return _golden(s.f, lo, hi, s.maxmin, xtol)[::-1] + cands
    order = np.argsort(ends.y, kind="stable")
    ys, ds = ends.y[order], slopes(ends, tiebreak)[order]
    settled = None
    if s.f.sequential:
        here = current if hinted and 0 < current < s.y_max else None
        ys, ds, settled = _sequential_probes(s, ends, here, width, ys, ds, cands,
                                             tiebreak)
    # Quasiconcave: D > 0 left of the root, D <= 0 right of it.
    first_down = int(np.argmax(ds <= 0)) if np.any(ds <= 0) else len(ys)
    if settled is not None:
        root = settled
    elif first_down == 0:
        root = 0.0
    elif first_down == len(ys):
        root = s.y_max
    else:
        root = _root_of_slope(s.f, float(ys[first_down - 1]), float(ys[first_down]),
                              ds[first_down - 1], ds[first_down], s.xtol, tiebreak)
    # First in the list wins ties: the refined root is the most accurate.
    return _candidates(s.f([root])) + cands


def _bracket(cands: list[Candidate], s: _Search) -> tuple[float, float]:
    """Interval holding the maximum of a quasiconcave payoff, from probes.

    The best probe's neighbours (in y) bound it when it strictly beats both: a
    maximum beyond a neighbour would put that neighbour in the upper level set of
    the best probe. Near convergence the probes at current +- 2 * last move give a
    bracket thousands of times narrower than [0, y_max]: golden section then needs
    a few batches, not ten. Without a strict winner, the whole interval.
    """
    unique = {c.y: c for c in reversed(cands)}  # first wins duplicates, as in _best
    ordered = [unique[y] for y in sorted(unique)]
    k = _best_index(ordered, s.maxmin)
    left = ordered[k - 1] if k > 0 else None
    right = ordered[k + 1] if k + 1 < len(ordered) else None
    if any(n is not None and not ordered[k].beats(n, s.maxmin) for n in (left, right)):
        return 0.0, s.y_max
    return (left.y if left else 0.0), (right.y if right else s.y_max)


def _sequential_probes(s: _Search, ends: InnerBatch, here: float | None,
                       width: float, ys: np.ndarray, ds: np.ndarray,
                       cands: list[Candidate], tiebreak: bool
                       ) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Probes of a sequential solver from the current purchase ``here`` (a row of
    ``ends``), or from the middle of the interval when there is no move to go by
    (brentq's first step would be there too). See ``_probe_one_side``."""
    if here is not None:
        curv = _curvature(ends, int(np.flatnonzero(ends.y == here)[0]))
    elif ds[0] > 0 > ds[-1]:
        here, width = 0.5 * s.y_max, 0.25 * s.y_max
        mid = s.f([here])
        cands += _candidates(mid)
        at = int(np.searchsorted(ys, here))
        ys = np.insert(ys, at, here)
        ds = np.insert(ds, at, slopes(mid, tiebreak)[0])
        curv = _curvature(mid, 0)
    else:
        return ys, ds, None  # the root is an end
    return _probe_one_side(s, here, curv, width, ys, ds, cands, tiebreak)


def _probe_one_side(s: _Search, y: float, curv: float, width: float,
                    ys: np.ndarray, ds: np.ndarray, cands: list[Candidate],
                    tiebreak: bool) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Probes from purchase ``y`` (already evaluated), for sequential solvers (one
    solver run per probe). Where rows carry a curvature estimate: safeguarded
    Newton steps on the slope (at most NEWTON_PROBES), each at most half way to the
    end of the bracket the signs seen so far give; else one probe at ``width`` on
    the side the sign at ``y`` points to. Returns the sorted purchases and slopes
    with the probes, and the last probe if the secant through it and the point
    before says it is the root within xtol (else brentq refines the bracket)."""
    d = float(ds[np.flatnonzero(ys == y)[0]])
    for _ in range(NEWTON_PROBES):
        down = int(np.argmax(ds <= 0)) if np.any(ds <= 0) else len(ys)
        if d == 0 or down in (0, len(ys)):
            break  # at a root, or the root is an end: nothing to refine
        newton = np.isfinite(curv) and curv < 0
        step = max(abs(d / curv), s.xtol) if newton else width
        end = float(ys[down]) if d > 0 else float(ys[down - 1])
        # Inside [0, y_max] even where the signs are not monotone (a payoff that
        # is not quasiconcave can put ``end`` on the far side of y).
        probe = min(max(y + np.sign(d) * min(step, 0.5 * abs(end - y)), 0.0), s.y_max)
        if probe in ys:
            break
        extra = s.f([probe])
        cands += _candidates(extra)
        d_probe = float(slopes(extra, tiebreak)[0])
        at = int(np.searchsorted(ys, probe))
        ys, ds = np.insert(ys, at, probe), np.insert(ds, at, d_probe)
        if _settled(probe, d_probe, [(y, d)], s.xtol):
            return ys, ds, probe
        if not newton:
            break  # no curvature to go on with: brentq takes over
        y, d, curv = probe, d_probe, _curvature(extra, 0)
    return ys, ds, None


def _curvature(batch: InnerBatch, k: int) -> float:
    """Row k's estimate of the second derivative of what the search follows
    (InnerBatch.curvature: the tie-break's on rows whose max-min level is flat),
    NaN if none."""
    return np.nan if batch.curvature is None else float(batch.curvature[k])


def best_response(inner: InnerSolver, others_total: float, *,
                  strategy: Strategy | str = Strategy.BISECTION,
                  current: float | None = None, step_hint: float | None = None,
                  accuracy: float | None = None) -> BestResponse:
    """Best purchase of player ``inner.index`` against the others' total.

    Parameters
    ----------
    inner : InnerSolver
        Backend (native or pyomo) of the player.
    others_total : float
        Y_-j.
    strategy : {'bisection', 'scan'}
        See the module docstring.
    current : float, optional
        The player's present purchase; always among the candidates, so a best
        response is never worse than staying put.
    step_hint : float, optional
        How far the player moved last round; bisection probes around ``current``
        with it to start from a narrow bracket.
    accuracy : float, optional
        Purchase accuracy that is enough for a max-min player's golden section
        (never finer than GOLDEN_RTOL * y_max): the dynamics ask for INEXACT_RTOL
        of the last move while the profile still moves far. None: full precision.
    """
    if strategy not in (Strategy.BISECTION, Strategy.SCAN):
        raise ValueError(f"strategy must be 'bisection' or 'scan', got {strategy!r}")
    strategy = Strategy(strategy)
    game, j = inner.game, inner.index
    if game.players[j].fairness.is_leximin:  # sorted vectors: solvers/leximin.py
        from aggregame.solvers.leximin import leximin_best_response
        return leximin_best_response(inner, others_total, strategy, current)
    s = _search(inner, others_total, current)
    if s.y_max <= 0:
        cand = _candidates(s.f([0.0]))[0]
        return BestResponse(0.0, cand.welfare, cand.tiebreak, strategy.value,
                            s.f.count, s.y_max)
    single = single_member_closed_form(game, j, others_total, s.y_max)
    if single is not None:  # exact for either strategy: the payoff is concave
        cands = _candidates(s.f(np.array((single,) + s.fixed)))
    elif strategy is Strategy.BISECTION:
        cands = _bisection(s, current, step_hint, accuracy)
    else:
        cands = scan(s.f, game, j, others_total, s.y_max, s.maxmin,
                     s.golden_xtol if s.maxmin else s.xtol, list(s.fixed))
    best = _best(cands, s.maxmin)
    here = None
    if current is not None:
        y_cur = min(max(current, 0.0), s.y_max)
        here = next((c for c in cands if c.y == y_cur), None)
    return BestResponse(best.y, best.welfare, best.tiebreak, strategy.value, s.f.count,
                        s.y_max, here)


def single_member_closed_form(game, j: int, others_total: float, y_max: float
                              ) -> float | None:
    """Best response of a one-member quadratic player under an affine price, or None.

    With one member every Phi_alpha increases with its surplus, so the player
    maximizes s = b y - a y^2 - (p0 + c (Y_-j + y)) y:
    y = (b - p0 - c Y_-j) / (2(a + c))
    (docs/model.md, section "One-member players"), clipped to [0, y_max].
    The certificate still checks it by its scan.
    """
    from aggregame.utilities import QuadraticUtility

    player = game.players[j]
    util = player.members[0].utility
    affine = game.price.affine_coefficients()
    if player.size != 1 or not isinstance(util, QuadraticUtility) or affine is None:
        return None
    p0, c = affine
    y = (util.b - p0 - c * others_total) / (2 * (util.a + c))
    return min(max(y, 0.0), y_max)


def single_quadratic_users(game) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(a, b, p0, c) when every player is one quadratic member (U = b x - a x^2) and
    the price is p0 + c Y: the games whose best responses and equilibrium have the
    closed forms below. None otherwise."""
    from aggregame.utilities import QuadraticUtility

    affine = game.price.affine_coefficients()
    if affine is None or any(p.size != 1 or not isinstance(
            p.members[0].utility, QuadraticUtility) for p in game.players):
        return None
    utils = [p.members[0].utility for p in game.players]
    return (np.array([u.a for u in utils]), np.array([u.b for u in utils]),
            *affine)


def single_user_equilibrium(game) -> np.ndarray | None:
    """Nash equilibrium of one-member quadratic players under an affine price, or None.

    Each best response is y_j = max(0, (b_j - p0 - c Y_-j) / (2(a_j + c)))
    (``single_member_closed_form``); with Y_-j = Y - y_j a buying player has
    y_j = (b_j - p0 - c Y) / (2 a_j + c), so Y solves the scalar equation
    Y = sum_j max(0, (b_j - p0 - c Y) / (2 a_j + c)), whose right side falls with Y:
    one root. The players that buy are those with the largest b_j (b_j - p0 > c Y),
    so trying the k largest for every k at once (cumulative sums) finds it exactly.
    Returns the profile in player order.
    """
    users = single_quadratic_users(game)
    if users is None or not game.players:
        return None
    a, b, p0, c = users
    order = np.argsort(-b, kind="stable")
    inv = 1.0 / (2 * a[order] + c)
    # Total if exactly the k largest-b players buy, k = 1..n.
    totals = np.cumsum((b[order] - p0) * inv) / (1 + c * np.cumsum(inv))
    buying = b[order] - p0 > c * totals
    total = float(totals[np.flatnonzero(buying)[-1]]) if buying.any() else 0.0
    return np.maximum(b - p0 - c * total, 0.0) / (2 * a + c)


def price_out_points(game, j: int, others_total: float, y_max: float,
                     near: Sequence[float] = ()) -> np.ndarray:
    """Purchases in (0, y_max) at which one of player j's members is priced out.

    Beyond MAX_PRICE_OUT_POINTS (large aggregators) it keeps the NEAR_PRICE_OUT_POINTS
    closest to each purchase in ``near`` and spreads the rest evenly: with thousands
    of members each price-out moves J by little, and the scan's cost grows with
    (points x members).
    """
    thresholds = np.unique(game.players[j].marginal_at_zero)
    ys = np.array([game.price.inverse(float(b)) for b in thresholds]) - others_total
    # Kinks of the price itself (a supply curve's capacities) are scanned the same way.
    kinks = game.price.breakpoints(others_total, others_total + y_max) - others_total
    ys = np.unique(np.concatenate([ys, kinks]))
    ys = ys[(ys > 0) & (ys < y_max)]
    if ys.size <= MAX_PRICE_OUT_POINTS:
        return ys
    keep = set(np.linspace(0, ys.size - 1, MAX_PRICE_OUT_POINTS // 2).astype(int))
    for y in near:
        at = int(np.searchsorted(ys, y))
        keep.update(range(max(at - NEAR_PRICE_OUT_POINTS // 2, 0),
                          min(at + NEAR_PRICE_OUT_POINTS // 2, ys.size)))
    return ys[sorted(keep)]


def scan(f: _Counted, game, j: int, others_total: float, y_max: float, maxmin: bool,
         xtol: float, fixed: list[float]) -> list[Candidate]:
    """Every candidate of the sound search (grid, price-out points, refined roots)."""
    grid = np.linspace(0.0, y_max, SCAN_POINTS)
    kinks = price_out_points(game, j, others_total, y_max, near=fixed)
    delta = 1e-9 * max(y_max, 1.0)
    pts = np.unique(np.clip(np.concatenate([grid, kinks - delta, kinks + delta,
                                            fixed, _dense_near(y_max, fixed)]),
                            0.0, y_max))
    batch = f(pts)
    cands = _candidates(batch)
    # A max-min player whose level is flat at y = 0 (pts[0]) is flat everywhere and
    # decided by its tie-break, which has a derivative: refine like the others.
    tiebreak = maxmin and batch.tiebreak_derivative is not None and bool(
        np.isfinite(batch.tiebreak_derivative[0]))
    if maxmin and not tiebreak:
        best = int(np.argmax([c.welfare for c in cands]))
        # Refine around the best grid point, and around the best tie-break among
        # the points that share the best level.
        for k in {best, _best_index(cands, maxmin)}:
            lo = pts[max(k - 1, 0)]
            hi = pts[min(k + 1, len(pts) - 1)]
            if hi > lo:
                cands = _golden(f, float(lo), float(hi), maxmin, xtol)[::-1] + cands
        return cands
    d = slopes(batch, tiebreak)
    roots: list[Candidate] = []
    for k in range(len(pts) - 1):
        if d[k] > 0 and d[k + 1] < 0:
            root = _root_of_slope(f, float(pts[k]), float(pts[k + 1]), d[k], d[k + 1],
                                  xtol, tiebreak)
            roots += _candidates(f([root]))
    # A maximum between two samples whose slopes are both positive (a payoff that
    # is not quasiconcave: rises, falls, rises again) has no sign change to find;
    # a derivative-free search around the best sample still finds it (measured:
    # alpha = 4 aggregators of the paper's users, a peak at 7.1 between samples
    # at 0 and 13.5 whose slopes are both > 0).
    k = _best_index(cands, maxmin)
    lo, hi = float(pts[max(k - 1, 0)]), float(pts[min(k + 1, len(pts) - 1)])
    if hi > lo:
        roots += _golden(f, lo, hi, maxmin, xtol)[::-1]
    return roots + cands  # refined roots first: they win ties against grid points


def _dense_near(y_max: float, fixed: list[float]) -> np.ndarray:
    """Samples halving towards 0 and towards each fixed purchase: best responses
    sit far below y_max (every member at zero surplus), where an even grid is
    coarsest relative to the payoff's features."""
    halves = 2.0 ** -np.arange(1, 40)
    near = [y_max * halves] + [c * (1 + sign * halves[:12]) for c in fixed if c > 0
                               for sign in (-1.0, 1.0)]
    return np.concatenate(near)


def _best_index(cands: list[Candidate], maxmin: bool, rtol: float = TIE_RTOL) -> int:
    """Index of the best candidate; the first one wins ties."""
    best = 0
    for k, c in enumerate(cands):
        if c.beats(cands[best], maxmin, rtol):
            best = k
    return best
