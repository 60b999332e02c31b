"""The [solver] table of a scenario file as one typed configuration.

:class:`SolverSettings` is checked once, when it is built, and every error is a
:class:`~aggregame.errors.SettingsError` naming the file and the [solver] table. It is
plain data of the definition layer; the command line turns it into the dynamics'
settings (``DynamicsSettings(**settings.dynamics_kwargs())``), so this layer imports
nothing from the solvers.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any, Mapping

from aggregame import checks
from aggregame.errors import SettingsError


# StrEnum (a str mixin whose str() and format() are the value): members equal their
# words, so comparisons with strings, f-strings and JSON output stay as they were.
class Backend(enum.StrEnum):
    """Who solves the inner problems; ``PYOMO_PATH`` only names the KKT solve by PATH."""

    NATIVE = "native"
    PYOMO = "pyomo"
    PYOMO_PATH = "pyomo-path"


class Method(enum.StrEnum):
    """Update order of the best-response rounds."""

    GAUSS_SEIDEL = "gauss-seidel"
    JACOBI = "jacobi"


class Strategy(enum.StrEnum):
    """Best-response strategy: bisection on dJ/dy, a scan, or bisection then scan."""

    AUTO = "auto"
    BISECTION = "bisection"
    SCAN = "scan"


class Start(enum.StrEnum):
    """Named starting profiles (a start may also be one purchase per player)."""

    ZERO = "zero"
    RANDOM = "random"


#: The words a user may write (plain strings: they appear in messages and the schema).
BACKENDS = (Backend.NATIVE.value, Backend.PYOMO.value)
METHODS = tuple(m.value for m in Method)
STRATEGIES = tuple(s.value for s in Strategy)
STARTS = tuple(s.value for s in Start)
#: Solvers of the pyomo backend and the stacked KKT system (solvers/solver_choice.py).
SOLVER_NAMES = ("cyipopt", "ipopt", "scip", "highs")
#: Largest certificate tolerance accepted: a regret of 1% of |J| is no equilibrium.
MAX_CERTIFICATE_RTOL = 1e-2

#: Each key of [solver], its JSON Schema and its meaning (docs and the exported schema).
FIELDS: dict[str, dict[str, Any]] = {
    "backend": {"enum": list(BACKENDS), "description": "inner solver"},
    "method": {"enum": list(METHODS), "description": "update order of the rounds"},
    "best_response": {"enum": list(STRATEGIES),
                      "description": "auto: bisection, then scan if the certificate "
                                     "fails"},
    "tol": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
            "description": "stop when no purchase moves more than tol * max(1, max y)"},
    "max_rounds": {"type": "integer", "minimum": 1, "description": "round limit"},
    "start": {"oneOf": [{"enum": list(STARTS)},
                        {"type": "array", "items": {"type": "number", "minimum": 0}}],
              "description": "'zero', 'random' (with seed) or one purchase per player"},
    "seed": {"type": "integer", "minimum": 0, "description": "seed of a random start"},
    "name": {"enum": list(SOLVER_NAMES),
             "description": "solver of the pyomo backend's inner problem and of the "
                            "stacked KKT system (default cyipopt)"},
    "options": {"type": "object",
                "additionalProperties": {"type": ["number", "string", "boolean"]},
                "description": "options of that solver (e.g. tol = 1e-8 for Ipopt), "
                               "checked against the solver when it is used"},
    "certificate_rtol": {"type": "number", "exclusiveMinimum": 0,
                         "maximum": MAX_CERTIFICATE_RTOL,
                         "description": "regret tolerance of the certificate, relative "
                                        "to its payoff's scale on the feasible interval"},
}


@dataclass(frozen=True)
class RoundSettings:
    """The settings of best-response rounds and their defaults, stated once.

    Shared by the scenario files' :class:`SolverSettings` and the dynamics' settings
    (``aggregame.solvers.dynamics.DynamicsSettings``), which check them each their way.
    """

    method: str = Method.GAUSS_SEIDEL
    best_response: str = Strategy.AUTO
    tol: float = 1e-10
    max_rounds: int = 200
    start: str | tuple[float, ...] = Start.ZERO
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class SolverSettings(RoundSettings):
    """How to solve a scenario; ``source`` names where the values came from.

    ``certificate_rtol = None`` keeps the certificate's own default.
    """

    backend: str = Backend.NATIVE
    certificate_rtol: float | None = None
    name: str = "cyipopt"
    options: Any = ()  # (key, value) pairs, sorted; a table is accepted
    source: str = "<settings>"

    def __post_init__(self) -> None:
        try:
            self._check()
        except checks.Invalid as err:
            raise SettingsError(f"{self.source}: [solver] {err.field}: {err.problem}"
                                ) from None

    def _check(self) -> None:
        set_ = object.__setattr__  # frozen: the checked words become their enums
        set_(self, "backend", Backend(checks.choice(self.backend, "backend", BACKENDS)))
        set_(self, "method", Method(checks.choice(self.method, "method", METHODS)))
        set_(self, "best_response", Strategy(
            checks.choice(self.best_response, "best_response", STRATEGIES)))
        tol = checks.number(self.tol, "tol")
        if not 0 < tol < 1:
            raise checks.Invalid("tol", f"must be in (0, 1), got {self.tol!r}")
        checks.integer(self.max_rounds, "max_rounds", 1)
        checks.integer(self.seed, "seed", 0)
        if self.certificate_rtol is not None:
            rtol = checks.number(self.certificate_rtol, "certificate_rtol")
            if not 0 < rtol <= MAX_CERTIFICATE_RTOL:
                raise checks.Invalid("certificate_rtol", f"must be in (0, "
                                     f"{MAX_CERTIFICATE_RTOL:g}], got {rtol!r}")
        object.__setattr__(self, "start", _start(self.start))
        checks.choice(self.name, "name", SOLVER_NAMES)
        object.__setattr__(self, "options", _options(self.options))

    @classmethod
    def from_table(cls, table: Any, source: str) -> "SolverSettings":
        """Settings from a [solver] table; unknown keys are refused with a guess."""
        try:
            checks.table(table, "solver")
            checks.no_unknown_keys(table, FIELDS, "", "setting")
        except checks.Invalid as err:
            raise SettingsError(f"{source}: [solver] {err.field}: {err.problem}"
                                ) from None
        return cls(**table, source=source)

    def replace(self, **changes: Any) -> "SolverSettings":
        """A copy with ``changes`` (checked like the rest)."""
        return dataclasses.replace(self, **changes)

    def check_players(self, count: int) -> None:
        """A start given as purchases must have one per player."""
        if not isinstance(self.start, str) and len(self.start) != count:
            raise SettingsError(
                f"{self.source}: [solver] start: needs one purchase per player "
                f"({count}), got {len(self.start)}")

    def dynamics_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the best-response dynamics' settings."""
        out = {"method": self.method, "best_response": self.best_response,
               "tol": float(self.tol), "max_rounds": self.max_rounds,
               "start": self.start, "seed": self.seed}
        if self.certificate_rtol is not None:
            out["certificate_rtol"] = float(self.certificate_rtol)
        return out

    def describe(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        out["start"] = self.start if isinstance(self.start, str) else list(self.start)
        out["options"] = dict(self.options)
        return out


def _options(value: Any) -> tuple[tuple[str, Any], ...]:
    """Solver options as sorted (key, value) pairs of numbers, strings, booleans.
    Whether the solver knows them is checked where it is built (SolverSpec)."""
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = [(str(k), v) for k, v in items]
    except (TypeError, ValueError):
        raise checks.Invalid("options", f"must be a table of solver options, got "
                                        f"{checks.shown(value)}") from None
    for key, v in pairs:
        if isinstance(v, bool) or (isinstance(v, (int, float, str))
                                   and not (isinstance(v, float) and math.isnan(v))):
            continue
        raise checks.Invalid(f"options.{key}", f"must be a number, string or boolean, "
                                               f"got {checks.shown(v)}")
    return tuple(sorted(pairs))


def _start(value: Any) -> str | tuple[float, ...]:
    if isinstance(value, str):
        return Start(checks.choice(value, "start", STARTS))
    if not isinstance(value, (list, tuple)) or not value:
        raise checks.Invalid("start", f"must be 'zero', 'random' or an array of "
                                      f"purchases, got {checks.shown(value)}")
    out = []
    for k, v in enumerate(value):
        v = checks.number(v, f"start[{k}]")
        if v < 0 or not math.isfinite(v):
            raise checks.Invalid(f"start[{k}]", f"must be >= 0, got {v!r}")
        out.append(v)
    return tuple(out)

