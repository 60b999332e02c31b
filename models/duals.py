"""Reading multipliers from a ``dual`` Suffix with one documented sign.

Solvers fill Pyomo's ``dual`` Suffix with different signs (measured with Pyomo 6.10):

* ``DualConvention.PYOMO``: the dual of ``lower <= body <= upper`` is
  d(objective)/d(bound), in the objective's own sense: what HiGHS (``highs``,
  ``appsi_highs``), Gurobi, CPLEX, GLPK, CBC and the ``ipopt`` executable report.
* ``DualConvention.IPOPT_RAW``: Ipopt's raw multiplier of its internal minimization,
  which is what Pyomo's ``cyipopt`` interface loads. It equals d(objective)/d(bound)
  for a *maximize* objective and -d(objective)/d(bound) for a *minimize* one, so it
  always measures the *improvement* of the objective.

``bound_sensitivity`` turns either into d(objective)/d(bound);
``improvement_per_unit`` into the gain of the objective (positive when the objective
gets better, whatever its sense). The tests check both against finite differences
with cyipopt and HiGHS, on maximize and minimize models.
"""

from __future__ import annotations

import enum
from typing import Any

import pyomo.environ as pyo

from aggregame.errors import EmbeddingError


class DualConvention(str, enum.Enum):
    """How a solver signs the duals it loads into ``model.dual``."""

    PYOMO = "pyomo"
    IPOPT_RAW = "ipopt-raw"


#: Solvers whose sign was measured or is Pyomo's documented standard.
KNOWN_CONVENTIONS: dict[str, DualConvention] = {
    "cyipopt": DualConvention.IPOPT_RAW,
    "highs": DualConvention.PYOMO,
    "appsi_highs": DualConvention.PYOMO,
    "ipopt": DualConvention.PYOMO,
    "gurobi": DualConvention.PYOMO,
    "gurobi_direct": DualConvention.PYOMO,
    "gurobi_persistent": DualConvention.PYOMO,
    "cplex": DualConvention.PYOMO,
    "glpk": DualConvention.PYOMO,
    "cbc": DualConvention.PYOMO,
}


def solver_name(solver: Any) -> str:
    """Name of a solver given as a string or as a Pyomo solver object."""
    if isinstance(solver, str):
        return solver.strip().lower()
    if type(solver).__name__ == "PyomoCyIpoptSolver":
        return "cyipopt"
    for attr in ("name", "_solver_name"):
        name = getattr(solver, attr, None)
        if isinstance(name, str) and name:
            return name.strip().lower()
    return type(solver).__name__.lower()


def dual_convention(solver: Any) -> DualConvention:
    """The sign convention of ``solver`` (a name, a solver object or a convention)."""
    if isinstance(solver, DualConvention):
        return solver
    name = solver_name(solver)
    if name not in KNOWN_CONVENTIONS:
        raise EmbeddingError(
            f"dual sign: solver {name!r} has no known sign convention; pass "
            f"convention=DualConvention.PYOMO or IPOPT_RAW (known: "
            f"{sorted(KNOWN_CONVENTIONS)})"
        )
    return KNOWN_CONVENTIONS[name]


def active_objective(model: pyo.Block) -> Any:
    """The one active Objective of ``model`` (an error if there are none or several)."""
    objs = list(model.component_data_objects(pyo.Objective, active=True))
    if len(objs) != 1:
        raise EmbeddingError(
            f"dual sign: model {model.name!r} must have exactly one active objective, "
            f"got {len(objs)}"
        )
    return objs[0]


def bound_sensitivity(model: pyo.Block, con: Any, solver: Any) -> float:
    """d(objective)/d(bound of ``con``) from ``model.dual``, in the objective's sense.

    ``con`` is read as ``body == bound`` (or ``body >= lower``, ``body <= upper``) in
    the form Pyomo stores, not as written: a parameter on the right of ``==`` is the
    bound, a variable is moved into the body.
    """
    suffix = model.component("dual")
    if suffix is None or not isinstance(suffix, pyo.Suffix):
        raise EmbeddingError(
            f"dual sign: model {model.name!r} has no 'dual' Suffix; add "
            "model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT) before solving"
        )
    dual = suffix.get(con)
    if dual is None:
        raise EmbeddingError(
            f"dual sign: no dual for constraint {con.name!r}; was the model solved "
            "with a solver that returns duals?"
        )
    dual = float(dual)
    if dual_convention(solver) is DualConvention.IPOPT_RAW and \
            active_objective(model).sense == pyo.minimize:
        return -dual
    return dual


def improvement_per_unit(model: pyo.Block, con: Any, solver: Any) -> float:
    """Gain of the objective per unit of ``con``'s bound: > 0 when more helps."""
    sens = bound_sensitivity(model, con, solver)
    return sens if active_objective(model).sense == pyo.maximize else -sens
