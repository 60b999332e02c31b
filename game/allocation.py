"""Member-level formulas of the inner allocation problem, and its optimality residual.

Player j's inner problem (docs/model.md, "Inner problem") for a purchase y and a price p:

    J = max_x sum_i w_i phi(s_i + e_i)   s.t.  sum_i x_i = y,  0 <= x_i <= xbar_i(p)

with s_i = U_i(x_i) - p x_i, (w_i, e_i) the weight and floor of member i under the
priced-out rule, and xbar_i the consumption at which s_i returns to 0. Max-min replaces
the sum by min_i (s_i + e_i) over the members that count. Every backend (native numpy,
Pyomo) and the stacked KKT builder read these functions, so they cannot disagree on
what J, its multiplier or its optimality mean.

The residual is how the backends prove each row of a batch: it is measured in units
of allocation, relative to the capacity sum_i xbar_i, so 1e-6 means the same for
every alpha (a stationarity gap in units of marginal welfare would be multiplied by
(s + e)^-alpha, i.e. by 10^200 at alpha = 100).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, fields

import numpy as np

from aggregame.elementwise import power, select
from aggregame.fairness import PricedOutRule
from aggregame.players import Game, Player
from aggregame.utilities import QuadraticUtility

#: A row whose residual (allocation units, relative to the capacity) exceeds this is
#: not a solution: the backend re-solves it by a safe method or raises.
RESIDUAL_TOL = 1e-6
#: A purchase within this of the capacity (relative) leaves the members surpluses
#: below their rounding: a payoff of -inf there (viable, strict) is not a failure.
NEAR_CAPACITY_RTOL = 1e-12
#: Relative step of the level used to test that a max-min level is the largest one.
LEVEL_PROBE_RTOL = 1e-7

#: Per player (weakly held): its one utility family when that family covers every
#: member in order, so formulas need no gather and scatter (None otherwise).
_SINGLE_FAMILY: "weakref.WeakKeyDictionary[Player, object]" = weakref.WeakKeyDictionary()


def _single_family(player: Player):
    try:
        return _SINGLE_FAMILY[player]
    except KeyError:
        fams = player.families
        one = fams[0] if len(fams) == 1 and np.array_equal(
            fams[0].index, np.arange(player.size)) else None
        _SINGLE_FAMILY[player] = one
        return one


def evaluate(player: Player, formula: str, x: np.ndarray) -> np.ndarray:
    """``player.evaluate(formula, x)``: the families' own U, dU or d2U, called
    directly when one family holds every member in order (no copies)."""
    fam = _single_family(player)
    if fam is None:
        return player.evaluate(formula, x)
    return getattr(fam.family, formula)(np.asarray(x, dtype=float), fam.params)


def quadratic_parameters(player: Player) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, b) in member order when every member is quadratic, else None."""
    fam = _single_family(player)
    if fam is None or fam.family is not QuadraticUtility:
        return None
    return fam.params["a"], fam.params["b"]


def member_terms(player: Player, priced_out: np.ndarray) -> tuple[np.ndarray,
                                                                    np.ndarray]:
    """Arrays (weight, floor) of each member's term in Phi (see Fairness.member_terms)."""
    f = player.fairness
    w_in, e_in = f.member_terms(False)
    w_out, e_out = f.member_terms(True)
    if w_in == w_out and e_in == e_out:  # floor rule: status does not matter
        full = np.ones(priced_out.shape)
        return full * w_in, full * e_in
    return (np.where(priced_out, w_out, w_in), np.where(priced_out, e_out, e_in))


def counted_members(player: Player, priced_out: np.ndarray) -> np.ndarray:
    """Members whose surplus enters a max-min player's minimum (all but the priced-out
    ones under the viable rule)."""
    if player.fairness.rule is PricedOutRule.VIABLE:
        return ~priced_out
    return np.ones(priced_out.shape, dtype=bool)


