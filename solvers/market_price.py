"""A price p(Y) read from the user's own Pyomo model of the supply side.

What the model must be (checked at construction, one clear line when it is not):

* a mutable Param ``demand`` (set to Y before each solve);
* one active Objective to *minimize* (the supply cost), linear or quadratic in the
  model's variables;
* linear active constraints, one of which is the ``balance`` (supply = demand) whose
  dual is the price; only the constraints' bounds may depend on the demand;
* generator outputs (``dispatch``, by default the variables of the balance) with finite
  bounds: their upper bounds add up to the total capacity, beyond which p = inf.

How p(Y) is computed. Such a model is a parametric convex QP in Y, so its price is
piecewise affine in Y, with kinks where a generator starts or is full. ``MarketPrice``
solves the model (HiGHS by default) at a few demands, reads the dual of the balance
with the solver's documented sign (``aggregame.models.duals``) and keeps it only as
evidence (``dual_gap``): solvers stop at their own tolerances (HiGHS regularizes QPs
by 1e-7 unless told not to, which moves its dual by ~1e-6; it reports some small
demands infeasible; Ipopt leaves variables near, not at, their bounds). The value
used is *polished*: the solution tells which variables sit at a bound and which
constraints are active, and the KKT conditions on that active set (stationarity of the free variables, the active
rows) are a linear system whose solution is exact and affine in Y. Its multiplier of
the balance is the price (more precisely sum_k lambda_k d(rhs_k)/dY over the active
rows, the envelope theorem, which is the balance's dual when only the balance depends
on the demand). The same system gives the interval of Y where that active set stays
optimal (the free variables within their bounds, the bound multipliers of the right
sign: a ratio test), so one solve per segment maps the whole curve [0, capacity] at
construction, and the kinks are found exactly, not by bisection. Where the solver
fails or names a wrong active set (the KKT solution leaves its interval), a
primal-dual active-set iteration on the same linear systems repairs it.

p(0) is the limit from the right (at Y = 0 every generator sits at zero and any price
up to the cheapest marginal cost clears the market). ``derivative`` is the *right*
derivative, the slope of the segment starting at Y, read from the same linear system
(dp/dY of the KKT solution, i.e. 1 / sum_g 1 / (2 c2_g) over the marginal generators
for separable quadratic costs), not a finite difference: at a kink only one-sided
derivatives exist, the right one is what a player raising its purchase meets (the
direction of the best response's sign tests), and the scan samples both sides of each
kink anyway (``breakpoints``). After construction every evaluation is a table look-up.

Dense linear algebra: meant for supply models of up to a few hundred variables.
Call ``refresh()`` after changing the model (costs, capacities).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.repn import generate_standard_repn

from aggregame.errors import EmbeddingError, SolverError
from aggregame.models.context import temporary_changes
from aggregame.models.duals import active_objective, bound_sensitivity, dual_convention
from aggregame.price import Price

LOG = logging.getLogger(__name__)

#: A variable (constraint) within this, relative to max(1, capacity), of its bound is
#: at it. HiGHS's QP solver is an active-set method: variables at a bound are exact.
BOUND_RTOL = 1e-9
#: Segment ends closer than this (relative to max(1, capacity)) are the same kink.
SNAP_RTOL = 1e-12
#: First probe to the right of a kink, as a fraction of the rest of [0, capacity].
FIRST_PROBE = 1e-3
#: Solves allowed to find one segment before giving up.
MAX_PROBES = 60
#: Steps of the active-set repair where the solver fails.
REPAIR_STEPS = 50
#: The KKT matrix of an active set with a larger condition number is degenerate.
MAX_CONDITION = 1e12

HIGHS_OPTIONS = {"qp_regularization_value": 0.0}

_OK = {pyo.TerminationCondition.optimal, pyo.TerminationCondition.locallyOptimal}


@dataclass(frozen=True)
class Segment:
    """Y in [lo, hi): p(Y) = p0 + slope * Y for one active set of the supply model."""

    lo: float
    hi: float
    p0: float
    slope: float
    active: tuple[int, ...]
    basis: ActiveSet | None = field(default=None, repr=False, compare=False)
    extent: Extent | None = field(default=None, repr=False, compare=False)

    def price(self, total: float) -> float:
        return self.p0 + self.slope * total


@dataclass(frozen=True)
class SupplyQP:
    """The user's model as min c.x + x'Hx/2 s.t. rlo <= A x <= rup, xl <= x <= xu, with
    the row bounds affine in the demand D: rlo = rlo0 + D * rlo1 (same for rup)."""

    variables: tuple[Any, ...]
    constraints: tuple[Any, ...]
    c: np.ndarray
    H: np.ndarray
    A: np.ndarray
    rlo0: np.ndarray
    rlo1: np.ndarray
    rup0: np.ndarray
    rup1: np.ndarray
    equality: np.ndarray
    xl: np.ndarray
    xu: np.ndarray


class MarketPrice(Price):
    """p(Y) from a Pyomo supply model: its demand Param and balance constraint.

    Parameters
    ----------
    model : ConcreteModel
        The supply side (e.g. an economic dispatch minimizing cost); see the module
        docstring for what it must be. A ``dual`` Suffix is added if missing.
    demand : mutable Param of ``model``
        Set to Y before each solve (restored afterwards).
    balance : Constraint of ``model``
        Supply = demand; its dual is the price.
    dispatch : Vars, optional
        Generator outputs with finite bounds; default the balance's variables.
    solver : str or solver object
        Default 'highs' (Pyomo's HiGHS interface; 'appsi_highs' refuses quadratic
        objectives in Pyomo 6.10).
    """

    piecewise_linear = True

    kind = "market-model"

    def __init__(self, model: pyo.ConcreteModel, demand: Any, balance: Any, *,
                 dispatch: Sequence[Any] | Any = (), solver: Any = "highs") -> None:
        _check_components(model, demand, balance)
        self.model, self.demand, self.balance = model, demand, balance
        self.convention = dual_convention(solver)  # first: refuses unknown names
        self.solver = pyo.SolverFactory(solver) if isinstance(solver, str) else solver
        if not self.solver.available(exception_flag=False):
            raise SolverError(f"market price: solver {solver!r} is not available")
        # HiGHS regularizes QPs by 1e-7 by default, which moves its duals by ~1e-6.
        self.options = dict(HIGHS_OPTIONS) if solver == "highs" else {}
        if model.component("dual") is None:
            model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        if hasattr(dispatch, "values"):
            dispatch = list(dispatch.values())
        self.dispatch = list(dispatch) or _variables_of(balance)
        self.refresh()

    # -- building the table --------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the model and map its price curve over [0, capacity]."""
        self.capacity = _capacity(self.dispatch)
        self.scale = max(1.0, self.capacity)
        self.qp = extract_qp(self.model, self.demand)
        row = [k for k, c in enumerate(self.qp.constraints) if c is self.balance]
        # d(bound - body)/dD of the balance as Pyomo stores it (+1 for supply == D)
        self._orientation = float(self.qp.rlo1[row[0]])
        if self._orientation == 0.0:
            raise EmbeddingError(
                f"market price: constraint {self.balance.name!r} does not depend on "
                f"the demand parameter {self.demand.name!r}")
        self.solves, self.dual_gap, self.primal_gap = 0, 0.0, 0.0
        with temporary_changes(restore=[self.demand]):
            segments, y = [], 0.0
            while y < self.capacity - SNAP_RTOL * self.scale:
                seg = self._segment_right_of(y)
                segments.append(replace(seg, lo=y, hi=min(seg.hi, self.capacity)))
                y = segments[-1].hi
        self.segments = tuple(segments)
        self._lo = np.array([s.lo for s in segments])
        self._p0 = np.array([s.p0 for s in segments])
        self._slope = np.array([s.slope for s in segments])
        LOG.debug("market price: %d segments from %d solves, dual gap %.2e",
                  len(segments), self.solves, self.dual_gap)

    def _segment_right_of(self, y: float) -> Segment:
        """The segment [lo, hi) with lo <= y < hi: solve a little to the right of y
        (y itself may be a kink, or too small for the solver), halving the step while
        the segment found starts beyond y. Where the solver fails (HiGHS reports tiny
        demands infeasible), step left from the segment beyond by flipping the
        condition that binds at its start."""
        snap, delta = SNAP_RTOL * self.scale, FIRST_PROBE * (self.capacity - y)
        beyond = None
        for _ in range(MAX_PROBES):
            target = y + delta
            x = self._solve_at(target)
            seg = None if x is None else self._segment(target, x)
            if seg is None:
                seg = self._repair(target, x)
            if seg is None and beyond is not None:
                seg = self._left_neighbour(beyond)
            if seg is None:  # solver failure or degenerate point: move the probe
                delta *= 4.0 if 4.0 * delta < self.capacity - y else 0.37
            elif seg.lo <= y + snap:
                return seg
            else:
                beyond, delta = seg, 0.5 * (seg.lo - y)
        raise SolverError(
            f"market price: no optimal active set of model {self.model.name!r} found "
            f"just above Y = {y:g} after {MAX_PROBES} solves")

    def _repair(self, total: float, x: np.ndarray | None) -> Segment | None:
        """The optimal active set at ``total`` by a primal-dual active-set iteration
        (flip every condition violated there, re-solve the KKT system) from the
        solver's point, or from all variables free when the solver gave none."""
        qp, scale = self.qp, self.scale
        if x is None:
            none = np.zeros(len(qp.variables), dtype=bool)
            basis = ActiveSet(none, none, qp.equality.copy(),
                              np.zeros_like(qp.equality))
        else:
            basis = _active_set(qp, x, total, BOUND_RTOL * scale)
        for _ in range(REPAIR_STEPS):
            piece = _solve_kkt(qp, basis)
            if piece is None:
                return None
            violated = [(fam, int(i)) for fam, idx, ga, gb, mag
                        in _conditions(qp, basis, piece, scale)
                        for i in idx[ga + total * gb < -1e-12 * mag]]
            if not violated:
                seg = self._piece(basis)
                ok = seg is not None and seg.lo <= total + SNAP_RTOL * scale < seg.hi
                return seg if ok else None
            basis = _flip(basis, violated)
        return None

    def _left_neighbour(self, seg: Segment) -> Segment | None:
        """The segment ending where ``seg`` starts, from the flipped active set."""
        left = self._piece(_flip(seg.basis, seg.extent.at_lo))
        snap = SNAP_RTOL * self.scale
        if left is None or left.hi < seg.lo - snap or left.lo >= seg.lo - snap:
            return None
        return left

    def _solve_at(self, total: float) -> np.ndarray | None:
        """Primal solution at demand ``total``, or None when the solver fails."""
        self.demand.set_value(total)
        self.solves += 1
        try:
            results = self.solver.solve(self.model, **(
                {"options": self.options} if self.options else {}))
        except Exception as err:  # solvers raise their own types on failure
            LOG.debug("market price: solve at Y = %g failed: %s", total, err)
            return None
        if results.solver.termination_condition not in _OK:
            return None
        x = np.array([v.value for v in self.qp.variables], dtype=float)
        return x if np.all(np.isfinite(x)) else None

    def _solver_price(self) -> float | None:
        if self.model.dual.get(self.balance) is None:
            return None
        return bound_sensitivity(self.model, self.balance, self.convention) \
            * self._orientation

    def _segment(self, y0: float, x: np.ndarray) -> Segment | None:
        """The segment of the active set of solution x at demand y0; None if that
        set is degenerate or not optimal at y0. Records the solver's errors."""
        seg = self._piece(_active_set(self.qp, x, y0, BOUND_RTOL * self.scale))
        if seg is None or not (seg.lo <= y0 + SNAP_RTOL * self.scale < seg.hi):
            return None
        dual = self._solver_price()
        if dual is not None:
            exact = seg.price(y0)
            self.dual_gap = max(self.dual_gap, abs(dual - exact) / max(1.0, abs(exact)))
        xa, xb, _, _ = _solve_kkt(self.qp, seg.basis)
        self.primal_gap = max(self.primal_gap,
                              float(np.max(np.abs(xa + y0 * xb - x), initial=0.0)))
        return seg

    def _piece(self, basis: ActiveSet) -> Segment | None:
        """The exact affine piece of an active set and the interval where it is
        optimal (None if its KKT system is singular or the interval is empty)."""
        piece = _solve_kkt(self.qp, basis)
        if piece is None:
            return None
        ext = _extent(self.qp, basis, piece, self.scale)
        if not ext.hi > ext.lo:
            return None
        _, _, la, lb = piece
        # Envelope theorem: d(min cost)/dD = sum over active rows of lambda_k times
        # d(bound_k)/dD; only the balance's bound moves with D in a dispatch.
        rhs1 = np.where(basis.at_upper_row, self.qp.rup1, self.qp.rlo1)
        return Segment(ext.lo, ext.hi, float(la @ rhs1), float(lb @ rhs1),
                       basis.key, basis, ext)

    # -- the Price interface -------------------------------------------------------
    def _index(self, y: np.ndarray) -> np.ndarray:
        """Segment of each total; within SNAP_RTOL of a kink, the one on its right
        (kinks are located to rounding, so a kink computed elsewhere, e.g. by a
        closed form, gets the right derivative too)."""
        y = y + SNAP_RTOL * self.scale
        return np.clip(np.searchsorted(self._lo, y, side="right") - 1, 0,
                       self._lo.size - 1)

    def value(self, total: Any, lib: Any = np) -> Any:
        if lib is not np:
            raise EmbeddingError(
                "market price: a price read from a solved market model has no Pyomo "
                "expression; the stacked KKT model needs a closed form (e.g. "
                "MeritOrderPrice for a merit order)")
        y = np.asarray(total, dtype=float)
        k = self._index(y)
        out = self._p0[k] + self._slope[k] * np.maximum(y, 0.0)
        out = np.where(y > self.capacity * (1 + 1e-12), np.inf, out)
        return float(out) if out.ndim == 0 else out

    def derivative(self, total: Any, lib: Any = np) -> Any:
        """Right derivative: the slope of the segment starting at Y (inf from the
        capacity on)."""
        if lib is not np:
            return self.value(total, lib)  # raises the same clear error
        y = np.asarray(total, dtype=float)
        out = np.where(y >= self.capacity, np.inf, self._slope[self._index(y)])
        return float(out) if out.ndim == 0 else out

    def breakpoints(self, lo: float, hi: float) -> np.ndarray:
        """Kinks in (lo, hi): totals where a generator starts or is full (more
        generally, where the optimal active set of the supply model changes), and the
        total capacity, beyond which p = inf."""
        b = np.append(self._lo[1:], self.capacity)
        return b[(b > lo) & (b < hi)]

    def inverse(self, price: float) -> float:
        """Smallest Y with p(Y) = price (0 below p(0), the capacity above p(cap))."""
        ys = np.ravel([[s.lo, s.hi] for s in self.segments])
        ps = np.ravel([[s.price(s.lo), s.price(s.hi)] for s in self.segments])
        if price <= ps[0]:
            return 0.0
        if price >= ps[-1]:
            return float(self.capacity)
        k = int(np.searchsorted(ps, price, side="left"))
        if ps[k] == ps[k - 1]:
            return float(ys[k - 1])
        return float(ys[k - 1] + (price - ps[k - 1]) * (ys[k] - ys[k - 1])
                     / (ps[k] - ps[k - 1]))

    def describe(self) -> dict[str, Any]:
        return {"price": self.kind, "model": self.model.name,
                "demand": self.demand.name, "balance": self.balance.name}


