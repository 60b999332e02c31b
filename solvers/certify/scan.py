"""Certificate of equilibrium: every player's regret at a profile (docs/model.md).

regret_j = sup over feasible y_j' of J_j(y_j', y_-j) - J_j(y). The certificate shares
nothing with the code that produced the profile that could be wrong the same way:

* it builds its own native inner solvers (no warm state from the dynamics) and
  evaluates every deviation as a row of its own (the grid in one batch, refinements
  one purchase per solve), each checked by its optimality residual (aggregame.allocation; a row that fails is re-solved by
  bisection or raises); a one-member player has no inner problem (x = y), and its
  payoff is evaluated by formula instead (aggregame.one_member), sharing no code
  with the solvers;
* those solves go through the compiled kernels, which the dynamics use too, so the
  numpy definition re-proves them afterwards (``_Deviations.proved``: payoffs
  recomputed from the allocations, residuals), and a player whose rows it does not
  prove is searched again on numpy alone;
* it uses neither derivatives nor quasiconcavity: a grid over the whole feasible
  interval, both sides of every price kink and of every price-out point where the
  priced-out rule makes J jump (viable, strict; under the floor rule J is
  continuous there and one sample at the point suffices), then refinement
  around the best local maxima of the samples (Brent's derivative-free search: golden
  section with parabolic steps, on the bracket of neighbouring samples; golden
  section alone for max-min, whose payoff is compared lexicographically);
* the one exception to the grid is a payoff that rises then falls in y_j by a
  theorem (``provably_unimodal``: a one-member player's concave payoff, or a
  social-welfare aggregator's, concave up to its maximum and decreasing after it;
  also a max-min player whose level is pinned on the whole interval, which ranks
  purchases by that same social-welfare payoff: ``_pinned_social_welfare``):
  its maximum is found by the same derivative-free search on the whole interval,
  or in closed form where the surplus is a quadratic in y_j
  (one quadratic member, affine price: ``_surplus_vertex``); a coarse even grid (ends
  included) fixes its scale, unless the maximum does not beat the profile (regret 0
  at any scale);
* regret is scale-free: relative to the best payoff minus the median of the evenly
  spread samples of the feasible interval, so a tolerance means the same at
  alpha = 0 (J ~ 1e2) and alpha = 100 (J ~ -1e-103). Max-min compares (level, total
  surplus) lexicographically: a level gain is measured on the level's scale, a
  tie-break gain on the total surplus's.

``method="global"`` proves a bound instead of searching: see
solvers/certify/global_bound.py.
"""

from __future__ import annotations

import enum
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
from scipy.optimize import minimize_scalar

from aggregame.allocation import RESIDUAL_TOL, Evidence, allocation_evidence
from aggregame.errors import GameDefinitionError, InnerSolveError, SettingsError
from aggregame.fairness import PricedOutRule
from aggregame.one_member import OneMemberPayoff
from aggregame.players import Game
from aggregame.price import AffinePrice, LinearPrice, PowerPrice
from aggregame.solvers.inner.batch import InnerBatch
from aggregame.solvers.inner.native import NativeInner
from aggregame.utilities import LogUtility, QuadraticUtility

LOG = logging.getLogger(__name__)

#: A profile is an equilibrium when every relative regret is below this.
CERTIFICATE_RTOL = 1e-6
#: Largest tolerance accepted: beyond it "certified" would not mean an equilibrium.
MAX_CERTIFICATE_RTOL = 1e-2
#: Evenly spaced purchases sampled on every player's feasible interval.
GRID_POINTS = 64
#: Local maxima of the samples refined by golden section, per player.
REFINED_MAXIMA = 4
#: Evenly spaced purchases (ends included) that fix the payoff's scale where the
#: payoff is provably concave and no grid is otherwise needed.
SCALE_POINTS = 9
#: Width (relative to the feasible interval) at which golden section stops.
REFINE_RTOL = 1e-10
#: Price-out points sampled at most (both sides of each), spread evenly beyond that.
MAX_KINKS = 256
#: Two max-min levels closer than this (relative to the level's range) are equal,
#: and the total surplus decides.
LEVEL_TIE_RTOL = 1e-9
#: The payoffs a search used and the ones the definition gives for the same
#: allocations agree to this, relative to the payoff's scale (``proved``): far
#: below any tolerance the regret is compared with, so the search's choices stand.
PROOF_RTOL = 1e-9
#: Rows x members re-proved by numpy per player at most (``_Deviations.proved``),
#: and per numpy call (larger temporaries page-fault: 24 MB arrays cost more to
#: touch than to compute).
PROOF_ELEMENTS = 2**18
#: Bounds violation (over the capacity) a proved row may have: the solvers clip
#: allocations into [0, xbar] exactly, and a slack moves a payoff as balance does.
PROOF_BOUNDS_RTOL = 1e-14
PROOF_CHUNK = 2**16

