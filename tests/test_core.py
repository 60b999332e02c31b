"""Core plumbing: status and backend enums, shared settings defaults, the lazy
top-level exports, the Pyomo logger and temporary-change context managers."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from aggregame.settings import (BACKENDS, METHODS, STRATEGIES, Backend, Method,
                                RoundSettings, SolverSettings, Strategy)
from aggregame.solvers.dynamics import DynamicsSettings
from aggregame.solvers.results import Status

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
    from aggregame.solvers.dynamics import solve_equilibrium

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
