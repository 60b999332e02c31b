"""compare like for like: the warm-up run apart, CPU time, a true median, time to
failure, the profile without runs that call no solver and its data as CSV."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import needs_ipopt, one_aggregator_game
from hypothesis import given
from hypothesis import strategies as st

from aggregame.solvers.compare.timed_run import NO_SOLVER, RunStatus, run_one
from aggregame.solvers.solver_choice import SolverSpec
from aggregame.studies.compare import (
    lower_median,
    performance_profile,
    summary_table,
    write_profile_csv,
)


@pytest.mark.unit
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30))
def test_the_median_is_a_run_and_the_middle_one(values):
    m = lower_median(pd.Series(values))
    assert m in values
    below = sum(v < m for v in values)
    at_most = sum(v <= m for v in values)
    n = len(values)
    assert below <= (n - 1) // 2 < at_most  # the ((n - 1) // 2)-th of the sorted
    if n % 2:
        assert m == np.median(values)  # odd: numpy's median, independently
    else:
        assert m <= np.median(values)  # even: the lower middle, never a mean


def table(rows):
    base = {"scenario": "s", "method": "best-response", "backend": "pyomo",
            "build_seconds": 0.0, "certificate_seconds": 0.0, "solver_iterations": 0,
            "rounds": 1, "max_regret": 0.0, "solve_cpu_seconds": 0.1}
    return pd.DataFrame([{**base, **r} for r in rows])


@pytest.mark.unit
def test_the_profile_leaves_out_runs_without_a_solver_and_is_written(tmp_path):
    t = table([
        {"solver": NO_SOLVER, "backend": "native", "repeat": 0, "status": "solved",
         "solve_seconds": 0.01},
        {"solver": "cyipopt", "repeat": 0, "status": "solved", "solve_seconds": 1.0},
        {"solver": "highs", "repeat": 0, "status": "solved", "solve_seconds": 3.0},
        {"solver": "cyipopt", "repeat": 1, "status": "failed", "solve_seconds": 0.5},
        {"solver": "highs", "repeat": 1, "status": "solved", "solve_seconds": 2.0},
    ])
    profile = performance_profile(t)
    assert set(profile) == {"best-response/pyomo/cyipopt", "best-response/pyomo/highs"}
    np.testing.assert_array_equal(profile["best-response/pyomo/highs"][0], [1.0, 3.0])
    assert math.isinf(profile["best-response/pyomo/cyipopt"][0][-1])
    write_profile_csv(profile, tmp_path / "profile.csv")
    back = pd.read_csv(tmp_path / "profile.csv")
    for config, (ratios, share) in profile.items():
        rows = back[back["config"] == config]
        np.testing.assert_array_equal(rows["tau"], ratios)
        np.testing.assert_array_equal(rows["share"], share)
    summary = summary_table(t).set_index("solver")
    assert summary.loc["cyipopt", "failed_after_s"] == 0.5  # the failure's own time
    assert summary.loc["cyipopt", "solve_s"] == 1.0  # not mixed with it
    assert summary.loc["highs", "solve_s"] == 2.0  # lower middle of (2, 3)


@needs_ipopt
@pytest.mark.solver
def test_first_run_is_warmed_up_and_failures_keep_their_time(small_users):
    game = one_aggregator_game(small_users, 1.0)
    spec = SolverSpec("cyipopt", {"max_iter": 2998})  # a combination of its own
    first = run_one(game, "best-response", "pyomo", spec)
    second = run_one(game, "best-response", "pyomo", spec)
    assert first.warmup_seconds > 0 and second.warmup_seconds == 0
    assert first.solved and second.solved
    assert first.solve_cpu_seconds > 0 and second.solve_cpu_seconds > 0
    failed = run_one(game, "best-response", "pyomo",
                     SolverSpec("cyipopt", {"max_iter": 0}), warm_up=False)
    assert failed.status is RunStatus.FAILED
    assert math.isfinite(failed.solve_seconds) and failed.solve_seconds > 0


@pytest.mark.unit
def test_one_relative_tolerance_reaches_every_solver_as_its_own_option():
    from aggregame.cli.parser import build_parser
    from aggregame.solvers.compare.timed_run import tolerance_rule
    from aggregame.studies.compare import settings_from_args

    args = build_parser().parse_args(
        ["compare", "fig4", "--solvers", "cyipopt,scip,highs", "--solver-rtol", "1e-7",
         "--solver-option", "scip:limits/gap=1e-3"])
    settings = settings_from_args(args)
    options = {name: dict(opts) for name, opts in settings.options}
    assert options["cyipopt"] == {"tol": 1e-7}
    assert options["highs"] == {"primal_feasibility_tolerance": 1e-7,
                                "dual_feasibility_tolerance": 1e-7}
    assert options["scip"] == {"limits/gap": 1e-3}  # named by the user: kept
    assert settings.solver_rtol == 1e-7
    assert "relative 1e-07 for every solver" in tolerance_rule(settings.solver_rtol)
    plain = settings_from_args(build_parser().parse_args(["compare", "fig4"]))
    assert plain.options == () and "own defaults" in tolerance_rule(None)
