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
#: Smallest stopping tolerance of the rounds. A best response is resolved to 1e-12
#: of the player's feasible interval, which can be 100 times its purchase: rounds
#: asked to settle below 1e-10 of the purchases see that resolution as movement, and
#: stop by a "cycle" at regret 0 or by the round limit (measured: the Fig. 4 games
#: "cycle" at tol = 1e-12; random games at 1e-11 in 7 of 56 runs; none at 1e-10).
MIN_TOL = 1e-10

#: Solver options that read or write files, or load a library, by solver (option
#: names compared in lower case): refused in scenario files, and on the command line
#: without --allow-file-options; never passed to a probe when options are checked.
#: Found in each solver's own list of options (Ipopt's documentation printout,
#: SCIP's getParams(), HiGHS's writeOptions()): every option that names a file, a
#: file prefix or a library, and the switches that write to such a file.
FILE_OPTIONS: dict[str, tuple[str, ...]] = {
    "ipopt": ("output_file", "option_file_name", "hsllib", "pardisolib"),
    "scip": ("visual/vbcfilename", "visual/bakfilename",
             "heuristics/alns/rewardfilename", "heuristics/repair/filename",
             "estimation/regforestfilename", "solvingphases/feassetname",
             "solvingphases/improvesetname", "solvingphases/proofsetname",
             "concurrent/paramsetprefix", "nlpi/ipopt/optfile", "nlpi/ipopt/hsllib",
             "nlpi/ipopt/pardisolib"),
    "highs": ("log_file", "solution_file", "write_model_file", "write_model_to_file",
              "write_solution_to_file", "write_presolved_model_file",
              "write_presolved_model_to_file", "write_basis_file", "read_basis_file",
              "read_solution_file", "write_iis_model_file",
              "mip_improving_solution_file", "mip_improving_solution_save"),
}
#: Ipopt option values that load a library at run time (HSL, Pardiso): refused
#: alike (this build has MUMPS, and a library found on the search path would run).
LIBRARY_VALUES: dict[str, tuple[str, ...]] = {
    "linear_solver": ("ma27", "ma57", "ma77", "ma86", "ma97", "pardiso",
                      "pardisomkl", "spral", "custom"),
    "linear_system_scaling": ("mc19",),
    "nlp_scaling_method": ("equilibration-based",),
    "nlpi/ipopt/linear_solver": ("ma27", "ma57", "ma77", "ma86", "ma97", "pardiso",
                                 "pardisomkl", "spral", "custom"),
    "nlpi/ipopt/linear_system_scaling": ("mc19",),
    "nlpi/ipopt/nlp_scaling_method": ("equilibration-based",),
}
#: Solver names as SOLVER_NAMES spells them -> the key of FILE_OPTIONS.
_OPTION_FAMILY = {"cyipopt": "ipopt", "ipopt": "ipopt", "scip": "scip",
                  "highs": "highs"}


def file_option(solver: str, key: str, value: Any) -> str | None:
    """Why option ``key`` = ``value`` of ``solver`` touches a file, or None.

    Keys are compared in lower case with surrounding spaces removed, so that no
    spelling slips past (the solvers' own matching is at most that loose).
    """
    name = str(key).strip().lower()
    family = _OPTION_FAMILY.get(str(solver).strip().lower(), "ipopt")
    if name in FILE_OPTIONS[family]:
        return "reads or writes a file"
    libraries = LIBRARY_VALUES.get(name, ())
    if isinstance(value, str) and value.strip().lower() in libraries:
        return f"loads a library ({value.strip().lower()}) at run time"
    return None

#: Each key of [solver], its JSON Schema and its meaning (docs and the exported schema).
FIELDS: dict[str, dict[str, Any]] = {
    "backend": {"enum": list(BACKENDS), "description": "inner solver"},
    "method": {"enum": list(METHODS), "description": "update order of the rounds"},
    "best_response": {"enum": list(STRATEGIES),
                      "description": "auto: bisection, then scan if the certificate "
                                     "fails"},
    "tol": {"type": "number", "minimum": MIN_TOL, "exclusiveMaximum": 1,
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
            raise _error(self.source, err) from None

    def _check(self) -> None:
        set_ = object.__setattr__  # frozen: the checked words become their enums
        set_(self, "backend", Backend(checks.choice(self.backend, "backend", BACKENDS)))
        set_(self, "method", Method(checks.choice(self.method, "method", METHODS)))
        set_(self, "best_response", Strategy(
            checks.choice(self.best_response, "best_response", STRATEGIES)))
        tol = checks.number(self.tol, "tol")
        if not MIN_TOL <= tol < 1:
            raise checks.Invalid("tol", f"must be in [{MIN_TOL:g}, 1), got "
                                        f"{self.tol!r} (below {MIN_TOL:g} the rounds "
                                        f"would see the best response's rounding)")
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
        for key, value in self.options:
            why = file_option(self.name, key, value)
            if why:
                raise checks.Invalid(
                    f"options.{key}", f"{why}; a scenario file may not set it (give "
                                      f"it on the command line with "
                                      f"--allow-file-options)")

    @classmethod
    def from_table(cls, table: Any, source: str) -> "SolverSettings":
        """Settings from a [solver] table; unknown keys are refused with a guess."""
        try:
            checks.table(table, "solver")
            checks.no_unknown_keys(table, FIELDS, "", "setting")
        except checks.Invalid as err:
            raise _error(source, err) from None
        return cls(**table, source=source)

    def replace(self, **changes: Any) -> "SolverSettings":
        """A copy with ``changes`` (checked like the rest)."""
        return dataclasses.replace(self, **changes)

    def check_players(self, count: int) -> None:
        """A start given as purchases must have one per player."""
        if not isinstance(self.start, str) and len(self.start) != count:
            raise _error(self.source, checks.Invalid(
                "start", f"needs one purchase per player ({count}), got "
                         f"{len(self.start)}"))

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


def _error(source: str, err: checks.Invalid) -> SettingsError:
    """A SettingsError of the [solver] table read from ``source`` (a file's name,
    or a label such as ``<settings>``)."""
    out = SettingsError(f"{source}: [solver] {err.field}: {err.problem}")
    return out.at(None if source.startswith("<") else source, f"solver.{err.field}")


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

