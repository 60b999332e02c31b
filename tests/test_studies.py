"""Studies end to end on a tiny setting; resume; Dask and local processes give the
same numbers."""

import json

import pandas as pd
import pytest

from aggregame.studies import STUDIES, run_study
from aggregame.studies.report import write_report

pytestmark = pytest.mark.slow

TINY = {"runs": 2, "seed": 5, "users": 12, "workers": 2, "progress": False}


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Parquet and CSV hold the same table (CSV loses types: empty text reads as NaN,
    "0.5" as a number), compared column by column on normalised values."""
    import numpy as np

    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for col in a.columns:
        left, right = a[col], b[col]
        if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
            np.testing.assert_allclose(left.to_numpy(float), right.to_numpy(float),
                                       rtol=1e-15, equal_nan=True)
        else:
            norm = lambda s: [None if pd.isna(v) else str(v) for v in s]  # noqa: E731
            assert norm(left) == norm(right), col


def test_every_study_name_has_its_module_in_the_registry():
    """Studies are run by name through the registry (no import from a string): each
    name the CLI takes reaches a module with a study's entry points, named as it."""
    from aggregame.studies.registry import STUDY_MODULES

    assert set(STUDY_MODULES) == set(STUDIES.values())
    for name, module in STUDY_MODULES.items():
        assert module.__name__ == f"aggregame.studies.{name}"
        assert all(callable(getattr(module, f)) for f in ("tasks", "run", "figures"))


#: conj1 runs below at a tinier size (it is the slowest).
@pytest.mark.parametrize("name", sorted(set(STUDIES.values()) - {"conj1"}))
def test_each_study_runs_end_to_end_and_writes_its_files(tmp_path, name):
    result = run_study(name, out=tmp_path, **TINY)
    folder = tmp_path / name
    for file in ("results.csv", "results.parquet", "settings.json"):
        assert (folder / file).stat().st_size > 0
    assert result.figures and all((folder / f).stat().st_size > 0
                                  for f in result.figures)
    assert {f.rsplit(".", 1)[1] for f in result.figures} == {"png", "svg"}
    meta = json.loads((folder / "settings.json").read_text())
    assert meta["settings"]["seed"] == 5 and meta["settings"]["users"] == 12
    choices = meta["settings"]["choices"]
    assert "numpy" in meta["versions"] and choices["default domain"]["eps"] == 0.01
    assert "seconds" not in meta and "written" not in meta  # no time in any file
    table = pd.read_parquet(folder / "results.parquet")
    assert_same_table(table, pd.read_csv(folder / "results.csv"))
    assert len(table) > 0 and not list(folder.glob("runs/.*.tmp"))


def test_rerun_is_bit_for_bit_and_resume_skips_finished_runs(tmp_path):
    first = run_study("fig5", out=tmp_path, **TINY)
    runs = sorted((tmp_path / "fig5" / "runs").glob("*.json"))
    assert first.ran == len(runs) > 2
    runs[0].unlink()  # as if interrupted before this run finished
    (tmp_path / "fig5" / "runs" / ".partial.tmp").write_text("{half")  # and mid-write
    again = run_study("fig5", out=tmp_path, **TINY)
    assert again.ran == 1
    assert not list((tmp_path / "fig5" / "runs").glob(".*.tmp"))
    pd.testing.assert_frame_equal(first.table, again.table)
    fresh = run_study("fig5", out=tmp_path / "fresh", **TINY)
    pd.testing.assert_frame_equal(first.table, fresh.table)


def test_dask_gives_the_same_numbers_as_local_processes(tmp_path):
    from distributed import Client, LocalCluster

    local = run_study("fig12", out=tmp_path / "local", **TINY)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        on_dask = run_study("fig12", out=tmp_path / "dask",
                            dask_address=cluster.scheduler_address, **TINY)
    assert on_dask.ran == local.ran > 0
    pd.testing.assert_frame_equal(local.table, on_dask.table)


