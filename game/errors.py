"""Exceptions of aggregame.

Every error a user can trigger derives from :class:`AggregameError` *and* from the
built-in type that fits it, so ``except ValueError`` keeps working in user code.
"""

from __future__ import annotations


class AggregameError(Exception):
    """Base class of every error raised on purpose by aggregame."""


class GameDefinitionError(ValueError, AggregameError):
    """A user, price, fairness or player was given invalid data."""


class ScenarioError(ValueError, AggregameError):
    """A scenario file (TOML or its CSV of users) is missing or invalid."""


class SolverError(RuntimeError, AggregameError):
    """A numerical solve did not produce an answer we can trust."""


class SolverUnavailableError(SolverError):
    """A required solver (Ipopt through cyipopt, PyNumero's ASL library, SCIP through
    pyscipopt) is missing."""


class InnerSolveError(SolverError):
    """The inner allocation problem of one player did not end at an optimal point."""


class SettingsError(ValueError, AggregameError):
    """A solver setting (a scenario's [solver] table or a flag) is invalid."""


class GlobalCertificateError(SolverError):
    """The global (SCIP) certificate cannot bound this game, e.g. a priced-out rule
    other than floor, whose member set depends on the price."""


class EmbeddingError(ValueError, AggregameError):
    """A part of the game cannot be written into a Pyomo model as asked (a priced-out
    rule that needs the solve helper's bookkeeping next to a variable price, a price
    without a closed form inside the stacked KKT model, a dual without a known sign)."""


class SolverOptionError(ValueError, AggregameError):
    """A solver name or option is not one the chosen solver accepts."""


class UnsupportedProblemError(ValueError, AggregameError):
    """The chosen solver cannot handle this problem (e.g. HiGHS and a non-QP)."""


class PriceJumpError(SolverError):
    """A profile's total sits at a jump of a price read from a market model: no
    single price clears the market there, so no equilibrium is certified at it."""
