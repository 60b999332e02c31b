"""Best-response dynamics (paper Algorithm 1): Gauss-Seidel and Jacobi.

Each round every player best-responds to the others' current purchases (Gauss-Seidel:
the ones already updated this round; Jacobi: those at the start of the round), and
moves unless staying is strictly better for it (Algorithm 1, line 5). The whole
path is kept. The run stops when no purchase moves by more than ``tol`` (relative),
when a profile repeats (cycling), or at ``max_rounds``; only the first is called
converged, and every end point carries a certificate of its regret.

With ``best_response='auto'`` the fast bisection drives the rounds; if the converged
profile fails its certificate (J_j not quasiconcave,
docs/model.md, section "Quasiconcavity and the best response"), the dynamics go on
from there with the scan best response.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from aggregame.errors import GameDefinitionError
from aggregame.leximin import compare
from aggregame.players import Game
from aggregame.settings import BACKENDS, METHODS, MIN_TOL, STRATEGIES, RoundSettings
from aggregame.solvers.certify.certificate import Verdict
from aggregame.solvers.certify.scan import CERTIFICATE_RTOL, certify, check_rtol
from aggregame.solvers.equilibrium.best_response import best_response
from aggregame.solvers.equilibrium.closed_forms import single_quadratic_users
from aggregame.solvers.equilibrium.results import Equilibrium
from aggregame.solvers.equilibrium.search import INEXACT_RTOL, Candidate
from aggregame.solvers.inner.batch import InnerSolver
from aggregame.solvers.inner.leximin import payoffs, tie_tolerance

LOG = logging.getLogger(__name__)

#: Stopping tolerance floor for max-min players. Their best response is a golden
#: section on a payoff that is smooth at its maximum (the total-surplus tie-break), so
#: it resolves y only to ~sqrt(rounding of J) ~ 1e-8 relative; asking for less makes
#: the dynamics chase rounding noise (measured: a 3-player max-min game then "cycled"
#: at 1e-10 with profiles equal to 4e-8).
DERIVATIVE_FREE_RTOL = 1e-7



@dataclass(frozen=True)
class DynamicsSettings(RoundSettings):
    """Settings of a best-response run; checked at construction.

    Attributes
    ----------
    method : 'gauss-seidel' or 'jacobi'.
    best_response : 'auto' (bisection, then scan if the certificate fails),
        'bisection' or 'scan'.
    tol : stop when |y_j - y_j'| <= tol * max(1, max_j y_j) for every j over a round,
        in [MIN_TOL, 1) (at least DERIVATIVE_FREE_RTOL when a max-min player takes
        part).
    max_rounds : round limit; reaching it is reported as not converged.
    start : 'zero', 'random' or a list of purchases, one per player.
    seed : seed of the random start.
    certificate_rtol : tolerance of the certificate on each player's regret relative
        to the range of its payoff over its feasible interval, in (0, 1e-2].
    """

    # The other fields and their defaults: RoundSettings (shared with scenario files).
    certificate_rtol: float = CERTIFICATE_RTOL

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise GameDefinitionError(
                f"settings: field 'method' must be one of {list(METHODS)}, got "
                f"{self.method!r}")
        if self.best_response not in STRATEGIES:
            raise GameDefinitionError(
                f"settings: field 'best_response' must be one of {list(STRATEGIES)}, "
                f"got {self.best_response!r}")
        object.__setattr__(self, "certificate_rtol", check_rtol(self.certificate_rtol))
        if isinstance(self.tol, bool) or not (isinstance(self.tol, (int, float))
                                              and MIN_TOL <= self.tol < 1):
            raise GameDefinitionError(
                f"settings: field 'tol' must be in [{MIN_TOL:g}, 1) (below it the "
                f"rounds see the best response's rounding), got {self.tol!r}")
        if isinstance(self.max_rounds, bool) or not (isinstance(self.max_rounds, int)
                                                     and self.max_rounds >= 1):
            raise GameDefinitionError(
                f"settings: field 'max_rounds' must be an integer >= 1, got "
                f"{self.max_rounds!r}")
        if isinstance(self.start, str):
            if self.start not in ("zero", "random"):
                raise GameDefinitionError(
                    f"settings: field 'start' must be 'zero', 'random' or a list of "
                    f"purchases, got {self.start!r}")
        else:
            start = tuple(float(v) for v in self.start)
            if any(not math.isfinite(v) or v < 0 for v in start):
                raise GameDefinitionError(
                    f"settings: field 'start' must hold finite purchases >= 0, got "
                    f"{list(self.start)!r}")
            object.__setattr__(self, "start", start)

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"] = list(self.start) if not isinstance(self.start, str) else self.start
        return out


def make_inners(game: Game, backend: str = "native",
                ipopt_options: dict[str, Any] | None = None, solver: Any = None
                ) -> list[InnerSolver]:
    """One inner solver per player, built once and reused by every round.
    ``solver`` (a solver_choice.SolverSpec) picks the pyomo backend's solver."""
    if backend == "native":
        from aggregame.solvers.inner.native import NativeInner

        return [NativeInner(game, j) for j in range(len(game.players))]
    if backend == "pyomo":
        from aggregame.solvers.inner.pyomo_backend import PyomoInner

        return [PyomoInner(game, j, ipopt_options, solver=solver)
                for j in range(len(game.players))]
    raise GameDefinitionError(
        f"settings: field 'backend' must be one of {list(BACKENDS)}, got {backend!r}")


