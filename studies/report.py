"""One self-contained HTML page: every sub-claim of Section IV judged on our numbers,
each figure beside its verdicts, every verdict with its domain, effect size and
robustness; the claims left untested; Conjecture 1 with its counterexample.

The content is built once (studies/report_model.py); this module renders it as HTML
(figures embedded as PNG, no external file needed; links to each study's results
and SVG figures beside the page) and writes ``studies.md``, the same content in
Markdown (studies/report_md.py). Both files hold no time or date: the same results
give the same files, bit for bit.
"""

from __future__ import annotations

import base64
import html
import re
import subprocess
from pathlib import Path

import pandas as pd

from aggregame.studies.report_model import (ORDER, Section, header_text, rules,
                                            sections, untested)
from aggregame.studies.robustness import HEADS, judged_cells

__all__ = ["ORDER", "write_report", "report_versions", "judged_cells", "HEADS"]

CSS = """body{font-family:sans-serif;max-width:1400px;margin:auto;padding:0 1em}
table{border-collapse:collapse;margin-bottom:1em;width:100%;table-layout:fixed}
td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:85%;
overflow-wrap:anywhere;word-break:break-word;text-align:left}
table.frame td,table.frame th{font-size:80%}
img{max-width:100%;height:auto;display:block;margin:0.5em 0}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0;flex:1 1 560px}
ul.robust{margin:0;padding-left:1.1em}
.supported{background:#e3f4e3}.not-supported{background:#f8dede}
.mixed{background:#fff0cc}.ambiguous{background:#ece3f7}.refuted{background:#f4c6c6}
.untested{background:#eeeeee}tr.measure td:first-child{padding-left:1.5em}
.quick{color:#b00;font-weight:bold}dt{font-weight:bold;margin-top:0.4em}"""
QUICK = ' class="quick"'
#: Column widths of a verdict table (percent; they add up to 100).
WIDTHS = (17, 10, 14, 9, 12, 10, 18, 10)


def git_commit() -> str:
    """The commit of aggregame's source tree ('unknown' outside a git checkout), and
    whether tracked files differ from it."""
    import aggregame

    where = Path(aggregame.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True,
                                  timeout=5, cwd=where)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return commit + (" with uncommitted changes" if dirty else "")


def report_versions() -> dict[str, str]:
    """aggregame, Pyomo, Ipopt (through cyipopt), cyipopt, numpy and the commit."""
    import numpy
    import pyomo

    import aggregame

    out = {"aggregame": aggregame.__version__, "Pyomo": pyomo.__version__,
           "numpy": numpy.__version__}
    try:
        import cyipopt

        out["Ipopt (via cyipopt)"] = ".".join(map(str, cyipopt.IPOPT_VERSION))
        out["cyipopt"] = cyipopt.__version__
    except ImportError:
        out["Ipopt (via cyipopt)"] = out["cyipopt"] = "not installed"
    out["git commit"] = git_commit()
    return out


def css_class(verdict: str) -> str:
    return verdict.replace(" ", "-")


def anchor(key: str) -> str:
    """The HTML id of a claim's row (letters, digits and hyphens only)."""
    return "claim-" + re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def _e(text: object) -> str:
    return html.escape(str(text))


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(path.stem)}: '
            f'figure of this section"></figure>')


def _td(cell: str | list[str]) -> str:
    if isinstance(cell, list):
        items = "".join(f"<li>{_e(c)}</li>" for c in cell)
        return f'<td><ul class="robust">{items}</ul></td>'
    return f"<td>{_e(cell)}</td>"


def verdict_table(section: Section) -> str:
    cols = "".join(f'<col style="width:{w}%">' for w in WIDTHS)
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in HEADS) + "</tr>"
    body = []
    for j in section.judged:
        cells = judged_cells(j, section.domain)
        kind = " measure" if j.row.group else ""
        body.append(f'<tr class="{css_class(j.verdict.value)}{kind}" '
                    f'id="{anchor(j.row.key)}">' + "".join(_td(c) for c in cells)
                    + "</tr>")
    return (f'<table class="verdicts" id="verdicts-{section.key}"><colgroup>{cols}'
            f"</colgroup>{head}{''.join(body)}</table>")


def frame(df: pd.DataFrame, table_id: str) -> str:
    return df.to_html(escape=True, table_id=table_id, border=0, na_rep="-",
                      classes="frame")


def _section_html(section: Section, out: Path) -> str:
    paras = "".join(f"<p{QUICK if 'QUICK' in t else ''}>{_e(t)}</p>"
                    for t in section.text)
    figs = "".join(_img(p) for p in section.figures)
    files = ", ".join(f'<a href="{_e(p.relative_to(out).as_posix())}">'
                      f"{_e(p.relative_to(out).as_posix())}</a>" for p in section.files)
    tables = "".join(f"<h3>{_e(title)}</h3>" + frame(df, f"{section.key}-table-{k}")
                     for k, (title, df) in enumerate(section.tables))
    verdicts = verdict_table(section) if section.judged else ""
    return (f'<section id="{section.key}"><h2>{_e(section.title)}</h2>{paras}'
            f"<p>Domain: {_e(section.domain)}. Files: {files or 'none'}.</p>"
            f'<div class="figs">{figs}</div>{verdicts}{tables}</section>')


def _summary(all_sections: list[Section]) -> str:
    rows = "".join(
        f'<tr class="{css_class(j.verdict.value)}"><td>{_e(j.row.figure)}</td>'
        f'<td><a href="#{anchor(j.row.key)}">{_e(j.row.claim)}</a></td>'
        f"<td><b>{_e(j.verdict.value)}</b></td></tr>"
        for s in all_sections for j in s.judged if not j.row.group)
    return ('<table id="summary"><colgroup><col style="width:12%"><col style="width:'
            '73%"><col style="width:15%"></colgroup><tr><th>figure</th><th>claim</th>'
            f"<th>verdict</th></tr>{rows}</table>")


def write_report(out: Path | str, markdown: Path | str | None = None) -> Path:
    """Write ``out``/report.html and ``out``/studies.md (and the Markdown to
    ``markdown`` too, if given) from the study folders in ``out``."""
    from aggregame.studies.files import atomic_write_text
    from aggregame.studies.report_md import render_markdown

    out = Path(out)
    all_sections = sections(out)
    versions = report_versions()
    toc = "".join(f'<li><a href="#{s.key}">{_e(s.title)}</a></li>'
                  for s in all_sections)
    rule_list = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rules())
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>aggregame: the paper's Section IV, claim by claim</title>
<style>{CSS}</style></head><body>
<h1>Section IV of Li, Motoki and Zhang, claim by claim</h1>
<p>Versions: {_e(", ".join(f"{k} {v}" for k, v in versions.items()))}.</p>
{"".join(f"<p>{_e(t)}</p>" for t in header_text())}
<h2 id="rules">Verdicts and how they are decided</h2><dl>{rule_list}</dl>
<h2 id="contents">Contents</h2><ul>{toc}<li><a href="#untested">Claims not tested</a>
</li></ul>
<h2 id="all">Every claim</h2>{_summary(all_sections)}
{"".join(_section_html(s, out) for s in all_sections)}
<section id="untested"><h2>Claims not tested</h2>{frame(untested(), "untested-table")}
</section></body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    text = render_markdown(all_sections, versions)
    atomic_write_text(out / "studies.md", text)
    if markdown is not None:
        atomic_write_text(Path(markdown), text)
    return path
