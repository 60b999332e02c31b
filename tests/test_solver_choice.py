"""Solver choice: every installed solver against the native backend, option and
availability errors by their messages, and the compare study's files."""

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import one_aggregator_game

from aggregame import SolverOptionError, SolverUnavailableError, UnsupportedProblemError
from aggregame.solvers.inner.native import NativeInner
from aggregame.solvers.solver_choice import SolverName, SolverSpec, parse_solver_options

#: Inner allocations and multipliers of every solver agree with the native backend to
#: this (absolute; x ~ 1-10, lambda ~ 0.1-3).
SOLVER_ATOL = 1e-6
OTHERS = 20.0
FRACTIONS = np.array([0.15, 0.5, 0.85])


def _available(name: str) -> bool:
    return SolverSpec(name).available()


def needs(name: str):
    return pytest.mark.skipif(not _available(name), reason=f"{name} not installed")


# -- unit: parsing and availability -------------------------------------------------
@pytest.mark.unit
def test_parse_solver_options_reads_numbers_and_strings():
    opts = parse_solver_options(["max_iter=50", "tol=1e-8", "mu_strategy=adaptive",
                                 "warm=true"])
    assert opts == {"max_iter": 50, "tol": 1e-8, "mu_strategy": "adaptive",
                    "warm": True}
    assert isinstance(opts["max_iter"], int)
    with pytest.raises(SolverOptionError, match="'tol' must be KEY=VALUE"):
        parse_solver_options(["tol"])


@pytest.mark.unit
def test_unknown_solver_name_is_an_option_error():
    with pytest.raises(SolverOptionError, match="unknown solver 'gurobi'"):
        SolverSpec("gurobi")
    assert SolverName.parse("SCIP") is SolverName.SCIP


@pytest.mark.unit
@pytest.mark.skipif(shutil.which("ipopt") is not None, reason="ipopt is on PATH")
def test_missing_ipopt_executable_is_unavailable_with_a_fix():
    spec = SolverSpec("ipopt")
    assert not spec.available()
    with pytest.raises(SolverUnavailableError, match="`ipopt` executable on PATH"):
        spec.make_solver()


# -- option errors name the option ---------------------------------------------------
@needs("cyipopt")
@pytest.mark.solver
@pytest.mark.parametrize("key, value", [("tolerance", 1e-8), ("linear_solver", "ma27"),
                                        ("max_iter", "many")])
def test_invalid_ipopt_option_names_it(key, value):
    with pytest.raises(SolverOptionError, match=f"'{key}'"):
        SolverSpec("cyipopt", {key: value})
    SolverSpec("cyipopt", {"tol": 1e-8, "linear_solver": "mumps"})  # valid: no error


@needs("scip")
@pytest.mark.solver
def test_invalid_scip_and_highs_options_name_them():
    with pytest.raises(SolverOptionError, match="'limits/nonsense'"):
        SolverSpec("scip", {"limits/nonsense": 1})
    if _available("highs"):
        with pytest.raises(SolverOptionError, match="'nonsense_option'"):
            SolverSpec("highs", {"nonsense_option": 1})


@needs("cyipopt")
@pytest.mark.solver
def test_invalid_option_through_the_backend_is_an_option_error(small_users):
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

    game = one_aggregator_game(small_users, 0)
    with pytest.raises(SolverOptionError, match="'tolerance'"):
        solve_equilibrium(game, "pyomo", ipopt_options={"tolerance": 1e-8})


# -- every solver against the native backend ----------------------------------------
def _compare_inner(game, name):
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    ys = FRACTIONS * game.feasible_max(0, OTHERS)
    native = NativeInner(game, 0).solve(ys, OTHERS)
    inner = PyomoInner(game, 0, solver=SolverSpec(name))
    got = inner.solve(ys, OTHERS)
    np.testing.assert_allclose(got.x, native.x, atol=SOLVER_ATOL)
    np.testing.assert_allclose(got.multiplier, native.multiplier, atol=SOLVER_ATOL)
    np.testing.assert_allclose(got.derivative, native.derivative, atol=SOLVER_ATOL)
    assert inner.counter.solves == len(ys)


@pytest.mark.solver
@pytest.mark.parametrize("name", ["cyipopt", "scip", "highs"])
def test_alpha0_inner_agrees_with_native(small_users, name):
    if not _available(name):
        pytest.skip(f"{name} not installed")
    _compare_inner(one_aggregator_game(small_users, 0), name)


