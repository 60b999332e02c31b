"""Effect sizes over runs and the one rule that turns them into verdicts.

Every verdict of the report rests on an effect measured once per run (a paired
difference where runs of one seed share their small users), summarised by its mean,
its standard error over runs and the number of runs. The rule (:data:`RULE`):

* supported: the effect has the claimed sign and |mean| > 2 standard errors;
* not supported: the opposite sign and |mean| > 2 standard errors;
* inconclusive: otherwise, and always with fewer than 2 runs.

A claim against a threshold (e.g. "very small": below 20% of social welfare's) uses
the same rule on mean - threshold.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

#: How many standard errors make an effect clear.
Z = 2.0
RULE = (f"supported: the effect has the claimed sign and |mean| > {Z:g} standard errors "
        f"over runs; not supported: the opposite sign and |mean| > {Z:g} standard "
        f"errors; inconclusive: otherwise, or fewer than 2 runs. A threshold claim "
        f"applies the same rule to (mean - threshold).")


class Verdict(str, enum.Enum):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    INCONCLUSIVE = "inconclusive"
    UNTESTED = "untested"


@dataclass(frozen=True)
class Stat:
    """Mean, standard error of the mean and number of runs of a per-run effect."""

    mean: float
    se: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Stat":
        v = np.asarray([x for x in values if x is not None and np.isfinite(x)],
                       dtype=float)
        if v.size == 0:
            return cls(math.nan, math.nan, 0)
        se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
        return cls(float(v.mean()), se, int(v.size))

    def __str__(self) -> str:
        if self.n == 0:
            return "no data"
        se = "n/a" if math.isnan(self.se) else f"{self.se:.3g}"
        return f"{self.mean:.4g} +- {se} (n = {self.n})"


def judge(stat: Stat, sign: int, threshold: float = 0.0) -> Verdict:
    """The verdict on "effect - threshold has sign ``sign``" (+1 or -1)."""
    if stat.n < 2 or not math.isfinite(stat.se):
        return Verdict.INCONCLUSIVE
    d = stat.mean - threshold
    if abs(d) <= Z * stat.se:
        return Verdict.INCONCLUSIVE
    return Verdict.SUPPORTED if d * sign > 0 else Verdict.NOT_SUPPORTED


def all_of(verdicts: Iterable[Verdict]) -> Verdict:
    """A conjunction: supported if every part is, not supported if any part is not."""
    vs = list(verdicts)
    if any(v is Verdict.NOT_SUPPORTED for v in vs):
        return Verdict.NOT_SUPPORTED
    if vs and all(v is Verdict.SUPPORTED for v in vs):
        return Verdict.SUPPORTED
    return Verdict.INCONCLUSIVE


def ks(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    from scipy.stats import ks_2samp

    res = ks_2samp(np.asarray(a, float), np.asarray(b, float))
    return float(res.statistic), float(res.pvalue)
