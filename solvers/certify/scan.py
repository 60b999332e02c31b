"""The scan certificate: every player's regret, searched and then bounded.

For each player, apart from the code that produced the profile (docs/model.md,
section "Certificate"):

1. the payoff at the profile and at the certificate's own sample points
   (solvers/certify/samples.py: an even grid, points evenly spread in log y from the
   smallest member's scale, both sides of every price-out point and price kink),
   each a row of the certificate's own inner solver checked by its residual
   (solvers/certify/payoffs.py);
2. where a row beats the profile's, a refinement around the best one (grid and
   shrink), which finds the regret: the gain of the best deviation, relative to the
   payoff's scale;
3. a branch and bound over the intervals between the rows (solvers/certify/
   branch.py), which proves that nothing between them gains more than the
   tolerance, or bounds the regret, or says that it cannot;
4. the rows the compiled kernels gave re-proved by numpy (solvers/certify/proof.py);
   a player whose rows it does not prove is certified again on numpy alone.

``method="global"`` asks SCIP for proven bounds instead (solvers/certify/
global_bound.py).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.optimize import brentq

from aggregame.errors import SettingsError
from aggregame.players import Game
from aggregame.solvers.certify import samples
from aggregame.solvers.certify.branch import bound_regret
from aggregame.solvers.certify.certificate import (
    CERTIFICATE_RTOL,
    Certificate,
    CertificateMethod,
    PlayerRegret,
    Verdict,
    check_rtol,
)
from aggregame.solvers.certify.one_member import certify_one_members, eligible
from aggregame.solvers.certify.payoffs import (
    PayoffKind,
    Payoffs,
    first_difference,
    levels_tie,
)
from aggregame.solvers.certify.proof import RowProof, rows_proved
from aggregame.solvers.market.jumps import jump_reason

LOG = logging.getLogger(__name__)

#: Width (relative to the feasible interval) at which a refinement stops.
REFINE_RTOL = 1e-10
#: Points per step of the grid-and-shrink refinement.
REFINE_POINTS = 17
#: A refuted player's deviation is searched until no interval could gain more
#: than this times the best gain found (``_search_deviation``), in at most this
#: many branch and bounds.
DEVIATION_SLACK = 1.01
DEVIATION_SEARCHES = 4
#: Members from which players are certified in threads (``threads``).
THREADED_MEMBERS = 20_000

__all__ = ["CERTIFICATE_RTOL", "Certificate", "CertificateMethod", "check_rtol",
           "certify", "threads", "player_regret"]


def certify(game: Game, profile: np.ndarray, rtol: float = CERTIFICATE_RTOL, *,
            method: CertificateMethod | str = CertificateMethod.SCAN,
            **global_options) -> Certificate:
    """Regret of every player at ``profile``, and how each is known.

    Parameters
    ----------
    game : Game
    profile : (players,) purchases.
    rtol : tolerance on each relative regret, in (0, 1e-2].
    method : 'scan' (samples, then bounds between them: the module docstring) or
        'global' (SCIP's proven bounds; ``global_options``, e.g. ``time_limit``, go
        to :func:`aggregame.solvers.certify.global_bound.certify_global`; SCIP's
        feasibility tolerance limits what it proves: at least GLOBAL_RTOL).

    A profile whose total sits at a jump of the price (solvers/market/jumps.py)
    gets the verdict ``failed`` for every player, with that reason.
    """
    rtol = check_rtol(rtol)
    method = CertificateMethod(method)
    profile = np.asarray(profile, dtype=float)
    at_jump = jump_reason(game, profile)
    if at_jump is not None:  # no single price clears the market: no payoff to bound
        return Certificate.failed(profile, len(game.players), rtol, method, at_jump)
    if method is CertificateMethod.GLOBAL:
        from aggregame.solvers.certify.global_bound import as_certificate

        return as_certificate(game, profile, rtol, **global_options)
    together = certify_one_members(game, profile, rtol, eligible(game))
    players = _each_player(game, lambda j: together[j] if j in together
                           else player_regret(game, j, profile, rtol))
    return Certificate(profile, tuple(players), rtol, method)


def player_regret(game: Game, j: int, profile: np.ndarray, rtol: float
                  ) -> PlayerRegret:
    """Player j's regret at ``profile`` (module docstring). Rows of the compiled
    kernels that numpy does not prove send the player through numpy alone."""
    out, pay = _player_regret(game, j, profile, rtol, compiled=True)
    if not rows_proved(pay):
        LOG.warning("certificate of player %r: the fast inner solves were not proved "
                    "by the definition; certifying again with numpy",
                    game.players[j].name)
        out, _ = _player_regret(game, j, profile, rtol, compiled=False)
    return out


def _player_regret(game: Game, j: int, profile: np.ndarray, rtol: float,
                   compiled: bool) -> tuple[PlayerRegret, Payoffs]:
    others = float(profile.sum() - profile[j])
    pay = Payoffs(game, j, others, compiled, ledger=RowProof(),
                  workers=row_workers(game))
    y = float(profile[j])
    pay.evaluate([y])
    y_max = game.feasible_max(j, others)
    if y_max <= 0:
        return _only_zero(pay, rtol), pay
    if _void_everywhere(game, j, others):
        return _only_zero(pay, rtol), pay
    if pay.one_member is not None and game.price.convex:
        return _concave_one_member(pay, y_max, rtol), pay
    plan = samples.plan(game, j, others, y_max, y)
    pay.evaluate(plan.spread, spread=True)
    rest = np.setdiff1d(plan.points, np.append(plan.spread, y))
    if rest.size:
        pay.evaluate(rest)
    if y_max > 0:
        _refine(pay, y_max)
    raw, rel, best = found_gain(pay)
    deviation, welfare = pay.rows.y[best], pay.rows.welfare[0]
    if rel > rtol:
        result = PlayerRegret(raw, rel, deviation, welfare, math.inf, Verdict.REFUTED,
                              len(pay.rows), "a deviation gains more than the "
                              "tolerance")
        return result, pay
    target = rel + 0.5 * (rtol - rel)
    # A row of the bound that gains more than the tolerance refutes the profile:
    # the intervals around it cannot close, and splitting them is wasted.
    outcome = bound_regret(pay, target,
                           stop=lambda new: _largest_gain(pay, new)[1] > rtol)
    if not (outcome.closed or math.isfinite(outcome.relative_bound)):
        _search_deviation(pay)
    raw, rel, best = found_gain(pay)  # the bound's rows may have found more
    deviation = pay.rows.y[best]
    if rel > rtol:
        verdict, reason = Verdict.REFUTED, "a deviation gains more than the tolerance"
    elif outcome.closed or max(rel, outcome.relative_bound) <= rtol:
        # Closing every interval to the target is the aim; a bound within the
        # tolerance proves the verdict all the same.
        verdict, reason = Verdict.PROVED, ""
    elif math.isfinite(outcome.relative_bound):
        verdict, reason = Verdict.BOUNDED, ("the bounds between samples did not "
                                            "close within their budget")
    else:
        verdict, reason = Verdict.SEARCHED, ("no bound holds between some samples; "
                                             "the regret was only searched")
    bound = max(rel, outcome.relative_bound) if verdict is not Verdict.REFUTED \
        else math.inf
    result = PlayerRegret(raw, rel, deviation, welfare, bound, verdict,
                          len(pay.rows), reason)
    return result, pay


def _search_deviation(pay: Payoffs) -> None:
    """Branch and bound for the best deviation of a refuted player: every interval
    that could gain more than DEVIATION_SLACK times the best gain found is split,
    and the search starts again from each better gain (at most DEVIATION_SEARCHES
    times). The verdict is already known; the deviation is where the dynamics move
    the player, and one short of the best leaves a regret for the next round."""
    for _ in range(DEVIATION_SEARCHES):
        goal = DEVIATION_SLACK * found_gain(pay)[1]
        if not math.isfinite(goal):
            return
        outcome = bound_regret(pay, goal,
                               stop=lambda new, goal=goal: _largest_gain(pay, new)[1] > goal)
        if outcome.closed or math.isfinite(outcome.relative_bound):
            return


def _void_everywhere(game: Game, j: int, others: float) -> bool:
    """J_j = -inf at every purchase: the rule voids the payoff of a player with a
    priced-out member (strict, alpha >= 1), and a member is priced out already at
    y_j = 0, so at every purchase (the price only rises with it)."""
    player = game.players[j]
    if not player.fairness.rule.void_when_priced_out(player.fairness):
        return False
    return bool(np.any(player.marginal_at_zero <= game.price.value(others)))


def _only_zero(pay: Payoffs, rtol: float) -> PlayerRegret:
    """No purchase but 0 is feasible, or every purchase gives the same payoff as 0
    (``_void_everywhere``): the regret is J(0) - J(y), exactly."""
    pay.evaluate([0.0], spread=True)
    raw, rel, best = found_gain(pay)
    proved = rel <= rtol
    return PlayerRegret(raw, rel, pay.rows.y[best], pay.rows.welfare[0],
                        rel if proved else math.inf,
                        Verdict.PROVED if proved else Verdict.REFUTED, len(pay.rows),
                        "" if proved else "buying nothing beats the profile")


def _concave_one_member(pay: Payoffs, y_max: float, rtol: float) -> PlayerRegret:
    """A one-member player under a convex price has a concave payoff (x = y: its
    surplus s(y) = U(y) - p(Y_-j + y) y is concave, and J = w phi(s + e) rises with
    s), so the tangent of s at any purchase bounds s everywhere: at the root of s'
    (found from the utility's and the price's own derivatives) the bound is the
    maximum itself, up to the root's accuracy. The even grid sets the scale."""
    util = pay.player.members[0].utility
    params, price, others = util.params(), pay.game.price, pay.others

    def slope(y: float) -> float:
        total = others + y
        return float(util.dU(y, params) - price.value(total)
                     - price.derivative(total) * y)

    pay.evaluate(np.linspace(0.0, y_max, samples.GRID_POINTS) if y_max > 0
                 else np.zeros(1), spread=True)
    top = 0.0
    if y_max > 0 and slope(0.0) > 0:
        top = y_max if slope(y_max) >= 0 else float(
            brentq(slope, 0.0, y_max, xtol=REFINE_RTOL * y_max, maxiter=200))
    row = pay.evaluate([top])[0]
    # The tangent at ``top`` over [0, y_max], in surplus units, then as a payoff.
    d = slope(top)
    surplus = pay.rows.tiebreak[row] + max(d * (y_max - top), -d * top, 0.0)
    upper = pay.one_member.welfare(surplus, False) if surplus > 0 else \
        pay.rows.welfare[row]
    raw, rel, best = found_gain(pay)
    span = pay.span("welfare")
    gain = upper - pay.rows.welfare[0]
    bound = max(rel, 0.0 if gain <= 0 else (gain / span if span > 0 else math.inf))
    if not math.isfinite(pay.rows.welfare[0]) and y_max > 0:
        bound = math.inf
    if rel > rtol:
        verdict, reason = Verdict.REFUTED, "a deviation gains more than the tolerance"
    elif bound <= rtol:
        verdict, reason = Verdict.PROVED, ""
    else:
        verdict, reason = Verdict.BOUNDED, "the concave payoff's tangent bound is loose"
    return PlayerRegret(raw, rel, pay.rows.y[best], pay.rows.welfare[0], bound,
                        verdict, len(pay.rows), reason)