def welfare_of(player: Player, surplus: np.ndarray, weight: np.ndarray,
               floor: np.ndarray, priced_out: np.ndarray) -> np.ndarray:
    """J_j = Phi_alpha(s + e) row by row (min over counted members for max-min)."""
    f = player.fairness
    if f.is_maxmin:
        counted = counted_members(player, priced_out)
        vals = np.where(counted, surplus + floor, np.inf)
        out = vals.min(axis=-1)
        return np.where(np.isinf(out), 0.0, out)  # nobody counts: flat 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = np.where(weight > 0, weight * f.phi(np.maximum(surplus + floor, 0.0)),
                         0.0)
    out = terms.sum(axis=-1)
    if f.rule is PricedOutRule.STRICT and f.alpha >= 1:
        out = np.where(priced_out.any(axis=-1), -np.inf, out)
    return out


def price_sensitivity(x: np.ndarray, coefficient: np.ndarray) -> np.ndarray:
    """dPhi/dp = -sum_i coefficient_i x_i with coefficient = w phi'(s + e) + sigma
    (envelope theorem: p enters s_i = U_i - p x_i with slope -x_i)."""
    return -(coefficient * x).sum(axis=-1)


def bounds_violation(x: np.ndarray, xbar: np.ndarray) -> np.ndarray:
    # max_i max(-x_i, x_i - xbar_i, 0) as two reductions: one (G, N) temporary,
    # not four (it runs on every row of every inner solve).
    below = -x.min(axis=-1, initial=0.0)
    return np.maximum(below, (x - xbar).max(axis=-1, initial=0.0))


def allocation_error(x: np.ndarray, y: np.ndarray, xbar: np.ndarray) -> np.ndarray:
    """Balance |sum x - y| and bounds 0 <= x <= xbar of each row, over the capacity."""
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    return np.maximum(np.abs(x.sum(axis=-1) - y), bounds_violation(x, xbar)) / cap


def forced_rows(player: Player, y: np.ndarray, cap: np.ndarray,
                priced_out: np.ndarray) -> np.ndarray:
    """Rows whose allocation leaves nothing to optimize: one allocation only (y <= 0;
    y at the capacity, every member at xbar_i; the solvers' own thresholds), or a
    payoff no allocation changes (the strict rule's J = -inf once a member is priced
    out, alpha >= 1). Their residual is the allocation's error alone."""
    f = player.fairness
    out = (y <= 0) | (y >= cap * (1 - 1e-14))
    if f.rule is PricedOutRule.STRICT and f.alpha >= 1 and not f.is_maxmin:
        out = out | priced_out.any(axis=-1)
    return out


def settled_residual(residual: np.ndarray, error: np.ndarray, welfare: np.ndarray,
                     y: np.ndarray, cap: np.ndarray, forced: np.ndarray) -> np.ndarray:
    """The residual a row carries: 0 for a purchase above the capacity (J = -inf,
    nothing to prove); the allocation's error alone (balance, bounds) for a forced
    row (``forced_rows``) and for a row whose J is -inf.

    J = -inf between 0 and the capacity (viable, strict, alpha >= 1) means a
    counted member at zero surplus. Optimal allocations keep every surplus
    positive, but a surplus can be below its own rounding (a member barely priced
    in, w log(1 + x) with x ~ 1e-9; within NEAR_CAPACITY_RTOL of the capacity), and
    a residual in allocation units cannot tell that from a solver's failure: the
    certificate cross-checks such rows with another solver
    (solvers/certify/scan.py, ``_Deviations.proved``).
    """
    out = np.where(forced | np.isneginf(welfare), error, residual)
    return np.where(y > cap * (1 + 1e-12) + 1e-300, 0.0, out)


