"""Which solver runs a Pyomo model, with which options: checked once, at the door.

``SolverSpec(name, options)`` names one of four solvers and its options. Building it
checks every option against the solver itself (an unknown name or a bad value raises
:class:`SolverOptionError` naming the option); ``make_solver()`` checks that the solver
is installed (:class:`SolverUnavailableError` with the command that fixes it) and
returns a :class:`PyomoSolver`, one object with one ``solve(model)`` for every solver:

* ``cyipopt`` (default): Ipopt through cyipopt and PyNumero, local NLP;
* ``ipopt``: the ``ipopt`` executable (AMPL interface), when one is on PATH;
* ``scip``: SCIP (PyPI pyscipopt) through pyomo.contrib.solver's ``scip_direct``: a
  global solver, gives no duals for nonlinear models;
* ``highs``: HiGHS (PyPI highspy) through pyomo.contrib.solver's ``highs``: linear and
  quadratic objectives over linear constraints only (the alpha = 0 inner problem with
  quadratic members is a concave QP).

Every solve returns a :class:`SolveOutcome` whose ``termination`` is a
:class:`Termination`; ``dual(con)`` gives multipliers in the sign convention of
models/aggregator.py (maximize model: d objective / d right-hand side), or raises
when the solver gives none (``has_duals`` is False).
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
import shutil
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any, Iterable, Mapping

import numpy as np
import pyomo.environ as pyo

from aggregame.errors import FileOptionError, SolverOptionError, SolverUnavailableError
from aggregame.settings import file_option

LOG = logging.getLogger(__name__)


class SolverName(str, Enum):
    """The solvers aggregame can hand a Pyomo model to."""

    CYIPOPT = "cyipopt"
    IPOPT = "ipopt"
    SCIP = "scip"
    HIGHS = "highs"

    @classmethod
    def parse(cls, value: "str | SolverName") -> "SolverName":
        """The member named ``value`` (case-insensitive), or a SolverOptionError."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise SolverOptionError(
                f"solver: unknown solver {value!r}; expected one of "
                f"{[s.value for s in cls]}") from None


class Termination(str, Enum):
    """How a solve ended, the same words for every solver."""

    OPTIMAL = "optimal"
    LOCALLY_OPTIMAL = "locally-optimal"
    ITERATION_LIMIT = "iteration-limit"
    TIME_LIMIT = "time-limit"
    INFEASIBLE = "infeasible"
    ERROR = "error"
    OTHER = "other"

    @property
    def ok(self) -> bool:
        return self in (Termination.OPTIMAL, Termination.LOCALLY_OPTIMAL)


#: Ipopt options of every solve through cyipopt or the executable. tol = 1e-9: duals
#: feed the total derivative the best response bisects on (see pyomo_inner.py).
DEFAULT_IPOPT_OPTIONS: dict[str, Any] = {
    "tol": 1e-9, "constr_viol_tol": 1e-10, "max_iter": 3000, "print_level": 0,
    "sb": "yes",
}
#: SCIP's defaults (feastol 1e-6, gap 1e-4) leave inner allocations 2e-4 away from the
#: native backend's; feastol 1e-9 with gap 1e-6 agrees to 1e-9 at alpha = 0, 1, 2
#: (measured on 8 members) and solves in 0.05 s. feastol 1e-9 with gap 1e-9 did not
#: finish in 60 s at alpha = 1.
DEFAULT_SCIP_OPTIONS: dict[str, Any] = {"numerics/feastol": 1e-9, "limits/gap": 1e-6}
#: HiGHS: tighter than its 1e-7 defaults; its QP regularization (default 1e-7) moved
#: the allocation by 2.6e-6 from the native backend's, 1e-12 by 2.6e-11 (measured).
DEFAULT_HIGHS_OPTIONS: dict[str, Any] = {
    "primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10,
    "qp_regularization_value": 1e-12,
    "output_flag": False,
}
DEFAULTS = {SolverName.CYIPOPT: DEFAULT_IPOPT_OPTIONS,
            SolverName.IPOPT: DEFAULT_IPOPT_OPTIONS,
            SolverName.SCIP: DEFAULT_SCIP_OPTIONS,
            SolverName.HIGHS: DEFAULT_HIGHS_OPTIONS}
#: Ipopt's linear solvers that this build has (cyipopt-wheels ships MUMPS only).
IPOPT_LINEAR_SOLVERS = ("mumps",)


