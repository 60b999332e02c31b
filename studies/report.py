"""One HTML page: every figure, and each Section IV claim next to our numbers.

Each check reads a study's results.csv and says whether our numbers support the
paper's sentence; where they do not, the page says so plainly.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

#: Study folders of the report, in the paper's order.
ORDER = ("fig3", "fig4", "fig5", "fig6", "fig8", "fig10", "fig12")


@dataclass
class Claim:
    figure: str
    text: str
    measured: str
    supported: bool | None  # None: no data


def _load(out: Path, study: str) -> pd.DataFrame | None:
    path = out / study / "results.csv"
    return pd.read_csv(path) if path.exists() else None


def _fmt(values) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def _claims_fig3(df):
    rounds = df.groupby("run")["round"].max()
    return [Claim("Fig. 3", "400 small users alone quickly converge to an equilibrium "
                  "after a few iterations.", f"Gauss-Seidel rounds to converge: "
                  f"{_fmt(rounds)}", bool((rounds <= 20).all()))]


def _claims_fig4(df):
    rounds = df.groupby("alpha")["round"].max()
    text = "; ".join(f"alpha = {float(a):g}: {r} rounds" for a, r in rounds.items())
    return [Claim("Fig. 4", "Two aggregators and a large user converge smoothly to an "
                  "equilibrium within a few iterations.", text,
                  bool((rounds <= 20).all()))]


def _claims_fig5(df):
    means = df.groupby("K")["avg_surplus"].mean()
    steps = np.diff(means.to_numpy())
    return [Claim("Fig. 5", "Average small-user surplus decreases as the large user's "
                  "size K grows.", f"K = {int(means.index[0])}: {means.iloc[0]:.4g}; "
                  f"K = {int(means.index[-1])}: {means.iloc[-1]:.4g}; "
                  f"{int((steps < 0).sum())} of {steps.size} steps decrease",
                  bool((steps < 0).all()))]


def _claims_fig6(df):
    ok = df[df["equilibrium"].astype(bool)]
    m = ok.groupby("config")[["avg_surplus", "avg_consumption"]].mean()
    s = m["avg_surplus"]
    c = m["avg_consumption"]
    fails = df[~df["equilibrium"].astype(bool)].groupby("config").size()
    failed = "; ".join(f"{k}: {v} run(s) without an equilibrium" for k, v in
                       fails.items()) or "every run reached a certified equilibrium"
    get = lambda series, key: float(series.get(key, math.nan))  # noqa: E731
    per_run = ok.pivot_table(index="run", columns="config", values="avg_surplus")
    same = ((per_run.get("max-min (floor)") - per_run.get("social welfare")).abs()
            <= 1e-6 * per_run.get("social welfare").abs()) if {
        "max-min (floor)", "social welfare"} <= set(per_run.columns) else pd.Series()
    sw, pf = get(s, "social welfare"), get(s, "proportional fairness")
    mm, mmv = get(s, "max-min (floor)"), get(s, "max-min (viable)")
    alone, large = get(s, "small users alone"), get(s, "with large user")
    return [
        Claim("Fig. 6", "A large user lowers small users' surplus.",
              f"alone {alone:.4g}, with large user {large:.4g}", large < alone),
        Claim("Fig. 6", "Aggregators mitigate it (social welfare above the no-aggregator "
              "case with the large user).", f"social welfare {sw:.4g} vs {large:.4g}",
              sw > large),
        Claim("Fig. 6", "Social welfare gives the highest small-user surplus, "
              "proportional fairness slightly lower.",
              f"social welfare {sw:.4g}, proportional {pf:.4g} "
              f"({(pf - sw) / sw:+.1%})", sw >= pf and pf > 0.8 * sw),
        Claim("Fig. 6", "Max-min gives very small surplus.",
              f"max-min under the floor rule {mm:.4g}: equal to social welfare in "
              f"{int(same.sum())} of {same.size} runs (where a member is priced out "
              f"whatever the aggregator buys, its minimum is eps and the total-surplus "
              f"tie-break decides; elsewhere max-min holds purchases down to keep its "
              f"poorest member in the market). Under the viable rule {mmv:.4g}, "
              f"which would support the claim, but: {failed}. Verdict for the "
              f"default (floor) rule.", mm < 0.5 * sw),
        Claim("Fig. 7", "Social welfare and proportional fairness lead to higher "
              "consumption, max-min to significantly lower.",
              "; ".join(f"{k} {v:.4g}" for k, v in c.items()),
              bool(get(c, "max-min (viable)") < 0.5 * min(get(c, "social welfare"),
                                                          get(c, "proportional fairness"))
                   ) if "max-min (viable)" in c else None),
    ]


def _spread(df, config, col):
    v = df[df["config"] == config][col]
    return float(v.std() / v.mean()), float(((v - v.mean()) ** 3).mean() / v.std() ** 3)


def _claims_fig8(df):
    out = []
    cv0, sk0 = _spread(df, "no aggregator", "consumption")
    cv1, sk1 = _spread(df, "social welfare", "consumption")
    out.append(Claim("Fig. 8", "With social-welfare aggregators consumption is more "
                     "spread out, with a long tail.",
                     f"coefficient of variation {cv0:.3g} -> {cv1:.3g}; skewness "
                     f"{sk0:.3g} -> {sk1:.3g}", cv1 > cv0 and sk1 > 0))
    cv2, sk2 = _spread(df, "proportional fairness", "surplus")
    cv0s, _ = _spread(df, "no aggregator", "surplus")
    out.append(Claim("Fig. 9", "With proportional fairness the distribution is much more "
                     "uniform, concentrated around the mean, with a shorter tail.",
                     f"surplus coefficient of variation {cv0s:.3g} (no aggregator) -> "
                     f"{cv2:.3g} (proportional)", cv2 < cv0s))
    return out


def _claims_fig10(df):
    out = []
    for variant, fig, text in (("both", "Fig. 10", "When both aggregators raise alpha, "
                                "average small-user surplus decreases."),
                               ("second only", "Fig. 11", "When one aggregator stays at "
                                "alpha = 0 and the other raises alpha, average surplus "
                                "decreases.")):
        part = df[df["variant"] == variant]
        part = part.assign(total=part["avg_surplus"] * part["members"])
        g = part.groupby("alpha")[["total", "members"]].sum()
        avg = (g["total"] / g["members"])
        avg.index = avg.index.astype(float)  # "inf" reads back as a float
        finite = avg[np.isfinite(avg.index)].sort_index()
        steps = np.diff(finite.to_numpy())
        inf = float(avg[np.isinf(avg.index)].iloc[0]) if np.isinf(avg.index).any() \
            else math.nan
        out.append(Claim(fig, text, "; ".join(f"alpha {a:g}: {v:.4g}" for a, v in
                                              finite.items())
                         + f"; alpha inf (floor rule; like alpha = 0 wherever a "
                           f"member is priced out whatever is bought): {inf:.4g}",
                         bool((steps <= 1e-9).all())))
    return out


def _claims_fig12(df):
    out = []
    for objective, fig in (("social welfare", "Fig. 12"),
                           ("proportional fairness", "Fig. 13")):
        part = df[df["objective"] == objective].groupby("aggregators")[
            ["avg_surplus", "avg_consumption"]].mean()
        steps = np.diff(part["avg_surplus"].to_numpy())
        monotone = bool((steps < 0).all() or (steps > 0).all())
        corr = float(np.corrcoef(part["avg_surplus"], part["avg_consumption"])[0, 1])
        out.append(Claim(fig, f"The number of aggregators ({objective}) changes small "
                         "users' surplus noticeably, with no clear monotonic trend, and "
                         "a trade-off between surplus and consumption.",
                         "surplus " + "; ".join(f"{m}: {v:.4g}" for m, v in
                                                part["avg_surplus"].items())
                         + f"; surplus-consumption correlation {corr:.2f}",
                         (not monotone) and corr < 0))
    return out


CHECKS: dict[str, Callable[[pd.DataFrame], list[Claim]]] = {
    "fig3": _claims_fig3, "fig4": _claims_fig4, "fig5": _claims_fig5,
    "fig6": _claims_fig6, "fig8": _claims_fig8, "fig10": _claims_fig10,
    "fig12": _claims_fig12}


def write_report(out: Path | str, total_seconds: float | None = None) -> Path:
    """Write ``out``/report.html from the study folders found in ``out``."""
    out = Path(out)
    claims: list[Claim] = []
    sections = []
    seconds = 0.0
    for study in ORDER:
        df = _load(out, study)
        folder = out / study
        if df is None:
            sections.append(f"<h2>{study}</h2><p><b>Not run.</b> Run "
                            f"<code>aggregame study {study} --out {out}</code>.</p>")
            continue
        meta = json.loads((folder / "settings.json").read_text())
        seconds += float(meta.get("seconds", 0.0))
        claims += CHECKS[study](df)
        imgs = "".join(f'<img src="{study}/{p.name}" alt="{p.stem}" width="640">'
                       for p in sorted(folder.glob("*.png")))
        sections.append(
            f"<h2>{study}: {html.escape(meta['settings']['description'])}</h2>"
            f"<p>{meta['settings']['runs']} run(s), seed {meta['settings']['seed']}, "
            f"backend {meta['settings']['backend']}, {meta['seconds']:.1f} s.</p>{imgs}")
    rows = []
    for c in claims:
        verdict = {True: "supported", False: "<b>not supported</b>",
                   None: "no data"}[c.supported]
        rows.append(f"<tr><td>{c.figure}</td><td>{html.escape(c.text)}</td>"
                    f"<td>{html.escape(c.measured)}</td><td>{verdict}</td></tr>")
    time_note = (f"Studies took {seconds:.0f} s of wall time in total"
                 + (f" ({total_seconds:.0f} s for this whole run)" if total_seconds
                    else "") + ".")
    from aggregame.studies.common import CHOICES

    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>aggregame: the paper's Section IV, reproduced</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}
table{{border-collapse:collapse}}</style></head><body>
<h1>Section IV of Li, Motoki and Zhang, reproduced by aggregame</h1>
<p>{time_note} Shared choices (the paper leaves them open):
<code>{html.escape(json.dumps(CHOICES.describe()))}</code>.</p>
<h2>The paper's claims against our numbers</h2>
<table><tr><th>figure</th><th>claim</th><th>our numbers</th><th>verdict</th></tr>
{''.join(rows)}</table>
{''.join(sections)}
</body></html>"""
    from aggregame.studies.files import atomic_write_text

    path = out / "report.html"
    atomic_write_text(path, page)
    md = ["| figure | claim | our numbers | verdict |", "|---|---|---|---|"]
    md += [f"| {c.figure} | {c.text} | {c.measured} | "
           f"{ {True: 'supported', False: 'NOT supported', None: 'no data'}[c.supported]} |"
           for c in claims]
    atomic_write_text(out / "claims.md", time_note + "\n\n" + "\n".join(md) + "\n")
    return path
