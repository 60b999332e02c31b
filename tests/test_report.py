"""The report's rules: verdict vocabulary, effect sizes, robustness domains, the solve
cache, the uniqueness hook; each checked against an independent computation."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregame.studies import common
from aggregame.studies.stats import (Finding, Size, Stat, Verdict, all_of, combine,
                                     judge, summary)

S, N = Verdict.SUPPORTED, Verdict.NOT_SUPPORTED


@pytest.mark.unit
def test_stat_matches_scipy_standard_error_and_ignores_missing_runs():
    from scipy.stats import sem

    values = [1.0, 2.5, None, 4.0, math.nan, 3.0]
    kept = [1.0, 2.5, 4.0, 3.0]
    stat = Stat.of(values)
    assert stat.n == 4
    assert stat.mean == pytest.approx(np.mean(kept), rel=1e-15)
    assert stat.se == pytest.approx(sem(kept), rel=1e-12)
    assert stat.z == pytest.approx(np.mean(kept) / sem(kept), rel=1e-12)
    assert Stat.of([]).n == 0 and math.isnan(Stat.of([2.0]).se)


@pytest.mark.unit
def test_judge_sign_threshold_size_and_too_few_runs():
    drop = Stat(-1.0, 0.1, 10)
    assert judge(drop, -1).verdict is S
    assert judge(drop, +1).reason.startswith("opposite sign")
    assert judge(Stat(-1.0, 0.6, 10), -1).reason == "within 2 SE"
    assert judge(Stat(-1.0, math.nan, 1), -1).verdict is N
    # a clear drop that is too small for a size word
    small = Size.ratio(-1.0, 40.0, "the reference")
    assert small.value == pytest.approx(-0.025)
    found = judge(drop, -1, small, minimum=0.05)
    assert found.verdict is N and "below the 5% threshold: 2.5%" in found.reason
    assert judge(drop, -1, Size.ratio(-1.0, 10.0, "r"), minimum=0.05).verdict is S
    # threshold claims: "below 0.2", measured 0.5 +- 0.1 -> clearly above
    assert judge(Stat(0.5, 0.1, 5), -1, threshold=0.2).verdict is N
    assert judge(Stat(0.05, 0.01, 5), -1, threshold=0.2).verdict is S
    assert all_of([Finding(S, "a"), Finding(N, "b")]) == Finding(N, "b")


@pytest.mark.unit
def test_a_variant_makes_a_verdict_mixed_only_if_the_choice_changed_it():
    sup, noise = Finding(S, ""), Finding(N, "within 2 SE")
    assert combine(sup, sup, {"eps=0.1": sup}) == (S, [])
    assert combine(sup, sup, {"eps=0.1": noise, "K=400": sup}) == (Verdict.MIXED,
                                                                   ["eps=0.1"])
    # Fewer runs alone (the default on the robustness runs is noise too) is no flip,
    # and neither is a variant that agrees with the default on all runs.
    assert combine(sup, noise, {"eps=0.1": noise}) == (S, [])
    assert combine(sup, noise, {"eps=0.1": sup}) == (S, [])
    for final in (Verdict.AMBIGUOUS, Verdict.REFUTED, Verdict.UNTESTED):
        assert combine(Finding(final, ""), None, {"K=400": sup}) == (final, [])


@pytest.mark.unit
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=60))
def test_summary_agrees_with_pandas(values):
    got = summary(values)
    s = pd.Series(values)
    q1, q3 = s.quantile(0.25), s.quantile(0.75)
    want = {"mean": s.mean(), "median": s.median(), "q1": q1, "q3": q3,
            "sd": s.std(ddof=1), "iqr": q3 - q1}
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k
    if s.mean() != 0:
        assert got["cv"] == pytest.approx(s.std(ddof=1) / s.mean(), rel=1e-9)


@pytest.mark.unit
def test_measures_in_opposite_directions_make_a_claim_ambiguous():
    """Scaling a distribution up by 10% and shifting it up by more: its SD and IQR
    rise, its CV falls; "more spread out" is then ambiguous, and with every measure
    rising it is decided by the conjunction."""
    from aggregame.studies.claims_spread import claims_fig8

    rng = np.random.default_rng(1)
    rows = []
    for run in range(8):
        base = rng.gamma(2.0, 1.0, 300)
        for config, values in (("no aggregator", base),
                               ("social welfare", 1.1 * base + 1.0),
                               ("proportional fairness", 0.5 * base + 1.0)):
            rows += [{"run": run, "config": config, "user": i, "consumption": v,
                      "surplus": 2 * v, "equilibrium": True}
                     for i, v in enumerate(values)]
    found = {r.key: r for r in claims_fig8(pd.DataFrame(rows))}
    spread = found["fig8-consumption-spread"]
    assert spread.verdict is Verdict.AMBIGUOUS
    assert found["fig8-consumption-spread-sd"].verdict is S
    assert found["fig8-consumption-spread-cv"].finding.reason.startswith("opposite")
    # proportional fairness halves SD and IQR and lowers CV: all agree
    assert found["fig9-consumption-uniform"].verdict is S


@pytest.mark.unit
def test_mitigates_reports_the_fraction_of_the_harm_offset():
    from aggregame.studies.claims_market import claims_fig6

    rng = np.random.default_rng(2)
    rows = []
    for run in range(12):
        alone = 16 + rng.normal(0, 1)
        large = alone - 5 + rng.normal(0, 0.1)
        levels = {"small users alone": alone, "with large user": large,
                  "social welfare": large + 0.2 * (alone - large),
                  "proportional fairness": large - 1, "max-min": 0.01}
        for config, v in levels.items():
            rows.append({"run": run, "config": config, "avg_surplus": v,
                         "avg_consumption": 1.0, "equilibrium": True,
                         **{f"s_{m}": v for m in ("mean", "median", "q1", "q3")}})
    found = {r.key: r for r in claims_fig6(pd.DataFrame(rows))}
    offset = found["fig6-mitigates"]
    assert offset.stat.mean == pytest.approx(0.2, rel=1e-12)
    assert offset.verdict is S and str(offset.size).startswith("+20.0%")
    assert found["fig6-maxmin-very-small"].verdict is S
    assert found["pf-improves-vs-large"].verdict is N


@pytest.mark.unit
def test_large_user_readings_from_the_same_draw():
    users = common.small_users(200, 7)
    rng = np.random.default_rng(7)  # the paper's draw, done independently here
    a, b = rng.uniform(0.1, 0.9, 200), rng.uniform(0.0, 10.0, 200)
    assert common.large_K(users, "K=400") == 400.0
    assert common.large_K(users, "K=sum b/a") == pytest.approx(float(np.sum(b / a)),
                                                               rel=1e-12)
    assert common.DEFAULT.large == "K=sum b/a"
    with pytest.raises(ValueError, match="large user reading"):
        common.large_K(users, "K=huge")
    with pytest.raises(ValueError, match="large user reading"):
        common.Domain(large="K=huge")


@pytest.mark.unit
def test_every_max_min_aggregator_is_built_by_the_one_helper(monkeypatch):
    from aggregame.studies import conj1, fig6
    from aggregame.studies.variants import VARIANTS

    calls = []
    original = common.maxmin_aggregator

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(common, "maxmin_aggregator", spy)
    users = common.small_users(8, 1)
    players = fig6.build(common.MAXMIN_LABEL, common.DEFAULT, users)
    assert len(calls) == 2 and all(p.fairness.is_leximin for p in players[:2])
    total = {v.name: v.domain for v in VARIANTS}["max-min=total-surplus"]
    mixed = conj1.build("alpha 0 vs max-min", users, total)
    assert len(calls) == 3 and [p.fairness.is_maxmin for p in mixed.players] == [
        False, True, False]
    assert not mixed.players[1].fairness.is_leximin


@pytest.mark.unit
def test_variants_run_only_where_their_choice_enters():
    from aggregame.studies.variants import Choice, choices_in, with_variants

    assert choices_in(None, large=False) == frozenset()
    assert choices_in(None, large=True) == {Choice.K}
    assert choices_in([0, 0], large=True) == {Choice.K}
    assert choices_in([0, 1], large=False) == {Choice.EPS, Choice.RULE}
    assert choices_in(["inf", 0], large=True) == set(Choice)
    tasks = with_variants([{"run": r} for r in range(12)],
                          lambda p: frozenset({Choice.K}))
    assert [t["domain"] for t in tasks].count("K=400") == 10  # the robustness runs
    assert {t["domain"] for t in tasks} == {"default", "K=400"}


@pytest.mark.slow
def test_choices_said_not_to_enter_leave_the_equilibrium_alone():
    """eps and the rule do not enter social-welfare aggregators or users alone (the
    variants skip them); they do move a proportional-fair aggregator."""
    from aggregame.solvers import solve_equilibrium

    users = common.small_users(24, 3)
    domains = [common.DEFAULT, common.DEFAULT.with_(eps=0.001),
               common.DEFAULT.with_(eps=0.1), common.DEFAULT.with_(rule="viable")]

    def profile(alphas, domain):
        eq = solve_equilibrium(common.aggregated(users, alphas, domain))
        assert eq.is_equilibrium
        return eq.profile

    base = profile([0, 0], domains[0])
    for d in domains[1:]:
        np.testing.assert_allclose(profile([0, 0], d), base, rtol=1e-9, atol=1e-9)
    pf = [profile([1, 1], d) for d in domains[1:3]]
    assert np.max(np.abs(pf[0] - pf[1])) > 1e-6


@pytest.mark.unit
def test_variant_table_takes_the_variant_where_it_ran_and_the_default_elsewhere():
    from aggregame.studies.variants import variant_table

    df = pd.DataFrame([
        {"run": 0, "config": "a", "domain": "default", "v": 1.0},
        {"run": 0, "config": "b", "domain": "default", "v": 2.0},
        {"run": 0, "config": "b", "domain": "K=400", "v": 3.0},
        {"run": 11, "config": "a", "domain": "default", "v": 4.0},  # not robust
    ])
    got = variant_table(df, "K=400", ["config"]).sort_values("config")
    assert got[["config", "v"]].values.tolist() == [["a", 1.0], ["b", 3.0]]
    assert variant_table(df, "default", ["config"])["v"].tolist() == [1.0, 2.0]


@pytest.mark.unit
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1,
                max_size=5))
def test_outcome_json_round_trip_is_exact(xs):
    import json

    from aggregame.studies.outcome import Outcome, PlayerOutcome

    out = Outcome(True, "converged", "ok", 3, math.inf, 1.5, (tuple(xs),),
                  (PlayerOutcome("p", xs[0], ("s0",) * len(xs), tuple(xs),
                                 tuple(xs)),))
    back = Outcome.from_json(json.loads(json.dumps(out.to_json())))
    assert back == out


@pytest.mark.unit
def test_a_cached_solve_is_the_fresh_solve_and_a_bad_file_is_a_miss(tmp_path,
                                                                       monkeypatch):
    from aggregame.studies import outcome

    users = common.small_users(10, 4)
    players = common.aggregated_players(users, [1, 1])
    fresh = outcome.solve_players(players, common.paper_price())
    with outcome.cache_folder(tmp_path):
        first = outcome.solve_players(players, common.paper_price())
        (path,) = tmp_path.glob("*.json")
        monkeypatch.setattr(outcome, "_solve", lambda *a: pytest.fail("not cached"))
        assert outcome.solve_players(players, common.paper_price()) == first == fresh
        other = common.aggregated_players(users, [1, 1], common.DEFAULT.with_(eps=0.1))
        assert outcome.solve_key(other, common.paper_price(), "native", {}) != \
            outcome.solve_key(players, common.paper_price(), "native", {})
        monkeypatch.undo()
        path.write_text('{"key": "another", "outcome": {}}')
        assert outcome.solve_players(players, common.paper_price()) == fresh


@pytest.mark.unit
def test_uniqueness_decision_finds_both_equilibria_of_the_counterexample():
    """The engine's decision on data/two_equilibria.toml: not unique, two certified
    equilibria, checked independently (a dense grid of every deviation, and
    Gauss-Seidel from two starts reaching each)."""
    from aggregame import load_scenario
    from aggregame.solvers.equilibrium.dynamics import (DynamicsSettings,
                                                        solve_equilibrium)
    from aggregame.studies.uniqueness import Uniqueness, decide_uniqueness

    game = load_scenario("two_equilibria").game
    found = decide_uniqueness(game)
    assert found.status is Uniqueness.NOT_UNIQUE and found.is_proof
    assert len(found.equilibria) == 2 and found.verdict == "2 equilibria (proved)"
    # Each is an equilibrium by an independent check: a one-member player's payoff
    # U(y) - p(Y_-j + y) y on a dense grid beats neither purchase.
    for profile in found.equilibria:
        for j, y in enumerate(profile):
            u = game.players[j].members[0].utility
            others = sum(profile) - y
            grid = np.linspace(0.0, 2000.0, 200001)
            payoff = u.b * grid - u.a * grid**2 - game.price.value(others + grid) * grid
            here = u.b * y - u.a * y**2 - game.price.value(others + y) * y
            assert payoff.max() <= here + 1e-6 * abs(here)
    # Best response from below and from above ends at each of them.
    ends = [solve_equilibrium(game, "native", DynamicsSettings(
        start=start, best_response="scan")) for start in ((0.0, 0.0), (1e3, 1e3))]
    assert all(eq.converged and eq.certified for eq in ends)
    for eq, profile in zip(ends, sorted(found.equilibria)):
        np.testing.assert_allclose(eq.profile, profile, rtol=1e-6)


@pytest.mark.unit
def test_uniqueness_decision_proves_cournot_unique_at_its_closed_form():
    """Users alone under p = c Y: proved unique, at the closed form of the first-order
    conditions b - 2 a y = c (Y + y), i.e. y = (b - c Y) / (2 a + c), where every
    user buys (asserted)."""
    from aggregame.studies.uniqueness import Uniqueness, decide_uniqueness

    users = common.small_users(5, 2)
    found = decide_uniqueness(common.alone(users))
    assert found.status is Uniqueness.PROVED_UNIQUE and found.is_proof
    assert found.verdict == "unique (proved)" and len(found.equilibria) == 1
    a = np.array([u.utility.a for u in users])
    b = np.array([u.utility.b for u in users])
    c = common.paper_price().c
    total = np.sum(b / (2 * a + c)) / (1 + c * np.sum(1 / (2 * a + c)))
    closed = (b - c * total) / (2 * a + c)
    assert np.all(closed > 0)
    np.testing.assert_allclose(found.equilibria[0], closed, rtol=1e-8)
