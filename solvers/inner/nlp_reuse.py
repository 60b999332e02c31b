"""One Pyomo model written once, solved by Ipopt (cyipopt) many times.

Pyomo's cyipopt solver writes the model as an NL file and loads it into PyNumero's
ASL interface (``PyomoNLP``) on every call: for the inner problem of a 100-member
aggregator that took about a third of each solve. Here the NL file is written once.
Whatever an outer loop changes between solves is a Pyomo Var *fixed by its bounds*
(lb = ub): the purchase, the price, a priced-out member's x_i = 0, the max-min level
of the tie-break. Ipopt's default ``fixed_variable_treatment = make_parameter``
removes such variables from its problem, so Ipopt sees exactly the problem of a model
in which they were constants. An inequality that a solve leaves out is given the
bounds (-inf, inf): Ipopt then carries a free slack for it and its multiplier is 0.

The NL writer's linear presolve is switched off: it would substitute variables whose
bounds are equal at writing time and drop one-variable equalities, and the point is
that bounds change after writing.

The callbacks are those of PyNumero's ``CyIpoptNLP`` (the same ASL evaluations, the
lower triangle of the Hessian, evaluation errors passed to Ipopt as a rejected step),
with bounds given per solve. Multipliers are Ipopt's ``mult_g``, the values Pyomo's
cyipopt solver loads into the ``dual`` Suffix, so the signs of pyomo_inner.py hold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyomo.environ as pyo

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class NlpSolution:
    """What one Ipopt run returned, in the NLP's own order of variables and rows."""

    primals: np.ndarray
    mult_g: np.ndarray
    status: int
    message: str
    iterations: int
    zl: np.ndarray | None = None  # multipliers of the variables' bounds
    zu: np.ndarray | None = None


@dataclass(frozen=True)
class NlpBounds:
    """Bounds of one solve: variables (lb, ub) and constraint rows (cl, cu)."""

    lb: np.ndarray
    ub: np.ndarray
    cl: np.ndarray
    cu: np.ndarray


class ReusableNlp:
    """The model's NL representation (PyNumero ``PyomoNLP``), built once.

    Parameters
    ----------
    model : a ConcreteModel with exactly one active Objective. Every Var that a later
        solve fixes must be unfixed now (a fixed Var is written as a constant).
    """

    def __init__(self, model: pyo.ConcreteModel) -> None:
        from pyomo.contrib.pynumero.interfaces.pyomo_nlp import PyomoNLP

        self.nlp = PyomoNLP(model, nl_file_options={"linear_presolve": False,
                                                   "export_defined_variables": False})
        self.n = self.nlp.n_primals()
        self.m = self.nlp.n_constraints()
        self._callbacks: _Callbacks | None = None  # one per NLP, reset per solve

    def var_index(self, variables: Iterable[Any]) -> np.ndarray:
        """Positions of Pyomo VarData objects in the NLP's primal vector."""
        return np.asarray(self.nlp.get_primal_indices(list(variables)), dtype=int)

    def row_index(self, constraints: Iterable[Any]) -> np.ndarray:
        """Positions of Pyomo ConstraintData objects among the NLP's rows."""
        return np.asarray(self.nlp.get_constraint_indices(list(constraints)), dtype=int)

    def default_bounds(self) -> NlpBounds:
        """The bounds written in the model (copies, to be changed per solve)."""
        return NlpBounds(self.nlp.primals_lb().copy(), self.nlp.primals_ub().copy(),
                         self.nlp.constraints_lb().copy(),
                         self.nlp.constraints_ub().copy())

    def solve(self, x0: np.ndarray, bounds: NlpBounds,
              options: Mapping[str, Any], warm: "NlpSolution | None" = None
              ) -> NlpSolution:
        """Run Ipopt from ``x0`` within ``bounds`` with ``options``.

        Raises whatever cyipopt raises (e.g. on an option Ipopt refuses); a run that
        ends without an optimum is reported by its status, not raised.
        """
        import cyipopt

        if self._callbacks is None:
            self._callbacks = _Callbacks(self.nlp, *_structure(self.nlp, x0))
        problem_obj = self._callbacks
        problem_obj.reset()
        problem = cyipopt.Problem(n=self.n, m=self.m, problem_obj=problem_obj,
                                  lb=bounds.lb, ub=bounds.ub, cl=bounds.cl,
                                  cu=bounds.cu)
        try:
            for key, value in options.items():
                problem.add_option(key, value)
            # Quiet with print_level 0 and sb = yes (the defaults); a user's
            # print_level shows Ipopt's log, as with Pyomo's cyipopt solver's tee.
            if warm is None:
                x, info = problem.solve(np.asarray(x0, dtype=float))
            else:
                x, info = problem.solve(np.asarray(x0, dtype=float),
                                        lagrange=warm.mult_g, zl=warm.zl, zu=warm.zu)
        finally:
            problem.close()
        message = info["status_msg"]
        if isinstance(message, bytes):
            message = message.decode(errors="replace")
        return NlpSolution(np.asarray(x), np.asarray(info["mult_g"]),
                           int(info["status"]), str(message), problem_obj.iterations,
                           np.asarray(info["mult_x_L"]), np.asarray(info["mult_x_U"]))


