"""The user's supply model as a parametric convex QP, and the linear algebra of one
active set (its exact affine piece, where it stays optimal, its neighbours).

A supply model with demand parameters D_1..D_K (mutable Params) reads as

    min c.x + x'Hx/2  s.t.  rlo(D) <= A x <= rup(D),  xl <= x <= xu,

with the row bounds affine in D: rlo(D) = rlo0 + sum_k D_k rlo1[:, k] (same for rup);
costs and coefficients must not depend on D. For one parameter moving along a line
(``MultiSupplyQP.along``) the problem is a one-parameter QP (``SupplyQP``): on each
active set its KKT conditions are a linear system whose solution is affine in the
parameter, optimal on an interval that a ratio test gives (``extent``); crossing an
end flips the conditions that bind there (``flip``). solvers/market/price.py builds
the price curve from these pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.repn import generate_standard_repn
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import splu

from aggregame.errors import EmbeddingError
from aggregame.models.context import temporary_changes
from aggregame.models.duals import active_objective

#: The KKT matrix of an active set with a larger condition number is degenerate.
MAX_CONDITION = 1e12
#: A constraint whose gradient is within this (relative) of the span of those kept
#: is dependent on them.
RANK_RTOL = 1e-9
#: KKT systems larger than this are factored as sparse matrices (a market model's
#: rows touch few variables: a 300-row system 10 times faster than dense).
SPARSE_FROM = 60
#: Segment ends closer than this (relative to the scale of the demand) are one point.
SNAP_RTOL = 1e-12


@dataclass(frozen=True)
class SupplyQP:
    """min c.x + x'Hx/2 s.t. rlo <= A x <= rup, xl <= x <= xu, with the row bounds
    affine in one parameter D: rlo = rlo0 + D * rlo1 (same for rup)."""

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

    def row(self, constraint: Any) -> int:
        """Index of ``constraint`` among the rows."""
        for k, con in enumerate(self.constraints):
            if con is constraint:
                return k
        raise EmbeddingError(f"market price: constraint {constraint.name!r} is not an "
                             "active constraint of the model")


@dataclass(frozen=True)
class MultiSupplyQP:
    """The QP with K demand parameters: ``qp`` at D = 0, and the row bounds' slopes
    in each demand, (rows, K) arrays."""

    qp: SupplyQP
    rlo1: np.ndarray
    rup1: np.ndarray

    def along(self, k: int, demands: np.ndarray) -> SupplyQP:
        """The one-parameter QP in demand k, every other demand fixed at
        ``demands`` (its own entry is ignored)."""
        rest = np.array(demands, dtype=float)
        rest[k] = 0.0
        with np.errstate(invalid="ignore"):
            lo0 = np.where(np.isfinite(self.qp.rlo0), self.qp.rlo0 + self.rlo1 @ rest,
                           self.qp.rlo0)
            up0 = np.where(np.isfinite(self.qp.rup0), self.qp.rup0 + self.rup1 @ rest,
                           self.qp.rup0)
        return SupplyQP(self.qp.variables, self.qp.constraints, self.qp.c, self.qp.H,
                        self.qp.A, lo0, self.rlo1[:, k], up0, self.rup1[:, k],
                        self.qp.equality, self.qp.xl, self.qp.xu)


    def line(self, base: np.ndarray, direction: np.ndarray) -> SupplyQP:
        """The one-parameter QP along D = base + tau * direction (parameter tau)."""
        base, direction = np.asarray(base, float), np.asarray(direction, float)
        with np.errstate(invalid="ignore"):
            lo0 = np.where(np.isfinite(self.qp.rlo0), self.qp.rlo0 + self.rlo1 @ base,
                           self.qp.rlo0)
            up0 = np.where(np.isfinite(self.qp.rup0), self.qp.rup0 + self.rup1 @ base,
                           self.qp.rup0)
        return SupplyQP(self.qp.variables, self.qp.constraints, self.qp.c, self.qp.H,
                        self.qp.A, lo0, self.rlo1 @ direction, up0,
                        self.rup1 @ direction, self.qp.equality, self.qp.xl,
                        self.qp.xu)


# -- reading the model ----------------------------------------------------------------
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


def extract_qp(model: pyo.Block, demands: Sequence[Any]) -> MultiSupplyQP:
    """The supply model as a ``MultiSupplyQP``, its row bounds affine in each demand
    (read at D = 0 and at each unit vector; the coefficients must not depend on D).
    Other mutable Params keep their current values."""
    obj = active_objective(model)
    if obj.sense != pyo.minimize:
        raise EmbeddingError(
            f"market price: objective {obj.name!r} must be minimized (the supply cost)")
    cons = tuple(model.component_data_objects(pyo.Constraint, active=True))
    reps = []
    with temporary_changes(restore=list(demands)):
        for k in range(-1, len(demands)):
            for j, demand in enumerate(demands):
                demand.set_value(1.0 if j == k else 0.0)
            reps.append(_repns(obj, cons))
    index = ComponentMap()
    for orep, rows in reps:
        for v in list(orep.linear_vars) + [v for pair in orep.quadratic_vars
                                           for v in pair] + \
                [v for rep, _, _ in rows for v in rep.linear_vars]:
            if v not in index:
                index[v] = len(index)
    arrays = [_arrays(orep, rows, index) for orep, rows in reps]
    c, H, A, rlo0, rup0 = arrays[0]
    for k, (ck, hk, ak, _, _) in enumerate(arrays[1:]):
        if not (np.array_equal(c, ck) and np.array_equal(H, hk)
                and np.array_equal(A, ak)):
            raise EmbeddingError(
                f"market price: the costs or constraint coefficients of model "
                f"{model.name!r} depend on the demand parameter {demands[k].name!r}; "
                "only constraint bounds may")
    with np.errstate(invalid="ignore"):
        lo1 = np.column_stack([np.where(np.isfinite(rlo0), a[3] - rlo0, 0.0)
                               for a in arrays[1:]])
        up1 = np.column_stack([np.where(np.isfinite(rup0), a[4] - rup0, 0.0)
                               for a in arrays[1:]])
    variables = tuple(index.keys())
    qp = SupplyQP(
        variables, cons, c, H, A, rlo0, lo1[:, 0], rup0, up1[:, 0],
        np.array([bool(con.equality) for con in cons]),
        np.array([-np.inf if v.lb is None else float(v.lb) for v in variables]),
        np.array([np.inf if v.ub is None else float(v.ub) for v in variables]))
    return MultiSupplyQP(qp, lo1, up1)


def demand_range(qp: SupplyQP) -> tuple[float, float]:
    """(smallest, largest) demand D at which the QP is feasible (+-inf if none
    bounds it), by two LPs over (x, D) (HiGHS through scipy). Rounded to the LP's
    tolerance: callers refine the end from the exact pieces."""
    from scipy.optimize import linprog

    n = len(qp.variables)
    rows, rhs, eq_rows, eq_rhs = [], [], [], []
    for k in range(qp.A.shape[0]):
        a = np.append(qp.A[k], 0.0)
        if qp.equality[k]:
            eq_rows.append(np.append(qp.A[k], -qp.rlo1[k]))
            eq_rhs.append(qp.rlo0[k])
            continue
        if np.isfinite(qp.rlo0[k]):  # A x - rlo1 D >= rlo0
            rows.append(-(a - np.append(np.zeros(n), qp.rlo1[k])))
            rhs.append(-qp.rlo0[k])
        if np.isfinite(qp.rup0[k]):
            rows.append(a - np.append(np.zeros(n), qp.rup1[k]))
            rhs.append(qp.rup0[k])
    bounds = [(None if not np.isfinite(lo) else lo, None if not np.isfinite(up) else up)
              for lo, up in zip(qp.xl, qp.xu)] + [(None, None)]
    ends = []
    for sign in (1.0, -1.0):
        res = linprog(np.append(np.zeros(n), sign), A_ub=np.array(rows) if rows
                      else None, b_ub=np.array(rhs) if rhs else None,
                      A_eq=np.array(eq_rows) if eq_rows else None,
                      b_eq=np.array(eq_rhs) if eq_rhs else None, bounds=bounds,
                      method="highs")
        if res.status == 3:  # unbounded
            ends.append(-sign * np.inf)
        elif res.status != 0:
            raise EmbeddingError(
                "market price: the supply model is infeasible at every demand "
                f"(scipy's HiGHS: {res.message})")
        else:
            ends.append(float(res.x[-1]))
    return ends[0], ends[1]


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


def active_set(qp: SupplyQP, x: np.ndarray, total: float, tol: float) -> ActiveSet:
    """The active set of the primal point x at demand ``total``."""
    with np.errstate(invalid="ignore"):
        at_lo = np.isfinite(qp.xl) & (np.abs(x - qp.xl) <= tol)
        at_up = np.isfinite(qp.xu) & (np.abs(qp.xu - x) <= tol) & ~at_lo
        ax = qp.A @ x
        lo_act = qp.equality | (np.abs(ax - (qp.rlo0 + total * qp.rlo1)) <= tol)
        up_act = ~lo_act & (np.abs(qp.rup0 + total * qp.rup1 - ax) <= tol)
    return ActiveSet(at_lo, at_up, lo_act | up_act, up_act)


def solve_kkt(qp: SupplyQP, s: ActiveSet) -> tuple[np.ndarray, ...] | None:
    """x(D) = xa + D xb and lambda(D) = la + D lb from the KKT conditions of active set
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
    z = _solve_if_regular(M, rhs)
    if z is None:
        return None
    xa, xb = fixed.copy(), np.zeros_like(fixed)
    xa[F], xb[F] = z[:n_f, 0], z[:n_f, 1]
    la, lb = np.zeros(len(qp.constraints)), np.zeros(len(qp.constraints))
    la[R], lb[R] = z[n_f:, 0], z[n_f:, 1]
    return xa, xb, la, lb


