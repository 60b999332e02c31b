"""The report as a reader sees it: rendered by headless Chromium (Debian's package,
installed by bootstrap.sh), every image loads, no link is broken and no text overflows
its table, at a desktop and at a narrow window."""

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

import chromium

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not chromium.available(),
                                 reason="Debian's chromium is not installed (bash "
                                        "bootstrap.sh test installs it)")]

#: Measured in the page once it has loaded: images, links, and every table and cell
#: whose content is wider than its box.
MEASURE = """(() => {
  const over = (e) => e.scrollWidth > e.clientWidth + 1;
  const tables = [...document.querySelectorAll('table')];
  return {
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete,
                                             width: i.naturalWidth})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    tables: tables.length,
    wideTables: tables.filter(t => t.getBoundingClientRect().width >
                                   t.parentElement.clientWidth + 1).map(t => t.id),
    overflowingCells: [...document.querySelectorAll('td, th')].filter(over)
                        .map(c => c.textContent.slice(0, 60)),
    pageOverflow: document.documentElement.scrollWidth >
                  document.documentElement.clientWidth,
  };
})()"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from aggregame.studies import run_study
    from aggregame.studies.report import write_report

    out = tmp_path_factory.mktemp("report")
    tiny = {"seed": 3, "workers": 2, "progress": False}
    for study in ("fig5", "fig6"):
        run_study(study, out=out, runs=2, users=8, **tiny)
    for study in ("fig10", "conj1"):  # the widest tables; the slowest studies
        run_study(study, out=out, runs=1, users=2, **tiny)
    return write_report(out)


@pytest.mark.parametrize("width", [1280, 800])
def test_the_report_renders_whole_in_chromium(report, width):
    with chromium.Browser() as browser:
        page = browser.evaluate(report, MEASURE, width=width)
    assert page["images"] and all(i["complete"] and i["width"] > 0
                                  for i in page["images"]), page["images"]
    assert page["tables"] >= 5
    assert page["wideTables"] == [] and page["overflowingCells"] == []
    assert not page["pageOverflow"]
    ids = set(page["ids"])
    for href in page["links"]:
        url = urlparse(href)
        assert url.scheme == "file", href  # nothing outside the report's folder
        if url.fragment:
            assert url.fragment in ids, href
        target = Path(unquote(url.path))
        assert target.is_file(), href
        assert report.parent in target.resolve().parents or target == report