# -- what the model must be ----------------------------------------------------------
def _check_components(model: Any, demand: Any, balance: Any) -> None:
    """One clear line when demand or balance is not what ``MarketPrice`` needs."""
    name = getattr(demand, "name", repr(demand))
    parent = getattr(demand, "parent_component", lambda: None)()
    if not (getattr(demand, "is_parameter_type", lambda: False)()
            and getattr(parent, "mutable", False)):
        raise EmbeddingError(
            f"market price: field 'demand' must be a mutable Param, got {name!r}")
    if not (getattr(balance, "ctype", None) is pyo.Constraint
            and not balance.is_indexed()):
        raise EmbeddingError(
            f"market price: field 'balance' must be one constraint (an element of an "
            f"indexed Constraint), got {getattr(balance, 'name', repr(balance))!r}")
    for field, comp in (("demand", demand), ("balance", balance)):
        if comp.model() is not model:
            raise EmbeddingError(
                f"market price: field {field!r}: {comp.name!r} is not a component of "
                f"model {model.name!r}")


def _variables_of(balance: Any) -> list[Any]:
    from pyomo.core.expr.visitor import identify_variables

    return list(identify_variables(balance.body, include_fixed=False))


def _capacity(dispatch: Sequence[Any]) -> float:
    """Total capacity: the sum of the dispatch variables' upper bounds."""
    for v in dispatch:
        if getattr(v, "ctype", None) is not pyo.Var or v.is_indexed():
            raise EmbeddingError(
                f"market price: field 'dispatch' must hold variables, got "
                f"{getattr(v, 'name', repr(v))!r}")
        if v.lb is None or v.ub is None:
            raise EmbeddingError(
                f"market price: field 'dispatch': variable {v.name!r} needs finite "
                f"bounds (0 and its capacity), got ({v.lb}, {v.ub})")
    if not dispatch:
        raise EmbeddingError("market price: field 'dispatch' is empty")
    low = sum(float(v.lb) for v in dispatch)
    if low > 0:
        raise EmbeddingError(
            f"market price: field 'dispatch': the lower bounds add up to {low:g} > 0, "
            "so small demands are infeasible; p(Y) is defined from Y = 0")
    return float(sum(float(v.ub) for v in dispatch))