def test_report_lists_every_claim_with_domain_size_and_robustness(tmp_path):
    for name in ("fig5", "fig6"):
        run_study(name, out=tmp_path, **TINY)
    page = write_report(tmp_path).read_text()
    assert "average small-user surplus decreases as K grows" in page
    assert "social welfare gives the highest surplus" in page
    assert page.count("<img") >= 3  # fig5, fig6, fig7
    assert "Not run." in page  # the studies not run here say so
    import re

    from aggregame.studies.report import HEADS
    from aggregame.studies.stats import Verdict
    from aggregame.studies.variants import VARIANTS

    table = page.split('<table class="verdicts" id="verdicts-fig6">', 1)[1]
    table = table.split("</table>", 1)[0]
    rows = re.findall(r"<tr class=\"([^\"]*)\" id=\"claim-[^\"]*\">(.*?)</tr>", table)
    assert len(rows) >= 10
    words = {v.value for v in Verdict}
    for kind, row in rows:
        cells = re.findall(r"<td>(.*?)</td>", row)
        assert len(cells) == len(HEADS)
        verdict = re.findall(r"<li>(.*?)</li>", cells[1])[0]
        assert verdict.split(" (")[0] in words
        assert "K = sum of b/a" in cells[5]  # the domain
        assert all(v.name in cells[6] for v in VARIANTS)  # robustness, every variant
        assert cells[3] != "-" or "measures" in cells[2] or "ratio" in cells[2]
    md = (tmp_path / "studies.md").read_text()
    assert md.count("| Fig. 6 |") >= 6 and "K=400" in md


def test_conj1_refutes_the_conjecture_with_the_shipped_counterexample(tmp_path):
    run_study("conj1", out=tmp_path, runs=1, seed=3, users=2, workers=2,
              progress=False)
    page = write_report(tmp_path).read_text()
    section = page.split('<section id="conj1">', 1)[1].split("</section>", 1)[0]
    assert 'id="claim-conj1-as-stated"' in section
    row = section.split('id="claim-conj1-as-stated">', 1)[1].split("</tr>", 1)[0]
    assert "<li>refuted</li>" in row and "proved" in row and "price" in row
    assert "2 equilibria (proved)" in row  # the engine: both, and no third
    # Users alone and social-welfare aggregators under the linear price: the engine
    # proves every instance unique (its replies fall with the total).
    linear = section.split('id="claim-conj1-linear-alpha0">', 1)[1].split("</tr>")[0]
    assert "<li>supported</li>" in linear and "proved unique on all" in linear
    assert 'id="claim-conj1-linear-other"' in section


def test_the_same_seed_gives_the_same_files_bit_for_bit(tmp_path):
    """Two runs of a quick study (figures, tables, report included) in two folders:
    every file the same, byte for byte (SVG too: no date, a fixed hash salt)."""
    for name in ("a", "b"):
        for study in ("fig4", "fig10"):
            run_study(study, out=tmp_path / name, runs=1, seed=2, users=8,
                      workers=2, progress=False)
        write_report(tmp_path / name)
    files = {p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
             if p.is_file()}
    assert files == {p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*")
                     if p.is_file()}
    assert {p.suffix for p in files} >= {".svg", ".png", ".parquet", ".csv", ".json",
                                         ".html", ".md"}
    differ = [str(p) for p in sorted(files)
              if (tmp_path / "a" / p).read_bytes() != (tmp_path / "b" / p).read_bytes()]
    assert differ == []


def test_bad_study_input_is_a_clear_error(tmp_path):
    from aggregame import AggregameError

    with pytest.raises(AggregameError, match="unknown study 'fig99'"):
        run_study("fig99", out=tmp_path)
    with pytest.raises(AggregameError, match="--runs must be an integer from 1 to"):
        run_study("fig5", out=tmp_path, runs=0)


def test_report_command_writes_the_page_and_its_markdown(tmp_path, monkeypatch, capsys):
    import functools

    import aggregame.studies as studies
    from aggregame.cli import main

    monkeypatch.setattr(studies, "run_study", functools.partial(studies.run_study,
                                                                users=2))
    md = tmp_path / "copy.md"
    code = main(["report", "--out", str(tmp_path / "out"), "--runs", "1", "-q",
                 "--workers", "2", "--markdown", str(md)])
    assert code == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Not run." not in page and page.count("<section") == 9
    assert md.read_bytes() == (tmp_path / "out" / "studies.md").read_bytes()
    assert "report:" in capsys.readouterr().out