@needs("scip")
@pytest.mark.solver
def test_scip_inner_alpha1_agrees_with_native(small_users):
    """SCIP gives no duals: lambda comes from the allocation, and equals native's."""
    _compare_inner(one_aggregator_game(small_users, 1), "scip")


@needs("highs")
@pytest.mark.solver
def test_highs_refuses_a_non_qp(small_users):
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    with pytest.raises(UnsupportedProblemError, match="only the alpha = 0 inner"):
        PyomoInner(one_aggregator_game(small_users, 1), 0, solver=SolverSpec("highs"))


@needs("scip")
@pytest.mark.solver
def test_kkt_with_scip_on_a_small_game_and_highs_refused():
    from aggregame.scenario import load_scenario
    from aggregame.solvers.kkt.solve import KKTSettings, solve_kkt

    game = load_scenario("two_equilibria").game
    eq = solve_kkt(game, KKTSettings(solver=SolverSpec("scip")))
    assert eq.converged and eq.certified  # regret by the native certificate
    with pytest.raises(UnsupportedProblemError, match="stacked KKT"):
        solve_kkt(game, KKTSettings(solver=SolverSpec("highs")))


# -- the compare study ---------------------------------------------------------------
def _compare(out, solvers="cyipopt,highs"):
    from aggregame.cli import main

    return main(["compare", "two_equilibria", "--solvers", solvers, "--out", str(out),
                 "--seed", "3", "-q"])


@needs("cyipopt")
@pytest.mark.solver
def test_compare_writes_its_files_and_same_seed_same_table(tmp_path, capsys):
    from aggregame.studies.compare import TIME_COLUMNS

    assert _compare(tmp_path / "a", "cyipopt,highs,ipopt") == 0
    for name in ("results.csv", "results.parquet", "failures.md", "profile.png",
                 "profile.svg", "settings.json"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    first = pd.read_csv(tmp_path / "a" / "results.csv")
    # native BR, pyomo BR x 2 solvers, KKT x 2 solvers (HiGHS refused there).
    assert len(first) == 5
    assert set(first["method"]) == {"best-response", "kkt"}
    solved = first[first["status"] == "solved"]
    assert len(solved) == 4
    # The best-response runs start alike and reach the same equilibrium of this
    # game's two, whichever backend and solver.
    br = solved[solved["method"] == "best-response"]["price"].to_numpy()
    np.testing.assert_allclose(br, br[0], rtol=1e-8)
    failures = (tmp_path / "a" / "failures.md").read_text()
    assert "unsupported" in failures
    if shutil.which("ipopt") is None:
        assert "| ipopt | unavailable |" in failures
    # Resumable: nothing is recomputed.
    assert _compare(tmp_path / "a", "cyipopt,highs,ipopt") == 0
    assert "(0 computed now)" in capsys.readouterr().out
    # Same seed, new folder: the same table apart from times.
    _compare(tmp_path / "b", "cyipopt,highs,ipopt")
    second = pd.read_csv(tmp_path / "b" / "results.csv")
    drop = list(TIME_COLUMNS)
    pd.testing.assert_frame_equal(first.drop(columns=drop), second.drop(columns=drop))


@needs("cyipopt")
@pytest.mark.solver
def test_run_record_uses_the_native_certificate(small_users):
    from aggregame import Game, LinearPrice, Player
    from aggregame.solvers.certify.scan import certify
    from aggregame.solvers.compare.timed_run import RunStatus, run_one
    from aggregame.solvers.solver_choice import Termination

    game = Game((Player.aggregator("A", small_users[:4], alpha=0),
                 Player.aggregator("B", small_users[4:], alpha=0)), LinearPrice(0.05))
    record = run_one(game, "best-response", "pyomo", "cyipopt", seed=0)
    assert record.status is RunStatus.SOLVED
    assert record.termination is Termination.OPTIMAL
    assert record.build_seconds > 0 and record.solve_seconds > 0
    assert record.certificate_seconds > 0
    assert record.solver_iterations > 0  # Ipopt iterations, not rounds
    cert = certify(game, np.array(record.profile))
    assert cert.max_regret == pytest.approx(record.max_regret, abs=1e-12)
