"""aggregame: strategic, alpha-fair energy aggregators in a wholesale market.

Layers point one way: ``cli -> studies -> solvers -> models -> game definition ->
data``. This root package is the game definition (users, price, fairness, players,
scenario files) and imports nothing above it; ``aggregame.models`` builds Pyomo
components from a game, ``aggregame.solvers`` drives solvers (its package exports
``solve_equilibrium`` and ``certify``), ``aggregame.studies`` reproduces the paper's
Section IV (docs/architecture.md).
"""

import logging

from aggregame.errors import (
                              AggregameError,
                              EmbeddingError,
                              GameDefinitionError,
                              GlobalCertificateError,
                              InnerSolveError,
                              ScenarioError,
                              SettingsError,
                              SolverError,
                              SolverOptionError,
                              SolverUnavailableError,
                              UnsupportedProblemError,
)
from aggregame.fairness import DEFAULT_FLOOR_EPS, Fairness, MaxMinRule, PricedOutRule
from aggregame.players import Game, Player, individuals, quadratic_users
from aggregame.price import (
                              AffinePrice,
                              FunctionPrice,
                              LinearPrice,
                              PowerPrice,
                              Price,
                              SaturatingPrice,
)
from aggregame.scenario import Scenario, load_scenario
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
    "Scenario", "load_scenario",
]