def _start_profile(game: Game, settings: DynamicsSettings) -> np.ndarray:
    m = len(game.players)
    if settings.start == "zero":
        return np.zeros(m)
    if settings.start == "random":
        rng = np.random.default_rng(settings.seed)
        # Uniform on each player's feasible interval when the others buy nothing.
        return np.array([rng.uniform(0, game.feasible_max(j, 0.0)) for j in range(m)])
    problem = game.start_problem(settings.start)
    if problem:
        raise GameDefinitionError(f"settings: field 'start' {problem}")
    return np.asarray(settings.start, dtype=float)


@dataclass
class _Run:
    path: list[np.ndarray] = field(default_factory=list)
    evaluations: int = 0
    strategies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Users:
    """Every player one quadratic member under p = p0 + c Y: each best response is
    y_j = clip((b_j - p0 - c Y_-j) / (2(a_j + c)), 0, y_max) (the exact maximizer of a
    concave payoff, single_member_closed_form), so a round needs no inner solve."""

    a: np.ndarray
    b: np.ndarray
    p0: float
    c: float

    @classmethod
    def of(cls, game: Game) -> "_Users | None":
        users = single_quadratic_users(game)
        return None if users is None else cls(*users)

    def round(self, y: np.ndarray, method: str) -> np.ndarray:
        """One Gauss-Seidel or Jacobi round. Algorithm 1's "stay if strictly
        better" never holds against the exact maximizer, so every player moves."""
        gain = 1.0 / (2 * (self.a + self.c))
        if method == "jacobi":
            others = y.sum() - y
            return np.maximum(self.b - self.p0 - self.c * others, 0.0) * gain
        new = y.copy()
        total = float(new.sum())
        for j, (b, g) in enumerate(zip(self.b.tolist(), gain.tolist())):
            others = total - new[j]
            new[j] = max(b - self.p0 - self.c * others, 0.0) * g
            total = others + new[j]
        return new


def _round(inners: Sequence[InnerSolver], y: np.ndarray, method: str, strategy: str,
           run: _Run) -> np.ndarray:
    new = y.copy()
    base = y.copy()
    last_move = np.abs(run.path[-1] - run.path[-2]) if len(run.path) > 1 else None
    for j, inner in enumerate(inners):
        ref = new if method == "gauss-seidel" else base
        others = float(ref.sum() - ref[j])
        hint = None if last_move is None else float(last_move[j])
        br = best_response(inner, others, strategy=strategy, current=float(ref[j]),
                           step_hint=hint,
                           accuracy=None if hint is None else INEXACT_RTOL * hint)
        run.evaluations += br.evaluations
        stay = br.current
        if stay is None or stay.y != ref[j]:  # y_j above the new y_max: evaluate it
            here = inner.solve(np.array([ref[j]]), others)
            stay = Candidate(float(ref[j]), float(here.welfare[0]),
                             float(here.tiebreak[0]))
        move = Candidate(br.y, br.welfare, br.tiebreak)
        maxmin = math.isinf(inner.game.players[j].alpha)
        # Algorithm 1 moves only to a better outcome; near an optimum J is flat to
        # second order, so "better" is read as "not worse": otherwise a tie tolerance
        # on J would freeze y at ~sqrt(tolerance) from the best response.
        if br.decided:
            if _strictly_better(inner, others, br.y, float(ref[j])):
                new[j] = br.y
        elif not stay.beats(move, maxmin):
            new[j] = br.y
    return new