def _repns(obj: Any, cons: Sequence[Any]) -> tuple[Any, list[tuple[Any, Any, Any]]]:
    """Standard repns of the objective (quadratic) and constraints (linear)."""
    orep = generate_standard_repn(obj.expr, quadratic=True)
    if orep.nonlinear_expr is not None:
        raise EmbeddingError(
            f"market price: objective {obj.name!r} must be linear or quadratic (a "
            "supply cost), it is nonlinear")
    rows = []
    for con in cons:
        rep = generate_standard_repn(con.body, quadratic=False)
        if not rep.is_linear():
            raise EmbeddingError(
                f"market price: constraint {con.name!r} must be linear, it is not")
        lower = float(pyo.value(con.lower)) if con.has_lb() else -np.inf
        upper = float(pyo.value(con.upper)) if con.has_ub() else np.inf
        rows.append((rep, lower - float(rep.constant), upper - float(rep.constant)))
    return orep, rows


def _arrays(orep: Any, rows: list, index: ComponentMap) -> tuple[np.ndarray, ...]:
    n, m = len(index), len(rows)
    c, H, A = np.zeros(n), np.zeros((n, n)), np.zeros((m, n))
    for v, coef in zip(orep.linear_vars, orep.linear_coefs):
        c[index[v]] += coef
    for (v, w), coef in zip(orep.quadratic_vars, orep.quadratic_coefs):
        i, j = index[v], index[w]
        H[i, j] += coef
        H[j, i] += coef  # both halves, so H[i, i] gets 2 coef: x'Hx/2
    for k, (rep, _, _) in enumerate(rows):
        for v, coef in zip(rep.linear_vars, rep.linear_coefs):
            A[k, index[v]] += coef
    rlo = np.array([r[1] for r in rows], dtype=float)
    rup = np.array([r[2] for r in rows], dtype=float)
    return c, H, A, rlo, rup


