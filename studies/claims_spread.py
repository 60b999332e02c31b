"""Claims of Figs. 8 and 9: how aggregators change the distribution of small users'
consumption and surplus. "More spread out", "more concentrated" and "more uniform"
are measured three ways (SD, IQR, CV), one row each; the claim is ambiguous where
they point in opposite directions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from aggregame.studies.claims import Row, compare, group_row, threshold_row
from aggregame.studies.stats import LONG_TAIL, MUCH, NOTICEABLE, SPREAD, ks, summary

NONE, SW, PF = "no aggregator", "social welfare", "proportional fairness"
#: What each spread measure is called in a row.
SPREAD_NAMES = {"sd": "SD", "iqr": "IQR", "cv": "CV"}


def _skew(v: np.ndarray) -> float:
    from scipy.stats import skew

    return float(skew(v)) if v.size > 2 else math.nan


def per_run(df: pd.DataFrame, config: str, column: str) -> pd.DataFrame:
    """Per run: the summary measures of ``column`` over the small users of
    ``config``, its skewness and the share below the mean (NaN without an
    equilibrium)."""
    part = df[df["config"] == config]
    rows = {}
    for run, g in part.groupby("run"):
        v = g[column].to_numpy(float)
        ok = bool(g["equilibrium"].astype(bool).all()) and np.isfinite(v).all()
        stats = summary(v) if ok else summary([])
        stats["skew"] = _skew(v) if ok else math.nan
        stats["below_mean"] = float((v < v.mean()).mean()) if ok else math.nan
        rows[run] = stats
    columns = [*summary([]), "skew", "below_mean"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def _spread(key: str, figure: str, claim: str, df: pd.DataFrame, other: str,
            column: str, sign: int, minimum: float, detail: str, paper: str
            ) -> list[Row]:
    base, new = per_run(df, NONE, column), per_run(df, other, column)
    parts = [compare(f"{key}-{m}", figure, f"{claim} ({SPREAD_NAMES[m]})",
                     f"{SPREAD_NAMES[m]}: {SPREAD_NAMES[m]} of {column}, {other} minus "
                     f"none", new[m], base[m], sign, "fig8", base[m],
                     f"the {SPREAD_NAMES[m]} with no aggregator", minimum)
             for m in SPREAD]
    return group_row(key, figure, claim, parts, "fig8", detail=detail, paper=paper)


def _ks_detail(df: pd.DataFrame, other: str, column: str) -> str:
    a = df[(df["config"] == NONE)][column].dropna()
    b = df[(df["config"] == other)][column].dropna()
    if len(a) < 2 or len(b) < 2:
        return ""
    d, p = ks(a, b)
    return f"pooled two-sample KS D = {d:.3f} (p = {p:.2g})"


def claims_fig8(df: pd.DataFrame) -> list[Row]:
    if df.empty:
        return []
    disagree = "text and caption disagree"
    out = _spread("fig8-consumption-spread", "Fig. 8", "text: with social-welfare "
                  "aggregators consumption is 'more spread out'", df, SW,
                  "consumption", +1, NOTICEABLE, _ks_detail(df, SW, "consumption"),
                  disagree)
    for column in ("consumption", "surplus"):
        out += _spread(f"fig8-{column}-concentrated", "Fig. 8", f"caption: with social "
                       f"welfare the {column} distribution is 'more concentrated'", df,
                       SW, column, -1, NOTICEABLE, _ks_detail(df, SW, column), disagree)
    sw = per_run(df, SW, "consumption")
    out.append(threshold_row("fig8-long-tail", "Fig. 8", "the social-welfare "
                             "consumption distribution has a long tail", "skewness of "
                             "consumption with social welfare", sw["skew"], +1,
                             LONG_TAIL, "fig8", "skewness"))
    out.append(threshold_row("fig8-most-little", "Fig. 8", "most users still receive "
                             "relatively little allocation", "share of users below the "
                             "mean consumption (social welfare)", sw["below_mean"], +1,
                             0.5, "fig8", "users below the mean"))
    for column in ("consumption", "surplus"):
        out += _spread(f"fig9-{column}-uniform", "Fig. 9", f"proportional fairness "
                       f"makes the {column} distribution much more uniform", df, PF,
                       column, -1, MUCH, _ks_detail(df, PF, column),
                       "caption: 'much more uniform'")
    base, pf = per_run(df, NONE, "consumption"), per_run(df, PF, "consumption")
    out.append(compare("fig9-shorter-tail", "Fig. 9", "proportional fairness gives a "
                       "much shorter tail",
                       "skewness of consumption, proportional minus none",
                       pf["skew"], base["skew"], -1, "fig8", base["skew"],
                       "the skewness with no aggregator", MUCH,
                       paper="text: 'a much shorter tail'"))
    return out
