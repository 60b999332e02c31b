"""One self-contained HTML page: every sub-claim of Section IV judged on our numbers,
the claims left untested, both readings of the large user, the eps sensitivity, the
Conjecture 1 study, and every figure embedded (base64 PNG; no external file).

The verdicts come from :mod:`aggregame.studies.claims` under the rule of
:mod:`aggregame.studies.stats`; ``claims.md`` beside the page holds the same table in
Markdown.
"""

from __future__ import annotations

import base64
import html
import importlib
import json
import subprocess
from pathlib import Path

import pandas as pd

from aggregame.studies.claims import (CHECKS, UNTESTED, Row, eps_table,
                                      large_user_table, multiple_equilibria)
from aggregame.studies.stats import RULE

#: Study folders of the report, in the paper's order.
ORDER = ("fig3", "fig4", "fig5", "fig6", "fig8", "fig10", "fig12", "eps", "conj1")
#: The one unit convention of every number on the page.
UNITS = ("Units: consumption x and purchases y in energy units; utility U, surplus "
         "s = U(x) - p x and eps in money units ($); price p = 0.001 Y in $ per energy "
         "unit; K = b/a of the large user in energy units. 'n' is the number of runs "
         "(seeds) behind a number; 'SE' its standard error over runs.")
CSS = """body{font-family:sans-serif;max-width:1400px;margin:auto;padding:0 1em}
td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:90%}
table{border-collapse:collapse;margin-bottom:1em}
img{max-width:100%;height:auto;display:block;margin:0.5em 0}
.supported{background:#e3f4e3}.not{background:#f8dede}.inconclusive{background:#fff6d5}
.quick{color:#b00;font-weight:bold}"""


def _load(out: Path, study: str) -> pd.DataFrame | None:
    path = out / study / "results.csv"
    return pd.read_csv(path) if path.exists() else None


