"""Exceptions of aggregame.

Every error a user can trigger derives from :class:`AggregameError` *and* from the
built-in type that fits it, so ``except ValueError`` keeps working in user code.

An error may say where it comes from: ``file`` (the scenario or data file) and
``field`` (``players[2].alpha``, ``market.k``), set with :meth:`AggregameError.at`;
``kind`` names its class of problem in one word (the command line's JSON errors).
``solver_failure`` separates a solver that failed on valid input
(the command line exits 1, naming the solver) from bad input or environment (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class AggregameError(Exception):
    """Base class of every error raised on purpose by aggregame."""

    #: One word for the class of problem (docs/cli.md, section
    #: "JSON output (`--json`)").
    kind: ClassVar[str] = "bad-input"
    #: True for a solver that failed on valid input (not bad input or environment).
    solver_failure: ClassVar[bool] = False
    #: The file the error is about, if any (set by :meth:`at`).
    file: str | None = None
    #: The field's path in that file (``players[0].users``), if any.
    field: str | None = None

    def at(self, file: str | Path | None = None, field: str | None = None
           ) -> "AggregameError":
        """This error, located in ``file`` at ``field`` (for ``raise ... .at()``)."""
        if file is not None:
            self.file = str(file)
        if field is not None:
            self.field = field
        return self


class GameDefinitionError(ValueError, AggregameError):
    """A user, price, fairness or player was given invalid data."""

    kind = "game-definition"


class ScenarioError(ValueError, AggregameError):
    """A scenario file (TOML or its CSV of users) is missing or invalid."""

    kind = "scenario"


class ScenarioTypeError(TypeError, ScenarioError):
    """A scenario was given as something that is not a name or a path."""


class OutsideFolderError(ScenarioError):
    """A scenario points to a file outside its own folder without permission
    (``allow_outside``, the command line's ``--allow-outside``)."""

    kind = "outside-folder"


class UnknownPlayerError(KeyError, AggregameError):
    """A game has no player of that name (also a KeyError, as a mapping's miss)."""

    kind = "unknown-player"

    def __str__(self) -> str:  # KeyError would print the repr of its message
        return str(self.args[0]) if self.args else ""


class SolverError(RuntimeError, AggregameError):
    """A numerical solve did not produce an answer we can trust."""

    kind = "solver-failure"
    solver_failure = True


class SolverUnavailableError(SolverError):
    """A required solver (Ipopt through cyipopt, PyNumero's ASL library, SCIP through
    pyscipopt) is missing."""

    kind = "solver-unavailable"
    solver_failure = False


class InnerSolveError(SolverError):
    """The inner allocation problem of one player did not end at an optimal point."""


class SettingsError(ValueError, AggregameError):
    """A solver setting (a scenario's [solver] table or a flag) is invalid."""

    kind = "settings"


class GlobalCertificateError(SolverError):
    """The global (SCIP) certificate cannot bound this game, e.g. a priced-out rule
    other than floor, whose member set depends on the price."""

    kind = "unsupported"
    solver_failure = False


class EmbeddingError(ValueError, AggregameError):
    """A part of the game cannot be written into a Pyomo model as asked (a priced-out
    rule that needs the solve helper's bookkeeping next to a variable price, a price
    without a closed form inside the stacked KKT model, a dual without a known sign)."""

    kind = "unsupported"


class SolverOptionError(ValueError, AggregameError):
    """A solver name or option is not one the chosen solver accepts."""

    kind = "solver-option"


class FileOptionError(SolverOptionError):
    """A solver option that reads or writes a file, given where files are not allowed
    (a scenario file, or the command line without ``--allow-file-options``)."""

    kind = "file-option"


class UnsupportedProblemError(ValueError, AggregameError):
    """The chosen solver cannot handle this problem (e.g. HiGHS and a non-QP)."""

    kind = "unsupported"


class PriceJumpError(SolverError):
    """A profile's total sits at a jump of a price read from a market model: no
    single price clears the market there, so no equilibrium is certified at it."""