def parse_solver_options(items: Iterable[str]) -> dict[str, Any]:
    """``["tol=1e-8", "mu_strategy=adaptive"]`` -> ``{"tol": 1e-8, ...}``.

    Integers and floats become numbers, ``true``/``false`` booleans, the rest strings.

    >>> parse_solver_options(["max_iter=50", "tol=1e-8", "sb=yes"])
    {'max_iter': 50, 'tol': 1e-08, 'sb': 'yes'}
    >>> parse_solver_options(["tol"])
    Traceback (most recent call last):
    ...
    aggregame.errors.SolverOptionError: solver option 'tol' must be KEY=VALUE
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise SolverOptionError(f"solver option {item!r} must be KEY=VALUE")
        out[key] = _parse_value(raw.strip())
    return out


def _parse_value(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


@dataclass(frozen=True)
class SolveOutcome:
    """One solve: its termination, effort and the solver's own words."""

    termination: Termination
    iterations: int = 0
    nodes: int = 0
    message: str = ""


@dataclass(frozen=True)
class SolverSpec:
    """A solver and its options; the options are checked against the solver here.

    Parameters
    ----------
    name : SolverName or its value ('cyipopt', 'ipopt', 'scip', 'highs').
    options : solver options, added to (and overriding) the solver's defaults. Stored
        as sorted (key, value) pairs so the spec is hashable.
    """

    name: SolverName = SolverName.CYIPOPT
    options: Any = field(default_factory=tuple)
    allow_files: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", SolverName.parse(self.name))
        opts = dict(self.options.items() if isinstance(self.options, Mapping)
                    else self.options)
        for key, value in list(opts.items()):
            opts[key] = _validate_option(self.name, str(key), value, self.allow_files)
        object.__setattr__(self, "options", tuple(sorted(opts.items())))

    def option_dict(self) -> dict[str, Any]:
        """The solver's defaults updated by this spec's options."""
        return {**DEFAULTS[self.name], **dict(self.options)}

    def describe(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.name.value}({extra})" if extra else self.name.value

    @property
    def is_global(self) -> bool:
        return self.name is SolverName.SCIP

    def check_available(self) -> None:
        """Raise SolverUnavailableError (with the fix) unless the solver is usable."""
        _check_available(self.name)

    def available(self) -> bool:
        try:
            self.check_available()
        except SolverUnavailableError:
            return False
        return True

    def make_solver(self) -> "PyomoSolver":
        """A ready solver object (the availability is checked first)."""
        self.check_available()
        cls = {SolverName.CYIPOPT: _CyipoptSolver, SolverName.IPOPT: _IpoptExeSolver,
               SolverName.SCIP: _ContribSolver, SolverName.HIGHS: _ContribSolver}
        return cls[self.name](self)


# -- availability ---------------------------------------------------------------
@lru_cache(maxsize=None)
def _check_available(name: SolverName) -> None:
    if name is SolverName.CYIPOPT:
        _check_cyipopt()
    elif name is SolverName.IPOPT:
        if shutil.which("ipopt") is None:
            raise SolverUnavailableError(
                "solver 'ipopt' needs the `ipopt` executable on PATH (none found); "
                "use solver 'cyipopt' (the same Ipopt, installed) or install an "
                "AMPL-enabled Ipopt, e.g. `apt-get install coinor-ipopt`")
    else:
        module, pip = (("pyscipopt", "pyscipopt") if name is SolverName.SCIP
                       else ("highspy", "highspy"))
        if importlib.util.find_spec(module) is None:
            raise SolverUnavailableError(
                f"solver '{name.value}' needs the module `{module}`: "
                f"`pip install {pip}`")
        contrib = _contrib_name(name)
        from pyomo.contrib.solver.common.factory import SolverFactory

        if not SolverFactory(contrib).available():
            raise SolverUnavailableError(
                f"Pyomo's '{contrib}' interface reports {module} unusable; reinstall "
                f"it with `pip install --force-reinstall {pip}`")


def _check_cyipopt() -> None:
    try:
        solver = pyo.SolverFactory("cyipopt")
        available = solver.available(exception_flag=False)
    except Exception as err:  # pragma: no cover - depends on the machine
        raise SolverUnavailableError(f"cyipopt solver could not be created: {err}"
                                     ) from err
    if not available:
        raise SolverUnavailableError(
            "Ipopt is not available to Pyomo: the module `cyipopt` is missing. Install "
            "it with `pip install cyipopt-wheels` (or run `bash bootstrap.sh setup`).")
    from pyomo.contrib.pynumero.asl import AmplInterface

    if not AmplInterface.available():
        raise SolverUnavailableError(
            "PyNumero's ASL library is missing, so Pyomo cannot hand models to "
            "cyipopt. Build it with `bash bootstrap.sh setup` (needs Debian's "
            "libamplsolver-dev, cmake and g++).")