def optimality_residual(player: Player, y: np.ndarray, price: np.ndarray,
                        x: np.ndarray, lam: np.ndarray, xbar: np.ndarray,
                        weight: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """KKT residual of each row (alpha < inf), in allocation units over the capacity.

    Balance |sum x - y|, bounds 0 <= x <= xbar, and stationarity: member i's Newton
    step toward g_i(x_i) = lambda, (lambda - g_i) / g_i', where
    g_i = w phi'(s + e)(U' - p) is its marginal welfare. Written as
    (lambda / (w phi') - (U' - p)) / (U'' - alpha (U' - p)^2 / (s + e)), which never
    forms phi' alone, so it stays finite for any alpha. The step is projected onto
    [0, xbar_i]: at x_i = 0 only g_i > lambda violates, at xbar_i only g_i < lambda.
    Members with weight 0 must sit at 0 (their bounds).
    """
    f = player.fairness
    p2 = np.asarray(price, dtype=float)[:, None]
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    balance = np.abs(x.sum(axis=-1) - y)
    bounds = bounds_violation(x, xbar)
    slope = evaluate(player, "dU", x) - p2
    curvature = evaluate(player, "d2U", x)
    level = np.maximum(evaluate(player, "U", x) - p2 * x + floor, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        step = stationarity_step(lam[:, None], x, xbar, weight, level, slope,
                                 curvature, f.alpha)
    # After the clip a step is finite or NaN (no finite step): NaN counts as an
    # infinite violation (np.where: np.nan_to_num costs five array passes).
    stationarity = np.where(np.isnan(step), np.inf, np.abs(step)).max(axis=-1)
    out = np.maximum(np.maximum(balance, bounds), stationarity) / cap
    return np.where(np.isfinite(lam), out, np.maximum(balance, bounds) / cap)


# Elementwise member formulas: numpy arrays broadcast through them, and the compiled
# inner solve (solvers/inner/compiled.py) runs the same lines on scalars, so there is one
# copy of each. Only operations both understand: arithmetic, np.maximum/np.minimum
# (not np.clip), np.sqrt, np.isfinite, and aggregame.elementwise's select and power.
def stationarity_step(lam, x, xbar, weight, level, slope, curvature, alpha):
    """Member i's Newton step toward g_i(x_i) = lambda, projected onto [0, xbar_i],
    and 0 for members of weight 0 (see ``optimality_residual``).

    ``level`` is s_i + e_i (kept >= 1e-300), ``slope`` U_i' - p, ``curvature`` U_i''.
    """
    lam_over_dphi = lam * power(level, alpha) / weight
    step = (lam_over_dphi - slope) / (curvature - alpha * slope**2 / level)
    # Projected onto the box [0, xbar]: at a bound only a step into the interval
    # counts (x_i = 0 with g_i < lambda is optimal, not a violation). NaN stays NaN.
    step = np.minimum(np.maximum(step, -x), xbar - x)
    return select(weight > 0, step, 0.0)


#: The alphas at which a quadratic member's x_i(lambda) has a closed form.
CLOSED_FORM_ALPHAS = (0.0, 0.5, 1.0)


def quadratic_response(lam, q, a, two_a, floor, xbar, alpha):
    """x_i(lambda) of a quadratic member (q = b - p) at alpha 0, 1/2 or 1, in closed
    form: the maximizer over [0, xbar] of w phi(s + e) - lambda x (w = 1).

    alpha = 0: (q - lambda) / 2a clipped. alpha = 1: (q - 2 a x) = lambda (q x - a x^2
    + e), i.e. A x^2 - B x + C = 0, with the root 2C / (B + sqrt(B^2 - 4AC)), the one
    inside [0, xbar] for either sign of lambda. Where B < 0 (lambda < -2a / q: a
    member near its zero-surplus point, where the aggregator buys near capacity)
    B + sqrt(D) cancels, so the same root is taken as (B - sqrt(D)) / 2A (A < 0
    there): written that way it kept x_i(lambda) monotone, where the first form lost
    it at lambda ~ -1e10 (found by the batch/single property test).

    alpha = 1/2 (phi' = D^-1/2, D = s + e): with t = q - 2 a x = U' - p the surplus
    is s = (q^2 - t^2) / 4a, and the stationarity t = lambda sqrt(D) squared gives
    D = K / (4a + lambda^2), K = q^2 + 4 a e, so t = lambda sqrt(K / (4a +
    lambda^2)), of lambda's sign (sqrt(D) > 0) and the unique root (g_i decreases
    wherever D > 0). Without overflow: lambda / sqrt(4a + lambda^2) as sign / sqrt(1
    + 4a / lambda^2) once |lambda| >= 1 (+-1 at +-inf, where x is 0 or xbar). Then
    x = (q - t) / 2a, to rounding of xbar, which cancels near x = 0 (2e-6 of a tiny
    purchase, found by review); there, for t >= 0, x = 2 (D - e) / (q + t) (q - t =
    4a (D - e) / (q + t)), exact where e = 0 or D >= 2e, but not where e >> s (it
    lost 1e-7 of xbar there: found by the bisection test).
    """
    if alpha == 0:
        return np.minimum(np.maximum((q - lam) / two_a, 0.0), xbar)
    if alpha == 0.5:
        four_a = 2 * two_a
        ratio = select(np.abs(lam) >= 1,
                       np.sign(lam) / np.sqrt(1 + four_a / lam / lam),
                       lam / np.sqrt(four_a + lam * lam))
        big_k = q * q + four_a * floor
        t = ratio * np.sqrt(big_k)
        level = big_k / (four_a + lam * lam)
        exact = (t >= 0) & ((floor == 0) | (level >= 2 * floor))
        root = select(exact, 2 * (level - floor) / (q + t), (q - t) / two_a)
        return np.minimum(np.maximum(select(np.isfinite(root), root, 0.0), 0.0), xbar)
    A = lam * a
    B = two_a + lam * q
    C = q - lam * floor
    disc = np.maximum(B * B - 4 * A * C, 0.0)
    root = select(B >= 0, 2 * C / (B + np.sqrt(disc)), (B - np.sqrt(disc)) / (2 * A))
    # Not finite only where |lambda| is huge or infinite (B^2 overflows): x is then 0
    # for lambda > 0 and xbar for lambda < 0 (C > 0 read it as xbar at lambda = 1e200
    # with e = 0, found by the bisection test).
    root = select(np.isfinite(root), root, select(lam > 0, 0.0, xbar))
    return np.minimum(np.maximum(root, 0.0), xbar)


def quadratic_response_slope(lam, x, q, a, two_a, floor, weight, alpha):
    """dx_i/dlambda = 1 / g_i'(x_i) of an interior quadratic member at x = x_i(lambda),
    alpha 0, 1/2 or 1, from lambda and the level D = s + e alone.

    alpha = 0: g_i = q - 2 a x, so -1 / 2a. alpha = 1, with w (q - 2 a x) =
    lambda D: g' = -2 a w / D - lambda^2 / w. alpha = 1/2, with w (q - 2 a x) =
    lambda sqrt(D): g' = -(w / sqrt(D)) (2a + lambda^2 / 2 w^2).
    """
    if alpha == 0:
        return -1.0 / two_a + 0 * x
    level = q * x - a * x * x + floor
    if alpha == 0.5:
        return -np.sqrt(level) / (weight * (two_a + lam * lam / (2 * weight * weight)))
    return 1.0 / (-two_a * weight / level - lam ** 2 / weight)


def surplus_peak(player: Player, price: np.ndarray, xbar: np.ndarray) -> np.ndarray:
    """Consumption at which each member's surplus peaks (U' = p), by bisection."""
    lo, hi = np.zeros_like(xbar), xbar.copy()
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        up = player.evaluate("dU", mid) - price > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return 0.5 * (lo + hi)


def level_interval(player: Player, need: np.ndarray, price: np.ndarray,
                   xbar: np.ndarray, peak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo_i, hi_i]: the x in [0, xbar_i] with s_i(x) >= need_i, by bisection on each
    side of the (concave) surplus's peak; NaN where the peak is below ``need``."""
    def surplus(z):
        return player.evaluate("U", z) - price * z

    empty = surplus(peak) < need
    lo_a, lo_b = np.zeros_like(peak), peak.copy()
    hi_a, hi_b = peak.copy(), xbar.copy()
    for _ in range(100):
        m1, m2 = 0.5 * (lo_a + lo_b), 0.5 * (hi_a + hi_b)
        up1, up2 = surplus(m1) >= need, surplus(m2) >= need
        lo_a, lo_b = np.where(up1, lo_a, m1), np.where(up1, m1, lo_b)
        hi_a, hi_b = np.where(up2, m2, hi_a), np.where(up2, hi_b, m2)
    lo = np.where(need <= 0, 0.0, lo_b)
    hi = np.where(need <= 0, xbar, hi_a)
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


def quadratic_level_interval(a: np.ndarray, b: np.ndarray, need: np.ndarray,
                             price: np.ndarray, xbar: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed form of ``level_interval`` and the peak surplus for quadratic members.

    s(x) = q x - a x^2 with q = b - p peaks at q^2 / (4a); s(x) >= L > 0 on the roots
    of a x^2 - q x + L, the lower one written 2L / (q + sqrt(q^2 - 4aL)) (no
    cancellation). Returns (lo, hi, peak surplus); NaN where the peak is below need.
    Elementwise (numpy arrays, or the compiled residual's scalars); 2L / (q + root)
    is 0/0 or inf/inf where need = -inf or q = 0, which the need <= 0 branch
    replaces (numpy callers silence the warnings).
    """
    q = b - price
    top = select(q > 0, q * q / (4 * a), 0.0)
    root = np.sqrt(np.maximum(q * q - 4 * a * need, 0.0))
    lo = np.minimum(2 * need / (q + root), xbar)
    hi = np.minimum((q + root) / (2 * a), xbar)
    lo = select(need <= 0, 0.0, lo)
    hi = select(need <= 0, xbar, hi)
    empty = top < need
    return select(empty, np.nan, lo), select(empty, np.nan, hi), top


def maxmin_residual(player: Player, y: np.ndarray, price: np.ndarray, x: np.ndarray,
                    xbar: np.ndarray, floor: np.ndarray, priced_out: np.ndarray,
                    nu: np.ndarray | None = None,
                    level_step: float | None = None) -> np.ndarray:
    """Residual of a max-min row: balance and bounds (allocation units over the
    capacity), and 1 where a level higher than the allocation's by LEVEL_PROBE_RTOL
    is feasible (the level is then not the largest: not a solution).

    With ``nu`` (each row's multiplier of sum x = y in the total-surplus stage)
    also the tie-break's optimality: within the intervals where every counted
    member keeps the allocation's level, each member's Newton step toward
    U_i' - p = nu, projected onto its interval (members held at an end with the
    right sign do not move), in allocation units over the capacity. Without it
    (a backend that gives no nu) the total surplus is not checked, and the level
    alone is: a worst-first fill at the right level passed (found by review).

    ``level_step`` (absolute) replaces LEVEL_PROBE_RTOL times the members' largest
    peak level as the probe's step: the certificate's proof asks it of its own
    scale, which can be thousands of times smaller (found by review: a level
    0.5 probe step short hid a regret of 1e-4).

    The level test does not use the backends' level roots: plain bisection on each
    member's surplus, or for quadratic members the closed form of
    ``quadratic_level_interval`` (written here, tested against the bisection), so a
    wrong level root cannot pass it. Where a priced-out member pins the top level at
    its floor (0 under strict), a level below it by rounding is still the largest,
    so the probe step is at least the surpluses' rounding.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _maxmin_residual(player, y, price, x, xbar, floor, priced_out,
                               level_step)
        if nu is None:
            return out
        return np.maximum(out, _tiebreak_residual(player, price, x, xbar, floor,
                                                  priced_out, nu))


def _tiebreak_residual(player, price, x, xbar, floor, priced_out, nu):
    """The total-surplus stage's projected Newton steps (see ``maxmin_residual``)."""
    p2 = np.asarray(price, dtype=float)[:, None]
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    counted = counted_members(player, priced_out)
    level = np.where(counted, evaluate(player, "U", x) - p2 * x + floor,
                     np.inf).min(axis=-1)
    need = np.where(counted, level[:, None] - floor, -np.inf)
    quad = quadratic_parameters(player)
    if quad is not None:
        lo, hi, _ = quadratic_level_interval(*quad, need, p2, xbar)
    else:
        lo, hi = level_interval(player, need, p2, xbar, surplus_peak(player, p2, xbar))
    # x keeps its own level, so it lies in its interval; rounding may put an end a
    # hair inside (or make the binding member's one-point interval empty).
    lo = np.minimum(np.where(np.isnan(lo), x, lo), x)
    hi = np.maximum(np.where(np.isnan(hi), x, hi), x)
    step = (nu[:, None] - (evaluate(player, "dU", x) - p2)) / evaluate(player, "d2U", x)
    step = np.minimum(np.maximum(step, lo - x), hi - x)
    return np.where(np.isnan(step), np.inf, np.abs(step)).max(axis=-1) / cap


def _maxmin_residual(player, y, price, x, xbar, floor, priced_out, level_step=None):
    p2 = np.asarray(price, dtype=float)[:, None]
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    out = np.maximum(np.abs(x.sum(axis=-1) - y), bounds_violation(x, xbar)) / cap
    counted = counted_members(player, priced_out)
    surplus = evaluate(player, "U", x) - p2 * x
    level = np.where(counted, surplus + floor, np.inf).min(axis=-1)
    quad = quadratic_parameters(player)
    if quad is not None:
        peaks = quadratic_level_interval(*quad, np.zeros_like(x), p2, xbar)[2]
    else:
        peak = surplus_peak(player, p2, xbar)
        peaks = evaluate(player, "U", peak) - p2 * peak
    top = np.where(counted, peaks + floor, np.inf).min(axis=-1)
    # The level is known to the rounding of the surpluses, U(x) - p x: a probe
    # within that of the level tests nothing (with top = 0 it would "find" a level
    # 1e-17 above an allocation whose level rounds to -1e-17).
    noise = 64 * np.finfo(float).eps * (np.abs(surplus) + p2 * x).max(axis=-1)
    # The level's scale is the members' surplus scale, not the top level itself,
    # which is 0 when a counted member is priced out (strict rule).
    scale = np.abs(peaks + floor).max(axis=-1)
    step = LEVEL_PROBE_RTOL * scale if level_step is None else level_step
    probe = level + np.maximum(step, noise)
    need = np.where(counted, probe[:, None] - floor, -np.inf)
    if quad is not None:
        lo, hi, _ = quadratic_level_interval(*quad, need, p2, xbar)
    else:
        lo, hi = level_interval(player, need, p2, xbar, peak)
    possible = ~np.isnan(lo).any(axis=-1) & (np.nansum(lo, axis=-1) <= y) & (
        y <= np.nansum(hi, axis=-1)) & np.isfinite(level) & (probe < top)
    return np.where(possible, np.maximum(out, 1.0), out)


@dataclass(frozen=True)
class InnerSetup:
    """Everything an inner solve of player j needs besides the solver, per purchase.

    Attributes
    ----------
    y, price, price_slope, cap : (G,) purchase, p(Y_-j + y) (or the fixed price),
        p'(Y) (0 at a fixed price) and the capacity sum_i xbar_i.
    xbar, weight, floor, priced_out : (G, N) zero-surplus consumption, the weight and
        floor of each member's term in Phi, and U_i'(0) <= p.
    """

    y: np.ndarray
    price: np.ndarray
    price_slope: np.ndarray
    xbar: np.ndarray
    weight: np.ndarray
    floor: np.ndarray
    priced_out: np.ndarray
    cap: np.ndarray

    @property
    def price_column(self) -> np.ndarray:
        """The price as a (G, 1) column, to broadcast against (G, N) arrays."""
        return self.price[:, None]

    def take(self, rows: np.ndarray) -> "InnerSetup":
        """The set-up of the selected rows only."""
        return InnerSetup(*(getattr(self, f.name)[rows] for f in fields(self)))


@dataclass(frozen=True)
class Evidence:
    """What the definition says of given allocations (``allocation_evidence``).

    welfare, tiebreak : (G,) J and the total surplus, recomputed from x.
    residual : (G,) the row's residual (``settled_residual``), or None if not asked.
    balance : (G,) |sum x - y|, in allocation units.
    bounds : (G,) the largest violation of 0 <= x_i <= xbar_i, over the capacity.
    forced, at_capacity : (G,) ``forced_rows``, and y within NEAR_CAPACITY_RTOL of
        the capacity or above it.
    """

    welfare: np.ndarray
    tiebreak: np.ndarray
    residual: np.ndarray | None
    balance: np.ndarray
    bounds: np.ndarray
    forced: np.ndarray
    at_capacity: np.ndarray


def allocation_evidence(game: Game, j: int, y: np.ndarray, others_total: float,
                        x: np.ndarray, multiplier: np.ndarray,
                        residual: bool = True,
                        level_step: float | None = None) -> Evidence:
    """The definition's verdict on allocations ``x`` (G, N) of player j at purchases
    ``y``, computed from them alone: what a backend's rows claim, recomputed.
    ``multiplier`` is each row's lambda (alpha < inf) or nu (max-min: the
    total-surplus stage's), which the residual checks the allocation against.

    Stricter than the solvers' own residual where the claim cannot be checked:
    a row between 0 and the capacity with a finite J but no finite multiplier
    (alpha < inf; the solvers accept it where lambda overflows) is not proved, nor
    a max-min row without nu. ``residual=False`` skips the residual (payoffs only);
    ``level_step``: see ``maxmin_residual``.
    """
    player = game.players[j]
    setup = inner_setup(game, j, y, others_total)
    surplus = evaluate(player, "U", x) - setup.price_column * x
    welfare = welfare_of(player, surplus, setup.weight, setup.floor, setup.priced_out)
    infeasible = setup.y > setup.cap * (1 + 1e-12) + 1e-300
    welfare = np.where(infeasible, -np.inf, welfare)
    forced = forced_rows(player, setup.y, setup.cap, setup.priced_out)
    res = None
    if residual:
        if player.fairness.is_maxmin:
            res = maxmin_residual(player, setup.y, setup.price, x, setup.xbar,
                                  setup.floor, setup.priced_out, multiplier,
                                  level_step)
        else:
            res = optimality_residual(player, setup.y, setup.price, x, multiplier,
                                      setup.xbar, setup.weight, setup.floor)
        unproved = ~forced & np.isfinite(welfare) & ~np.isfinite(multiplier)
        res = settled_residual(np.where(unproved, np.inf, res),
                               allocation_error(x, setup.y, setup.xbar), welfare,
                               setup.y, setup.cap, forced)
    bounds = bounds_violation(x, setup.xbar) / np.maximum(setup.cap, 1e-300)
    return Evidence(welfare, surplus.sum(axis=-1), res, np.abs(x.sum(axis=-1) - y),
                    bounds, forced, setup.y >= setup.cap * (1 - NEAR_CAPACITY_RTOL))


def purchase_prices(game: Game, y: np.ndarray, others_total: float,
                    fixed_price: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(p, p') at purchases ``y`` (shape (G,)): p(others_total + y) and its slope, or
    ``fixed_price`` with slope 0 (see ``inner_setup``)."""
    if fixed_price is None:
        total = others_total + y
        return _like(game.price.value(total), y), _like(game.price.derivative(total), y)
    return np.full(y.shape, float(fixed_price)), np.zeros(y.shape)


def _like(value, y: np.ndarray) -> np.ndarray:
    """``value`` as a float array of y's shape (a price may give a scalar)."""
    value = np.asarray(value, dtype=float)
    return value if value.shape == y.shape else value + 0 * y


def inner_setup(game: Game, j: int, y: np.ndarray, others_total: float,
                fixed_price: float | None = None) -> InnerSetup:
    """Price, priced-out set, bounds, weights and floors of player j at purchases y.

    The price is p(others_total + y) unless ``fixed_price`` is given; then it is held
    there (p' = 0): the price-taking view, in which lambda_j = dJ_j/dy_j.
    """
    player = game.players[j]
    y = np.atleast_1d(np.asarray(y, dtype=float))
    price, slope = purchase_prices(game, y, others_total, fixed_price)
    priced_out = player.marginal_at_zero[None, :] <= price[:, None]
    xbar = player.zero_surplus_consumption(price)
    weight, floor = member_terms(player, priced_out)
    return InnerSetup(y, price, slope, xbar, weight, floor, priced_out,
                      xbar.sum(axis=1))