def extract_qp(model: pyo.Block, demand: Any) -> SupplyQP:
    """The supply model as a ``SupplyQP``, its row bounds affine in the demand (read at
    D = 0 and D = 1; the coefficients must not depend on D)."""
    obj = active_objective(model)
    if obj.sense != pyo.minimize:
        raise EmbeddingError(
            f"market price: objective {obj.name!r} must be minimized (the supply cost)")
    cons = tuple(model.component_data_objects(pyo.Constraint, active=True))
    reps = []
    with temporary_changes(restore=[demand]):
        for d in (0.0, 1.0):
            demand.set_value(d)
            reps.append(_repns(obj, cons))
    index = ComponentMap()
    for orep, rows in reps:
        for v in list(orep.linear_vars) + [v for pair in orep.quadratic_vars
                                           for v in pair] + \
                [v for rep, _, _ in rows for v in rep.linear_vars]:
            if v not in index:
                index[v] = len(index)
    (c, H, A, rlo0, rup0), (c1, H1, A1, rlo_1, rup_1) = \
        (_arrays(orep, rows, index) for orep, rows in reps)
    if not (np.array_equal(c, c1) and np.array_equal(H, H1) and np.array_equal(A, A1)):
        raise EmbeddingError(
            f"market price: the costs or constraint coefficients of model "
            f"{model.name!r} depend on the demand parameter {demand.name!r}; only "
            "constraint bounds may")
    variables = tuple(index.keys())
    slope = {k: np.where(np.isfinite(b0), b1 - b0, 0.0)
             for k, b0, b1 in (("lo", rlo0, rlo_1), ("up", rup0, rup_1))}
    return SupplyQP(
        variables, cons, c, H, A, rlo0, slope["lo"], rup0, slope["up"],
        np.array([bool(con.equality) for con in cons]),
        np.array([-np.inf if v.lb is None else float(v.lb) for v in variables]),
        np.array([np.inf if v.ub is None else float(v.ub) for v in variables]))