#: Members from which players are certified in threads (``threads``).
THREADED_MEMBERS = 20_000
_GOLDEN = (math.sqrt(5) - 1) / 2


class CertificateMethod(str, enum.Enum):
    """How regrets are measured: a sampled search, or SCIP's proven bounds."""

    SCAN = "scan"
    GLOBAL = "global"


def check_rtol(rtol: float) -> float:
    """The certificate tolerance as a float in (0, MAX_CERTIFICATE_RTOL], or an error."""
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not (
            0 < float(rtol) <= MAX_CERTIFICATE_RTOL):
        raise GameDefinitionError(
            f"settings: field 'certificate_rtol' must be a number in (0, "
            f"{MAX_CERTIFICATE_RTOL:g}], got {rtol!r}")
    return float(rtol)


@dataclass(frozen=True)
class Certificate:
    """Regret of each player at ``profile``, and the deviation that achieves it.

    Attributes
    ----------
    regrets : raw gain of the best deviation found (payoff units; for a max-min
        player whose level ties, total-surplus units).
    relative_regrets : regrets over the payoff's range on the feasible interval:
        the scale-free number ``rtol`` is compared with.
    deviations : the best purchase found for each player.
    welfare : J_j at the profile.
    evaluations : payoffs evaluated (inner solves, one-member formulas), in all.
    """

    profile: np.ndarray
    regrets: np.ndarray
    relative_regrets: np.ndarray
    deviations: np.ndarray
    welfare: np.ndarray
    rtol: float
    method: CertificateMethod = CertificateMethod.SCAN
    evaluations: int = 0
    #: Per player, how its regret is known: 'searched' (scan), or SCIP's verdict
    #: 'proved' (gap closed), 'bounded' (time limit: a valid but looser bound) or
    #: 'failed' (no bound: regret counted as infinite).
    verdicts: tuple[str, ...] = ()

    @property
    def max_regret(self) -> float:
        """Largest relative regret (0 for a game without players)."""
        return float(np.max(self.relative_regrets)) if self.regrets.size else 0.0

    @property
    def certified(self) -> bool:
        return bool(np.all(self.relative_regrets <= self.rtol))


@dataclass(frozen=True)
class _Payoff:
    y: float
    welfare: float
    tiebreak: float
    #: The max-min level as comparisons read it (``_Deviations._read_level``); J
    #: else.
    level: float = math.nan