def found_gain(pay: Payoffs) -> tuple[float, float, int]:
    """(raw gain, relative gain, row): the largest gain of any row over the
    profile's (row 0), each in the component of the payoff where it first differs
    from the profile's, and the best row. Max-min and leximin rank with ties,
    which are not transitive: the best row by the player's order need not gain
    the most over the profile (a row tied with it in the first level, lower by
    less than the tie, wins on the second), and the regret is the largest gain of
    any deviation."""
    best = pay.best()
    rows = pay.rows
    here_j, best_j = rows.welfare[0], rows.welfare[best]
    if not math.isfinite(here_j):
        return (math.inf, math.inf, best) if math.isfinite(best_j) else (0.0, 0.0, 0)
    if pay.kind is PayoffKind.SCALAR:
        return _largest_gain(pay, [best])
    raw, rel, row = _largest_gain(pay, range(1, len(rows)))
    # The deviation reported is the best purchase found (it gains at least as
    # much in the first level, and is where the player would move).
    return raw, rel, (best if rel > 0 and pay.compare(best, 0) > 0 else row)


def _largest_gain(pay: Payoffs, candidates) -> tuple[float, float, int]:
    """``found_gain`` over the rows ``candidates``."""
    out = (0.0, 0.0, 0)
    scales: dict = {}  # component -> (its column, its span), each read once
    for i in candidates:
        name = _component(pay, i)
        if name is None:
            continue
        if name not in scales:
            scales[name] = (pay.column(name), pay.span(name))
        column, span = scales[name]
        raw = column[i] - column[0]
        if raw <= 0:
            continue
        rel = raw / span if span > 0 else math.inf
        if rel > out[1] or (rel == out[1] and raw > out[0]):
            out = (raw, rel, i)
    return out