def _structure(nlp: Any, x0: np.ndarray) -> tuple[Any, Any, np.ndarray]:
    """The Jacobian and Hessian sparsity (ASL's, the same at every point), taken at
    ``x0``: a point where the functions are defined, unlike the model's stored values
    (log of a zero surplus)."""
    nlp.set_primals(np.asarray(x0, dtype=float))
    nlp.set_duals(np.ones(nlp.n_constraints()))
    jac = nlp.evaluate_jacobian()
    hess = nlp.evaluate_hessian_lag()
    return jac, hess, hess.row >= hess.col


class _Callbacks:
    """cyipopt's problem object over a PyomoNLP (PyNumero's CyIpoptNLP, trimmed)."""

    def __init__(self, nlp: Any, jac: Any, hess: Any, lower: np.ndarray) -> None:
        self._nlp = nlp
        self._jac = jac.copy()
        self._hess = hess.copy()
        self._lower = lower
        self._x: np.ndarray | None = None
        self.iterations = 0

    def reset(self) -> None:
        """Before a solve: forget the last point (the NLP may have been evaluated
        elsewhere since) and the iteration count."""
        self._x = None
        self.iterations = 0

    def _primals(self, x: np.ndarray) -> None:
        if self._x is None or not np.array_equal(x, self._x):
            self._nlp.set_primals(x)
            self._x = x.copy()

    def _evaluate(self, what: str, call: Any) -> Any:
        import cyipopt
        from pyomo.contrib.pynumero.exceptions import PyNumeroEvaluationError

        try:
            return call()
        except PyNumeroEvaluationError:
            # A point outside a function's domain: Ipopt shortens the step.
            raise cyipopt.CyIpoptEvaluationError(f"error evaluating the {what}")

    def objective(self, x: np.ndarray) -> float:
        self._primals(x)
        return self._evaluate("objective", self._nlp.evaluate_objective)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        self._primals(x)
        return self._evaluate("gradient", self._nlp.evaluate_grad_objective)

    def constraints(self, x: np.ndarray) -> np.ndarray:
        self._primals(x)
        return self._evaluate("constraints", self._nlp.evaluate_constraints)

    def jacobianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        return self._jac.row, self._jac.col

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        self._primals(x)
        self._evaluate("Jacobian", lambda: self._nlp.evaluate_jacobian(out=self._jac))
        return self._jac.data

    def hessianstructure(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.compress(self._lower, self._hess.row),
                np.compress(self._lower, self._hess.col))

    def hessian(self, x: np.ndarray, y: np.ndarray, obj_factor: float) -> np.ndarray:
        self._primals(x)
        self._nlp.set_duals(y)
        self._nlp.set_obj_factor(obj_factor)
        self._evaluate("Hessian",
                       lambda: self._nlp.evaluate_hessian_lag(out=self._hess))
        return np.compress(self._lower, self._hess.data)

    def intermediate(self, alg_mod: int, iter_count: int, *args: Any) -> bool:
        self.iterations = int(iter_count)
        return True


def free_rows(bounds: NlpBounds, rows: Sequence[int] | np.ndarray) -> None:
    """Leave constraint ``rows`` out of a solve: bounds (-inf, inf), multiplier 0."""
    rows = np.asarray(rows, dtype=int)
    bounds.cl[rows] = -np.inf
    bounds.cu[rows] = np.inf


def fix_vars(bounds: NlpBounds, index: Sequence[int] | np.ndarray,
             values: Any) -> None:
    """Fix the variables at ``index`` to ``values`` by their bounds (lb = ub)."""
    index = np.asarray(index, dtype=int)
    bounds.lb[index] = values
    bounds.ub[index] = values


# Ipopt's ApplicationReturnStatus codes (IpReturnCodes_inc.h) that count as a solve.
SOLVE_SUCCEEDED = 0
#: Status code -> the name Pyomo's cyipopt solver reports (its termination words).
STATUS_NAMES = {
    0: "Solve_Succeeded", 1: "Solved_To_Acceptable_Level",
    2: "Infeasible_Problem_Detected", 3: "Search_Direction_Becomes_Too_Small",
    4: "Diverging_Iterates", 5: "User_Requested_Stop", 6: "Feasible_Point_Found",
    -1: "Maximum_Iterations_Exceeded", -2: "Restoration_Failed",
    -3: "Error_In_Step_Computation", -4: "Maximum_CpuTime_Exceeded",
    -10: "Not_Enough_Degrees_Of_Freedom", -11: "Invalid_Problem_Definition",
    -12: "Invalid_Option", -13: "Invalid_Number_Detected",
    -100: "Unrecoverable_Exception", -101: "NonIpopt_Exception_Thrown",
    -102: "Insufficient_Memory", -199: "Internal_Error",
}