# -- one active set: its exact affine piece and where it is optimal ------------------
@dataclass(frozen=True)
class ActiveSet:
    """Which variables sit at a bound and which rows are active at a solution."""

    at_lower: np.ndarray
    at_upper: np.ndarray
    active_row: np.ndarray
    at_upper_row: np.ndarray

    @property
    def free(self) -> np.ndarray:
        return ~(self.at_lower | self.at_upper)

    @property
    def key(self) -> tuple[int, ...]:
        var = self.at_upper.astype(int) - self.at_lower.astype(int)
        row = self.active_row.astype(int) + self.at_upper_row.astype(int)
        return tuple(var.tolist() + row.tolist())


def _active_set(qp: SupplyQP, x: np.ndarray, total: float, tol: float) -> ActiveSet:
    with np.errstate(invalid="ignore"):
        at_lo = np.isfinite(qp.xl) & (np.abs(x - qp.xl) <= tol)
        at_up = np.isfinite(qp.xu) & (np.abs(qp.xu - x) <= tol) & ~at_lo
        ax = qp.A @ x
        lo_act = qp.equality | (np.abs(ax - (qp.rlo0 + total * qp.rlo1)) <= tol)
        up_act = ~lo_act & (np.abs(qp.rup0 + total * qp.rup1 - ax) <= tol)
    return ActiveSet(at_lo, at_up, lo_act | up_act, up_act)


