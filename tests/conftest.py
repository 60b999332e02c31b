"""Shared fixtures: small games built from the one game definition."""

import os
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Property tests: a fixed, derandomized profile in CI (the same examples every run,
# about a minute in all); AGGREGAME_HYPOTHESIS=long explores ten times more.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("long", parent=settings.get_profile("ci"),
                          derandomize=False, max_examples=600)
settings.load_profile(os.environ.get("AGGREGAME_HYPOTHESIS", "ci"))

from aggregame import Game, LinearPrice, Player, quadratic_users

#: Finite-difference step for dJ/dy checks: central differences of J (O(1..1e3))
#: with h = 1e-5 have truncation error ~h^2 |J'''| and rounding ~1e-16 |J| / h.
FD_STEP = 1e-5
#: Agreement of an analytic derivative with its finite difference.
FD_RTOL = 1e-5


def solver_available(probe: Callable[[], object]) -> bool:
    """True where ``probe()`` (a solver factory) finds its solver. Only
    SolverUnavailableError means "absent": any other exception is a bug and must fail
    the run, never turn into a skip."""
    from aggregame.errors import SolverUnavailableError

    try:
        probe()
        return True
    except SolverUnavailableError:
        return False


def _ipopt_solver():
    from aggregame.solvers.inner.pyomo_backend import ipopt_solver

    return ipopt_solver()


SOLVER = solver_available(_ipopt_solver)
# CI installs Ipopt; a solver test is skipped only on a machine that truly lacks it.
needs_ipopt = pytest.mark.skipif(not SOLVER, reason="Ipopt/PyNumero not installed "
                                                    "(run bash bootstrap.sh setup)")


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """The native backend's compiled kernels, loaded (or compiled, once per machine
    and source version) before any test: no test's time or stderr holds a compile."""
    from aggregame.solvers.inner import compiled

    compiled.warm_up()


@pytest.fixture
def small_users():
    rng = np.random.default_rng(7)
    return quadratic_users(rng.uniform(0.1, 0.9, 8), rng.uniform(0.5, 10, 8))


def one_aggregator_game(users, alpha, rule="floor", c=0.05):
    # Max-min as the total-surplus reading, which every backend models (leximin is
    # native only: tests/test_leximin.py).
    return Game((Player.aggregator("A", users, alpha=alpha, rule=rule,
                                   maxmin="total-surplus"),),
                LinearPrice(c))


#: Every test carries exactly one of these (pyproject.toml registers them).
KINDS = ("unit", "solver", "slow")


def kind_problems(items) -> list[str]:
    """Tests that carry no kind marker, or more than one."""
    problems = []
    for item in items:
        kinds = [k for k in KINDS if item.get_closest_marker(k)]
        if len(kinds) != 1:
            problems.append(f"{item.nodeid}: {kinds or 'no kind'}")
    return problems


def pytest_collection_modifyitems(config, items):
    """Refuse a run in which a test is not exactly one of unit / solver / slow, so
    `-m unit` and the CI split see every test exactly once."""
    problems = kind_problems(items)
    if problems:
        raise pytest.UsageError(
            f"each test needs exactly one marker of {KINDS}; fix: "
            + "; ".join(problems))
