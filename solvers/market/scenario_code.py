"""The market model a scenario file names: ``[market] model = "module:function"``.

A scenario file is hostile input (it may come from anyone), and importing a Python
file runs its code. So the contract is narrow, and every step refuses with one line
naming the file, the field and the value (a ScenarioError, exit 2):

* code runs only when the caller says so (``allow_code=True``; on the command line
  ``--allow-code``). Without it nothing is imported, whatever the file says;
* ``module`` is one Python identifier (no dots, no path) and names the file
  ``<module>.py`` *beside the scenario file*, a regular file whose real path (links
  resolved) is inside the scenario's folder. It is loaded from that path under a
  private name: never an installed module of the same name, never put on
  ``sys.path``, never left in ``sys.modules``. Its own imports are ordinary (it may
  import pyomo; a second file of the folder is not importable from it);
* ``function`` is one identifier, a callable of the module, called with no
  arguments. It returns a Pyomo model (a ConcreteModel) that minimizes the supply
  cost, with a mutable Param and a balance Constraint, by default named ``demand``
  and ``balance`` (``[market] demand = "..."``, ``balance = "..."`` name others:
  dotted component names as ``model.find_component`` reads them);
* the result is a ``MarketPrice`` of that model (solvers/market/price.py, which
  checks the rest: linear constraints, a quadratic or linear cost, feasible at 0).

The scenario loader (game/scenario.py) and the command line wire this in; this
module is the one place that imports scenario code.
"""

from __future__ import annotations

import importlib.util
import re
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyomo.environ as pyo

from aggregame.errors import AggregameError, ScenarioError
from aggregame.solvers.market.price import MarketPrice

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_SPEC = re.compile(rf"^({_IDENTIFIER}):({_IDENTIFIER})$")
#: Largest file of market code read (bytes): a larger one is a mistake.
MAX_CODE_BYTES = 4 * 2**20


@dataclass(frozen=True)
class MarketSpec:
    """``[market]`` of a scenario file: which function builds the model, and the
    names of its demand Param and balance Constraint."""

    module: str
    function: str
    demand: str = "demand"
    balance: str = "balance"
    solver: str = "highs"

    @classmethod
    def parse(cls, model: Any, where: str, **names: Any) -> MarketSpec:
        """From the field's text ``module:function`` (``where`` names the file and
        field in messages); ``names`` are the optional demand/balance/solver."""
        match = _SPEC.match(model) if isinstance(model, str) else None
        if match is None:
            raise ScenarioError(
                f"{where}: [market] model must be 'module:function' (two Python "
                f"identifiers, the module a .py file beside the scenario), got "
                f"{model!r}")
        for key, value in names.items():
            if not isinstance(value, str) or not value.strip():
                raise ScenarioError(f"{where}: [market] {key} must be a non-empty "
                                    f"string, got {value!r}")
        return cls(match.group(1), match.group(2), **names)

    @property
    def text(self) -> str:
        return f"{self.module}:{self.function}"


def load_market_price(spec: MarketSpec, folder: Path, *, allow_code: bool,
                      source: str = "scenario") -> MarketPrice:
    """Import ``spec.module`` from ``folder`` only, call ``spec.function`` and read its
    model as a MarketPrice. ``source`` names the scenario file in messages.

    Raises
    ------
    ScenarioError
        Code not allowed, a file missing or outside the folder, a function missing,
        raising or returning something else than a model with the named
        components, or a model MarketPrice cannot read: one line each.
    """
    where = f"{source}: [market] model = {spec.text!r}"
    if not allow_code:
        raise ScenarioError(
            f"{where} runs Python code from the scenario's folder; allow it "
            "explicitly (--allow-code, or allow_code=True) if you trust the file")
    module = _import_from(folder, spec.module, where)
    function = getattr(module, spec.function, None)
    if not callable(function):
        raise ScenarioError(f"{where}: {spec.module}.py defines no function "
                            f"{spec.function!r}")
    try:
        model = function()
    except Exception as err:  # the user's code: any error is reported, in one line
        raise ScenarioError(f"{where}: calling {spec.text}() raised "
                            f"{type(err).__name__}: {_one_line(err)}") from None
    if not isinstance(model, pyo.Block) or not model.is_constructed():
        raise ScenarioError(f"{where}: {spec.text}() must return a constructed Pyomo "
                            f"model (a ConcreteModel), got {type(model).__name__}")
    demand = _component(model, spec.demand, "demand", where)
    balance = _component(model, spec.balance, "balance", where)
    try:
        return MarketPrice(model, demand, balance, solver=spec.solver)
    except AggregameError as err:
        raise ScenarioError(f"{where}: {_one_line(err)}") from None


def _import_from(folder: Path, name: str, where: str) -> Any:
    """The module of file ``folder/<name>.py``, loaded under a private name."""
    base = Path(folder).resolve()
    path = base / f"{name}.py"
    try:
        real = path.resolve(strict=True)
        info = real.stat()
    except (OSError, RuntimeError):
        raise ScenarioError(f"{where}: no file {name}.py beside the scenario (in "
                            f"{base})") from None
    if real.parent != base:
        raise ScenarioError(f"{where}: {name}.py links outside the scenario's folder "
                            f"(to {real}); the market code must live beside it")
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CODE_BYTES:
        raise ScenarioError(f"{where}: {name}.py must be a regular file of at most "
                            f"{MAX_CODE_BYTES} bytes")
    private = f"_aggregame_scenario_{name}_{uuid.uuid4().hex}"
    loader_spec = importlib.util.spec_from_file_location(private, real)
    if loader_spec is None or loader_spec.loader is None:
        raise ScenarioError(f"{where}: {name}.py cannot be loaded as Python")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[private] = module  # dataclasses and pickling look modules up here
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:  # the user's code: any error is reported, in one line
        raise ScenarioError(f"{where}: importing {name}.py raised "
                            f"{type(err).__name__}: {_one_line(err)}") from None
    finally:
        sys.modules.pop(private, None)
    return module


def _component(model: pyo.Block, name: str, field: str, where: str) -> Any:
    found = model.find_component(name)
    if found is None:
        raise ScenarioError(f"{where}: the model has no component {name!r} (its "
                            f"[market] {field}); set [market] {field} = \"...\" to "
                            "the right name")
    return found


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
