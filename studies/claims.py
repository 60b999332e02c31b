"""Each Section IV sentence, split into sub-claims, judged on the studies' numbers.

Each check reads a study's results table and returns :class:`Row` objects: the
sub-claim, the effect measured once per run, its mean +- standard error over runs,
the criterion (sign or threshold) and the verdict of :func:`stats.judge`. Runs of one
seed share their small users across configurations, so differences are paired.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from aggregame.studies.common import LARGE_READINGS, MAXMIN_LABEL
from aggregame.studies.stats import Stat, Verdict, all_of, judge, ks

#: The paper's figures are images we cannot read numbers from; where its text states a
#: value it is quoted instead.
FIGURE_NA = "figure values not available to us (not read)"
#: "A few iterations": the largest number of Gauss-Seidel rounds we accept.
FEW_ROUNDS = 20
#: "Slightly lower": proportional fairness within this fraction of social welfare.
SLIGHTLY = 0.20
#: "Very small": max-min's surplus below this fraction of social welfare's.
VERY_SMALL = 0.20


@dataclass(frozen=True)
class Row:
    """One sub-claim and its verdict."""

    figure: str
    claim: str
    effect: str
    stat: Stat
    criterion: str
    verdict: Verdict
    detail: str = ""
    paper: str = FIGURE_NA
    study: str = ""


def _by_run(df: pd.DataFrame, column: str, value: str, key) -> pd.Series:
    part = df[df[column] == key]
    return part.set_index("run")[value]


def _diff(a: pd.Series, b: pd.Series) -> Stat:
    d = (a - b).dropna()
    return Stat.of(d.to_numpy())


def _sign_row(fig, claim, effect, stat, sign, study, detail="", paper=FIGURE_NA,
              threshold=0.0) -> Row:
    word = "< " if sign < 0 else "> "
    crit = f"mean {word}{threshold:g} by more than 2 SE"
    return Row(fig, claim, effect, stat, crit, judge(stat, sign, threshold), detail,
               paper, study)


def _convergence(fig, claim, rounds: pd.Series, study, label="", paper=FIGURE_NA):
    stat = Stat.of(rounds.to_numpy(float))
    ok = bool(len(rounds)) and bool((rounds <= FEW_ROUNDS).all())
    return Row(fig, claim + label, "Gauss-Seidel rounds to a certified equilibrium",
               stat, f"every run converges within {FEW_ROUNDS} rounds",
               Verdict.SUPPORTED if ok else (Verdict.NOT_SUPPORTED if len(rounds)
                                             else Verdict.INCONCLUSIVE),
               f"max {int(rounds.max()) if len(rounds) else 'n/a'} rounds", paper,
               study)


def claims_fig3(df):
    rounds = df.groupby("run")["round"].max()
    return [_convergence("Fig. 3", "400 small users alone quickly converge to an "
                         "equilibrium after a few iterations", rounds, "fig3",
                         paper="text: 'a few iterations'")]


def claims_fig4(df):
    out = []
    for alpha, part in df.groupby("alpha"):
        name = MAXMIN_LABEL if math.isinf(float(alpha)) else f"alpha = {float(alpha):g}"
        rounds = part.groupby("run")["round"].max()
        out.append(_convergence("Fig. 4", "two aggregators and a large user converge "
                                "within a few iterations", rounds, "fig4",
                                f" ({name})", "text: 'within a few iteration steps'"))
    return out


def claims_fig5(df):
    grid = df[df["reading"] == "grid"] if "reading" in df else df
    slopes = [np.polyfit(g["K"], g["avg_surplus"], 1)[0] * 100
              for _, g in grid.groupby("run") if g["K"].nunique() > 1]
    wide = grid.pivot_table(index="run", columns="K", values="avg_surplus")
    k0, k1 = wide.columns.min(), wide.columns.max()
    steps = [_diff(wide[b], wide[a]) for a, b in zip(wide.columns[:-1], wide.columns[1:])]
    up = sum(judge(s, -1) is Verdict.NOT_SUPPORTED for s in steps)
    detail = (f"K = {k0:g}: {wide[k0].mean():.4g}, K = {k1:g}: {wide[k1].mean():.4g}; "
              f"{up} of {len(steps)} grid steps increase by > 2 SE")
    out = [_sign_row("Fig. 5", "average small-user surplus decreases as K grows "
                     "(0..400)", "per-run least-squares slope of average surplus "
                     "on K [$ per 100 units of K]", Stat.of(slopes), -1, "fig5",
                     detail, "text: 'the average surplus decreases as M increases'")]
    if "reading" in df and (df["reading"] == LARGE_READINGS[1]).any():
        other = df[df["reading"] == LARGE_READINGS[1]].set_index("run")
        out.append(_sign_row(
            "Fig. 5", "a large user 'as large as the sum of the small users' lowers "
            "their surplus", "average surplus at K = sum b/a minus at K = 0",
            _diff(other["avg_surplus"], wide[k0]), -1, "fig5",
            f"mean K = sum b/a = {other['K'].mean():.0f}"))
    return out


def _fig6_wide(df, column):
    ok = df[df["equilibrium"].astype(bool)]
    return {(c, lg): part.set_index("run")[column]
            for (c, lg), part in ok.groupby(["config", "large"])}


def claims_fig6(df):
    if "large" not in df:
        return []
    s, c = _fig6_wide(df, "avg_surplus"), _fig6_wide(df, "avg_consumption")
    alone = s.get(("small users alone", "none"), pd.Series(dtype=float))
    out = []
    for lg in LARGE_READINGS:
        if ("with large user", lg) not in s:
            continue
        get = lambda d, k: d.get((k, lg), pd.Series(dtype=float))  # noqa: E731
        large, sw = get(s, "with large user"), get(s, "social welfare")
        pf, mm = get(s, "proportional fairness"), get(s, MAXMIN_LABEL)
        tag = f" [{lg}]"
        out += [
            _sign_row("Fig. 6", "a large user lowers small users' surplus" + tag,
                      "surplus with the large user minus alone", _diff(large, alone),
                      -1, "fig6"),
            _sign_row("Fig. 6", "aggregators mitigate it (social welfare)" + tag,
                      "surplus with social-welfare aggregators minus no aggregators "
                      "(large user present)", _diff(sw, large), +1, "fig6"),
            _sign_row("Fig. 6", "social welfare gives the highest surplus (vs "
                      "proportional fairness)" + tag, "social welfare minus "
                      "proportional fairness", _diff(sw, pf), +1, "fig6"),
            _sign_row("Fig. 6", f"social welfare gives the highest surplus (vs "
                      f"{MAXMIN_LABEL})" + tag, f"social welfare minus {MAXMIN_LABEL}",
                      _diff(sw, mm), +1, "fig6"),
            _slightly_lower(_rel(pf, sw), tag),
            _sign_row("Fig. 6", f"{MAXMIN_LABEL} gives very small surplus" + tag,
                      f"ratio {MAXMIN_LABEL} / social welfare", Stat.of((mm / sw)
                                                                        .dropna()), -1,
                      "fig6", f"'very small' read as below {VERY_SMALL:.0%} of social "
                      f"welfare", threshold=VERY_SMALL),
            _sign_row("Conclusion", "proportional-fair aggregators improve small users' "
                      "outcomes (vs no aggregators, large user present)" + tag,
                      "surplus with proportional-fair aggregators minus no aggregators",
                      _diff(pf, large), +1, "fig6",
                      paper="text (Sec. V): 'were seen to improve the outcomes for "
                            "smaller users'"),
            _sign_row("Conclusion", "proportional-fair aggregators improve small users' "
                      "outcomes (vs small users alone, no large user)" + tag,
                      "surplus with proportional-fair aggregators minus small users "
                      "alone", _diff(pf, alone), +1, "fig6"),
        ]
        csw, cpf, cmm = (get(c, k) for k in ("social welfare", "proportional fairness",
                                             MAXMIN_LABEL))
        out += [_sign_row("Fig. 7", f"{name} leads to higher consumption than "
                          f"{MAXMIN_LABEL}" + tag, f"consumption, {name} minus "
                          f"{MAXMIN_LABEL}", _diff(x, cmm), +1, "fig6")
                for name, x in (("social welfare", csw), ("proportional fairness", cpf))]
    return out


def _rel(a: pd.Series, b: pd.Series) -> Stat:
    return Stat.of(((a - b) / b).dropna().to_numpy())


def _slightly_lower(stat: Stat, tag: str) -> Row:
    lower = judge(stat, -1)
    within = judge(stat, +1, -SLIGHTLY)
    return Row("Fig. 6", "proportional fairness gives slightly lower surplus than "
               "social welfare" + tag, "(proportional - social welfare) / social "
               "welfare", stat, f"mean < 0 and mean > -{SLIGHTLY:g}, each by more than "
               f"2 SE", all_of([lower, within]), "", FIGURE_NA, "fig6")


def _per_run(df, config, col, fn):
    part = df[df["config"] == config]
    return part.groupby("run")[col].apply(lambda v: fn(v.to_numpy()))


def _cv(v):
    return float(v.std() / v.mean()) if v.mean() else math.nan


def _skew(v):
    from scipy.stats import skew

    return float(skew(v))


def _below_mean(v):
    return float((v < v.mean()).mean())


def claims_fig8(df):
    out = []
    for col in ("consumption", "surplus"):
        none = df[df["config"] == "no aggregator"][col]
        sw = df[df["config"] == "social welfare"][col]
        d, p = ks(none, sw)
        cv = _diff(_per_run(df, "social welfare", col, _cv),
                   _per_run(df, "no aggregator", col, _cv))
        detail = (f"pooled two-sample KS D = {d:.3f} (p = {p:.2g}); per-run CV "
                  f"{_per_run(df, 'no aggregator', col, _cv).mean():.3g} (none) -> "
                  f"{_per_run(df, 'social welfare', col, _cv).mean():.3g} (social "
                  f"welfare)")
        effect = f"coefficient of variation of {col}, social welfare minus none"
        if col == "consumption":
            out.append(_sign_row("Fig. 8", "text: with social-welfare aggregators "
                                 "consumption is 'more spread out'", effect, cv, +1,
                                 "fig8", detail, "text and caption disagree"))
        out.append(_sign_row("Fig. 8", f"caption: with social welfare the {col} "
                             f"distribution is 'more concentrated'", effect, cv, -1,
                             "fig8", detail, "text and caption disagree"))
    out.append(_sign_row("Fig. 8", "the social-welfare consumption distribution has a "
                         "long tail", "skewness of consumption with social welfare",
                         Stat.of(_per_run(df, "social welfare", "consumption", _skew)),
                         +1, "fig8"))
    out.append(_sign_row("Fig. 8", "most users still receive relatively little "
                         "allocation", "share of users below the mean consumption "
                         "(social welfare)", Stat.of(_per_run(
                             df, "social welfare", "consumption", _below_mean)), +1,
                         "fig8", threshold=0.5))
    for col in ("consumption", "surplus"):
        none = df[df["config"] == "no aggregator"][col]
        pf = df[df["config"] == "proportional fairness"][col]
        d, p = ks(none, pf)
        out.append(_sign_row(
            "Fig. 9", f"proportional fairness makes the {col} distribution much more "
            f"uniform", f"coefficient of variation of {col}, proportional minus none",
            _diff(_per_run(df, "proportional fairness", col, _cv),
                  _per_run(df, "no aggregator", col, _cv)), -1, "fig8",
            f"pooled two-sample KS D = {d:.3f} (p = {p:.2g})"))
    out.append(_sign_row("Fig. 9", "proportional fairness gives a shorter tail",
                         "skewness of consumption, proportional minus none",
                         _diff(_per_run(df, "proportional fairness", "consumption",
                                        _skew),
                               _per_run(df, "no aggregator", "consumption", _skew)),
                         -1, "fig8"))
    return out


def _fig10_wide(part):
    part = part.assign(total=part["avg_surplus"] * part["members"])
    g = part.groupby(["run", "alpha"])[["total", "members"]].sum()
    avg = (g["total"] / g["members"]).unstack("alpha")
    avg.columns = avg.columns.astype(float)
    return avg[sorted(avg.columns)]


def _decreasing(wide: pd.DataFrame, fig: str, claim: str, study: str) -> Row:
    cols = list(wide.columns)
    steps = [_diff(wide[b], wide[a]) for a, b in zip(cols[:-1], cols[1:])]
    overall = _diff(wide[cols[-1]], wide[cols[0]])
    rises = [f"{a:g}->{b:g}" for (a, b), s in zip(zip(cols[:-1], cols[1:]), steps)
             if judge(s, -1) is Verdict.NOT_SUPPORTED]
    parts = [judge(overall, -1)] + [Verdict.NOT_SUPPORTED if rises else
                                    Verdict.SUPPORTED]
    names = ["max-min" if math.isinf(a) else f"{a:g}" for a in cols]
    detail = "; ".join(f"alpha {n}: {wide[a].mean():.4g}" for n, a in zip(names, cols))
    detail += f". Steps rising by > 2 SE: {', '.join(rises) or 'none'}"
    return Row(fig, claim, f"surplus at alpha = {names[-1]} minus at alpha = "
               f"{names[0]}", overall, "overall difference < 0 by more than 2 SE, and "
               "no step between neighbouring alphas rises by more than 2 SE",
               all_of(parts), detail, FIGURE_NA, study)


def claims_fig10(df):
    out = []
    for variant, fig, who in (("both", "Fig. 10", "both aggregators raise alpha"),
                              ("second only", "Fig. 11", "aggregator 2 raises alpha, "
                               "aggregator 1 stays at alpha = 0")):
        wide = _fig10_wide(df[df["variant"] == variant])
        finite = wide[[a for a in wide.columns if math.isfinite(a)]]
        out.append(_decreasing(finite, fig, f"{who}: average small-user surplus "
                               f"decreases (alpha 0..{finite.columns[-1]:g})", "fig10"))
        if wide.shape[1] > finite.shape[1]:
            out.append(_decreasing(wide, fig, f"{who}: average small-user surplus "
                                   f"decreases (alpha 0..inf, inf = {MAXMIN_LABEL})",
                                   "fig10"))
    return out


def claims_fig12(df):
    out = []
    for objective, fig in (("social welfare", "Fig. 12"),
                           ("proportional fairness", "Fig. 13")):
        part = df[df["objective"] == objective]
        s = part.pivot_table(index="run", columns="aggregators", values="avg_surplus")
        c = part.pivot_table(index="run", columns="aggregators",
                             values="avg_consumption")
        cols = list(s.columns)
        if len(cols) < 3:
            continue
        diffs = {m: _diff(s[m], s[cols[0]]) for m in cols[1:]}
        far = max(diffs, key=lambda m: abs(diffs[m].mean))
        detail = "surplus " + "; ".join(f"{m}: {s[m].mean():.4g}" for m in cols)
        out.append(_sign_row(fig, f"the number of aggregators changes small users' "
                             f"surplus noticeably ({objective})", f"|surplus at {far} "
                             f"minus at {cols[0]} aggregators| (the largest)",
                             Stat(abs(diffs[far].mean), diffs[far].se, diffs[far].n),
                             +1, "fig12", detail))
        out.append(_no_trend(s, fig, objective))
        corr = [float(np.corrcoef(s.loc[r], c.loc[r])[0, 1]) for r in s.index
                if s.loc[r].notna().all() and c.loc[r].notna().all()]
        out.append(_sign_row(fig, f"a trade-off between surplus and consumption "
                             f"({objective})", "per-run correlation of average surplus "
                             "and average consumption across aggregator counts",
                             Stat.of(corr), -1, "fig12"))
    return out


def _no_trend(s: pd.DataFrame, fig: str, objective: str) -> Row:
    cols = list(s.columns)
    steps = [_diff(s[b], s[a]) for a, b in zip(cols[:-1], cols[1:])]
    signs = {int(np.sign(st.mean)) for st in steps if judge(st, 1) is not
             Verdict.INCONCLUSIVE}
    overall = _diff(s[cols[-1]], s[cols[0]])
    if signs == {-1, 1}:
        verdict = Verdict.SUPPORTED
    elif len(signs) == 1 and all(judge(st, 1) is not Verdict.INCONCLUSIVE or
                                 np.sign(st.mean) in signs for st in steps) and \
            judge(overall, 1) is not Verdict.INCONCLUSIVE:
        verdict = Verdict.NOT_SUPPORTED
    else:
        verdict = Verdict.INCONCLUSIVE
    detail = "steps " + "; ".join(f"{a}->{b}: {st.mean:+.3g} +- {st.se:.2g}"
                                  for a, b, st in zip(cols[:-1], cols[1:], steps))
    return Row(fig, f"no clear monotonic trend in the number of aggregators "
               f"({objective})", f"surplus at {cols[-1]} minus at {cols[0]} "
               f"aggregators", overall, "supported if steps between neighbouring "
               "counts move both ways by more than 2 SE each; not supported if every "
               "step has one sign and the overall change exceeds 2 SE", verdict,
               detail, FIGURE_NA, "fig12")


def claims_conj1(df):
    counts = df["verdict"].value_counts()
    n = len(df)
    multiple, unknown = int(counts.get("multiple", 0)), int(counts.get("unknown", 0))
    verdict = (Verdict.NOT_SUPPORTED if multiple else
               Verdict.SUPPORTED if n and not unknown else Verdict.INCONCLUSIVE)
    one_br = int((df["br_clusters"] == 1).sum())
    return [
        Row("Conjecture 1", "the Nash equilibrium is unique",
            "instances with two or more certified equilibria",
            Stat(float(multiple), math.nan, n), "a single instance with two certified "
            "equilibria refutes it; supported if every instance has exactly one",
            verdict, f"{int(counts.get('unique', 0))} unique, {multiple} multiple, "
            f"{unknown} unknown of {n} instances", "text: 'supported by extensive "
            "simulation evidence'", "conj1"),
        Row("Sec. IV-B", "best response always converges to the same equilibrium "
            "regardless of the start", "instances whose best-response runs from "
            "random starts end in one profile", Stat(float(one_br), math.nan, n),
            "every instance", Verdict.SUPPORTED if n and one_br == n else
            (Verdict.NOT_SUPPORTED if n else Verdict.INCONCLUSIVE),
            f"{one_br} of {n}", "text: 'always converges to the same Nash "
            "equilibrium'", "conj1"),
    ]


CHECKS: dict[str, Callable[[pd.DataFrame], list[Row]]] = {
    "fig3": claims_fig3, "fig4": claims_fig4, "fig5": claims_fig5,
    "fig6": claims_fig6, "fig8": claims_fig8, "fig10": claims_fig10,
    "fig12": claims_fig12, "conj1": claims_conj1}

#: Claims of Section IV (and its conclusions) this report does not test, and why.
UNTESTED = (
    ("Sec. IV-A", "other differentiable concave utilities do not change the "
     "qualitative conclusions", "only the paper's quadratic utilities are run"),
    ("Sec. IV-B", "other increasing price functions do not change the qualitative "
     "conclusions", "only the paper's linear price p = 0.001 Y is run"),
    ("Fig. 11", "the alpha values should not be too different between aggregators",
     "a recommendation without a measurable threshold; the surplus curve itself is "
     "judged above"),
    ("Figs. 12-13", "operators must consider the consumption limit of generation "
     "capacity", "the model has no capacity limit"),
    ("Sec. V", "aggregators stabilize market prices", "the paper defines no measure of "
     "stability"),
    ("Fig. 9", "users might join an aggregator with either scheme depending on their "
     "preferences", "a statement about preferences, not about the equilibria"),
)


def eps_table(df: pd.DataFrame) -> pd.DataFrame:
    """Average small-user surplus, mean +- SE (runs), per objective and eps."""
    ok = df[df["equilibrium"].astype(bool)]
    cells = {}
    for (objective, eps), part in ok.groupby(["objective", "eps"], sort=False):
        cells.setdefault(objective, {})[f"eps = {eps:g}"] = str(Stat.of(
            part["avg_surplus"].to_numpy()))
    failed = df[~df["equilibrium"].astype(bool)].groupby("objective").size()
    table = pd.DataFrame(cells).T
    table["runs without equilibrium"] = failed.reindex(table.index).fillna(0).astype(
        int)
    return table


def large_user_table(df: pd.DataFrame) -> pd.DataFrame:
    """Small-user surplus and consumption per configuration, both large-user readings
    side by side (mean +- SE over runs)."""
    ok = df[df["equilibrium"].astype(bool)]
    rows = {}
    for (config, large), part in ok.groupby(["config", "large"], sort=False):
        row = rows.setdefault(config, {})
        for col, name in (("avg_surplus", "surplus"), ("avg_consumption",
                                                       "consumption")):
            row[f"{name}, {large}"] = str(Stat.of(part[col].to_numpy()))
        if large != "none":
            row[f"K, {large}"] = f"{part['K'].mean():.0f}"
    return pd.DataFrame(rows).T


def multiple_equilibria(df: pd.DataFrame) -> pd.DataFrame:
    """The instances of the Conjecture 1 study with more than one equilibrium."""
    multi = df[df["verdict"] == "multiple"]
    return pd.DataFrame([{"family": r["family"], "run": r["run"],
                          "players": ", ".join(json.loads(r["names"])),
                          "profiles": "; ".join(str(p) for p in json.loads(
                              r["profiles"])),
                          "global certificate": ", ".join(json.loads(r["global"]))}
                         for _, r in multi.iterrows()])