def _component(pay: Payoffs, i: int) -> str | int | None:
    """The component in which row i first differs from the profile's (None where
    it does not beat it)."""
    rows = pay.rows
    if pay.compare(i, 0) <= 0:
        return None
    if pay.kind is PayoffKind.SCALAR:
        return "welfare"
    if pay.kind is PayoffKind.MAXMIN:
        return "tiebreak" if levels_tie(rows.welfare[i], rows.welfare[0]) \
            else "welfare"
    return first_difference(rows.vectors[i], rows.vectors[0])


def _refine(pay: Payoffs, y_max: float) -> None:
    """Where a row beats the profile's, grid-and-shrink around the best one (each
    step REFINE_POINTS purchases in one batch, keeping the two cells around the
    best, down to REFINE_RTOL of y_max): the deviation and the gain it reports are
    then the best response's, not a sample's. Rows that do not beat the profile
    need no refinement: the bounds between rows decide there."""
    best = pay.best()
    if pay.compare(best, 0) <= 0:
        return
    ys = np.array(pay.rows.y)
    below, above = ys[ys < ys[best]], ys[ys > ys[best]]
    lo = float(below.max()) if below.size else ys[best]
    hi = float(above.min()) if above.size else ys[best]
    xtol = max(REFINE_RTOL * y_max, 1e-300)
    while hi - lo > xtol:
        rows = pay.evaluate(np.linspace(lo, hi, REFINE_POINTS))
        top = rows.index(pay.best(rows))
        new_lo = pay.rows.y[rows[max(top - 1, 0)]]
        new_hi = pay.rows.y[rows[min(top + 1, len(rows) - 1)]]
        if new_hi - new_lo >= hi - lo:
            break
        lo, hi = new_lo, new_hi


def _each_player(game: Game, regret):
    """``regret(j)`` of every player, in order: in threads (``threads``) where the
    game is large enough to gain from them. Players' certificates share nothing
    (each builds its own inner solvers), and the compiled kernels and numpy's large
    array operations release the GIL."""
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
    setting = _threads_setting()
    if setting is not None:
        count = setting
    elif sum(p.size for p in game.players) >= THREADED_MEMBERS:
        count = _cores()
    else:
        count = 1
    return max(1, min(count, len(game.players)))


def row_workers(game: Game) -> int:
    """Threads each player's rows may run in (a large player's two halves,
    solvers/certify/payoffs.py): the cores, or AGGREGAME_THREADS, that the players
    run at once (``threads``) leave."""
    setting = _threads_setting()
    return max(1, (_cores() if setting is None else setting) // threads(game))


def _threads_setting() -> int | None:
    """AGGREGAME_THREADS as a number of threads (None: not set)."""
    setting = os.environ.get("AGGREGAME_THREADS", "").strip()
    if not setting:
        return None
    try:
        count = int(setting)
    except ValueError:
        count = 0
    if count < 1:
        raise SettingsError(f"AGGREGAME_THREADS={setting!r}: expected a whole "
                            "number of threads, at least 1")
    return count


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
