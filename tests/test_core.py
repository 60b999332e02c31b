"""Core plumbing: status and backend enums, shared settings defaults, the lazy
top-level exports, the Pyomo logger and temporary-change context managers."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from aggregame.settings import (
    BACKENDS,
    METHODS,
    STRATEGIES,
    Backend,
    Method,
    RoundSettings,
    SolverSettings,
    Strategy,
)
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.equilibrium.results import Status

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("enum_type", [Status, Backend, Method, Strategy])
def test_enum_members_read_as_their_words(enum_type):
    for member in enum_type:
        assert member == member.value and f"{member}" == member.value
        assert json.loads(json.dumps({"k": member})) == {"k": member.value}
        assert enum_type(member.value) is member


def test_user_choices_are_the_enum_words():
    assert BACKENDS == ("native", "pyomo")
    assert METHODS == tuple(m.value for m in Method)
    assert STRATEGIES == tuple(s.value for s in Strategy)


def test_settings_defaults_are_stated_once():
    """Scenario-file settings and the dynamics' settings share RoundSettings, so their
    common defaults cannot drift apart."""
    shared = {f.name: f.default for f in dataclasses.fields(RoundSettings)}
    for cls in (SolverSettings, DynamicsSettings):
        mine = {f.name: f.default for f in dataclasses.fields(cls)}
        assert {k: mine[k] for k in shared} == shared, cls.__name__
    built = SolverSettings(method="jacobi", best_response="scan")
    assert built.method is Method.JACOBI and built.best_response is Strategy.SCAN
    assert built.backend is Backend.NATIVE
    dyn = DynamicsSettings(**built.dynamics_kwargs())
    assert dyn.method == "jacobi" and dyn.tol == built.tol


def test_equilibrium_status_and_backend_are_enums(cournot3):
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

    eq = solve_equilibrium(cournot3, settings=DynamicsSettings(max_rounds=1))
    assert eq.status is Status.ROUND_LIMIT and eq.status == "round-limit"
    assert eq.backend is Backend.NATIVE and eq.backend == "native"
    doc = json.loads(eq.to_json())
    assert (doc["status"], doc["backend"]) == ("round-limit", "native")
    assert "status='round-limit'" in repr(eq) and "backend='native'" in repr(eq)
    with pytest.raises(ValueError):
        dataclasses.replace(eq, status="exploded")


@pytest.fixture
def cournot3():
    from aggregame import Game, LinearPrice, individuals, quadratic_users

    users = quadratic_users([0.2, 0.4, 0.6], [5.0, 6.0, 7.0])
    return Game(tuple(individuals(users)), LinearPrice(0.05))


def _fresh_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


# -- context managers ----------------------------------------------------------------
def _small_model():
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.I = pyo.Set(initialize=[1, 2])
    m.p = pyo.Param(mutable=True, initialize=3.0)
    m.x = pyo.Var(m.I, bounds=(0, 1), initialize=0.5)
    m.z = pyo.Var(initialize=2.0)
    m.c = pyo.Constraint(m.I, rule=lambda m, i: m.x[i] <= m.p)
    m.obj = pyo.Objective(expr=m.z)
    m.obj2 = pyo.Objective(expr=-m.z)
    m.obj2.deactivate()
    return m


def _state(m):
    return (m.p.value, [v.value for v in m.x.values()], [v.fixed for v in m.x.values()],
            m.z.value, m.z.fixed, m.c.active, [c.active for c in m.c.values()],
            m.obj.active, m.obj2.active)


@pytest.mark.parametrize("raises", [False, True])
def test_temporary_changes_are_undone_even_on_error(raises):
    from aggregame.models.context import temporary_changes

    m = _small_model()
    m.x[2].fix(0.25)
    before = _state(m)
    with pytest.raises(RuntimeError) if raises else _no_error():
        with temporary_changes(values=[(m.p, 7.0)], fix=[(m.x, 0.9), (m.z, None)],
                               activate=[m.obj2], deactivate=[m.obj, m.c],
                               restore=[m.z]):
            assert m.p.value == 7.0 and m.z.fixed and m.z.value == 2.0
            assert [v.value for v in m.x.values()] == [0.9, 0.9]
            assert all(v.fixed for v in m.x.values())
            assert m.obj2.active and not m.obj.active
            assert not any(c.active for c in m.c.values())
            m.z.set_value(-5.0)   # the block's own probe of a restored value
            m.x[1].set_value(1.0 + 1e-12, skip_validation=True)  # loaded off-bound
            if raises:
                raise RuntimeError("solver failed")
    assert _state(m) == before


class _no_error:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_muted_logger_mutes_then_restores_and_never_lowers(caplog):
    import logging

    from aggregame.models.context import PYOMO_CORE_LOGGER, muted_logger

    log = logging.getLogger(PYOMO_CORE_LOGGER)
    saved = log.level
    try:
        log.setLevel(logging.NOTSET)
        with caplog.at_level(logging.DEBUG, logger=PYOMO_CORE_LOGGER):
            log.setLevel(logging.NOTSET)
            with muted_logger():
                log.warning("loaded a value outside its bounds")
                log.error("a real error")
            log.warning("after the block")
        messages = [r.getMessage() for r in caplog.records]
        assert messages == ["a real error", "after the block"]
        assert log.level == logging.NOTSET
        log.setLevel(logging.CRITICAL)   # already stricter: left alone
        with muted_logger(level=logging.ERROR) as inner:
            assert inner.level == logging.CRITICAL
        assert log.level == logging.CRITICAL
    finally:
        log.setLevel(saved)


# -- top-level exports -----------------------------------------------------------
def test_root_package_is_the_definition_layer_and_solvers_export_their_api():
    """`import aggregame` loads neither the solvers nor Pyomo nor pandas (the root
    package is the game definition); the solvers package exports its entry points,
    the very functions of their modules."""
    heavy = _fresh_python(
        "import sys, aggregame\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('aggregame.solvers', 'pyomo', 'pandas'))))")
    assert heavy == "[]"
    same = _fresh_python(
        "import aggregame, aggregame.solvers as s, aggregame.solvers.certify as c\n"
        "from aggregame.scenario import load_scenario\n"
        "from aggregame.solvers.equilibrium.dynamics import solve_equilibrium\n"
        "from aggregame.solvers.certify.scan import certify\n"
        "print(aggregame.load_scenario is load_scenario,"
        " s.solve_equilibrium is solve_equilibrium, c.certify is certify)")
    assert same == "True True True"


def test_top_level_api_solves_cournot_in_closed_form():
    """Only top-level names: three one-member players, U = b x - a x^2, p = c Y; the
    first-order conditions (2 a_i + c) y_i + c Y = b_i give the equilibrium."""
    import aggregame as ag

    a, b, c = np.array([0.2, 0.4, 0.6]), np.array([5.0, 6.0, 7.0]), 0.05
    game = ag.Game(tuple(ag.individuals(ag.quadratic_users(a, b))), ag.LinearPrice(c))
    eq = solve_equilibrium(game)
    expected = np.linalg.solve(np.diag(2 * a + c) + c * np.ones((3, 3)), b)
    assert eq.is_equilibrium and np.all(expected > 0)
    np.testing.assert_allclose(eq.profile, expected, rtol=1e-9)
    assert ag.load_scenario("fig4").name == "fig4"
    with pytest.raises(AttributeError, match="no attribute 'solve_equlibrium'"):
        ag.solve_equlibrium


# -- one kind marker per test --------------------------------------------------------
class _Item:
    def __init__(self, nodeid, *marks):
        self.nodeid, self.marks = nodeid, marks

    def get_closest_marker(self, name):
        return name if name in self.marks else None


def test_kind_check_flags_none_and_several_markers(request):
    from conftest import KINDS, kind_problems

    items = [_Item("t.py::ok", "unit"), _Item("t.py::none"),
             _Item("t.py::both", "solver", "slow"), _Item("t.py::param", "parametrize",
                                                         "slow")]
    assert kind_problems(items) == ["t.py::none: no kind",
                                    "t.py::both: ['solver', 'slow']"]
    # This very session passed the check: every collected test has one kind.
    assert kind_problems(request.session.items) == []
    assert KINDS == ("unit", "solver", "slow")
