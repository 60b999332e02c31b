"""Pyomo inner backend: the aggregator model of models/aggregator.py solved by Ipopt.

The model is built once per player. With cyipopt (the default) it is also written
once: purchase, price, priced-out members' x_i = 0 and the tie-break's level are
variables fixed by their bounds at each solve (solvers/inner/nlp_reuse.py), and
under the floor rule each solve starts from the last solution (WARM_START_OPTIONS of
solvers/inner/pyomo_solves.py); a row whose
warm solve fails the residual check is solved again from the cold start. Other
solvers take the model with its mutable Params changed in place. One purchase runs
through phase functions: ``row_data`` (what the price decides,
solvers/inner/pyomo_rows.py), a closed form or one or two solves (``_welfare_row``,
``_maxmin_row``, through solvers/inner/pyomo_solves.py), ``_finish`` (welfare and the
total derivative). Every solve is checked: a termination other than optimal raises
``InnerSolveError``, so a last iterate is never returned as an answer.

Rows next to a price-out point. A member whose U'(0) lies within ~1e-7 of the
price has a box [0, xbar_i] of that width, which Ipopt's tolerances cannot resolve:
measured, Ipopt then stops at "optimal" with an allocation 10% off in marginal
welfare, or makes no progress, warm or cold. A row that fails (its termination or
its optimality residual) after the cold start is solved once more from the native
backend's allocation of the same purchase (``PhaseStart.verify``: Ipopt started
there, barely pushed off the bounds); Ipopt's answer from there must pass the same
residual check, which is computed from Ipopt's allocation and multiplier, not the
native one. ``SolveCounter.by_phase['native-start']`` counts such rows. A row that
fails that too raises InnerSolveError with the exact purchase and price (repr).
On the Pyomo-model path (``reuse_nlp=False``, other solvers) Ipopt's "very little
progress" end is not accepted, so such rows may still fail there.

Multipliers. ``model.dual[eq_balance]`` is lambda_j = dJ_j/dy_j (maximize model,
``sum(x) == purchase``; docs/pyomo.md, section "Dual signs with cyipopt").
For an inequality ``body >= 0`` of the same
maximize model cyipopt reports d J / d(lower bound) = -(its nonnegative multiplier),
so sigma_i = -dual[ineq_surplus[i]] and mu_i = -dual[ineq_maxmin[i]]. The written
cyipopt model has s_i >= 0 as the bound x_i <= xbar_i(p) instead (the price is fixed
in a solve); sigma_i then comes from that bound's multiplier (``Nlp.result``). The
tests check both through the total derivative against finite differences of J.

Other solvers (solvers/solver_choice.py). HiGHS takes only linear constraints: for it
s_i >= 0 becomes the bound x_i <= xbar_i (the same set for x >= 0), so only the
balance dual comes from the solver (same sign as cyipopt's, tested). SCIP and the
Ipopt executable give no duals we use: lambda then comes from the allocation, as in
the native backend (stationarity w_i phi'(s_i + e_i) (U_i' - p) = lambda for every
member strictly inside (0, xbar_i)). Max-min has no such formula: without duals its
derivatives are NaN and the best response falls back to its derivative-free search.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from aggregame.allocation import (
    RESIDUAL_TOL,
    allocation_error,
    counted_members,
    forced_rows,
    inner_setup,
    maxmin_residual,
    optimality_residual,
    price_sensitivity,
    settled_residual,
    welfare_of,
    welfare_weight,
)
from aggregame.errors import InnerSolveError, UnsupportedProblemError
from aggregame.players import Game
from aggregame.solvers.inner.batch import InnerBatch
from aggregame.solvers.inner.native import NativeInner
from aggregame.solvers.inner.pyomo_rows import (
    InnerRow,
    PhaseResult,
    PhaseStart,
    RowData,
    SolveCounter,
    allocation_terms,
    curvature,
    marginal_welfares,
    objective_scale,
    row_data,
    surplus_of,
)
from aggregame.solvers.inner.pyomo_solves import ModelBackend, NlpBackend
from aggregame.solvers.solver_choice import SolverName, SolverSpec

LOG = logging.getLogger(__name__)


def ipopt_solver(options: dict[str, Any] | None = None) -> Any:
    """Pyomo's cyipopt solver with our options (DEFAULT_IPOPT_OPTIONS, then
    ``options``), or a clear error naming what is missing: for callers that solve
    their own models (the backends take a ``SolverSpec``)."""
    solver = SolverSpec(SolverName.CYIPOPT, options or {}).make_solver()
    solver.pyomo_solver.config.options.update(solver.options)
    return solver.pyomo_solver


def check_supported(spec: SolverSpec, player: Any) -> None:
    """Refuse (UnsupportedProblemError) a problem the solver cannot take: HiGHS
    solves quadratic programs only, i.e. alpha = 0 with quadratic members."""
    if spec.name is not SolverName.HIGHS:
        return
    families = {m.utility.family for m in player.members}
    if player.fairness.alpha != 0 or families != {"quadratic"}:
        raise UnsupportedProblemError(
            f"solver 'highs' takes only the alpha = 0 inner problem with quadratic "
            f"members (a QP); player '{player.name}' has alpha = {player.alpha:g} and "
            f"{sorted(families)} utilities: use solver 'cyipopt' or 'scip'")


def solver_spec(solver: SolverSpec | None, options: dict[str, Any] | None
                ) -> SolverSpec:
    """The solver of a backend: ``solver`` (cyipopt by default) with ``options``
    added to its own, never dropped (the spec checks them against the solver)."""
    spec = solver or SolverSpec(SolverName.CYIPOPT)
    if not options:
        return spec
    return SolverSpec(spec.name, {**dict(spec.options), **options})


class PyomoInner:
    """Inner problem of ``game.players[index]`` as a Pyomo model.

    ``solver`` picks the solver (default cyipopt) and its options; ``options`` are
    more options for it (added to the spec's, overriding them). With cyipopt the
    model is written once (solvers/inner/nlp_reuse.py) and every purchase only
    changes bounds; the other solvers, and cyipopt with ``reuse_nlp=False`` (the
    benchmark's reference), take the Pyomo model with its mutable Params changed in
    place, written at each solve.
    """

    def __init__(self, game: Game, index: int, options: dict[str, Any] | None = None,
                 solver: SolverSpec | None = None, reuse_nlp: bool = True,
                 warm_start: bool = True) -> None:
        self.game = game
        self.index = index
        self.player = game.players[index]
        self.spec = solver_spec(solver, options)
        check_supported(self.spec, self.player)
        if self.player.fairness.is_leximin:  # the epigraph models the minimum only
            from aggregame.leximin import refuse
            refuse(game, "the pyomo backend")
        self.solver = self.spec.make_solver()
        self.counter = SolveCounter()
        if reuse_nlp and self.spec.name is SolverName.CYIPOPT:
            self._backend = NlpBackend(self.player, self.solver, self.counter,
                                       warm_start)
        else:
            self._backend = ModelBackend(self.player, self.solver)
        self.model = self._backend.model
        self._start_x: np.ndarray | None = None  # an allocation to verify (_solve_one)
        self._native_inner: NativeInner | None = None

    # -- one purchase -----------------------------------------------------------
    def _finish(self, d: RowData, x: np.ndarray, lam: float,
                coef: np.ndarray | None, tie: float = np.nan) -> InnerRow:
        """The row of allocation ``x``: its welfare and total derivative
        lambda + p' dPhi/dp, with dPhi/dp = -sum coef_i x_i (aggregame.allocation)."""
        surplus = surplus_of(self.player, x, d.price)
        welfare = float(welfare_of(self.player, surplus[None], d.weight[None],
                                   d.floor[None], d.priced_out[None])[0])
        deriv = np.nan
        if coef is not None and np.isfinite(lam):
            deriv = lam + d.slope_p * float(price_sensitivity(x, coef))
        return InnerRow(d.price, x, surplus, welfare, lam, deriv, tie)

    def _flat(self, d: RowData) -> bool:
        """Max-min with a counted priced-out member: the level is flat (at its
        floor) for this and every larger y, and the tie-break decides (as in
        solvers/inner/level_filling.py)."""
        counted = counted_members(self.player, d.priced_out)
        return self.player.fairness.is_maxmin and bool((d.priced_out & counted).any())

    def _solve_one(self, y: float, others_total: float, fixed_price: float | None,
                   start_x: np.ndarray | None = None) -> InnerRow:
        """The row of purchase y; ``start_x``: an allocation to start the solver at
        (and to verify), instead of its own start."""
        d = row_data(self.game, self.index, y, others_total, fixed_price)
        self._start_x = start_x
        if y > d.cap * (1 + 1e-12):  # infeasible: no allocation keeps s >= 0
            row = self._finish(d, d.xbar.copy(), np.nan, None)
            return dataclasses.replace(row, welfare=-np.inf)
        f = self.player.fairness
        edge = y <= 0 or y >= d.cap * (1 - 1e-14)
        void = f.rule.void_when_priced_out(f) and bool(d.priced_out.any())
        if edge or void:
            return self._closed_form_row(d, edge and not void)
        if self.player.size == 1 and not f.is_maxmin and self._backend.skips_known:
            # x = y is the only allocation: the row of an end, with lambda its
            # member's marginal welfare (no solver needed).
            return self._closed_form_row(d, True)
        if f.is_maxmin:
            return self._maxmin_row(d)
        return self._welfare_row(d)

    def _closed_form_row(self, d: RowData, edge: bool) -> InnerRow:
        """y = 0, y = cap (one allocation only) or J = -inf (strict rule): no solve.
        At an end lambda is the largest (y = 0) or smallest (y = cap) marginal
        welfare among members who can buy."""
        if d.y <= 0:
            x = np.zeros(self.player.size)
        elif d.y >= d.cap * (1 - 1e-14):
            x = d.xbar.copy()
        else:
            x = d.y * d.xbar / d.cap
        lam, coef = np.nan, None
        gain = self.player.evaluate("dU", x) - d.price
        if edge and not self.player.fairness.is_maxmin:
            g = marginal_welfares(self.player, x, d.price, d.weight, d.floor)
            g = g[d.xbar > 0]
            lam = float(g.max() if d.y <= 0 else g.min()) if g.size else np.nan
        if np.isfinite(lam):
            with np.errstate(divide="ignore", invalid="ignore"):
                coef = np.where(x > 0, lam / gain, 0.0)
        tie = np.nan
        if self._flat(d) and d.y <= 0:
            # Right derivative of the total surplus at 0: the best U_i'(0) - p.
            tie = float(gain[d.xbar > 0].max()) if (d.xbar > 0).any() else -1.0
        return self._finish(d, x, lam, coef, tie)

    def _start(self, d: RowData) -> PhaseStart:
        """x_i = y xbar_i / cap: sum x = y and every surplus positive; the max-min
        level 10% below the smallest s_i + e_i (strictly feasible). Sets Ipopt's
        objective scaling for the start (``objective_scale``). With an allocation
        to verify (``_solve_one``'s ``start_x``), that allocation instead."""
        verify = self._start_x is not None
        x0 = np.where(d.priced_out, 0.0, np.clip(self._start_x, 0.0, d.xbar)
                      if verify else d.y * d.xbar / d.cap)
        if self.spec.name is SolverName.CYIPOPT:  # other solvers scale for themselves
            self.solver.config.options["obj_scaling_factor"] = objective_scale(
                self.player, x0, d.price, d.weight, d.floor, d.priced_out)
        if not self.player.fairness.is_maxmin:
            return PhaseStart(x0, verify=verify)
        level = float((surplus_of(self.player, x0, d.price) + d.floor).min())
        return PhaseStart(x0, level=level - 0.1 * abs(level), verify=verify)

    def _welfare_row(self, d: RowData) -> InnerRow:
        res = self._run(d, self._start(d), "welfare")
        x = np.clip(res.x, 0.0, d.xbar)  # Ipopt relaxes bounds by ~1e-8 relative
        if not self.solver.has_duals or self.spec.name is not SolverName.CYIPOPT:
            # Duals of s_i >= 0 are read for cyipopt only (their sign is tested).
            lam, coef = allocation_terms(self.player, x, d.price, d.xbar, d.weight,
                                         d.floor, res.lam)
            return self._finish(d, x, lam, coef)
        alpha = self.player.fairness.alpha
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = welfare_weight(surplus_of(self.player, x, d.price) + d.floor,
                                  d.weight, alpha)
        coef = np.where(x > 0, coef + res.sigma, 0.0)
        row = self._finish(d, x, res.lam, coef)
        if not self._backend.skips_known:
            return row
        return dataclasses.replace(row, curv=curvature(self.player, d, x, res.lam,
                                                       d.weight, alpha))

    def _flat_level(self, d: RowData) -> float | None:
        """The max-min level where it is known without a solve, else None.

        With a counted member priced out (``_flat``) its s_i + e_i is e_i, so
        t <= e_i; every other counted member has s_i >= 0 on [0, xbar_i], hence
        s_i + e_i >= e_i. When the smallest floor of all counted members is a
        priced-out member's, the level is exactly that floor, for this y and every
        larger one (so dt/dy = 0)."""
        if not (self._backend.skips_known and self._flat(d)):
            return None
        counted = counted_members(self.player, d.priced_out)
        pinned = float(d.floor[counted & d.priced_out].min())
        return pinned if float(d.floor[counted].min()) >= pinned else None

    def _maxmin_row(self, d: RowData) -> InnerRow:
        """Phase 1 maximizes the level t; phase 2 (docs/model.md, section "Max-min":
        the tie-break) keeps it, relaxed by 1e-9 relative so phase 2 keeps an
        interior, and maximizes total surplus. Phase 1 is skipped where the level
        is known (``_flat_level``)."""
        known = self._flat_level(d)
        if known is None:
            first = self._run(d, self._start(d), "welfare")
            level, x0 = first.level, first.x
            lam = first.lam
            deriv = lam + d.slope_p * float(
                price_sensitivity(np.clip(first.x, 0.0, d.xbar), first.mu))
        else:
            level, x0, lam, deriv = known, self._start(d).x0, 0.0, 0.0
        fixed = level - 1e-9 * max(1.0, abs(level))
        second = self._run(d, PhaseStart(x0, fixed_level=fixed,
                                         verify=self._start_x is not None),
                           "tiebreak")
        x = np.clip(second.x, 0.0, d.xbar)
        tie, curv = np.nan, np.nan
        if self._flat(d):
            # Envelope theorem on phase 2: dT/dy = nu - p' sum (1 + sigma + mu) x.
            coef2 = np.where(x > 0, 1.0 + second.sigma + second.mu, 0.0)
            tie = second.lam + d.slope_p * float(price_sensitivity(x, coef2))
            if known is not None:  # phase 2 is then max sum s_i, nothing else
                curv = curvature(self.player, d, x, second.lam, 1.0, 0.0)
        row = self._finish(d, x, lam, None, tie)
        return dataclasses.replace(row, deriv=deriv, curv=curv)

    def _run(self, d: RowData, start: PhaseStart, phase: str) -> PhaseResult:
        """One solve through the backend, counted and checked: a failure or a
        termination other than optimal raises InnerSolveError."""
        begin = time.perf_counter()
        label = self.spec.name.value
        where = f"player '{self.player.name}' (y = {d.y!r}, p = {d.price!r})"
        try:
            outcome, result = self._backend.run(d, start)
        except Exception as err:
            raise InnerSolveError(
                f"{label} failed on the inner model of {where}: {err}") from err
        finally:
            self.counter.solves += 1
            self.counter.seconds += time.perf_counter() - begin
            self.counter.by_phase[phase] = self.counter.by_phase.get(phase, 0) + 1
        self.counter.iterations += outcome.iterations
        if not outcome.termination.ok:
            raise InnerSolveError(
                f"{label} did not reach an optimal solution of the inner model of "
                f"{where}: termination '{outcome.termination.value}', message "
                f"'{outcome.message}'")
        return result

    def solve(self, y: np.ndarray, others_total: float,
              fixed_price: float | None = None) -> InnerBatch:
        """Inner solutions for purchases ``y`` (see InnerSolver.solve). A row whose
        solve fails or whose residual (from the solver's allocation and multiplier)
        is above RESIDUAL_TOL is solved again (``_repair``); one that still fails
        raises InnerSolveError naming the player, the purchase and the price."""
        y = np.atleast_1d(np.asarray(y, dtype=float))
        rows: list[InnerRow | InnerSolveError] = []
        for v in y:
            try:
                rows.append(self._solve_one(float(v), others_total, fixed_price))
            except InnerSolveError as err:  # the backend tried the cold start
                rows.append(err)
        solved = [k for k, r in enumerate(rows) if isinstance(r, InnerRow)]
        imprecise = set()
        if solved:
            batch = self._batch(y[solved], [rows[k] for k in solved], others_total,
                                fixed_price)
            for k, res in zip(solved, batch.residual):
                if not res <= RESIDUAL_TOL:
                    imprecise.add(k)
                    rows[k] = residual_error(self, float(y[k]), others_total,
                                             fixed_price, float(res))
        warm = getattr(self._backend, "warm", False)
        for k, row in enumerate(rows):
            if isinstance(row, InnerSolveError):
                rows[k] = self._repair(float(y[k]), others_total, fixed_price, row,
                                       cold=warm and k in imprecise)
        return self._batch(y, rows, others_total, fixed_price)

    def _checked(self, y: float, others_total: float, fixed_price: float | None,
                 start_x: np.ndarray | None = None) -> InnerRow | InnerSolveError:
        """One row, solved and checked by its residual, or the error of either."""
        try:
            row = self._solve_one(y, others_total, fixed_price, start_x)
        except InnerSolveError as err:
            return err
        finally:
            self._start_x = None
        res = float(self._batch(np.array([y]), [row], others_total,
                                fixed_price).residual[0])
        if res <= RESIDUAL_TOL:
            return row
        return residual_error(self, y, others_total, fixed_price, res)

    def _repair(self, y: float, others_total: float, fixed_price: float | None,
                first: InnerSolveError, cold: bool) -> InnerRow:
        """A row that failed: the cold start (``cold``: the first answer came from
        a warm one), then the native backend's allocation as the start; raises the
        first error, with what was tried, if that fails too."""
        if cold:
            # A warm start can end less precisely than a cold one.
            self._backend.warm = False
            try:
                row = self._checked(y, others_total, fixed_price)
            finally:
                self._backend.warm = True
            if isinstance(row, InnerRow):
                return row
        if self._native_inner is None:  # for starts only: its rows are not returned
            self._native_inner = NativeInner(self.game, self.index, compiled=False)
        try:
            native = self._native_inner.solve(np.array([y]), others_total, fixed_price)
        except InnerSolveError as err:
            raise InnerSolveError(f"{first}; the native backend has no allocation to "
                                  f"start from either: {err}") from first
        self.counter.by_phase["native-start"] = \
            self.counter.by_phase.get("native-start", 0) + 1
        LOG.info("player %r, y = %r: solving from the native allocation (%s)",
                 self.player.name, y, first)
        row = self._checked(y, others_total, fixed_price, native.x[0])
        if isinstance(row, InnerRow):
            return row
        raise InnerSolveError(f"{first}; started from the native backend's "
                              f"allocation: {row}") from first

    def _batch(self, y: np.ndarray, rows: list[InnerRow], others_total: float,
               fixed_price: float | None) -> InnerBatch:
        stack = lambda key: np.array([getattr(r, key) for r in rows])  # noqa: E731
        batch = InnerBatch(y, stack("price"), stack("x"), stack("surplus"),
                           stack("welfare"), stack("surplus").sum(axis=1), stack("lam"),
                           stack("deriv"), stack("tie"), curvature=stack("curv"))
        batch.residual = self._residual(batch, others_total, fixed_price)
        return batch

    def _residual(self, batch: InnerBatch, others_total: float,
                  fixed_price: float | None) -> np.ndarray:
        setup = inner_setup(self.game, self.index, batch.y, others_total, fixed_price)
        if self.player.fairness.is_maxmin:
            res = maxmin_residual(self.player, batch.y, setup.price, batch.x,
                                  setup.xbar, setup.floor, setup.priced_out)
        else:
            res = optimality_residual(self.player, batch.y, setup.price, batch.x,
                                      batch.multiplier, setup.xbar, setup.weight,
                                      setup.floor)
        return settled_residual(res, allocation_error(batch.x, batch.y, setup.xbar),
                                batch.welfare, batch.y, setup.cap,
                                forced_rows(self.player, batch.y, setup.cap,
                                            setup.priced_out, setup.price))


def residual_error(inner: PyomoInner, y: float, others_total: float,
                   fixed_price: float | None, residual: float) -> InnerSolveError:
    """The error of ``inner``'s row at purchase ``y`` whose optimality residual is
    above RESIDUAL_TOL, with the exact purchase and price."""
    price = row_data(inner.game, inner.index, y, others_total, fixed_price).price
    return InnerSolveError(
        f"{inner.spec.name.value}'s solution of the inner problem of player "
        f"'{inner.player.name}' at purchase y = {y!r} (price p = {price!r}) has "
        f"optimality residual {residual:.3g} (tolerance {RESIDUAL_TOL:g})")