def _strictly_better(inner: InnerSolver, others: float, move: float,
                     stay: float) -> bool:
    """True when purchase ``move`` beats ``stay`` in a leximin player's own order.

    Sorted vectors tie within LEX_TIE_RTOL, and such ties are not transitive: past
    a satiated member's peak the first level falls by less than the tie per step
    while the second rises, so a search that lets ties go to the refined maximum
    creeps along the flat first level round after round and never settles
    (measured on 100 aggregators of 100 small users: 128 rounds, then "cycling").
    Algorithm 1 moves only to a strictly better purchase; a tie stays."""
    if move == stay:
        return False
    player = inner.game.players[inner.index]
    rows = payoffs(player, inner.solve(np.array([move, stay]), others))
    return compare(rows[0].levels, rows[1].levels, tie_tolerance(rows)) > 0


@dataclass(frozen=True)
class _Outcome:
    """Where the rounds stopped: profile, status, rounds and its certificate (None
    unless it was certified on the way)."""

    y: np.ndarray
    status: str
    rounds: int
    certificate: Any = None


def _tolerance(game: Game, settings: DynamicsSettings) -> float:
    # Everyone's best response moves with a max-min player's jitter, so its floor
    # applies to the whole profile.
    if any(math.isinf(p.alpha) for p in game.players):
        return max(settings.tol, DERIVATIVE_FREE_RTOL)
    return settings.tol


def _iterate(game: Game, inners: Sequence[InnerSolver] | None, y: np.ndarray,
             settings: DynamicsSettings, run: _Run, certifier: Any, bar: Any,
             users: "_Users | None") -> _Outcome:
    """Best-response rounds until a converged, certified profile (or the round
    limit, or a cycle); ``auto`` switches to the scan when bisection's end point
    fails its certificate. Where the certificate finds a leximin player a better
    purchase than its best response settled on, the rounds restart from there
    (``_restart``)."""
    strategy = ("bisection" if settings.best_response == "auto"
                else settings.best_response)
    tol = _tolerance(game, settings)
    restart, restarts = None, 0
    for rounds in range(1, settings.max_rounds + 1):
        if restart is not None:
            new, label, restart = restart, "certificate", None
        elif users is not None and strategy == "bisection":
            new, label = users.round(y, settings.method), "closed-form"
        else:
            # Closed-form rounds build no inner solvers; the scan's rounds need them.
            inners = inners if inners is not None else make_inners(game)
            new, label = _round(inners, y, settings.method, strategy, run), strategy
        run.strategies.append(label)
        run.path.append(new.copy())
        step = np.abs(new - y)
        if bar is not None:
            bar.set_postfix_str(f"largest step {float(step.max()):.2e}", refresh=False)
            bar.update(1)
        y = new
        if label == "certificate":
            continue  # the moved players' rivals answer in the next rounds
        if np.all(step <= tol * max(1.0, float(np.max(np.abs(y))))):
            y = feasible_profile(game, y)
            certificate = certifier(y)
            if certificate.certified:
                return _Outcome(y, "converged", rounds, certificate)
            if restarts < CERTIFICATE_RESTARTS:
                restart = _restart(game, y, certificate)
            if restart is not None:
                restarts += 1
                LOG.info("the certificate found leximin players better purchases "
                         "than their best responses (regret %.3g); the rounds go on "
                         "from there", certificate.max_regret)
                continue
            if settings.best_response != "auto" or strategy == "scan":
                return _Outcome(y, "converged", rounds, certificate)
            LOG.info("bisection best response stopped at a profile with regret "
                     "%.3g; continuing with the scan best response",
                     certificate.max_regret)
            strategy = "scan"
            continue
        if _repeats(run.path, tol):
            return _Outcome(y, "cycling", rounds)
    return _Outcome(y, "round-limit", settings.max_rounds)


#: Times the rounds restart from the certificate's deviations at most (``_restart``).
CERTIFICATE_RESTARTS = 6


def _restart(game: Game, y: np.ndarray, certificate: Any) -> np.ndarray | None:
    """``y`` with every unproved leximin player moved to the better purchase its
    certificate found, or None where there is none.

    A leximin best response ranks sorted levels with ties (LEX_TIE_RTOL of the
    levels), while the certificate measures a gain against the spread of the
    level over the player's interval: a member barely priced in sits at the floor
    plus a surplus of ~1e-7, so a level short of the best by 1e-12 of itself is a
    regret of ~1e-5. The certificate's deviation is a strictly better purchase
    (Algorithm 1's move), found by its own refinement."""
    out = np.array(y, dtype=float)
    moved = False
    for j, (player, regret) in enumerate(zip(game.players, certificate.players)):
        if not (player.fairness.is_leximin and player.size > 1):
            continue
        if regret.verdict is Verdict.PROVED and regret.relative_regret <= \
                certificate.rtol:
            continue
        if regret.relative_regret > 0 and math.isfinite(regret.deviation) and \
                regret.deviation != out[j]:
            out[j], moved = regret.deviation, True
    return feasible_profile(game, out) if moved else None