def git_commit() -> str:
    """The commit of aggregame's source tree, or 'unknown' outside a git checkout."""
    import aggregame

    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5,
                              cwd=Path(aggregame.__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() \
        else "unknown"


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


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _runs_note(meta: dict, study: str) -> tuple[int, int]:
    module = importlib.import_module(f"aggregame.studies.{study}")
    return int(meta["settings"]["runs"]), int(module.DEFAULT_RUNS)


def _quick(row: Row, runs: dict[str, tuple[int, int]]) -> str:
    have, full = runs.get(row.study, (0, 0))
    if have < full:
        return f'<span class="quick">quick: {have} of {full} runs</span>'
    return f"{have} runs (full size)"


_CLASS = {"supported": "supported", "not supported": "not",
          "inconclusive": "inconclusive"}


def _verdict_table(rows: list[Row], runs) -> str:
    head = ("<tr><th>figure</th><th>sub-claim</th><th>effect (per run)</th>"
            "<th>mean +- SE (n runs)</th><th>criterion</th><th>verdict</th>"
            "<th>runs</th><th>paper</th><th>our numbers</th></tr>")
    body = "".join(
        f"<tr class=\"{_CLASS.get(r.verdict.value, '')}\"><td>{r.figure}</td>"
        f"<td>{html.escape(r.claim)}</td><td>{html.escape(r.effect)}</td>"
        f"<td>{html.escape(str(r.stat))}</td><td>{html.escape(r.criterion)}</td>"
        f"<td><b>{r.verdict.value}</b></td><td>{_quick(r, runs)}</td>"
        f"<td>{html.escape(r.paper)}</td><td>{html.escape(r.detail)}</td></tr>"
        for r in rows)
    return f'<table id="verdicts">{head}{body}</table>'


def _frame(df: pd.DataFrame, table_id: str) -> str:
    return df.to_html(escape=True, table_id=table_id, border=0, na_rep="-")


def _untested() -> str:
    body = "".join(f"<tr><td>{f}</td><td>{html.escape(c)}</td><td>untested</td>"
                   f"<td>{html.escape(why)}</td></tr>" for f, c, why in UNTESTED)
    return ('<table id="untested"><tr><th>figure</th><th>claim</th><th>verdict</th>'
            f"<th>why not tested</th></tr>{body}</table>")


LARGE_TEXT = (
    "The paper gives two sizes for the large user that clash. Sec. IV-C sweeps "
    "K = b/a from 0 to 400 (Fig. 5), and Fig. 6's caption speaks of 'market power "
    "equivalent to 200 small users'; but Sec. IV-A says the large user is usually set "
    "'as large as the sum of all small users', and the sum of b/a over 200 small users "
    "drawn as the paper says is 2400-3080 (mean 2720 over seeds 0-49), about seven "
    "times 400. K = 400 is about 30 average small users. Both readings are run side by side below on the "
    "same small users (same seeds).")


def _section_large(df: pd.DataFrame | None) -> str:
    if df is None or "large" not in df:
        return "<p><b>Not run.</b></p>"
    return f"<p>{LARGE_TEXT}</p>" + _frame(large_user_table(df), "large-user")


def _section_eps(df: pd.DataFrame | None) -> str:
    if df is None:
        return "<p><b>Not run.</b></p>"
    return ("<p>Average small-user surplus [$] in the Fig. 10 family (both aggregators "
            "at the same alpha, large user K = 400), mean +- SE over runs, for the "
            "aggregators' floor eps. Every other number of the report uses eps = "
            "0.01.</p>" + _frame(eps_table(df), "eps-table"))


def _section_conj1(df: pd.DataFrame | None, folder: Path) -> str:
    if df is None:
        return "<p><b>Not run.</b></p>"
    from aggregame.studies import conj1

    counts = df.pivot_table(index=["family", "figures"], columns="verdict",
                            values="run", aggfunc="count", fill_value=0)
    for col in ("unique", "multiple", "unknown"):
        if col not in counts:
            counts[col] = 0
    counts = counts[["unique", "multiple", "unknown"]]
    if "global_modelled" not in df:
        df = df.assign(global_modelled=True)
    modelled = df[df["global_modelled"].astype(bool)]
    proofs = {f: "not modelled (leximin)" for f in df["family"]}
    proofs.update(modelled.groupby("family")["global_certified"].agg(
        lambda v: f"{v.astype(bool).sum()} of {len(v)}"))
    counts["global certificate holds"] = [proofs[f] for f, _ in counts.index]
    multi = multiple_equilibria(df)
    text = (f"<p>Each instance: {conj1.USERS} small users (at most), the study's game "
            f"(the large user's K scaled to the instance: 400 n / 200); "
            f"{conj1.STARTS} random starts each for best response (scan) and the "
            f"stacked KKT solve; distinct end points that pass the regret certificate "
            f"are equilibria; each is then checked by SCIP's global certificate "
            f"({conj1.TIME_LIMIT} s per player). Games with leximin (max-min) "
            f"aggregators are probed by best response alone: the KKT system and "
            f"SCIP's certificate do not model leximin. Unique: one equilibrium found; "
            f"multiple: two or more; unknown: none certified.</p>")
    shown = (_frame(multi, "multiple") if len(multi) else
             "<p>No instance with more than one equilibrium was found.</p>")
    imgs = "".join(_img(p) for p in sorted(folder.glob("*.png")))
    return text + _frame(counts, "conj1-counts") + "<h3>Multiple equilibria</h3>" + \
        shown + imgs


def write_report(out: Path | str, total_seconds: float | None = None) -> Path:
    """Write ``out``/report.html (and claims.md) from the study folders in ``out``."""
    from aggregame.studies.common import CHOICES, MAXMIN_LABEL
    from aggregame.studies.files import atomic_write_text

    out = Path(out)
    frames = {s: _load(out, s) for s in ORDER}
    metas, rows, figures, runs = {}, [], [], {}
    for study in ORDER:
        df, folder = frames[study], out / study
        if df is None:
            figures.append(f"<h3>{study}</h3><p><b>Not run.</b> Run "
                           f"<code>aggregame study {study} --out {out}</code>.</p>")
            continue
        meta = metas[study] = json.loads((folder / "settings.json").read_text())
        runs[study] = _runs_note(meta, study)
        rows += CHECKS.get(study, lambda _: [])(df)
        if study == "conj1":
            continue
        imgs = "".join(_img(p) for p in sorted(folder.glob("*.png")))
        figures.append(f"<h3>{study}: {html.escape(meta['settings']['description'])}"
                       f"</h3><p>{meta['settings']['runs']} run(s), seed "
                       f"{meta['settings']['seed']}, {meta.get('seconds', 0):.1f} s."
                       f"</p>{imgs}")
    seconds = sum(float(m.get("seconds", 0.0)) for m in metas.values())
    time_note = (f"Studies took {seconds:.0f} s of wall time in total"
                 + (f" ({total_seconds:.0f} s for this whole run)" if total_seconds
                    else "") + ".")
    versions = ", ".join(f"{k} {v}" for k, v in report_versions().items())
    quick = any(have < full for have, full in runs.values())
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>aggregame: the paper's Section IV, claim by claim</title>
<style>{CSS}</style></head><body>
<h1>Section IV of Li, Motoki and Zhang, claim by claim</h1>
<p>{time_note} {'<span class="quick">Quick mode: fewer runs than the full size; '
                'see the runs column.</span>' if quick else ''}</p>
<p>Versions: {html.escape(versions)}.</p>
<p>{UNITS}</p>
<p><b>One priced-out rule for every figure:</b> floor, Phi over s + eps with eps =
{CHOICES.eps:g} (members priced out of the market keep a surplus floor; the eps study
below varies it). <b>Max-min</b> is read as leximin, the limit of alpha-fairness as
alpha grows: an aggregator ranks allocations and purchases by its members' s + eps
sorted in increasing order, compared lexicographically (not the minimum with a
total-surplus tie-break, which makes max-min buy like social welfare whenever a member
is priced out); labelled "{MAXMIN_LABEL}".</p>
<p><b>The paper's values.</b> The paper states no number for its figures in its text
and its figures are not available to us as images, so no value was read off them: the
"paper" column quotes what the text says, or says that the figure was not read.</p>
<p><b>Fig. 8: text and caption disagree.</b> The text says that with social-welfare
aggregators consumption is "more spread out"; the caption says the distribution is "more
concentrated". Both readings are judged below, on the coefficient of variation (per run,
paired) with the pooled two-sample Kolmogorov-Smirnov statistic beside it.</p>
<p><b>Verdict rule.</b> {html.escape(RULE)} Effects are paired run by run (runs of one
seed share their small users).</p>
<p>Shared choices: <code>{html.escape(json.dumps(CHOICES.describe()))}</code>.</p>
<h2>Verdicts</h2>{_verdict_table(rows, runs)}
<h2>Claims not tested</h2>{_untested()}
<h2 id="large">The large user: K = 400 and K = sum of b/a</h2>
{_section_large(frames['fig6'])}
<h2 id="eps">Sensitivity to eps</h2>{_section_eps(frames['eps'])}
<h2 id="conjecture1">Conjecture 1: uniqueness</h2>
{_section_conj1(frames['conj1'], out / 'conj1')}
<h2>Figures</h2>{''.join(figures)}
</body></html>"""
    path = out / "report.html"
    atomic_write_text(path, page)
    atomic_write_text(out / "claims.md", time_note + "\n\n" + claims_markdown(rows,
                                                                               runs))
    return path


def claims_markdown(rows: list[Row], runs) -> str:
    """The verdict table in Markdown (for benchmarks/results/studies.md)."""
    md = ["| figure | sub-claim | effect | mean +- SE (n) | criterion | verdict | runs |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        have, full = runs.get(r.study, (0, 0))
        note = f"{have}" + (f" (quick, of {full})" if have < full else "")
        md.append(f"| {r.figure} | {r.claim} | {r.effect} | {r.stat} | {r.criterion} | "
                  f"{r.verdict.value} | {note} |")
    md += ["", "Untested:", ""] + [f"- {f}: {c} ({why})" for f, c, why in UNTESTED]
    return "\n".join(md) + "\n"