def _solve_if_regular(M: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """M^-1 rhs, or None when M is singular or nearly so: the solution's size
    against the data's, ||z|| ||M|| / ||rhs||, bounds M's condition number from
    below, and above MAX_CONDITION the point is degenerate. (An SVD per piece for
    the exact condition number cost 80% of a map.)"""
    try:
        if M.shape[0] > SPARSE_FROM:
            z = splu(csc_matrix(M)).solve(rhs)
        else:
            z = np.linalg.solve(M, rhs)
    except (np.linalg.LinAlgError, RuntimeError):  # exactly singular
        return None
    size = np.abs(z).max(initial=0.0)
    data = max(np.abs(rhs).max(initial=0.0), 1e-300)
    if not np.isfinite(size) or size * np.linalg.norm(M, np.inf) > MAX_CONDITION * data:
        return None
    return z


#: Families of optimality conditions g(D) >= 0 of an active set; crossing the end of
#: its interval, the binding condition flips the set as ``flip`` says.
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


def conditions(qp: SupplyQP, s: ActiveSet, piece: tuple[np.ndarray, ...],
               scale: float) -> list[Condition]:
    """Every condition g(D) = ga + D gb >= 0 of active set s, per family: (family,
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


def extent(qp: SupplyQP, s: ActiveSet, piece: tuple[np.ndarray, ...],
           scale: float) -> Extent:
    """Interval of D where active set s stays optimal: a ratio test on each
    condition; a condition that does not move with D must hold as it is."""
    bounds: list[tuple[float, int, int, bool]] = []  # (D, family, index, is_lower)
    for fam, idx, ga, gb, mag in conditions(qp, s, piece, scale):
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


def flip(s: ActiveSet, binding: Sequence[tuple[int, int]]) -> ActiveSet:
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


def violated(qp: SupplyQP, s: ActiveSet, piece: tuple[np.ndarray, ...], total: float,
             scale: float) -> list[tuple[int, int]]:
    """Conditions of active set s violated at demand ``total``."""
    return [(fam, int(i)) for fam, idx, ga, gb, mag in conditions(qp, s, piece, scale)
            for i in idx[ga + total * gb < -1e-12 * mag]]


def released(s: ActiveSet) -> list[ActiveSet]:
    """``s`` with one variable bound or one inequality row released, each way: where
    the active constraints are linearly dependent (a primal-degenerate point: a line
    at its limit and a generator at its capacity fixing the same flow), the KKT
    system of s is singular, and one of these is the same point with a unique
    solution (the released constraint then holds as an inactive one)."""
    out = []
    for i in np.flatnonzero(~s.free):
        at_lo, at_up = s.at_lower.copy(), s.at_upper.copy()
        at_lo[i] = at_up[i] = False
        out.append(ActiveSet(at_lo, at_up, s.active_row, s.at_upper_row))
    return out


def independent(qp: SupplyQP, s: ActiveSet,
                strength: np.ndarray | None = None) -> ActiveSet:
    """``s`` with its linearly dependent active constraints released: equality
    rows first, then the others by ``strength`` (|multiplier| of each variable bound
    and then each row, e.g. the solver's reduced costs and duals: the constraints
    that carry the price are kept, so the multipliers keep their signs), variable
    bounds before inequality rows on ties; each kept only if it adds to the rank of
    those kept (a primal-degenerate point: storage empty and idle for hours, a ramp
    and a capacity fixing the same output). The released ones hold as inactive
    conditions of the piece, so its interval still ends where one would be
    crossed."""
    n = len(qp.variables)
    if strength is None:
        strength = np.zeros(n + len(qp.constraints))
    others = [("var", int(i)) for i in np.flatnonzero(~s.free)] + \
        [("row", int(r)) for r in np.flatnonzero(s.active_row & ~qp.equality)]
    others.sort(key=lambda c: -strength[c[1] if c[0] == "var" else n + c[1]])
    order = [("row", int(r)) for r in np.flatnonzero(s.active_row & qp.equality)] + \
        others
    basis = np.zeros((0, n))  # orthonormal rows spanning the kept gradients
    at_lo, at_up = s.at_lower.copy(), s.at_upper.copy()
    act, act_up = s.active_row.copy(), s.at_upper_row.copy()
    for kind, k in order:
        grad = qp.A[k] if kind == "row" else np.eye(1, n, k)[0]
        # Gram-Schmidt twice (stable): what of grad the kept ones do not span.
        rest = grad - basis.T @ (basis @ grad)
        rest = rest - basis.T @ (basis @ rest)
        size = float(np.linalg.norm(rest))
        if size > RANK_RTOL * float(np.linalg.norm(grad)):
            basis = np.vstack([basis, rest / size])
        elif kind == "var":
            at_lo[k] = at_up[k] = False
        else:
            act[k] = act_up[k] = False
    return ActiveSet(at_lo, at_up, act, act_up)
