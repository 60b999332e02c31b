"""Each Section IV sentence, split into sub-claims, judged on the studies' numbers.

A check reads one study's results table (one domain: the default, or a robustness
variant's, studies/variants.py) and returns :class:`Row` objects: the sub-claim, the
effect measured once per run, its mean +- standard error over runs, its size relative
to a stated reference, the criterion and the finding of studies/stats.py. Runs of one
seed share their small users across configurations, so differences are paired; a run
in which a configuration compared has no equilibrium is left out of that difference
and counted (``missing``), never dropped silently.

The checks themselves live in claims_market.py (Figs. 3-7), claims_spread.py
(Figs. 8-9 and "improves") and claims_alpha.py (Figs. 10-13); the Conjecture 1 rows in
claims_conj1.py. :data:`CHECKS` maps each study to its check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from aggregame.studies.stats import (NOTICEABLE, Z, Finding, Size, Stat, Verdict,
                                     all_of, directions, judge)

#: The paper's figures are images we cannot read numbers from; where its text states a
#: value it is quoted instead.
FIGURE_NA = "figure values not available to us (not read)"
#: "A few iterations": the largest number of Gauss-Seidel rounds we accept.
FEW_ROUNDS = 20


@dataclass(frozen=True)
class Row:
    """One sub-claim (or one measure of it) and its finding in one domain."""

    key: str
    figure: str
    claim: str
    measure: str
    stat: Stat
    size: Size | None
    criterion: str
    finding: Finding
    study: str
    detail: str = ""
    paper: str = FIGURE_NA
    missing: int = 0
    group: str = ""
    #: The row's own domain, where it is not its study's (e.g. a shipped scenario).
    domain: str = ""

    @property
    def verdict(self) -> Verdict:
        return self.finding.verdict


Check = Callable[[pd.DataFrame], list[Row]]


def by_run(df: pd.DataFrame, column: str) -> pd.Series:
    """``column`` per run (NaN where the run has no equilibrium)."""
    values = df[column].where(df["equilibrium"].astype(bool))
    return pd.Series(values.to_numpy(float), index=df["run"].to_numpy())


def paired(a: pd.Series, b: pd.Series | None = None) -> tuple[np.ndarray, int]:
    """a - b over the runs where both are known, and how many runs of either were
    left out for lack of an equilibrium."""
    d = a if b is None else a - b
    runs = a.index if b is None else a.index.union(b.index)
    d = d.reindex(runs)
    known = d.dropna()
    return known.to_numpy(float), int(len(runs) - len(known))


def compare(key: str, figure: str, claim: str, measure: str, a: pd.Series,
            b: pd.Series | None, sign: int, study: str, reference: pd.Series | None,
            ref_name: str, minimum: float = NOTICEABLE, **kw) -> Row:
    """The row of "a - b has sign ``sign``, by at least ``minimum`` of the
    reference's mean" (paired by run)."""
    values, missing = paired(a, b)
    stat = Stat.of(values)
    size = None if reference is None else Size.ratio(
        stat.mean, float(reference.mean()), ref_name)
    word = ">" if sign > 0 else "<"
    crit = f"mean {word} 0 by more than 2 SE"
    if size is not None and minimum > 0:
        crit += f", |effect| at least {minimum:.0%} of {ref_name}"
    return Row(key, figure, claim, measure, stat, size, crit,
               judge(stat, sign, size, minimum), study, missing=missing, **kw)


def threshold_row(key: str, figure: str, claim: str, measure: str,
                  values: pd.Series, sign: int, threshold: float, study: str,
                  ref_name: str, **kw) -> Row:
    """The row of "the per-run value is above (sign +1) or below (-1) ``threshold``"."""
    known, missing = paired(values)
    stat = Stat.of(known)
    size = Size(stat.mean, ref_name, relative=False) if ref_name else None
    word = ">" if sign > 0 else "<"
    return Row(key, figure, claim, measure, stat, size,
               f"mean {word} {threshold:g} by more than 2 SE",
               judge(stat, sign, threshold=threshold), study, missing=missing, **kw)


def group_row(key: str, figure: str, claim: str, parts: Sequence[Row], study: str,
              **kw) -> list[Row]:
    """A claim measured several ways: its own row (ambiguous when the measures point
    in opposite directions, each clearly; else the conjunction), then one row per
    measure."""
    signs = directions(p.stat for p in parts)
    if len(signs) > 1:
        up = [p.measure.split(":")[0] for p in parts if p.stat.z > Z]
        down = [p.measure.split(":")[0] for p in parts if p.stat.z < -Z]
        finding = Finding(Verdict.AMBIGUOUS, f"measures disagree: {', '.join(up)} "
                                             f"rise(s), {', '.join(down)} fall(s)")
    else:
        finding = all_of(p.finding for p in parts)
    measures = ", ".join(p.measure.split(":")[0] for p in parts)
    head = Row(key, figure, claim, f"{len(parts)} measures: {measures}",
               Stat(math.nan, math.nan, max((p.stat.n for p in parts), default=0)),
               None, "every measure supports it; ambiguous if two measures point in "
                     "opposite directions, each by more than 2 SE", finding, study,
               missing=max((p.missing for p in parts), default=0), **kw)
    return [head] + [replace(p, group=key) for p in parts]


def convergence(key: str, figure: str, claim: str, df: pd.DataFrame, study: str,
                paper: str = FIGURE_NA) -> Row:
    """Every run reaches a certified equilibrium within FEW_ROUNDS rounds."""
    runs = df.groupby("run").agg(rounds=("rounds", "max"),
                                 ok=("equilibrium", "all"))
    stat = Stat.of(runs["rounds"].to_numpy(float))
    failed = int((~runs["ok"].astype(bool)).sum())
    slow = int((runs["rounds"] > FEW_ROUNDS).sum())
    if not len(runs):
        finding = Finding(Verdict.NOT_SUPPORTED, "no run")
    elif failed or slow:
        finding = Finding(Verdict.NOT_SUPPORTED, f"{failed} run(s) without "
                                                 f"equilibrium, {slow} over "
                                                 f"{FEW_ROUNDS} rounds")
    else:
        finding = Finding(Verdict.SUPPORTED, f"at most {int(runs['rounds'].max())} "
                                             f"rounds")
    return Row(key, figure, claim, "Gauss-Seidel rounds to a certified equilibrium",
               stat, None, f"every run reaches a certified equilibrium within "
                           f"{FEW_ROUNDS} rounds", finding, study,
               detail=f"max {int(runs['rounds'].max()) if len(runs) else 'n/a'} rounds",
               paper=paper, missing=failed)


#: Claims of Section IV (and its conclusions) this report does not test, and why.
UNTESTED = (
    ("Sec. IV-A", "other differentiable concave utilities do not change the "
     "qualitative conclusions", "only the paper's quadratic utilities are run"),
    ("Sec. IV-B", "other increasing price functions do not change the qualitative "
     "conclusions", "only the paper's linear price p = 0.001 Y is run (the "
     "Conjecture 1 section shows a concave price that has two equilibria)"),
    ("Figs. 12-13", "operators must consider the consumption limit of generation "
     "capacity", "the model has no capacity limit"),
    ("Sec. V", "aggregators stabilize market prices", "the paper defines no measure of "
     "stability"),
    ("Fig. 9", "users might join an aggregator with either scheme depending on their "
     "preferences", "a statement about preferences, not about the equilibria"),
)
