"""Claims of Figs. 10-13: the aggregators' alpha (both, or one of two; per aggregator
in Fig. 11) and the number of aggregators."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from aggregame.studies.claims import FIGURE_NA, Row, compare, paired
from aggregame.studies.fig10 import per_run
from aggregame.studies.stats import (NOTICEABLE, Z, Finding, Size, Stat, Verdict,
                                     all_of, judge)


def _key(fig: str, what: str) -> str:
    return f"{fig.lower().replace('. ', '')}-{what}"


def _name(alpha: float) -> str:
    return "max-min" if math.isinf(alpha) else f"{alpha:g}"


def _decreasing(key: str, wide: pd.DataFrame, fig: str, claim: str,
                paper: str = FIGURE_NA) -> Row:
    """Overall drop from the first alpha to the last, at least NOTICEABLE of the
    first, and no step between neighbouring alphas rising by more than 2 SE."""
    cols = list(wide.columns)
    first, last = cols[0], cols[-1]
    values, missing = paired(wide[last], wide[first])
    overall = Stat.of(values)
    size = Size.ratio(overall.mean, float(wide[first].mean()),
                         f"the surplus at alpha = {_name(first)}")
    rises = [f"{_name(a)}->{_name(b)}" for a, b in zip(cols[:-1], cols[1:])
             if judge(Stat.of(paired(wide[b], wide[a])[0]), -1).reason.startswith(
                 "opposite")]
    finding = all_of([judge(overall, -1, size, NOTICEABLE),
                      Finding(Verdict.NOT_SUPPORTED, f"steps rise: {', '.join(rises)}")
                      if rises else Finding(Verdict.SUPPORTED, "")])
    detail = "; ".join(f"alpha {_name(a)}: {wide[a].mean():.4g}" for a in cols)
    return Row(key, fig, claim, f"surplus at alpha = {_name(last)} minus at alpha = "
               f"{_name(first)}", overall, size, f"overall drop by more than 2 SE and "
               f"at least {NOTICEABLE:.0%} of the surplus at alpha = {_name(first)}; "
               f"no step between neighbouring alphas rises by more than 2 SE",
               finding, "fig10", detail=detail + f". Steps rising by > 2 SE: "
               f"{', '.join(rises) or 'none'}", paper=paper, missing=missing)


def _per_aggregator(part: pd.DataFrame, name: str) -> pd.DataFrame:
    mine = part[part["aggregator"] == name]
    values = mine["avg_surplus"].where(mine["equilibrium"].astype(bool))
    return mine.assign(v=values).pivot_table(index="run", columns="alpha", values="v",
                                             dropna=False)


def claims_fig10(df: pd.DataFrame) -> list[Row]:
    out = []
    for variant, fig, who, paper in (
            ("both", "Fig. 10", "both aggregators raise alpha",
             "caption: 'small users' average surplus decreases'"),
            ("second only", "Fig. 11", "aggregator 2 raises alpha, aggregator 1 stays "
             "at alpha = 0", "caption: 'the more fairness second aggregator considers, "
             "the smaller the average surplus'")):
        part = df[df["variant"] == variant]
        if part.empty:
            continue
        wide = per_run(part.assign(avg_surplus=part["avg_surplus"].where(
            part["equilibrium"].astype(bool))))
        wide = wide[sorted(wide.columns)]
        finite = wide[[a for a in wide.columns if math.isfinite(a)]]
        tag = "fig10" if variant == "both" else "fig11"
        out.append(_decreasing(f"{tag}-decreases-finite", finite, fig,
                               f"{who}: average small-user surplus decreases (alpha "
                               f"0..{finite.columns[-1]:g})", paper))
        if wide.shape[1] > finite.shape[1]:
            out.append(_decreasing(f"{tag}-decreases-maxmin", wide, fig, f"{who}: "
                                   f"average small-user surplus decreases (alpha 0.."
                                   f"max-min)", paper))
        if variant == "second only":
            out += _fig11_per_aggregator(part, wide)
    return out


def _fig11_per_aggregator(part: pd.DataFrame, overall: pd.DataFrame) -> list[Row]:
    """Fig. 11 split by aggregator, and the recommendation that the alphas should not
    differ too much, read as: the users of the aggregator that raises alpha lose, and
    the gap between the two aggregators' users widens, as the alphas part."""
    names = sorted(set(part["aggregator"]))
    agg = {n: _per_aggregator(part, n) for n in names}
    first, last = overall.columns[0], overall.columns[-1]
    out = []
    for k, name in enumerate(names):
        wide = agg[name]
        out.append(compare(f"fig11-{name}", "Fig. 11", f"per aggregator: the users of "
                           f"{name} (alpha {'0 throughout' if k == 0 else 'raised'}) "
                           f"see their average surplus decrease", f"their surplus at "
                           f"alpha = {_name(last)} minus at {_name(first)}",
                           wide[last], wide[first], -1, "fig10", wide[first],
                           f"their surplus at alpha = {_name(first)}",
                           detail="; ".join(f"alpha {_name(a)}: {wide[a].mean():.4g}"
                                            for a in wide.columns)))
    gap = (agg[names[0]] - agg[names[-1]]).abs()
    widens = compare("fig11-gap-widens", "Fig. 11", "the gap between the two "
                     "aggregators' users widens as aggregator 2 raises alpha",
                     f"|surplus of aggregator 1's users - aggregator 2's| at alpha = "
                     f"{_name(last)} minus at {_name(first)}", gap[last], gap[first],
                     +1, "fig10", overall[first], f"the average surplus at alpha = "
                                                 f"{_name(first)}")
    falls = compare("fig11-all-lose", "Fig. 11", "all small users together lose as "
                    "the alphas part", f"average surplus at alpha = {_name(last)} "
                                       f"minus at {_name(first)}", overall[last],
                    overall[first], -1, "fig10", overall[first],
                    f"the surplus at alpha = {_name(first)}")
    rec = Row("fig11-not-too-different", "Fig. 11", "the alpha values should not be "
              "too different between aggregators (read: as aggregator 2's alpha leaves "
              "aggregator 1's, all small users lose and the gap between the two "
              "aggregators' users widens)", "both rows below", widens.stat, widens.size,
              "both: all small users lose, and the gap widens, each by the "
              "'noticeable' threshold", all_of([falls.finding, widens.finding]),
              "fig10", detail=f"all users: {falls.stat} ({falls.size}); gap: "
                              f"{widens.stat} ({widens.size})",
              paper="text: 'the alpha values should not be too different between the "
                    "aggregators'", missing=max(falls.missing, widens.missing))
    return out + [rec, replace(falls, group=rec.key), replace(widens, group=rec.key)]


