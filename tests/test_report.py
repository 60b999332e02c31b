"""The report: its verdict rule, the large user's readings, max-min built in one place,
and one self-contained page at tiny size."""

import math
import re

import numpy as np
import pytest

from aggregame.studies import common
from aggregame.studies.stats import Stat, Verdict, all_of, judge


@pytest.mark.unit
def test_stat_matches_scipy_standard_error_and_ignores_missing_runs():
    from scipy.stats import sem

    values = [1.0, 2.5, None, 4.0, math.nan, 3.0]
    kept = [1.0, 2.5, 4.0, 3.0]
    stat = Stat.of(values)
    assert stat.n == 4
    assert stat.mean == pytest.approx(np.mean(kept), rel=1e-15)
    assert stat.se == pytest.approx(sem(kept), rel=1e-12)
    assert Stat.of([]).n == 0 and math.isnan(Stat.of([2.0]).se)


@pytest.mark.unit
def test_verdict_rule_sign_threshold_and_too_few_runs():
    clear_drop = Stat(-1.0, 0.1, 10)
    assert judge(clear_drop, -1) is Verdict.SUPPORTED
    assert judge(clear_drop, +1) is Verdict.NOT_SUPPORTED
    assert judge(Stat(-1.0, 0.6, 10), -1) is Verdict.INCONCLUSIVE  # |mean| < 2 SE
    assert judge(Stat(-1.0, math.nan, 1), -1) is Verdict.INCONCLUSIVE
    # a threshold claim: "below 0.2", measured 0.5 +- 0.1 -> clearly above
    assert judge(Stat(0.5, 0.1, 5), -1, 0.2) is Verdict.NOT_SUPPORTED
    assert judge(Stat(0.05, 0.01, 5), -1, 0.2) is Verdict.SUPPORTED
    assert all_of([Verdict.SUPPORTED, Verdict.INCONCLUSIVE]) is Verdict.INCONCLUSIVE
    assert all_of([Verdict.SUPPORTED, Verdict.NOT_SUPPORTED]) is Verdict.NOT_SUPPORTED


@pytest.mark.unit
def test_large_user_readings_from_the_same_draw():
    users = common.small_users(200, 7)
    rng = np.random.default_rng(7)  # the paper's draw, done independently here
    a, b = rng.uniform(0.1, 0.9, 200), rng.uniform(0.0, 10.0, 200)
    assert common.large_K(users, "K=400") == 400.0
    assert common.large_K(users, "K=sum b/a") == pytest.approx(float(np.sum(b / a)),
                                                               rel=1e-12)
    with pytest.raises(ValueError, match="large user reading"):
        common.large_K(users, "K=huge")


@pytest.mark.unit
def test_every_max_min_aggregator_is_built_by_the_one_helper(monkeypatch):
    from aggregame.studies import conj1, eps, fig6

    calls = []
    original = common.maxmin_aggregator

    def spy(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(common, "maxmin_aggregator", spy)
    users = common.small_users(8, 1)
    game = fig6.build(common.MAXMIN_LABEL, "K=400", users)
    assert len(calls) == 2 and all(p.fairness.is_maxmin for p in game.players[:2])
    mixed = conj1.build("alpha 0 vs max-min", users)
    assert len(calls) == 3 and [p.fairness.is_maxmin for p in mixed.players] == [
        False, True, False]
    game = common.aggregated(users, [eps.OBJECTIVES[common.MAXMIN_LABEL]] * 2, eps=0.1)
    assert len(calls) == 5 and {p.fairness.eps for p in game.players[:2]} == {0.1}


@pytest.mark.slow
def test_tiny_report_is_self_contained_with_every_section(tmp_path):
    from aggregame.studies import run_study
    from aggregame.studies.report import write_report

    tiny = {"seed": 3, "workers": 2, "progress": False}
    run_study("fig6", out=tmp_path, runs=2, users=4, **tiny)
    run_study("eps", out=tmp_path, runs=1, users=2, **tiny)
    run_study("conj1", out=tmp_path, runs=1, users=2, **tiny)
    page = write_report(tmp_path).read_text()
    images = re.findall(r'<img src="([^"]*)"', page)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert "width=\"640\"" not in page and "max-width:100%" in page
    table = page.split('<table id="verdicts">')[1].split("</table>")[0]
    rows = re.findall(r"<tr class=[^>]*>(.*?)</tr>", table)
    assert len(rows) >= 10
    for row in rows:
        cells = re.findall(r"<td>(.*?)</td>", row)
        criterion, runs = cells[4], cells[6]
        assert criterion.strip() and re.search(r"\d+ (of \d+ )?runs", runs)
    assert "quick: 2 of 50 runs" in page  # fig6 at 2 runs is flagged
    eps_part = page.split('id="eps-table"')[1].split("</table>")[0]
    assert all(f"eps = {e:g}" in eps_part for e in (0.001, 0.01, 0.1, 1))
    large = page.split('id="large-user"')[1].split("</table>")[0]
    assert "K=400" in large and "K=sum b/a" in large
    assert 'id="conjecture1"' in page and 'id="conj1-counts"' in page
    assert "untested" in page and "git commit" in page and "Ipopt (via cyipopt)" in page
    assert (tmp_path / "claims.md").read_text().count("| Fig. 6 |") >= 8
