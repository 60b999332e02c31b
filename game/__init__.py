"""aggregame: strategic, alpha-fair energy aggregators in a wholesale market.

Layers point one way: ``studies -> solvers -> models -> game definition -> data``.
This root package holds the game definition (users, price, fairness, players, scenario
files); ``aggregame.models`` builds Pyomo components from it, ``aggregame.solvers``
drives solvers (Pyomo/Ipopt and the native numpy backend), ``aggregame.studies``
reproduces the paper's Section IV.

``load_scenario`` and ``solve_equilibrium`` are exported too, but loaded on first use
(module ``__getattr__``): ``import aggregame`` stays light (no Pyomo, no pandas), and
the definition layer imports nothing from the solvers when it is imported itself.
"""

import importlib
import logging
from typing import Any

from aggregame.errors import (AggregameError, EmbeddingError, GameDefinitionError,
                              GlobalCertificateError, InnerSolveError, ScenarioError,
                              SettingsError, SolverError, SolverOptionError,
                              SolverUnavailableError, UnsupportedProblemError)
from aggregame.fairness import DEFAULT_FLOOR_EPS, Fairness, MaxMinRule, PricedOutRule
from aggregame.players import Game, Player, individuals, quadratic_users
from aggregame.price import (AffinePrice, FunctionPrice, LinearPrice, PowerPrice, Price,
                             SaturatingPrice)
from aggregame.utilities import LogUtility, QuadraticUtility, User, Utility

__version__ = "0.1.0"

# A library logs, an application decides where logs go (the CLI adds a handler).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AggregameError", "EmbeddingError", "GameDefinitionError",
    "GlobalCertificateError", "InnerSolveError", "ScenarioError", "SettingsError",
    "SolverError", "SolverOptionError", "SolverUnavailableError",
    "UnsupportedProblemError", "DEFAULT_FLOOR_EPS", "Fairness",
    "MaxMinRule", "PricedOutRule", "Game", "Player", "individuals", "quadratic_users",
    "AffinePrice", "FunctionPrice", "LinearPrice", "PowerPrice", "Price",
    "SaturatingPrice",
    "LogUtility", "QuadraticUtility", "User", "Utility", "__version__",
    "load_scenario", "solve_equilibrium",
]

#: Exports loaded on first access: name -> the module that defines it.
_LAZY = {"load_scenario": "aggregame.scenario",
         "solve_equilibrium": "aggregame.solvers.dynamics"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later accesses skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