class _Deviations:
    """Payoffs of one player's purchases, each a row of its own, with the sampled
    ranges. A one-member player's payoff is a formula (aggregame.one_member: x = y,
    no inner problem); any other player's is an inner solve checked by its residual.
    """

    def __init__(self, game: Game, j: int, others: float, maxmin: bool,
                 compiled: bool = True) -> None:
        self.others, self.maxmin = others, maxmin
        self._price = game.price
        player = game.players[j]
        #: U'(0) at which a max-min level gets pinned (None: it never is), see
        #: ``level_flat_from``.
        self._pin = float(player.marginal_at_zero.min()) if maxmin and \
            player.fairness.rule is not PricedOutRule.VIABLE else None
        #: The pinned level itself: e under the floor rule, 0 under strict.
        self._pinned_level = player.fairness.floor
        self.one_member = OneMemberPayoff.of(game, j)
        self._game, self._j = game, j
        self.inner = NativeInner(game, j, compiled=compiled) \
            if self.one_member is None else None
        #: The inner solutions behind the payoffs, for ``proved``.
        self._rows: list[InnerBatch] = []
        self.seen: list[_Payoff] = []
        #: The evenly spread samples the scale is taken from: refinement samples
        #: crowd around the maxima and would pull the median up to the maximum.
        self.spread: list[_Payoff] = []
        # Running statistics of the finite payoffs (searches compare payoffs after
        # every sample: recomputing these from the samples made a max-min
        # certificate quadratic in its samples): best level, and per field the
        # count, max and min over ``seen`` and the median over ``spread``.
        self._top_level = -math.inf
        self._count = 0
        self._max = [-math.inf, -math.inf]  # (welfare, tiebreak)
        self._min = [math.inf, math.inf]
        self._median: dict[str, float] | None = None
        self._width = (-1, 0.0)  # (samples seen, LEVEL_TIE_RTOL x the level's scale)

    def __call__(self, y: float) -> _Payoff:
        if self.one_member is not None:
            point = self.one_member(y, self.others)
            return self._record(y, point.welfare, point.tiebreak)
        sol = self.inner.solve(np.array([y]), self.others)
        self._rows.append(sol)
        return self._record(y, float(sol.welfare[0]), float(sol.tiebreak[0]))

    def _record(self, y: float, welfare: float, tiebreak: float) -> _Payoff:
        """The payoff at ``y``, added to ``seen`` and the running statistics."""
        level = self._read_level(float(y), welfare) if self.maxmin else welfare
        out = _Payoff(float(y), welfare, tiebreak, level)
        self.seen.append(out)
        if math.isfinite(welfare):
            self._count += 1
            if level > self._top_level:
                self._top_level = level
            top, low = self._max, self._min
            if welfare > top[0]:
                top[0] = welfare
            if welfare < low[0]:
                low[0] = welfare
            if tiebreak > top[1]:
                top[1] = tiebreak
            if tiebreak < low[1]:
                low[1] = tiebreak
        return out

    def proved(self) -> bool:
        """True when the inner solutions behind the payoffs are proved by the
        definition alone (aggregame.allocation.allocation_evidence, numpy):

        * every row's payoff, recomputed from its allocation, matches the one the
          search used to PROOF_RTOL of the payoff's scale;
        * no row claims J = -inf between 0 and the capacity that numpy alone does
          not confirm (``_minus_inf_confirmed``);
        * every row adds up to its purchase closely enough that the payoff of the
          purchase it does add up to is the same to that tolerance (|lambda| or
          |nu| times the gap; the residual's 1e-6 of capacity allowed a gain of
          3e-6 of the scale, found by review);
        * every row stays inside its bounds (to PROOF_BOUNDS_RTOL);
        * the rows' residuals are below RESIDUAL_TOL, with a finite multiplier
          wherever one is needed (max-min: no level higher by PROOF_RTOL of the
          level's scale is feasible): every row up to PROOF_ELEMENTS (rows x members:
          all of them below 2^18, e.g. 2,600 rows of 100 members); beyond that the
          profile's row, the best deviation and rows spread evenly over the search
          (with 10^4 members re-proving all ~100 rows cost more than solving them).

        The compiled kernels (solvers/inner/compiled.py) are the dynamics' fast path too;
        this makes the certificate's verdict rest on the numpy definition: the
        payoff of every row, and the optimality of the rows it re-proves (each row
        also carries the residual the kernel computed from its allocation, apart
        from its solver).
        """
        if not self._rows or not getattr(self.inner, "compiled", False):
            return True
        field = "tiebreak_multiplier" if self.maxmin else "multiplier"
        y = np.concatenate([r.y for r in self._rows])
        x = np.concatenate([r.x for r in self._rows])
        mult = np.concatenate([np.full(r.y.size, np.nan) if getattr(r, field) is None
                               else getattr(r, field) for r in self._rows])
        checked = np.array(self._proof_rows())
        ev = self._evidence(y, x, mult, residual=False)
        # Max-min: no level higher by the certificate's own tolerance is feasible.
        step = PROOF_RTOL * self.span("welfare") if self.maxmin else None
        residual = self._evidence(y[checked], x[checked], mult[checked],
                                  residual=True, level_step=step).residual
        if not np.all(residual <= RESIDUAL_TOL):
            return False
        # Solvers keep allocations inside their bounds exactly; a slack within the
        # residual's tolerance moves a payoff like a balance gap does.
        if not np.all(ev.bounds <= PROOF_BOUNDS_RTOL):
            return False
        if not self._minus_inf_confirmed(
                y[np.isneginf(ev.welfare) & ~ev.forced & ~ev.at_capacity]):
            return False
        # Where J is -inf by the definition at the capacity (viable/strict, alpha
        # >= 1), the two sides' rounding of s = 0 may disagree on -inf; only the
        # profile's own payoff must agree there.
        lenient = ev.at_capacity & (np.arange(y.size) > 0)
        claimed = np.concatenate([r.welfare for r in self._rows])
        claimed_tb = np.concatenate([r.tiebreak for r in self._rows])
        span, span_tb = self.span("welfare"), self.span("tiebreak")
        if not _agree(claimed, ev.welfare, span, lenient) or (
                self.maxmin and not _agree(claimed_tb, ev.tiebreak, span_tb,
                                           lenient)):
            return False
        with np.errstate(invalid="ignore"):  # NaN multiplier: unproved (NaN > tol)
            drift = np.where(ev.forced, 0.0, np.abs(mult) * ev.balance)
        return self._drift_harmless(drift, claimed, claimed_tb, span, span_tb)

    def _drift_harmless(self, drift, claimed, claimed_tb, span, span_tb) -> bool:
        """True when no row's payoff, moved by its drift (|multiplier| times its
        balance gap: the payoff of the purchase the row does add up to), could
        change the verdict: the profile's row, and every row that could reach the
        best payoff with it, drift by less than PROOF_RTOL of the scale. (Rows at
        y_max sit 1e-14 from the capacity, where lambda ~ -1e9 turns a balance of
        1e-12, rounding, into a drift of 1e-3: far below the best, harmless.)"""
        best = self.best()
        if self.maxmin:  # the total surplus ranks the rows whose level ties the best
            top = self.key(best)[0]
            ties = np.array([self.key(p)[0] == top for p in self.seen])
            value, scale, target = claimed_tb, span_tb, best.tiebreak
        else:
            ties = np.ones(claimed.size, dtype=bool)
            value, scale, target = claimed, span, best.welfare
        tol = PROOF_RTOL * scale + 1e-12 * np.abs(np.nan_to_num(value))
        with np.errstate(invalid="ignore"):
            reach = ties & ~(value + drift < target - tol)  # NaN drift: reaches
        reach[0] = True  # the profile's own payoff
        return bool(np.all(drift[reach] <= tol[reach]))

    def _minus_inf_confirmed(self, y: np.ndarray) -> bool:
        """True when numpy alone also finds J = -inf at these purchases (between 0
        and the capacity): there a -inf is a surplus below its rounding, which
        residuals in allocation units cannot tell from a member left at zero
        surplus by a failing solver (found by review: such a row hid a regret of
        0.85). Any finite payoff numpy finds there refutes the claim."""
        if not y.size:
            return True
        try:
            again = NativeInner(self._game, self._j, compiled=False).solve(
                y, self.others)
        except InnerSolveError:
            return False
        return not np.any(np.isfinite(again.welfare))

    def _evidence(self, y, x, mult, residual, level_step=None) -> Evidence:
        """allocation_evidence of rows, in chunks whose temporaries stay in cache."""
        chunk = max(1, PROOF_CHUNK // x.shape[1])
        parts = [allocation_evidence(self._game, self._j, y[k:k + chunk], self.others,
                                     x[k:k + chunk], mult[k:k + chunk], residual,
                                     level_step)
                 for k in range(0, y.size, chunk)]
        return Evidence(*(None if getattr(parts[0], f.name) is None else
                          np.concatenate([getattr(ev, f.name) for ev in parts])
                          for f in fields(Evidence)))

    def _proof_rows(self) -> list[int]:
        """Indices of the rows ``proved`` re-proves (see there)."""
        count = sum(r.y.size for r in self._rows)
        size = self._rows[0].x.shape[1]
        budget = max(PROOF_ELEMENTS // size, 2)
        if count <= budget:
            return list(range(count))
        best = self.best()
        decisive = {0, next(k for k, p in enumerate(self.seen) if p is best)}
        spread = np.linspace(0, count - 1, budget - len(decisive)).astype(int)
        return sorted(decisive | set(spread.tolist()))

    def sample(self, ys: np.ndarray) -> list[_Payoff]:
        """Payoffs at the spread purchases ``ys``; they define the scale.

        Solved in one batch (each row still checked by its residual and re-proved
        by ``proved``): a single-row call costs ~15 us of Python, most of a small
        player's row (Fig. 4 max-min: 21 against 6.5 us a row)."""
        if self.one_member is not None:
            out = [self(float(y)) for y in ys]
        else:
            sol = self.inner.solve(np.asarray(ys, dtype=float), self.others)
            self._rows.append(sol)
            out = [self._record(float(y), float(w), float(t))
                   for y, w, t in zip(sol.y, sol.welfare, sol.tiebreak)]
        self.spread.extend(out)
        self._median, self._width = None, (-1, 0.0)
        return out

    def level_flat_from(self, y: float) -> bool:
        """True when the max-min level is the same for every purchase >= y, read
        from the definition: a member priced out at y (U_i'(0) <= p) has s_i = 0, so
        under the floor and strict rules (it still counts) the level is e, the
        least there is, and the price only rises with y."""
        return self._pin is not None and float(
            self._price.value(self.others + y)) >= self._pin

    def _read_level(self, y: float, welfare: float) -> float:
        """Where the level is pinned (``level_flat_from``) its exact value by the
        theorem, not the computed one (which differs by the surpluses' rounding,
        ~1e-16, between purchases: that noise once ranked purchases and made local
        maxima)."""
        if self.level_flat_from(y) and math.isfinite(welfare):
            return self._pinned_level
        return welfare

    def key(self, p: _Payoff) -> tuple[float, float]:
        """Order of payoffs: J; for max-min (level, total surplus), every level
        within LEVEL_TIE_RTOL of the level's scale below the best level seen counted
        as the best, so the total surplus decides among them. A total order (no
        chain of near-ties can lead downhill), fixed for a given set of samples."""
        if not self.maxmin:
            return (p.welfare, 0.0)
        top = self._top_level
        if self._width[0] != len(self.seen):  # the scale moves only with samples
            self._width = (len(self.seen),
                           LEVEL_TIE_RTOL * max(self.span("welfare"), 0.0))
        width = self._width[1]
        return (top if top - width <= p.level <= top else p.level, p.tiebreak)

    def levels_tie(self, p: _Payoff, q: _Payoff) -> bool:
        return self.maxmin and self.key(p)[0] == self.key(q)[0]

    def beats(self, p: _Payoff, q: _Payoff) -> bool:
        """p strictly better than q (see ``key``)."""
        return self.key(p) > self.key(q)

    def best(self) -> _Payoff:
        """The best payoff seen (the first one wins ties)."""
        best = self.seen[0]
        for p in self.seen[1:]:
            if self.beats(p, best):
                best = p
        return best

    def span(self, field: str) -> float:
        """Scale of the payoff: best sample minus the median of the spread samples.

        Not the full range: near a price-out point under the viable rule J can fall
        towards -1e19 (phi of a vanishing surplus), and a range that wide would make
        any regret look negligible. The median of evenly spread samples is where
        the bulk of the interval is; refinement samples, bunched at the maxima, are
        left out of it (with them a round-off gain of 1e-17 once read as 100%).
        """
        if self._median is None:
            self._median = {}
            for name in ("welfare", "tiebreak"):
                values = [getattr(p, name) for p in self.spread
                          if math.isfinite(p.welfare)]
                self._median[name] = float(np.median(values)) if values else math.nan
        median = self._median[field]
        if not self._count or math.isnan(median):
            return 0.0
        k = 0 if field == "welfare" else 1
        top = self._max[k]
        robust = float(top - median)
        return robust if robust > 0 else float(top - self._min[k])


def _agree(claimed: np.ndarray, truth: np.ndarray, span: float,
           lenient: np.ndarray) -> bool:
    """Payoffs equal to PROOF_RTOL of their scale (infinite ones exactly, except
    that a ``lenient`` row may be finite on one side and -inf on the other); a
    scale of 0 leaves the payoffs' own rounding."""
    both = np.isfinite(claimed) & np.isfinite(truth)
    rounding = lenient & (np.isneginf(claimed) | np.isneginf(truth))
    if not np.array_equal(claimed[~both & ~rounding], truth[~both & ~rounding]):
        return False
    tol = PROOF_RTOL * span + 1e-12 * np.abs(truth[both])
    return bool(np.all(np.abs(claimed[both] - truth[both]) <= tol))


def _sample_points(game: Game, j: int, others: float, y_max: float,
                   current: float) -> np.ndarray:
    """Grid, price-out points (both sides where J may jump there), both sides of
    each price kink (a supply curve's capacity limits), and the current purchase."""
    grid = np.linspace(0.0, y_max, GRID_POINTS)
    thresholds = _thresholds_within(game, game.players[j].marginal_at_zero, others,
                                    y_max)
    price_outs = np.array([game.price.inverse(float(b)) for b in thresholds],
                          dtype=float) - others
    breaks = np.asarray(game.price.breakpoints(others, others + y_max),
                        dtype=float) - others
    delta = 1e-9 * max(y_max, 1.0)
    if game.players[j].fairness.rule is PricedOutRule.FLOOR:
        # Under the floor rule a member priced out keeps its term (weight and floor
        # do not change), so J is continuous there: one sample at the point shows
        # what two at +- delta would (the same value to ~1e-9). The viable and
        # strict rules make J jump there, and a jump needs both sides.
        one_side, two_sides = _capped(price_outs, y_max), _capped(breaks, y_max)
    else:
        one_side, two_sides = np.empty(0), _capped(
            np.concatenate([price_outs, breaks]), y_max)
    pts = np.concatenate([grid, one_side, two_sides - delta, two_sides + delta,
                          [current]])
    return np.unique(np.clip(pts, 0.0, y_max))


def _thresholds_within(game: Game, marginal_at_zero: np.ndarray, others: float,
                       y_max: float) -> np.ndarray:
    """The members' price-out thresholds U_i'(0) that the price reaches while the
    player buys from 0 to y_max, and a margin of 1e-9 around that window.

    The price is increasing, so a threshold outside [p(others), p(others + y_max)]
    prices its member out at a purchase outside [0, y_max], which ``_capped`` drops:
    inverting it (a Python call each, 0.5 s a certificate with 10^6 members) would
    change nothing. The margin keeps every threshold whose inverse, rounded, could
    still land inside."""
    thresholds = np.unique(marginal_at_zero)
    low = float(game.price.value(others))
    high = float(game.price.value(others + y_max))
    margin = 1e-9 * max(abs(low), abs(high))
    return thresholds[(thresholds >= low - margin) & (thresholds <= high + margin)]


def _capped(kinks: np.ndarray, y_max: float) -> np.ndarray:
    """The kinks inside (0, y_max), at most MAX_KINKS of them spread evenly."""
    kinks = np.unique(kinks[(kinks > 0) & (kinks < y_max)])
    if kinks.size > MAX_KINKS:
        kinks = kinks[np.linspace(0, kinks.size - 1, MAX_KINKS).astype(int)]
    return kinks


def _golden(dev: _Deviations, lo: float, hi: float, xtol: float) -> None:
    """Golden-section search of [lo, hi]; every evaluation lands in ``dev.seen``."""
    c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fc, fd = dev(c), dev(d)
    while hi - lo > xtol:
        if not dev.beats(fd, fc):
            hi, d, fd = d, c, fc
            c = hi - _GOLDEN * (hi - lo)
            fc = dev(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + _GOLDEN * (hi - lo)
            fd = dev(d)


#: Stand-in for J = -inf (strict rule at an end) in Brent's parabolic fits.
_HUGE = 1e300


def _refine(dev: _Deviations, lo: float, hi: float, xtol: float) -> None:
    """Search [lo, hi] for a maximum; every evaluation lands in ``dev.seen``.

    Brent's method (scipy's bounded scalar minimizer) keeps golden section's bracket
    and takes a parabolic step where the samples allow it: 10-15 solves where golden
    section needs ~40. Max-min payoffs are (level, total surplus) pairs: golden
    section, which only compares them, unless the level is flat on [lo, hi]
    (``level_flat_from``); then the total surplus alone orders them, and Brent's
    method searches it.
    """
    if dev.maxmin and not dev.level_flat_from(lo):
        _golden(dev, lo, hi, xtol)
        return
    field = "tiebreak" if dev.maxmin else "welfare"

    def loss(y: float) -> float:
        p = dev(y)
        return -getattr(p, field) if math.isfinite(p.welfare) else _HUGE

    minimize_scalar(loss, bounds=(lo, hi), method="bounded",
                    options={"xatol": xtol, "maxiter": 500})


def provably_concave(game: Game, j: int) -> bool:
    """True when player j's payoff is concave in y_j on its feasible interval.

    A one-member player gets x = y_j, so J = phi(s + e) with s(y) = U(y) - p(Y) y.
    U is concave (quadratic or log), and p(Y) y is convex in y when p is convex and
    increasing (d2/dy2 = p'' y + 2 p' >= 0: linear, affine, power with k >= 1), so s
    is concave; phi is concave and increasing (any alpha, and max-min's s + e), so
    J is concave. The member is priced in on all of (0, y_max] (y_max > 0 needs
    U'(0) > p there), so the priced-out rule never switches inside.
    """
    player = game.players[j]
    return player.size == 1 and _convex_price(game) and _concave_utilities(player)


def provably_unimodal(game: Game, j: int) -> bool:
    """True when player j's payoff rises then falls on its feasible interval, so a
    derivative-free search of the whole interval finds its maximum (docs/model.md,
    "Quasiconcavity and the best response"): a one-member player with a concave
    payoff (``provably_concave``), or a social-welfare aggregator (alpha = 0).

    At alpha = 0 every priced-out rule gives J = W(y) - p(Y) y + const, with W(y) =
    max sum_i U_i(x_i) over sum x = y, x >= 0 (concave in y) as long as the
    multiplier lambda is >= 0: then U_i'(x_i) = p + lambda >= p puts every member at
    or below its surplus peak, inside its bound xbar_i, and a priced-out member
    (U_i'(0) <= p) at 0 (its term is 0 under viable and strict, e under floor).
    With p convex and increasing, p(Y) y is convex, so J is concave while lambda >=
    0; lambda falls with y, and where it is < 0, dJ/dy <= lambda < 0.
    """
    player = game.players[j]
    if provably_concave(game, j):
        return True
    return (player.fairness.alpha == 0 and not player.fairness.is_maxmin
            and _convex_price(game) and _concave_utilities(player))


def _pinned_social_welfare(game: Game, j: int, dev: _Deviations) -> bool:
    """A max-min player whose level is pinned on the whole interval (a counted
    member priced out already at y = 0: ``level_flat_from(0)``) ranks purchases
    by total surplus alone. Every member's need, level minus floor, is then 0, so
    its interval is all of [0, xbar_i]: the total surplus is the social-welfare
    payoff (minus n e), which rises then falls under the conditions of
    ``provably_unimodal``."""
    player = game.players[j]
    return (dev.maxmin and dev.level_flat_from(0.0) and _convex_price(game)
            and _concave_utilities(player))


def _convex_price(game: Game) -> bool:
    """p convex and increasing: p(Y) y is then convex in y (p'' y + 2 p' >= 0)."""
    price = game.price
    return isinstance(price, (LinearPrice, AffinePrice)) or (
        isinstance(price, PowerPrice) and price.k >= 1)


def _concave_utilities(player) -> bool:
    return all(isinstance(m.utility, (QuadraticUtility, LogUtility))
               for m in player.members)


def _local_maxima(dev: _Deviations, samples: list[_Payoff]) -> list[int]:
    """Indices of samples at least as good as both neighbours, best first."""
    n = len(samples)
    peaks = [k for k in range(n)
             if (k == 0 or not dev.beats(samples[k - 1], samples[k]))
             and (k == n - 1 or not dev.beats(samples[k + 1], samples[k]))]
    return sorted(peaks, key=lambda k: dev.key(samples[k]), reverse=True)[
        :REFINED_MAXIMA]


def _surplus_vertex(game: Game, j: int, others: float, y_max: float
                    ) -> float | None:
    """Maximizer of a one-member quadratic player's payoff under an affine price,
    or None for any other player.

    With x = y_j its payoff is phi(s + e), phi increasing, so it peaks where
    s(y) = U(y) - p(Y_-j + y) y does. s'(y) = U'(y) - p(Y) - p'(Y) y is linear in y
    for a quadratic U and an affine p, so its zero is the secant root of s' between
    the ends of [0, y_max], read from the utility's and the price's own derivatives
    (not from the best response's formula).
    """
    player = game.players[j]
    util = player.members[0].utility
    if player.size != 1 or not isinstance(util, QuadraticUtility) or \
            game.price.affine_coefficients() is None or y_max <= 0:
        return None

    def slope(y: float) -> float:
        total = others + y
        return float(util.dU(y, util.params()) - game.price.value(total)
                     - game.price.derivative(total) * y)

    d0, d1 = slope(0.0), slope(y_max)
    if d0 <= 0:
        return 0.0
    if d1 >= 0:
        return y_max
    return min(max(y_max * d0 / (d0 - d1), 0.0), y_max)


def _search_unimodal(dev: _Deviations, game: Game, j: int, y_max: float,
                     here: _Payoff) -> None:
    """Deviations of a payoff that rises then falls on [0, y_max]
    (``provably_unimodal``): its closed-form maximizer where there is one, else
    Brent's search on the whole interval. A coarse even grid gives the payoff's
    scale; a payoff that cannot beat ``here`` at its maximizer has regret 0 whatever
    the scale, so they are then skipped."""
    vertex = _surplus_vertex(game, j, dev.others, y_max)
    if vertex is not None:
        # One member: the level s + e and the tie-break s rise together; ranked as
        # best() ranks them (a level s + e may round to the same float where s
        # does not, and the tie-break then decides: that gain needs its scale).
        if not dev.beats(dev(vertex), here):
            return
        dev.sample(np.linspace(0.0, y_max, SCALE_POINTS))
        return
    dev.sample(np.linspace(0.0, y_max, SCALE_POINTS))
    if y_max > 0:
        _refine(dev, 0.0, y_max, max(REFINE_RTOL * y_max, 1e-300))


def _search_grid(dev: _Deviations, game: Game, j: int, y_max: float,
                 current: float) -> None:
    """Deviations of any payoff: samples, then refinement of the best local maxima."""
    xtol = max(REFINE_RTOL * y_max, 1e-300)
    pts = _sample_points(game, j, dev.others, y_max, min(current, y_max))
    samples = dev.sample(pts)
    for k in _local_maxima(dev, samples):
        lo, hi = float(pts[max(k - 1, 0)]), float(pts[min(k + 1, len(pts) - 1)])
        if hi > lo:
            _refine(dev, lo, hi, xtol)


def _player_regret(game: Game, j: int, profile: np.ndarray
                   ) -> tuple[float, float, float, float, int]:
    """(raw regret, relative regret, best deviation, J at the profile, solves).

    The search evaluates deviations through the native backend's fast path; if the
    definition does not prove every one of them (``_Deviations.proved``), it is
    run again on numpy alone, whose rows prove themselves.
    """
    others = float(profile.sum() - profile[j])
    # Sorted vectors (solvers/inner/leximin.py); one member has a one-component vector,
    # its level, which the one-member formula gives exactly (progressive filling
    # once failed its residual there: xbar ~ 1e-7, found by a random property run).
    if game.players[j].fairness.is_leximin and game.players[j].size > 1:
        from aggregame.solvers.certify.leximin import leximin_regret
        return leximin_regret(game, j, profile)
    dev, here = _search_deviations(game, j, profile, others, compiled=True)
    if not dev.proved():
        LOG.warning("certificate of player %r: the fast inner solves were not proved "
                    "by the definition; searching again with numpy",
                    game.players[j].name)
        dev, here = _search_deviations(game, j, profile, others, compiled=False)
    best = dev.best()
    raw, rel = _gain(dev, here, best)
    return raw, rel, best.y, here.welfare, len(dev.seen)


def _search_deviations(game: Game, j: int, profile: np.ndarray, others: float,
                       compiled: bool) -> tuple[_Deviations, _Payoff]:
    """Player j's deviations, searched; and its payoff at the profile."""
    maxmin = game.players[j].fairness.is_maxmin
    dev = _Deviations(game, j, others, maxmin, compiled)
    here = dev(float(profile[j]))
    y_max = game.feasible_max(j, others)
    if provably_unimodal(game, j) or _pinned_social_welfare(game, j, dev):
        _search_unimodal(dev, game, j, y_max, here)
    else:
        _search_grid(dev, game, j, y_max, float(profile[j]))
    return dev, here


def _gain(dev: _Deviations, here: _Payoff, best: _Payoff) -> tuple[float, float]:
    """Raw and relative gain of ``best`` over ``here`` (0 when it is no better)."""
    if not math.isfinite(here.welfare):
        return (math.inf, math.inf) if math.isfinite(best.welfare) else (0.0, 0.0)
    if not dev.beats(best, here):
        return 0.0, 0.0
    field = "tiebreak" if dev.levels_tie(best, here) else "welfare"
    raw = getattr(best, field) - getattr(here, field)
    if raw <= 0:
        return 0.0, 0.0
    span = dev.span(field)
    return raw, (raw / span if span > 0 else math.inf)


def certify(game: Game, profile: np.ndarray, rtol: float = CERTIFICATE_RTOL, *,
            method: CertificateMethod | str = CertificateMethod.SCAN,
            **global_options) -> Certificate:
    """Regret of every player at ``profile``.

    Parameters
    ----------
    game : Game
    profile : (players,) purchases.
    rtol : tolerance on each relative regret, in (0, 1e-2].
    method : 'scan' (the sampled search described in the module docstring) or
        'global' (SCIP's proven bounds; ``global_options``, e.g. ``time_limit``,
        go to :func:`aggregame.solvers.global_certificate.certify_global`). SCIP's
        feasibility tolerance limits what it proves: the global method's tolerance
        is at least GLOBAL_RTOL (1e-5).
    """
    rtol = check_rtol(rtol)
    method = CertificateMethod(method)
    profile = np.asarray(profile, dtype=float)
    if method is CertificateMethod.GLOBAL:
        return _global(game, profile, rtol, **global_options)
    rows = _each_player(game, lambda j: _player_regret(game, j, profile))
    raw, rel, deviation, welfare, solves = (np.array(col) for col in zip(*rows))
    return Certificate(profile, raw, rel, deviation, welfare, rtol, method,
                       int(solves.sum()), ("searched",) * len(rows))


def _each_player(game: Game, regret):
    """``regret(j)`` of every player, in order: in threads (``threads``) where the
    game is large enough to gain from them. Players' searches share nothing (each
    builds its own inner solvers), and the compiled kernels and numpy's large array
    operations release the GIL, so two threads take about half the time."""
    count = threads(game)
    if count == 1:
        return [regret(j) for j in range(len(game.players))]
    pool = ThreadPoolExecutor(max_workers=count,
                              thread_name_prefix="aggregame-certificate")
    try:
        return list(pool.map(regret, range(len(game.players))))
    except BaseException:
        # An error or Ctrl-C: the players not started are not certified first.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def threads(game: Game) -> int:
    """Threads the certificate runs players in: AGGREGAME_THREADS if set (1: none),
    else the usable cores (at most one per player) once the game has
    THREADED_MEMBERS members, else 1 (a small game's player takes a few ms, which
    threads would not shorten)."""
    setting = os.environ.get("AGGREGAME_THREADS", "").strip()
    if setting:
        try:
            count = int(setting)
        except ValueError:
            count = 0
        if count < 1:
            raise SettingsError(f"AGGREGAME_THREADS={setting!r}: expected a whole "
                                "number of threads, at least 1")
    elif sum(p.size for p in game.players) >= THREADED_MEMBERS:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
    else:
        count = 1
    return max(1, min(count, len(game.players)))


def _global(game: Game, profile: np.ndarray, rtol: float, **options) -> Certificate:
    """The SCIP certificate in the common form: regrets are proven bounds."""
    from aggregame.solvers.certify.global_bound import (
        GLOBAL_RTOL,
        Verdict,
        certify_global,
    )

    rtol = max(rtol, GLOBAL_RTOL)
    cert = certify_global(game, profile, rtol=rtol, **options)
    failed = [p.verdict is Verdict.FAILED for p in cert.players]
    rel = np.array([math.inf if bad else p.relative_regret
                    for p, bad in zip(cert.players, failed)])
    return Certificate(
        profile, cert.regret_bounds, rel, np.array([p.best_y for p in cert.players]),
        np.array([p.payoff for p in cert.players]), rtol, CertificateMethod.GLOBAL,
        0, tuple(p.verdict.value for p in cert.players))