def _contrib_name(name: SolverName) -> str:
    return "scip_direct" if name is SolverName.SCIP else "highs"


# -- option validation -------------------------------------------------------------
def _validate_option(name: SolverName, key: str, value: Any, allow_files: bool
                     ) -> Any:
    """The option's value as the solver takes it, or a SolverOptionError naming it.

    An option that reads or writes a file or loads a library (game/settings.py,
    FILE_OPTIONS) is refused unless ``allow_files``; when allowed it is checked by
    its type alone, never tried on a probe (which would open the file).
    """
    value = _hashable(key, value)
    why = file_option(name.value, key, value)
    if why:
        if not allow_files:
            raise FileOptionError(
                f"solver option {key!r} = {value!r} {why}: refused unless you pass "
                f"--allow-file-options (aggregame solve, crosscheck); a scenario "
                f"file may never set it")
        if not isinstance(value, (str, bool)) or (isinstance(value, str)
                                                   and not value.strip()):
            raise SolverOptionError(f"solver option {key!r} = {value!r} must be a "
                                    f"file name (or true/false for a switch)")
        if name in (SolverName.CYIPOPT, SolverName.IPOPT):
            _check_linear_solver(key, value)
        return value
    if name in (SolverName.CYIPOPT, SolverName.IPOPT):
        try:
            _validate_ipopt_option(key, value)
        except SolverOptionError as err:
            # Ipopt types its options: tol = 1 is an integer for a real option.
            if not (isinstance(value, int) and not isinstance(value, bool)
                    and "Number" in str(err) and "Integer" in str(err)):
                raise
            value = float(value)
            _validate_ipopt_option(key, value)
    elif name is SolverName.SCIP:
        if key == "display/verblevel" and value != 0:
            raise SolverOptionError(
                f"solver option 'display/verblevel' = {value!r}: SCIP must print "
                "nothing here (its log can fill scip_direct's pipe and hang the "
                "solve); only 0 is accepted")
        _validate_scip_option(key, value)
    else:
        _validate_highs_option(key, value)
    return value


def _hashable(key: str, value: Any) -> Any:
    if isinstance(value, (list, dict, set)):
        raise SolverOptionError(f"solver option {key!r} = {value!r} must be a number, "
                                "string or boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise SolverOptionError(f"solver option {key!r} = {value!r} must be a finite "
                                "number")
    return value


class _Quadratic:
    """min x^2 on [-1, 1]: the throwaway problem options are tried on."""

    def objective(self, x): return float(x @ x)  # noqa: E704
    def gradient(self, x): return 2 * x  # noqa: E704
    def constraints(self, x): return np.zeros(0)  # noqa: E704
    def jacobian(self, x): return np.zeros(0)  # noqa: E704


def _check_linear_solver(key: str, value: Any) -> None:
    if key.strip().lower() == "linear_solver" and value not in IPOPT_LINEAR_SOLVERS:
        raise SolverOptionError(
            f"solver option 'linear_solver' = {value!r} is not in this Ipopt build; "
            f"it has {list(IPOPT_LINEAR_SOLVERS)}")


@lru_cache(maxsize=256)
def _validate_ipopt_option(key: str, value: Any) -> None:
    """Try the option on a throwaway cyipopt problem: Ipopt itself says whether the
    name exists and the value fits its type; a solve catches values it accepts at
    first and refuses at run time (a linear solver this build lacks)."""
    _check_linear_solver(key, value)
    try:
        import cyipopt
    except ImportError:  # nothing to check against; the solve will say
        return
    from pyomo.common.tee import capture_output

    problem = cyipopt.Problem(n=1, m=0, problem_obj=_Quadratic(), lb=[-1.0], ub=[1.0],
                              cl=[], cu=[])
    ipopt_says = io.StringIO()
    with capture_output(ipopt_says, capture_fd=True):
        try:
            # The probe reads no options file (Ipopt reads ./ipopt.opt by default).
            problem.add_option("option_file_name", "")
            problem.add_option("print_level", 0)
            problem.add_option("sb", "yes")
            problem.add_option(key, value)
            # Checked now; the probe itself stays quiet: a print_level of 9 or more
            # writes past the 64 KB of the captured pipe and the solve deadlocks.
            problem.add_option("print_level", 0)
            status = problem.solve(np.array([0.5]))[1]["status"]
        except TypeError:
            status = -12
        finally:
            problem.close()
    if status == -12:  # Invalid_Option
        detail = next((ln.strip() for ln in ipopt_says.getvalue().splitlines()
                       if ln.strip()), "")
        raise SolverOptionError(
            f"solver option {key!r} = {value!r} is not valid for Ipopt"
            + (f": {detail}" if detail else ""))