def solve_equilibrium(game: Game, backend: str = "native",
                      settings: DynamicsSettings | None = None, *,
                      inners: list[InnerSolver] | None = None,
                      ipopt_options: dict[str, Any] | None = None,
                      progress: bool = False, solver: Any = None,
                      certifier: Any = None) -> Equilibrium:
    """Run best-response dynamics on ``game`` and certify where they stop.

    Returns an :class:`Equilibrium`; check ``converged`` and ``certified`` before
    calling it one (a run that cycles or hits ``max_rounds`` says so, with its path).
    ``certifier(profile) -> Certificate`` replaces the certificate through ``inners``
    (the solver comparison gives every method the same one, timed apart). On the
    native backend a game of one-member quadratic players under an affine price
    takes its best responses in closed form (strategy 'closed-form' in the path);
    a round labelled 'certificate' moved leximin players to the better purchases
    the certificate of a converged profile found (``_restart``).
    """
    settings = settings or DynamicsSettings()
    users = _Users.of(game) if backend == "native" else None
    if not inners and users is None:
        inners = make_inners(game, backend, ipopt_options, solver=solver)
    certifier = certifier or (lambda y: certify(game, y, settings.certificate_rtol))
    y = _start_profile(game, settings)
    run = _Run(path=[y.copy()])
    start_time = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        # No total: the round limit is not an estimate of when the run ends.
        bar = tqdm(total=None, desc="best-response rounds", unit="round")
    try:
        out = _iterate(game, inners, y, settings, run, certifier, bar, users)
        certificate = out.certificate or certifier(out.y)
        if bar is not None:
            bar.set_postfix_str(
                f"{out.status}, max regret {certificate.max_regret:.2e}")
    finally:
        if bar is not None:
            bar.close()
    # Without inner solvers every player has one member: its outcome is a formula.
    return Equilibrium.from_run(
        game, out.y, inners or [None] * len(game.players),
        converged=out.status == "converged", status=out.status,
        iterations=out.rounds, path=np.array(run.path), certificate=certificate,
        backend=backend, method=settings.method, settings=settings.describe(),
        seconds=time.perf_counter() - start_time, evaluations=run.evaluations,
        strategies=run.strategies)


def feasible_profile(game: Game, y: np.ndarray) -> np.ndarray:
    """``y`` with each purchase cut to what its player can buy at the price the
    others make (y_j <= y_max(Y_-j)). Rounds of the dynamics move players one at a
    time, so a purchase may end above its bound by the last moves of the others
    (a member exactly at its price-out threshold: 1e-12 too much is infeasible).
    Cutting a purchase lowers the price the others meet, which only widens their
    bounds, so one pass in player order is enough."""
    out = np.array(y, dtype=float)
    for j in range(out.size):
        y_max = game.feasible_max(j, float(out.sum() - out[j]))
        out[j] = min(out[j], y_max)
    return out
#: A revisit is a cycle only if the rounds since the revisited profile moved at least
#: this fraction as much as the same number of rounds before it did.
CYCLE_PERSISTENCE = 0.9


def _repeats(path: list[np.ndarray], tol: float) -> bool:
    """True if the rounds cycle: the newest profile revisits one at least two rounds
    back, and the rounds since then moved about as much as the as many rounds before
    them. A damped oscillation (Jacobi rounds often contract by -0.75 a round) passes
    within tol of old profiles while its steps shrink: that is no cycle, and the
    rounds go on to converge (measured: such runs were called "cycling" at regret 0).
    """
    last = path[-1]
    if len(path) < 3:
        return False
    scale = tol * max(1.0, float(np.max(np.abs(last))))
    # Profiles the newest one revisits, found at once (most rounds revisit none).
    near = np.all(np.abs(np.asarray(path[:-2]) - last) <= scale, axis=1)
    if not near.any():
        return False
    steps = [float(np.max(np.abs(b - a))) for a, b in zip(path, path[1:])]
    for k in range(len(path) - 3, -1, -1):
        if not near[k]:
            continue
        length = len(path) - 1 - k  # rounds in the cycle
        if k >= length and max(steps[k:]) >= CYCLE_PERSISTENCE * max(
                steps[k - length:k]):
            return True
    return False
