"""Member-level formulas of the inner problem, each written once, elementwise.

Member i of player j, at price p, with weight w and floor e under the priced-out
rule (docs/model.md, "Inner problem"), has the surplus s = U(x) - p x, its level
s + e, and the marginal welfare

    g_i(x) = w phi'(s + e) (U'(x) - p),

which decreases on [0, xbar_i] (docs/model.md, "Allocation for a given lambda").
Every backend reads the functions below: numpy broadcasts arrays of rows and
members through them, the compiled kernels (solvers/inner/compiled/) run the same
lines on scalars, and where Pyomo needs a member's term it comes from the same
formulas of aggregame.fairness. Only operations all of them understand are used:
arithmetic, np.maximum/np.minimum (not np.clip), np.sqrt, np.abs, np.isfinite, and
aggregame.elementwise's select, anything, power and Newton step.

Functions that search (a member's response to a multiplier, the surplus peak, the
level interval) take the utility as functions ``U(x, member)``, ``dU(x, member)``,
``d2U(x, member)``: numpy passes the player's families (``utility_of`` and its
siblings, with the player as ``member``), the kernels their compiled family
dispatch with (family code, parameters) as ``member``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from aggregame.elementwise import (
    anything,
    bracket_root,
    newton_or_bisect,
    power,
    select,
)
from aggregame.fairness import alpha_dphi, alpha_phi
from aggregame.utilities import QuadraticUtility

if TYPE_CHECKING:
    from aggregame.players import Player

#: Iterations of any safeguarded Newton or bisection loop of an inner solve.
MAX_ITERATIONS = 200
#: Halvings of a bisection of the solves (a surplus peak, a level's crossing): 2^-80
#: of the bracket is below the rounding of any root above 2^-27 of it.
HALVINGS = 80
#: Halvings of the residual's and the safe re-solve's own bisections: 20 more than
#: the solves', so a check is never coarser than the solve it checks.
CHECK_HALVINGS = 100
#: The alphas at which a quadratic member's x_i(lambda) has a closed form.
CLOSED_FORM_ALPHAS = (0.0, 0.5, 1.0)

#: Per player (weakly held): its one utility family when that family covers every
#: member in order, so formulas need no gather and scatter (None otherwise).
_SINGLE_FAMILY: weakref.WeakKeyDictionary[Player, object] = (
    weakref.WeakKeyDictionary())


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


def utility_of(x: np.ndarray, player: Player) -> np.ndarray:
    """U_i(x_i) of every member: the ``U`` the searches below take, for numpy."""
    return evaluate(player, "U", x)


def marginal_of(x: np.ndarray, player: Player) -> np.ndarray:
    """U_i'(x_i) of every member (``dU`` of the searches below)."""
    return evaluate(player, "dU", x)


def curvature_of(x: np.ndarray, player: Player) -> np.ndarray:
    """U_i''(x_i) of every member (``d2U`` of the searches below)."""
    return evaluate(player, "d2U", x)


def quadratic_parameters(player: Player) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, b) in member order when every member is quadratic, else None."""
    fam = _single_family(player)
    if fam is None or fam.family is not QuadraticUtility:
        return None
    return fam.params["a"], fam.params["b"]


# -- the priced-out rule, member by member ------------------------------------------
def member_terms(player: Player, priced_out: np.ndarray) -> tuple[np.ndarray,
                                                                    np.ndarray]:
    """Arrays (weight, floor) of each member's term in Phi (Fairness.member_terms)."""
    f = player.fairness
    w_in, e_in = f.member_terms(False)
    w_out, e_out = f.member_terms(True)
    if w_in == w_out and e_in == e_out:  # the status does not matter (floor rule)
        full = np.ones(priced_out.shape)
        return full * w_in, full * e_in
    return (np.where(priced_out, w_out, w_in), np.where(priced_out, e_out, e_in))


def counted_members(player: Player, priced_out: np.ndarray) -> np.ndarray:
    """Members whose surplus enters a max-min player's minimum (the rule's)."""
    return player.fairness.rule.counted(priced_out)


