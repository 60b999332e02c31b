"""Claims of Figs. 3-7 (convergence, the large user, the three objectives) and of the
conclusion that proportional-fair aggregators improve small users' outcomes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from aggregame.studies.claims import (Row, by_run, compare, convergence,
                                      group_row, paired)
from aggregame.studies.common import MAXMIN_LABEL
from aggregame.studies.stats import (LOCATION, MUCH, NOTICEABLE, SLIGHT, VERY_SMALL,
                                     Finding, Size, Stat, all_of, judge)

ALONE, LARGE, SW, PF = ("small users alone", "with large user", "social welfare",
                        "proportional fairness")


def claims_fig3(df: pd.DataFrame) -> list[Row]:
    return [convergence("fig3-converges", "Fig. 3", "400 small users alone quickly "
                        "converge to an equilibrium after a few iterations",
                        df.drop_duplicates("run"), "fig3",
                        paper="text: 'a few iterations'")]


def claims_fig4(df: pd.DataFrame) -> list[Row]:
    out = []
    for alpha, part in df.groupby("alpha"):
        name = "max-min" if math.isinf(float(alpha)) else f"alpha = {float(alpha):g}"
        out.append(convergence(f"fig4-converges-{name}", "Fig. 4",
                               f"two aggregators and a large user converge within a "
                               f"few iterations ({name})", part.drop_duplicates("run"),
                               "fig4", paper="text: 'within a few iteration steps'"))
    return out


def claims_fig5(df: pd.DataFrame) -> list[Row]:
    grid = df[df["reading"] == "grid"]
    wide = grid.pivot_table(index="run", columns="K", values="avg_surplus",
                            dropna=False)
    if wide.empty:
        return []
    k0, k1 = wide.columns.min(), wide.columns.max()
    slopes = pd.Series({run: np.polyfit(row.dropna().index, row.dropna().to_numpy(),
                                        1)[0] * 100 if row.notna().sum() > 1 else
                        math.nan for run, row in wide.iterrows()})
    steps = [(a, b) for a, b in zip(wide.columns[:-1], wide.columns[1:])]
    up = sum(judge(Stat.of(paired(wide[b], wide[a])[0]), -1).reason.startswith(
        "opposite") for a, b in steps)
    detail = (f"K = {k0:g}: {wide[k0].mean():.4g}, K = {k1:g}: {wide[k1].mean():.4g}; "
              f"{up} of {len(steps)} grid steps increase by > 2 SE")
    values, missing = paired(slopes)
    stat = Stat.of(values)
    # Its size: the change over the whole range, relative to K = 0.
    span = Stat.of(paired(wide[k1], wide[k0])[0])
    size = Size.ratio(span.mean, float(wide[k0].mean()), f"the surplus at K = {k0:g}")
    row = Row("fig5-decreases", "Fig. 5", "average small-user surplus decreases as K "
              "grows (0..400)", "per-run least-squares slope of average surplus on K "
              "[$ per 100 units of K]", stat, size,
              f"mean < 0 by more than 2 SE, the change over 0..400 at least "
              f"{NOTICEABLE:.0%} of the surplus at K = 0", judge(stat, -1, size,
                                                                  NOTICEABLE),
              "fig5", detail=detail, missing=missing,
              paper="text: 'the average surplus decreases as M increases'")
    out = [row]
    other = by_run(df[df["reading"] == "K=sum b/a"], "avg_surplus")
    sum_K = df.loc[df["reading"] == "K=sum b/a", "K"].mean()
    if other.notna().any():
        out.append(compare("fig5-sum-lowers", "Fig. 5", "a large user 'as large as the "
                           "sum of the small users' lowers their surplus",
                           "average surplus at K = sum b/a minus at K = 0", other,
                           wide[k0], -1, "fig5", wide[k0], "the surplus at K = 0",
                           detail=f"mean K = sum b/a = {sum_K:.0f}"))
    return out


def _series(df: pd.DataFrame, config: str, column: str) -> pd.Series:
    return by_run(df[df["config"] == config], column)


def claims_fig6(df: pd.DataFrame) -> list[Row]:
    if df.empty:
        return []
    s = {c: _series(df, c, "avg_surplus") for c in (ALONE, LARGE, SW, PF, MAXMIN_LABEL)}
    out = [compare("fig6-large-lowers", "Fig. 6", "a large user lowers small users' "
                   "surplus", "surplus with the large user minus alone", s[LARGE],
                   s[ALONE], -1, "fig6", s[ALONE], "the surplus alone"),
           _mitigates(s)]
    for other in (PF, MAXMIN_LABEL):
        out.append(compare(f"fig6-sw-beats-{other}", "Fig. 6", f"social welfare gives "
                           f"the highest surplus (vs {other})", f"social welfare minus "
                           f"{other}", s[SW], s[other], +1, "fig6", s[SW],
                           "social welfare's surplus"))
    out += [_slightly_lower(s), _very_small(s)]
    for base, name in ((LARGE, "no aggregators, large user present"),
                       (ALONE, "small users alone, no large user")):
        out += _improves(df, base, name)
    c = {k: _series(df, k, "avg_consumption") for k in (SW, PF, MAXMIN_LABEL)}
    out += [compare(f"fig7-maxmin-lower-than-{name}", "Fig. 7", f"max-min gives "
                    f"significantly lower consumption than {name}",
                    f"consumption, max-min minus {name}", c[MAXMIN_LABEL], c[name], -1,
                    "fig6", c[name], f"{name}'s consumption", minimum=MUCH,
                    paper="caption: 'max-min fairness results in significantly lower "
                          "consumption'")
            for name in (SW, PF)]
    return out


def _mitigates(s: dict[str, pd.Series]) -> Row:
    harm = s[ALONE] - s[LARGE]
    offset = (s[SW] - s[LARGE]) / harm.where(harm > 0)
    values, missing = paired(offset)
    stat = Stat.of(values)
    size = Size(stat.mean, "the large user's harm offset")
    gain = Stat.of(paired(s[SW], s[LARGE])[0])
    return Row("fig6-mitigates", "Fig. 6", "aggregators mitigate it (social welfare)",
               "fraction of the large user's harm (alone minus with the large user) "
               "that social-welfare aggregators give back", stat, size,
               f"mean > 0 by more than 2 SE and at least {NOTICEABLE:.0%} of the harm",
               judge(stat, +1, size, NOTICEABLE), "fig6",
               detail=f"surplus gain with social-welfare aggregators {gain}; harm "
                      f"{Stat.of(paired(harm)[0])}",
               paper="text (Sec. V): 'which is mitigated when aggregators are "
                     "introduced'", missing=missing)


def _slightly_lower(s: dict[str, pd.Series]) -> Row:
    values, missing = paired((s[PF] - s[SW]) / s[SW])
    stat = Stat.of(values)
    lower, slight = judge(stat, -1), judge(stat, +1, threshold=-SLIGHT)
    finding = all_of([Finding(lower.verdict, f"lower: {lower.reason}"),
                      Finding(slight.verdict, f"above -{SLIGHT:.0%}: {slight.reason}")])
    return Row("fig6-pf-slightly-lower", "Fig. 6", "proportional fairness gives "
               "slightly lower surplus than social welfare", "(proportional - social "
               "welfare) / social welfare", stat,
               Size(stat.mean, "social welfare's surplus"),
               f"mean < 0 and mean > -{SLIGHT:g} ('slightly'), each by more than 2 SE",
               finding, "fig6", missing=missing,
               paper="text: 'proportional fairness leading to slightly lower values'")


def _very_small(s: dict[str, pd.Series]) -> Row:
    values, missing = paired(s[MAXMIN_LABEL] / s[SW])
    stat = Stat.of(values)
    return Row("fig6-maxmin-very-small", "Fig. 6", "max-min gives very small surplus",
               "ratio max-min / social welfare", stat,
               Size(stat.mean, "social welfare's surplus"),
               f"mean < {VERY_SMALL:g} ('very small') by more than 2 SE",
               judge(stat, -1, threshold=VERY_SMALL), "fig6", missing=missing,
               paper="text: 'MaxMin fairness giving very small surplus values'")


def _improves(df: pd.DataFrame, base: str, name: str) -> list[Row]:
    """Proportional fairness against ``base``, one row per location measure of the
    small users' surplus distribution (mean, median, quartiles)."""
    key = f"pf-improves-vs-{'large' if base == LARGE else 'alone'}"
    parts = [compare(f"{key}-{m}", "Conclusion", f"proportional fairness improves "
                     f"small users' surplus ({m})",
                     f"{m}: {m} of surplus, proportional minus {name}",
                     _series(df, PF, f"s_{m}"),
                     _series(df, base, f"s_{m}"), +1, "fig6",
                     _series(df, base, f"s_{m}"), f"the {m} with {name}")
             for m in LOCATION]
    return group_row(key, "Conclusion", f"proportional-fair aggregators improve small "
                     f"users' outcomes (vs {name})", parts, "fig6",
                     paper="text (Sec. V): 'were seen to improve the outcomes for "
                           "smaller users'")
