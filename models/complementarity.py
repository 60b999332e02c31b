"""Smooth reformulations of a model's complementarity conditions, for an NLP solver.

A complementarity ``a >= 0 _|_ b >= 0`` (pyomo.mpec) is not something Ipopt can take.
Two reformulations turn it into smooth constraints governed by one parameter that the
solver drives towards 0 (docs/pyomo.md, section "pyomo.mpec with cyipopt"):

- :attr:`Reformulation.FISCHER_BURMEISTER` (the default): the smoothed
  Fischer-Burmeister equation ``a + b - sqrt(a^2 + b^2 + 2 mu) = 0``. For mu > 0 it
  is smooth and its solutions have a, b > 0 and a b = mu; at mu = 0 it holds exactly
  when a >= 0, b >= 0, a b = 0. Built by :func:`add_fischer_burmeister`, which keeps
  the map from each complementarity to its equation and to its variable.
- :attr:`Reformulation.RELAXATION`: Pyomo's ``mpec.simple_nonlinear``, a >= 0,
  b >= 0, a b <= mpec_bound.

Like Pyomo's ``core.kkt`` transformation, the builder puts everything it adds on one
named sub-block, refuses a name already in use, and answers both ways between a
complementarity and what replaced it. It builds; it never solves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.mpec import Complementarity

from aggregame.errors import AggregameError


class ModelBuildError(ValueError, AggregameError):
    """A model component cannot be added as asked (a name taken, an unknown
    component asked about)."""


class Reformulation(str, enum.Enum):
    """How complementarity becomes smooth constraints."""

    FISCHER_BURMEISTER = "fischer-burmeister"
    RELAXATION = "relaxation"


@dataclass(frozen=True)
class SmoothedComplementarity:
    """What :func:`add_fischer_burmeister` added, and which pair became which row.

    Attributes
    ----------
    block : the sub-block holding the parameter ``mu`` and the equations ``eq``.
    parameter : the mutable smoothing parameter mu (solutions have a b = mu).
    """

    block: pyo.Block
    parameter: pyo.Param
    _equation: ComponentMap
    _variable: ComponentMap
    _complementarity: ComponentMap

    def equation_of(self, complementarity) -> pyo.Constraint:
        """The smoothed equation that replaced ``complementarity``."""
        return self._lookup(self._equation, complementarity, "complementarity")

    def variable_of(self, complementarity) -> pyo.Var:
        """The variable of the pair's first side: the multiplier (sigma, mu) of a
        constraint, or for a stationarity pair the primal variable it bounds."""
        return self._lookup(self._variable, complementarity, "complementarity")

    def complementarity_of(self, variable) -> object:
        """The complementarity whose first side is ``variable``."""
        return self._lookup(self._complementarity, variable, "variable")

    def __len__(self) -> int:
        return len(self._equation)

    def _lookup(self, table: ComponentMap, key, kind: str):
        if key in table:
            return table[key]
        raise ModelBuildError(f"{kind} {getattr(key, 'name', key)!r} was not "
                              f"reformulated by the block {self.block.name!r}")


def _sides(comp) -> tuple[object, object]:
    """(a, b) of ``a >= 0 _|_ b >= 0``. pyomo.mpec stores ``e >= 0`` as the
    relation ``0 <= e``: its second argument is the expression."""
    # ComplementarityData exposes its two relations only as ``_args``.
    return tuple(rel.args[1] - rel.args[0] for rel in comp._args)


def add_fischer_burmeister(model: pyo.Block, name: str = "fischer",
                           mu: float = 1e-2) -> SmoothedComplementarity:
    """Replace every active Complementarity of ``model`` by its smoothed
    Fischer-Burmeister equation, on a new sub-block ``model.<name>``.

    Each replaced complementarity is deactivated (not deleted), so the caller can
    still read both sides of it at the solution.

    Parameters
    ----------
    model : block whose active complementarities (at any depth) are replaced.
    name : name of the sub-block; must not exist on ``model``.
    mu : initial value of the smoothing parameter (> 0 keeps the equation smooth).

    Raises
    ------
    ModelBuildError
        if ``model`` already has a component called ``name``.
    """
    if model.component(name) is not None:
        raise ModelBuildError(f"model {model.name!r} already has a component named "
                              f"{name!r}; pass another name")
    comps = list(model.component_data_objects(Complementarity, active=True))
    pairs = [_sides(c) for c in comps]
    blk = pyo.Block(doc="smoothed Fischer-Burmeister form of the complementarity")
    model.add_component(name, blk)
    blk.mu = pyo.Param(mutable=True, initialize=mu, within=pyo.NonNegativeReals,
                       doc="smoothing: solutions of eq have a * b = mu")
    # Built from a mapping, not a lambda over ``pairs``: the model pickles.
    blk.eq = pyo.Constraint(
        range(len(pairs)),
        rule={k: a + b - pyo.sqrt(a ** 2 + b ** 2 + 2 * blk.mu) == 0
              for k, (a, b) in enumerate(pairs)},
        doc="a + b - sqrt(a^2 + b^2 + 2 mu) = 0, one per complementarity")
    equation, variable, owner = ComponentMap(), ComponentMap(), ComponentMap()
    for k, comp in enumerate(comps):
        comp.deactivate()
        equation[comp] = blk.eq[k]
        # ``x >= 0`` gives the expression x - 0; its only variable is x.
        var = _single_variable(comp._args[0].args[1])
        if var is not None:
            variable[comp] = var
            owner[var] = comp
    return SmoothedComplementarity(blk, blk.mu, equation, variable, owner)


def _single_variable(expr) -> pyo.Var | None:
    return expr if getattr(expr, "is_variable_type", lambda: False)() else None


def add_reformulation(model: pyo.Block, reformulation: Reformulation | str
                      ) -> pyo.Param:
    """Reformulate ``model``'s complementarity and give it a zero objective (the
    system is square: a feasibility problem). Returns the mutable parameter the
    solver drives towards 0 (mu, or mpec_bound).

    Raises
    ------
    ModelBuildError
        for an unknown reformulation, or a model that already has an objective.
    """
    try:
        reformulation = Reformulation(reformulation)
    except ValueError:
        raise ModelBuildError(
            f"reformulation must be one of {[r.value for r in Reformulation]}, got "
            f"{reformulation!r}") from None
    if model.component("kkt_objective") is not None:
        raise ModelBuildError(f"model {model.name!r} already has a component named "
                              f"'kkt_objective'")
    if reformulation is Reformulation.FISCHER_BURMEISTER:
        parameter = add_fischer_burmeister(model).parameter
    else:
        pyo.TransformationFactory("mpec.simple_nonlinear").apply_to(model)
        parameter = model.mpec_bound
    model.kkt_objective = pyo.Objective(expr=0.0, doc="feasibility problem")
    return parameter
