"""The user's supply model, its demand Params and a solver: solves at a demand vector.

Shared by ``MarketPrice`` (one demand) and ``NodalMarketPrice`` (one demand per bus).
It reads the model once as a ``MultiSupplyQP`` (solvers/market/qp.py), solves it
with the user's solver where a piece of the price curve has to be found, and reads
the solver's dual of a balance with the solver's documented sign
(models/duals.py), which the callers keep as evidence only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyomo.environ as pyo

from aggregame.errors import EmbeddingError, SolverError
from aggregame.models.duals import bound_sensitivity, dual_convention, gives_duals
from aggregame.solvers.market.qp import MultiSupplyQP, extract_qp

LOG = logging.getLogger(__name__)

#: HiGHS regularizes QPs by 1e-7 unless told not to, which moves its duals by ~1e-6.
HIGHS_OPTIONS = {"qp_regularization_value": 0.0}
#: SCIP must print nothing: scip_direct drains its log through a pipe that a long
#: log fills, and the solve hangs (docs/pyomo.md, section "SCIP").
SCIP_OPTIONS = {"display/verblevel": 0}

_OK = {pyo.TerminationCondition.optimal, pyo.TerminationCondition.locallyOptimal}


def check_demand(model: Any, demand: Any, field: str) -> None:
    """One clear line when ``demand`` is not a mutable Param of ``model``."""
    name = getattr(demand, "name", repr(demand))
    parent = getattr(demand, "parent_component", lambda: None)()
    if not (getattr(demand, "is_parameter_type", lambda: False)()
            and getattr(parent, "mutable", False)):
        raise EmbeddingError(
            f"market price: field {field!r} must be a mutable Param, got {name!r}")
    if demand.model() is not model:
        raise EmbeddingError(
            f"market price: field {field!r}: {name!r} is not a component of model "
            f"{model.name!r}")


def check_balance(model: Any, balance: Any, field: str) -> None:
    """One clear line when ``balance`` is not one constraint of ``model``."""
    if not (getattr(balance, "ctype", None) is pyo.Constraint
            and not balance.is_indexed()):
        raise EmbeddingError(
            f"market price: field {field!r} must be one constraint (an element of an "
            f"indexed Constraint), got {getattr(balance, 'name', repr(balance))!r}")
    if balance.model() is not model:
        raise EmbeddingError(
            f"market price: field {field!r}: {balance.name!r} is not a component of "
            f"model {model.name!r}")


class SupplySolves:
    """Solves of the user's supply model at given demands.

    Parameters
    ----------
    model : ConcreteModel
    demands : mutable Params of ``model``, one per demand the price depends on.
    solver : name or Pyomo solver object ('highs' by default in the callers).
    """

    def __init__(self, model: pyo.ConcreteModel, demands: Sequence[Any],
                 solver: Any) -> None:
        self.model, self.demands = model, list(demands)
        self.duals = gives_duals(solver)
        self.convention = dual_convention(solver) if self.duals else None
        self.solver = pyo.SolverFactory(solver) if isinstance(solver, str) else solver
        if not self.solver.available(exception_flag=False):
            raise SolverError(f"market price: solver {solver!r} is not available")
        name = solver if isinstance(solver, str) else ""
        self.options = dict(HIGHS_OPTIONS) if name == "highs" else \
            dict(SCIP_OPTIONS) if name == "scip_direct" else {}
        if self.duals and model.component("dual") is None:
            model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        if self.duals and model.component("rc") is None:
            model.rc = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        self.count = 0
        self.multi: MultiSupplyQP = extract_qp(model, self.demands)

    def reread(self) -> None:
        """Read the model again (after the caller changed costs or capacities)."""
        self.multi = extract_qp(self.model, self.demands)

    def solve(self, values: np.ndarray) -> np.ndarray | None:
        """Primal solution (in the QP's variable order) at demands ``values``, or None
        when the solver fails. The caller restores the demands' values."""
        for param, value in zip(self.demands, values):
            param.set_value(float(value))
        self.count += 1
        try:
            results = self.solver.solve(self.model, **(
                {"options": self.options} if self.options else {}))
        except Exception as err:  # solvers raise their own types on failure
            LOG.debug("market price: solve at D = %s failed: %s", values, err)
            return None
        if results.solver.termination_condition not in _OK:
            return None
        x = np.array([v.value for v in self.multi.qp.variables], dtype=float)
        return x if np.all(np.isfinite(x)) else None

    def dual(self, balance: Any) -> float | None:
        """The solver's d(cost)/d(bound) of ``balance`` after the last solve, or None."""
        if not self.duals or self.model.dual.get(balance) is None:
            return None
        return bound_sensitivity(self.model, balance, self.convention)

    def strength(self) -> np.ndarray | None:
        """|reduced cost| of each variable and |dual| of each row after the last
        solve (the QP's order), or None where the solver gives none: which active
        constraints carry the price at a degenerate point (qp.independent)."""
        rc, dual = self.model.component("rc"), self.model.component("dual")
        if not self.duals or rc is None or dual is None:
            return None
        qp = self.multi.qp
        values = [rc.get(v) for v in qp.variables] + [dual.get(c)
                                                      for c in qp.constraints]
        if any(v is None for v in values):
            return None
        return np.abs(np.array(values, dtype=float))