@lru_cache(maxsize=256)
def _validate_scip_option(key: str, value: Any) -> None:
    import pyscipopt

    model = pyscipopt.Model()
    model.hideOutput()
    try:
        model.setParam(key, value)
    except KeyError:
        raise SolverOptionError(f"solver option {key!r} is not a SCIP parameter "
                                "(e.g. 'limits/gap', 'numerics/feastol')") from None
    except (ValueError, TypeError) as err:
        raise SolverOptionError(f"solver option {key!r} = {value!r} is not valid for "
                                f"SCIP: {err}") from None


@lru_cache(maxsize=256)
def _validate_highs_option(key: str, value: Any) -> None:
    import highspy
    from pyomo.common.tee import capture_output

    with capture_output(io.StringIO(), capture_fd=True):  # its banner
        highs = highspy.Highs()
        highs.setOptionValue("output_flag", False)
        status = highs.setOptionValue(key, value)
    if status != highspy.HighsStatus.kOk:
        raise SolverOptionError(f"solver option {key!r} = {value!r} is not valid for "
                                "HiGHS (unknown name or wrong type)")


# -- one solve interface -----------------------------------------------------------
_LEGACY = {
    pyo.TerminationCondition.optimal: Termination.OPTIMAL,
    pyo.TerminationCondition.locallyOptimal: Termination.LOCALLY_OPTIMAL,
    pyo.TerminationCondition.maxIterations: Termination.ITERATION_LIMIT,
    pyo.TerminationCondition.maxTimeLimit: Termination.TIME_LIMIT,
    pyo.TerminationCondition.infeasible: Termination.INFEASIBLE,
    pyo.TerminationCondition.error: Termination.ERROR,
    pyo.TerminationCondition.internalSolverError: Termination.ERROR,
}


#: Ipopt's return status (IpReturnCodes_inc.h) -> Termination, as Pyomo's cyipopt
#: solver maps it (acceptable, small step or restoration failure: OTHER).
_IPOPT_STATUS = {0: Termination.OPTIMAL, -1: Termination.ITERATION_LIMIT,
                 -4: Termination.TIME_LIMIT, 2: Termination.INFEASIBLE,
                 -12: Termination.ERROR, -101: Termination.ERROR,
                 -13: Termination.ERROR, -100: Termination.ERROR,
                 -199: Termination.ERROR}


def ipopt_termination(status: int) -> Termination:
    """The Termination of an Ipopt return status (cyipopt's ``info['status']``)."""
    return _IPOPT_STATUS.get(int(status), Termination.OTHER)


class PyomoSolver:
    """A solver with one interface: ``solve(model) -> SolveOutcome``; the primal
    values are loaded into the model whenever the solver has a point."""

    has_duals = False

    def __init__(self, spec: SolverSpec) -> None:
        self.spec = spec
        self.options = spec.option_dict()

    def solve(self, model: pyo.Block) -> SolveOutcome:
        raise NotImplementedError

    def dual(self, model: pyo.Block, con: Any) -> float:
        """Multiplier of ``con`` in the maximize-model convention (module docstring)."""
        raise SolverOptionError(f"solver '{self.spec.name.value}' gives no duals here")