# -- welfare and its derivatives -----------------------------------------------------
def welfare_weight(level, weight, alpha):
    """w phi'(s + e): what one more unit of surplus is worth in J (``level`` = s + e,
    read as 0 where rounding put it below)."""
    return weight * alpha_dphi(np.maximum(level, 0.0), alpha)


def marginal_welfare(level, slope, weight, alpha):
    """g_i = w phi'(s + e) (U' - p), member i's marginal welfare; ``slope`` is
    U' - p."""
    return welfare_weight(level, weight, alpha) * slope


def marginal_welfare_and_slope(level, slope, curvature, weight, alpha):
    """g_i and its slope g_i' = w phi'(s + e) (U'' - alpha (U' - p)^2 / (s + e)),
    with one power of the level (phi'' = -alpha phi' / (s + e) for every alpha);
    ``curvature`` is U''."""
    level = np.maximum(level, 0.0)
    dphi = welfare_weight(level, weight, alpha)
    return dphi * slope, dphi * (curvature - alpha * slope**2 / level)


def member_welfare(level, weight, alpha):
    """Member i's term w phi(s + e) of J (0 for weight 0: no phi(0) = -inf)."""
    return select(weight > 0, weight * alpha_phi(np.maximum(level, 0.0), alpha), 0.0)


def price_coefficient(x, xbar, multiplier, slope, inside):
    """Member i's c_i in dPhi/dp = -sum_i c_i x_i (envelope theorem: p enters s_i with
    slope -x_i): ``inside`` (w phi'(s + e); 1 for the max-min tie-break) below xbar_i,
    multiplier / (U' - p) at xbar_i, where the bound's multiplier sigma_i adds to it,
    and 0 at x_i = 0."""
    at_bound = x >= xbar * (1 - 1e-12)
    return select(x > 0, select(at_bound, multiplier / slope, inside), 0.0)


def stationarity_step(lam, x, xbar, weight, level, slope, curvature, alpha):
    """Member i's Newton step toward g_i(x_i) = lambda, projected onto [0, xbar_i],
    and 0 for members of weight 0 (see ``optimality_residual``).

    ``level`` is s_i + e_i (kept >= 1e-300), ``slope`` U_i' - p, ``curvature`` U_i''.
    Written as (lambda / (w phi') - (U' - p)) / (U'' - alpha (U' - p)^2 / (s + e)),
    which never forms phi' alone, so it stays finite for any alpha.
    """
    lam_over_dphi = lam * power(level, alpha) / weight
    step = (lam_over_dphi - slope) / (curvature - alpha * slope**2 / level)
    # Projected onto the box [0, xbar]: at a bound only a step into the interval
    # counts (x_i = 0 with g_i < lambda is optimal, not a violation). NaN stays NaN.
    step = np.minimum(np.maximum(step, -x), xbar - x)
    return select(weight > 0, step, 0.0)


# -- a member's response to a multiplier --------------------------------------------
def member_response(U, dU, d2U, member, lam, price, lo, hi, weight, floor, alpha,  # noqa: N803
                    start):
    """x_i(lambda): the maximizer over [lo, hi] = [0, xbar_i] of w phi(s + e) -
    lambda x, i.e. g_i(x) = lambda (g_i decreases there), clipped to the ends.

    Safeguarded Newton from ``start`` where it lies strictly inside (0 for none),
    else from the middle; a step leaving the bracket bisects it. Newton converges
    quadratically, so once a step is below 1e-13 of the bracket the error after it
    is far below rounding: the member stops there, its step clipped into the
    bracket (at the root rounding may put it a hair past an end).
    """
    def g(x):
        return marginal_welfare(U(x, member) - price * x + floor, dU(x, member) - price,
                                weight, alpha)

    g_lo, g_hi = g(lo) - lam, g(hi) - lam
    x = select(g_lo <= 0, 0.0, select(g_hi >= 0, hi, 0.5 * (lo + hi)))
    active = (g_lo > 0) & (g_hi < 0)
    x = select(active & (start > 0) & (start < hi), start, x)
    scale = np.maximum(hi, 1e-300)
    for _ in range(MAX_ITERATIONS):
        if not anything(active):
            break
        val, dval = marginal_welfare_and_slope(
            U(x, member) - price * x + floor, dU(x, member) - price, d2U(x, member),
            weight, alpha)
        val = val - lam
        lo = select(active & (val > 0), x, lo)
        hi = select(active & (val <= 0), x, hi)
        step = x - val / dval
        small = np.abs(step - x) <= 1e-13 * scale
        good = np.isfinite(step) & (step > lo) & (step < hi)
        new = select(small, np.minimum(np.maximum(step, lo), hi),
                     select(good, step, 0.5 * (lo + hi)))
        x = select(active, new, x)
        active = active & ~(small | (hi - lo <= 1e-15 * scale))
    return x