def _solve_kkt(qp: SupplyQP, s: ActiveSet) -> tuple[np.ndarray, ...] | None:
    """x(Y) = xa + Y xb and lambda(Y) = la + Y lb from the KKT conditions of active set
    s: H x + c = A' lambda on the free variables, the active rows at their bounds.
    None when the system is singular (a degenerate point, or a non-unique price)."""
    F, R = np.flatnonzero(s.free), np.flatnonzero(s.active_row)
    n_f, n_r = F.size, R.size
    if n_f + n_r == 0:
        return None
    fixed = np.where(s.at_lower, qp.xl, np.where(s.at_upper, qp.xu, 0.0))
    a_rf = qp.A[np.ix_(R, F)]
    M = np.block([[qp.H[np.ix_(F, F)], -a_rf.T], [a_rf, np.zeros((n_r, n_r))]])
    r0 = np.where(s.at_upper_row, qp.rup0, qp.rlo0)[R] - qp.A[R] @ fixed
    r1 = np.where(s.at_upper_row, qp.rup1, qp.rlo1)[R]
    rhs = np.column_stack([np.concatenate([-(qp.c + qp.H @ fixed)[F], r0]),
                           np.concatenate([np.zeros(n_f), r1])])
    if np.linalg.cond(M) > MAX_CONDITION:
        return None
    z = np.linalg.solve(M, rhs)
    xa, xb = fixed.copy(), np.zeros_like(fixed)
    xa[F], xb[F] = z[:n_f, 0], z[:n_f, 1]
    la, lb = np.zeros(len(qp.constraints)), np.zeros(len(qp.constraints))
    la[R], lb[R] = z[n_f:, 0], z[n_f:, 1]
    return xa, xb, la, lb


#: Families of optimality conditions g(Y) >= 0 of an active set; crossing the end of
#: its interval, the binding condition flips the set as ``_flip`` says.
_FREE_LO, _FREE_UP, _MU_LO, _MU_UP, _ROW_LO, _ROW_UP, _IDLE_LO, _IDLE_UP = range(8)


@dataclass(frozen=True)
class Extent:
    """Where an active set is optimal, and which conditions bind at each end (as
    (family, index) pairs)."""

    lo: float
    hi: float
    at_lo: tuple[tuple[int, int], ...] = ()
    at_hi: tuple[tuple[int, int], ...] = ()


Condition = tuple[int, np.ndarray, np.ndarray, np.ndarray, float]