def claims_fig12(df: pd.DataFrame) -> list[Row]:
    out = []
    for objective, fig in (("social welfare", "Fig. 12"),
                           ("proportional fairness", "Fig. 13")):
        part = df[df["objective"] == objective]
        part = part.assign(**{c: part[c].where(part["equilibrium"].astype(bool))
                              for c in ("avg_surplus", "avg_consumption")})
        s = part.pivot_table(index="run", columns="aggregators", values="avg_surplus",
                             dropna=False)
        c = part.pivot_table(index="run", columns="aggregators",
                             values="avg_consumption", dropna=False)
        cols = list(s.columns)
        if len(cols) < 3:
            continue
        out += [_noticeable(s, fig, objective), _no_trend(s, fig, objective),
                _tradeoff(s, c, fig, objective)]
    return out


def _noticeable(s: pd.DataFrame, fig: str, objective: str) -> Row:
    """The count whose surplus differs most from the first count's, either way."""
    cols = list(s.columns)
    diffs = {m: Stat.of(paired(s[m], s[cols[0]])[0]) for m in cols[1:]}
    far = max(diffs, key=lambda m: abs(diffs[m].mean) if diffs[m].n else -1)
    sign = -1 if diffs[far].mean < 0 else +1
    return compare(_key(fig, "noticeable"), fig, f"the number of aggregators changes "
                   f"small users' surplus noticeably ({objective})",
                   f"surplus at {far} minus at {cols[0]} aggregators (the count that "
                   f"differs most)",
                   s[far], s[cols[0]], sign, "fig12", s[cols[0]],
                   f"the surplus with {cols[0]} aggregators",
                   detail="surplus " + "; ".join(f"{m}: {s[m].mean():.4g}"
                                                 for m in cols),
                   paper="text: 'a noticeable impact on small users' average "
                         "surplus'")


def _no_trend(s: pd.DataFrame, fig: str, objective: str) -> Row:
    """Literal reading: no clear monotonic trend unless every clear step has one sign
    and the overall change is clear in that direction."""
    cols = list(s.columns)
    steps = [Stat.of(paired(s[b], s[a])[0]) for a, b in zip(cols[:-1], cols[1:])]
    signs = {int(np.sign(st.mean)) for st in steps if abs(st.z) > Z}
    values, missing = paired(s[cols[-1]], s[cols[0]])
    overall = Stat.of(values)
    clear = abs(overall.z) > Z
    monotone = len(signs) == 1 and clear and np.sign(overall.mean) in signs
    finding = (Finding(Verdict.NOT_SUPPORTED, "a clear monotonic trend") if monotone
               else Finding(Verdict.SUPPORTED, "steps move both ways" if len(signs) > 1
                            else "no clear overall change"))
    detail = "steps " + "; ".join(f"{a}->{b}: {st.mean:+.3g} +- {st.se:.2g}"
                                  for a, b, st in zip(cols[:-1], cols[1:], steps))
    size = Size.ratio(overall.mean, float(s[cols[0]].mean()),
                      f"the surplus with {cols[0]}")
    return Row(_key(fig, "no-trend"), fig, f"no clear monotonic trend in the number "
               f"of aggregators ({objective})", f"surplus at {cols[-1]} minus at "
               f"{cols[0]} aggregators", overall, size,
               "not supported if every step clear by 2 SE has one sign and the overall "
               "change is clear in that direction; supported otherwise", finding,
               "fig12", detail=detail, missing=missing,
               paper="text: 'no clear monotonic trend is observed'")


def _tradeoff(s: pd.DataFrame, c: pd.DataFrame, fig: str, objective: str) -> Row:
    corr = pd.Series({r: float(np.corrcoef(s.loc[r], c.loc[r])[0, 1]) for r in s.index
                      if s.loc[r].notna().all() and c.loc[r].notna().all()
                      and s.loc[r].std() > 0 and c.loc[r].std() > 0},
                     dtype=float).reindex(s.index)
    return compare(_key(fig, "tradeoff"), fig,
                  f"a trade-off between surplus and "
                   f"consumption ({objective})", "per-run correlation of average "
                   "surplus and average consumption across aggregator counts", corr,
                   None, -1, "fig12", None, "",
                   paper="text: 'a trade-off between small users' surplus and "
                         "consumption'")