def quadratic_response(lam, q, a, two_a, floor, xbar, alpha):
    """x_i(lambda) of a quadratic member (q = b - p) at alpha 0, 1/2 or 1, in closed
    form: the maximizer over [0, xbar] of w phi(s + e) - lambda x (w = 1).

    alpha = 0: (q - lambda) / 2a clipped. alpha = 1: (q - 2 a x) = lambda (q x - a x^2
    + e), i.e. A x^2 - B x + C = 0, with the root 2C / (B + sqrt(B^2 - 4AC)), the one
    inside [0, xbar] for either sign of lambda. Where B < 0 (lambda < -2a / q: a
    member near its zero-surplus point, where the aggregator buys near capacity)
    B + sqrt(D) cancels, so the same root is taken as (B - sqrt(D)) / 2A (A < 0
    there), which keeps x_i(lambda) monotone out to lambda ~ -1e10.

    alpha = 1/2 (phi' = D^-1/2, D = s + e): with t = q - 2 a x = U' - p the surplus
    is s = (q^2 - t^2) / 4a, and the stationarity t = lambda sqrt(D) squared gives
    D = K / (4a + lambda^2), K = q^2 + 4 a e, so t = lambda sqrt(K / (4a +
    lambda^2)), of lambda's sign (sqrt(D) > 0) and the unique root (g_i decreases
    wherever D > 0). Without overflow: lambda / sqrt(4a + lambda^2) as sign / sqrt(1
    + 4a / lambda^2) once |lambda| >= 1 (+-1 at +-inf, where x is 0 or xbar). Then
    x = (q - t) / 2a, to rounding of xbar, which cancels near x = 0; there, for
    t >= 0, x = 2 (D - e) / (q + t) (q - t = 4a (D - e) / (q + t)), exact where
    e = 0 or D >= 2e, but not where e >> s, which keeps (q - t) / 2a.
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
    A = lam * a  # noqa: N806 (the quadratic's A x^2 - B x + C)
    B = two_a + lam * q  # noqa: N806
    C = q - lam * floor  # noqa: N806
    disc = np.maximum(B * B - 4 * A * C, 0.0)
    root = select(B >= 0, 2 * C / (B + np.sqrt(disc)), (B - np.sqrt(disc)) / (2 * A))
    # Not finite only where |lambda| is huge or infinite (B^2 overflows): x is then 0
    # for lambda > 0 and xbar for lambda < 0, whatever C's sign.
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


def marginal_response(dU, d2U, member, marginal, lo, hi):  # noqa: N803
    """x in [lo, hi] with U'(x) = marginal, clipped to the ends: safeguarded Newton
    (U' decreases, U'' is its slope). The max-min tie-break's member response to
    its multiplier nu, with marginal = p + nu."""
    top, bottom = dU(lo, member) - marginal, dU(hi, member) - marginal
    active = (top > 0) & (bottom < 0)
    z = select(top <= 0, lo, select(bottom >= 0, hi, 0.5 * (lo + hi)))
    atol = 1e-15 * np.maximum(np.abs(marginal), 1e-300)
    for _ in range(MAX_ITERATIONS):
        r = dU(z, member) - marginal
        slope = d2U(z, member)
        lo, hi, active = bracket_root(z, r, lo, hi, atol, active)
        if not anything(active):
            break
        z = newton_or_bisect(z, r, slope, lo, hi, active)
    return z


def quadratic_marginal_response(q, nu, two_a, lo, hi):
    """``marginal_response`` of a quadratic member (q = b - p): (q - nu) / 2a,
    clipped."""
    return np.minimum(np.maximum((q - nu) / two_a, lo), hi)


# -- the surplus's peak and level sets -----------------------------------------------
def surplus_peak(dU, member, price, lo, hi, halvings):  # noqa: N803
    """Consumption in [lo, hi] at which the surplus peaks (U' = p), by ``halvings``
    halvings of the bracket: at the peak the surplus is flattest, and a Newton
    step there (~1e-10 off, measured on log members) moves allocations that sit
    at their peak."""
    for _ in range(halvings):
        mid = 0.5 * (lo + hi)
        up = dU(mid, member) - price > 0
        lo, hi = select(up, mid, lo), select(up, hi, mid)
    return 0.5 * (lo + hi)


def quadratic_peak(q, two_a, xbar):
    """``surplus_peak`` of a quadratic member (q = b - p): q / 2a within [0, xbar]."""
    return np.minimum(np.maximum(q / two_a, 0.0), xbar)


def quadratic_peak_surplus(q, a):
    """The largest surplus of a quadratic member, q^2 / 4a (0 once priced out)."""
    return select(q > 0, q * q / (4 * a), 0.0)


def level_interval(U, member, need, price, xbar, peak, halvings):  # noqa: N803
    """[lo, hi]: the x in [0, xbar] with s(x) = U(x) - p x >= need, by ``halvings``
    halvings on each side of the (concave) surplus's ``peak``: Newton crawls there,
    since the two roots near a peak are nearly double. [0, xbar] where need <= 0;
    NaN where the peak is below need."""
    empty = U(peak, member) - price * peak < need
    lo_a, lo_b = 0.0 * peak, peak
    hi_a, hi_b = peak, xbar + 0.0 * peak
    for _ in range(halvings):
        m1, m2 = 0.5 * (lo_a + lo_b), 0.5 * (hi_a + hi_b)
        up1 = U(m1, member) - price * m1 >= need
        up2 = U(m2, member) - price * m2 >= need
        lo_a, lo_b = select(up1, lo_a, m1), select(up1, m1, lo_b)
        hi_a, hi_b = select(up2, m2, hi_a), select(up2, hi_b, m2)
    lo = select(need <= 0, 0.0, lo_b)
    hi = select(need <= 0, xbar, hi_a)
    return select(empty, np.nan, lo), select(empty, np.nan, hi)


def quadratic_level_interval(a, b, need, price, xbar):
    """Closed form of ``level_interval`` and the peak surplus for quadratic members.

    s(x) = q x - a x^2 with q = b - p peaks at q^2 / (4a); s(x) >= L > 0 on the roots
    of a x^2 - q x + L, the lower one written 2L / (q + sqrt(q^2 - 4aL)) (no
    cancellation). Returns (lo, hi, peak surplus); NaN where the peak is below need.
    2L / (q + root) is 0/0 or inf/inf where need = -inf or q = 0, which the need <= 0
    branch replaces (numpy callers silence the warnings).
    """
    q = b - price
    top = quadratic_peak_surplus(q, a)
    root = np.sqrt(np.maximum(q * q - 4 * a * need, 0.0))
    lo = np.minimum(2 * need / (q + root), xbar)
    hi = np.minimum((q + root) / (2 * a), xbar)
    lo = select(need <= 0, 0.0, lo)
    hi = select(need <= 0, xbar, hi)
    empty = top < need
    return select(empty, np.nan, lo), select(empty, np.nan, hi), top