def _conditions(qp: SupplyQP, s: ActiveSet, piece: tuple[np.ndarray, ...],
                scale: float) -> list[Condition]:
    """Every condition g(Y) = ga + Y gb >= 0 of active set s, per family: (family,
    indices, ga, gb, magnitude). Free variables within bounds, bound and row
    multipliers of the right sign, inactive rows satisfied."""
    xa, xb, la, lb = piece
    movable = qp.xl < qp.xu
    pmag = max(1.0, float(np.max(np.abs(la) + scale * np.abs(lb), initial=0.0)))
    amag = scale * max(1.0, float(np.abs(qp.A).max(initial=0.0)))
    mu_a, mu_b = qp.H @ xa + qp.c - qp.A.T @ la, qp.H @ xb - qp.A.T @ lb
    ax_a, ax_b, idle = qp.A @ xa, qp.A @ xb, ~s.active_row
    ineq = s.active_row & ~qp.equality
    spec = [
        (_FREE_LO, s.free & np.isfinite(qp.xl), xa - qp.xl, xb, scale),
        (_FREE_UP, s.free & np.isfinite(qp.xu), qp.xu - xa, -xb, scale),
        (_MU_LO, s.at_lower & movable, mu_a, mu_b, pmag),
        (_MU_UP, s.at_upper & movable, -mu_a, -mu_b, pmag),
        (_ROW_LO, ineq & ~s.at_upper_row, la, lb, pmag),
        (_ROW_UP, ineq & s.at_upper_row, -la, -lb, pmag),
        (_IDLE_LO, idle & np.isfinite(qp.rlo0), ax_a - qp.rlo0, ax_b - qp.rlo1, amag),
        (_IDLE_UP, idle & np.isfinite(qp.rup0), qp.rup0 - ax_a, qp.rup1 - ax_b, amag),
    ]
    with np.errstate(invalid="ignore"):
        return [(fam, np.flatnonzero(m), ga[m], gb[m], mag)
                for fam, m, ga, gb, mag in spec]


def _extent(qp: SupplyQP, s: ActiveSet, piece: tuple[np.ndarray, ...],
            scale: float) -> Extent:
    """Interval of Y where active set s stays optimal: a ratio test on each
    condition; a condition that does not move with Y must hold as it is."""
    bounds: list[tuple[float, int, int, bool]] = []  # (Y, family, index, is_lower)
    for fam, idx, ga, gb, mag in _conditions(qp, s, piece, scale):
        flat = np.abs(gb) * scale <= 1e-12 * mag
        if np.any(ga[flat] < -1e-9 * mag):
            return Extent(np.inf, -np.inf)
        for k in np.flatnonzero(~flat):
            bounds.append((float(-ga[k] / gb[k]), fam, int(idx[k]), bool(gb[k] > 0)))
    lows = [b for b in bounds if b[3]]
    highs = [b for b in bounds if not b[3]]
    lo = max((b[0] for b in lows), default=-np.inf)
    hi = min((b[0] for b in highs), default=np.inf)
    snap = SNAP_RTOL * scale
    return Extent(lo, hi, tuple((f, i) for y, f, i, _ in lows if y >= lo - snap),
                  tuple((f, i) for y, f, i, _ in highs if y <= hi + snap))


def _flip(s: ActiveSet, binding: Sequence[tuple[int, int]]) -> ActiveSet:
    """The active set across an end of s's interval, where ``binding`` conditions
    reach zero: a free variable reaching a bound sits at it, a bound variable or an
    active row whose multiplier reaches zero is released, an idle row reaching its
    bound becomes active (the step of a parametric active-set method)."""
    at_lo, at_up = s.at_lower.copy(), s.at_upper.copy()
    act, act_up = s.active_row.copy(), s.at_upper_row.copy()
    for fam, i in binding:
        if fam == _FREE_LO:
            at_lo[i] = True
        elif fam == _FREE_UP:
            at_up[i] = True
        elif fam in (_MU_LO, _MU_UP):
            at_lo[i] = at_up[i] = False
        elif fam in (_ROW_LO, _ROW_UP):
            act[i] = act_up[i] = False
        else:
            act[i], act_up[i] = True, fam == _IDLE_UP
    return ActiveSet(at_lo, at_up, act, act_up)