class _CyipoptSolver(PyomoSolver):
    has_duals = True

    def __init__(self, spec: SolverSpec) -> None:
        super().__init__(spec)
        self.pyomo_solver = pyo.SolverFactory("cyipopt")
        self._iterations = 0
        # Ipopt calls this once per iteration; the last count is the solve's.
        self.pyomo_solver.config.intermediate_callback = self._count
        # One store of the options: changes through ``options`` or ``config.options``
        # (the older interface of the inner backend) reach the next solve.
        self.pyomo_solver.config.options.update(self.options)
        self.options = self.pyomo_solver.config.options

    @property
    def config(self) -> Any:
        return self.pyomo_solver.config

    def _count(self, *args: Any) -> bool:
        self._iterations = int(args[2])  # (nlp, alg_mod, iter_count, ...)
        return True

    def solve(self, model: pyo.Block) -> SolveOutcome:
        self._iterations = 0
        results = self.pyomo_solver.solve(model, tee=False)
        term = results.solver.termination_condition
        return SolveOutcome(_LEGACY.get(term, Termination.OTHER), self._iterations,
                            0, str(results.solver.message))

    def dual(self, model: pyo.Block, con: Any) -> float:
        # cyipopt: d objective / d bound of the maximize model (docs/pyomo.md, dual signs).
        return float(model.dual.get(con, 0.0))


class _IpoptExeSolver(PyomoSolver):
    # The executable's dual signs on maximize models are not measured here (no
    # executable on this project's machines): the callers compute multipliers from
    # the allocation instead, which needs no sign convention.
    has_duals = False

    def __init__(self, spec: SolverSpec) -> None:
        super().__init__(spec)
        self.pyomo_solver = pyo.SolverFactory("ipopt")

    def solve(self, model: pyo.Block) -> SolveOutcome:
        self.pyomo_solver.options.update(self.options)
        results = self.pyomo_solver.solve(model, load_solutions=False, tee=False)
        term = _LEGACY.get(results.solver.termination_condition, Termination.OTHER)
        if len(results.solution) > 0:
            model.solutions.load_from(results)
        return SolveOutcome(term, 0, 0, str(results.solver.message))


class _ContribSolver(PyomoSolver):
    """SCIP (scip_direct) and HiGHS through pyomo.contrib.solver's interface."""

    def __init__(self, spec: SolverSpec) -> None:
        super().__init__(spec)
        from pyomo.contrib.solver.common.factory import SolverFactory

        self.pyomo_solver = SolverFactory(_contrib_name(spec.name))
        self.has_duals = spec.name is SolverName.HIGHS  # SCIP: none for NLPs
        self._duals: dict[Any, float] = {}

    def solve(self, model: pyo.Block) -> SolveOutcome:
        from pyomo.contrib.solver.common.results import TerminationCondition as TC

        opts = dict(self.options)
        if self.spec.name is SolverName.SCIP:
            # SCIP must print nothing: scip_direct drains its output through a pipe
            # that a long log fills, and the solve then hangs (docs/pyomo.md,
            # section "SCIP").
            opts["display/verblevel"] = 0
        results = self.pyomo_solver.solve(
            model, load_solutions=False, raise_exception_on_nonoptimal_result=False,
            solver_options=opts)
        term = {TC.convergenceCriteriaSatisfied: Termination.OPTIMAL,
                TC.iterationLimit: Termination.ITERATION_LIMIT,
                TC.maxTimeLimit: Termination.TIME_LIMIT,
                TC.provenInfeasible: Termination.INFEASIBLE,
                TC.locallyInfeasible: Termination.INFEASIBLE,
                TC.infeasibleOrUnbounded: Termination.INFEASIBLE,
                TC.error: Termination.ERROR}.get(results.termination_condition,
                                                 Termination.OTHER)
        self._duals = {}
        if term.ok:
            results.solution_loader.load_vars()
            if self.has_duals:
                self._duals = dict(results.solution_loader.get_duals())
        counts = {k: _count(results.extra_info, k) for k in (
            "NNodes", "simplex_iteration_count", "ipm_iteration_count",
            "qp_iteration_count")}
        nodes = counts.pop("NNodes")
        # SCIP's effort is its branch-and-bound nodes; HiGHS's its iterations.
        iterations = nodes if self.spec.name is SolverName.SCIP else sum(
            counts.values())
        return SolveOutcome(term, iterations, nodes,
                            str(results.termination_condition.name))

    def dual(self, model: pyo.Block, con: Any) -> float:
        if not self.has_duals:
            return super().dual(model, con)
        # HiGHS on the maximize model: + d objective / d rhs for ``sum(x) == y``, the
        # cyipopt sign (checked against the native multiplier in the tests).
        value = self._duals.get(con, 0.0)
        return float(value) if math.isfinite(value) else math.nan


def _count(info: Any, key: str) -> int:
    """An integer of a contrib result's extra_info; 0 where absent or unset."""
    try:
        value = info[key] if key in info else 0
        return int(value)
    except (TypeError, ValueError, KeyError):
        return 0
