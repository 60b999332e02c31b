"""The verdict vocabulary, its rules, and the thresholds of the paper's size words.

Every verdict rests on an effect measured once per run (a paired difference where
runs of one seed share their small users), summarised by its mean, its standard
error over runs and the number of runs (:class:`Stat`), and where it has a reference
by its size relative to that reference (:class:`Size`). :data:`RULES` states what
each verdict word means; :data:`THRESHOLDS` states, once, the thresholds that the
paper's size words ("noticeable", "slightly", "very small", "much") are read with and
why.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

#: How many standard errors make an effect clear (about a 95% two-sided interval).
Z = 2.0
#: "Noticeable" (and any claim that one configuration changes or beats another): the
#: effect is at least this fraction of its reference.
NOTICEABLE = 0.05
#: "Slightly": the effect is below this fraction of its reference.
SLIGHT = 0.20
#: "Much" (and "significantly" in the paper's prose sense): at least this fraction.
MUCH = 0.20
#: "Very small": below this fraction of the reference (an order of magnitude).
VERY_SMALL = 0.10
#: "A long tail": sample skewness above this (Bulmer's "highly skewed").
LONG_TAIL = 1.0


class Verdict(str, enum.Enum):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    MIXED = "mixed"
    AMBIGUOUS = "ambiguous"
    REFUTED = "refuted"
    UNTESTED = "untested"


RULES = {
    Verdict.SUPPORTED: (
        f"in the default domain the effect has the claimed sign by more than {Z:g} "
        f"standard errors over runs, reaches the size threshold of the claim's words "
        f"(below), and every robustness variant gives the same verdict."),
    Verdict.NOT_SUPPORTED: (
        f"in the default domain the effect is not established - of the opposite sign "
        f"by more than {Z:g} SE, within {Z:g} SE of zero or of the threshold, below "
        f"the size threshold, or without two runs that reached an equilibrium (the "
        f"row says which) - and every robustness variant agrees."),
    Verdict.MIXED: (
        "the verdict depends on a stated choice: in at least one robustness variant "
        "it differs from the default's, both on the same runs and on all runs (so "
        "the choice, not the number of runs, changed it); the variants that change it "
        "are named."),
    Verdict.AMBIGUOUS: (
        f"the claim has several reasonable measures (e.g. SD, IQR and CV for "
        f"'spread') and they point in opposite directions, each by more than {Z:g} "
        f"SE; one row per measure shows which."),
    Verdict.REFUTED: (
        "a counterexample that satisfies the claim's hypotheses is shown, with the "
        "evidence that makes it one (e.g. two equilibria, each certified)."),
    Verdict.UNTESTED: (
        "not tested here, or not decidable by the methods used (e.g. uniqueness "
        "without a proof); the row says why."),
}

THRESHOLDS = (
    f"Size words are read against the effect relative to a stated reference (usually "
    f"the baseline configuration's mean). 'Noticeable', and any claim that one "
    f"configuration lowers, raises, mitigates, improves or beats another: at least "
    f"{NOTICEABLE:.0%} of the reference - the usual materiality threshold, below "
    f"which an effect is conventionally treated as immaterial; it is lenient towards "
    f"the paper, since two seeds of one configuration already differ by 7-9% in the "
    f"average small-user surplus (the seed-to-seed coefficient of variation in "
    f"Fig. 6). 'Slightly': below {SLIGHT:.0%} (one fifth); 'much' and 'significantly' "
    f"(in the paper's prose, not statistical, sense): at least {MUCH:.0%}. 'Very "
    f"small': below {VERY_SMALL:.0%} of the reference, an order of magnitude. 'A long "
    f"tail': skewness above {LONG_TAIL:g} (Bulmer's 'highly skewed'). Claims without a "
    f"reference (orderings of rounds, correlations) are judged on sign and "
    f"significance, their value shown. Every row shows its effect size, so a reader "
    f"with other thresholds can re-judge it.")


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

    @property
    def z(self) -> float:
        """mean / SE (NaN without an SE; +-inf when every run agrees exactly)."""
        if self.n < 2 or not math.isfinite(self.se):
            return math.nan
        if self.se == 0:
            return math.copysign(math.inf, self.mean) if self.mean else math.nan
        return self.mean / self.se

    def __str__(self) -> str:
        if self.n == 0:
            return "no data"
        se = "n/a" if math.isnan(self.se) else f"{self.se:.3g}"
        return f"{self.mean:.4g} +- {se} (n = {self.n})"


@dataclass(frozen=True)
class Size:
    """An effect's size: relative to a reference (``value`` = mean effect /
    |reference|), or, with ``relative`` False, a value read as it is (a skewness,
    a share)."""

    value: float
    reference: str
    relative: bool = True

    @classmethod
    def ratio(cls, effect: float, reference: float, name: str) -> "Size":
        value = effect / abs(reference) if reference else math.nan
        return cls(value, name)

    def __str__(self) -> str:
        if not math.isfinite(self.value):
            return f"n/a ({self.reference})"
        if not self.relative:
            return f"{self.reference} {self.value:.3g}"
        if abs(self.value) < 1e-3:  # two significant digits, not "-0.0%"
            return f"{100 * self.value:+.2g}% of {self.reference}"
        return f"{self.value:+.1%} of {self.reference}"


@dataclass(frozen=True)
class Finding:
    """A verdict and why (the reason names the rule that decided it)."""

    verdict: Verdict
    reason: str

    def __str__(self) -> str:
        return f"{self.verdict.value} ({self.reason})" if self.reason else \
            self.verdict.value


def _significance(stat: Stat, d: float) -> Finding | None:
    """NOT_SUPPORTED when ``d`` (the effect minus a threshold) is not clear."""
    if stat.n < 2 or not math.isfinite(stat.se):
        return Finding(Verdict.NOT_SUPPORTED, f"{stat.n} run(s): no standard error")
    if abs(d) <= Z * stat.se:
        return Finding(Verdict.NOT_SUPPORTED, f"within {Z:g} SE")
    return None


def judge(stat: Stat, sign: int, size: Size | None = None, minimum: float = 0.0,
          threshold: float = 0.0) -> Finding:
    """Whether "effect - threshold has sign ``sign``" (+1 or -1) clearly, and the
    effect's size reaches ``minimum`` (a fraction of its reference)."""
    unclear = _significance(stat, stat.mean - threshold)
    if unclear is not None:
        return unclear
    z = (stat.mean - threshold) / stat.se if stat.se else math.inf
    if (stat.mean - threshold) * sign < 0:
        return Finding(Verdict.NOT_SUPPORTED, f"opposite sign, z = {z:.1f}")
    if size is not None and minimum > 0 and not abs(size.value) >= minimum:
        return Finding(Verdict.NOT_SUPPORTED, f"below the {minimum:.0%} threshold: "
                                              f"{abs(size.value):.1%}")
    return Finding(Verdict.SUPPORTED, f"z = {z:.1f}")


def all_of(findings: Iterable[Finding]) -> Finding:
    """A conjunction: supported if every part is; otherwise the first part that is
    not."""
    parts = list(findings)
    for f in parts:
        if f.verdict is not Verdict.SUPPORTED:
            return f
    return Finding(Verdict.SUPPORTED, "; ".join(f.reason for f in parts if f.reason))


def directions(stats: Iterable[Stat]) -> set[int]:
    """The signs of the effects that are clear (|mean| > Z SE)."""
    return {int(np.sign(s.mean)) for s in stats if abs(s.z) > Z}


def combine(default: Finding, on_robust: Finding | None,
            variants: dict[str, Finding]) -> tuple[Verdict, list[str]]:
    """The final verdict of a claim from its default finding, the default recomputed
    on the robustness runs, and each variant's finding (:data:`RULES`).

    A variant changes the verdict when its verdict differs from the default's on the
    same runs and from the default's on all runs: a difference from only one of them
    is the number of runs speaking, not the choice.
    """
    if default.verdict in (Verdict.AMBIGUOUS, Verdict.REFUTED, Verdict.UNTESTED):
        return default.verdict, []
    base = (on_robust or default).verdict
    flips = [name for name, f in variants.items()
             if f.verdict is not base and f.verdict is not default.verdict]
    return (Verdict.MIXED, flips) if flips else (default.verdict, [])


def ks(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    from scipy.stats import ks_2samp

    res = ks_2samp(np.asarray(a, float), np.asarray(b, float))
    return float(res.statistic), float(res.pvalue)


#: Location and spread measures of a distribution, by name.
LOCATION = ("mean", "median", "q1", "q3")
SPREAD = ("sd", "iqr", "cv")


def summary(values: Iterable[float]) -> dict[str, float]:
    """Mean, median, quartiles, SD (ddof = 1), IQR and CV (SD / mean) of ``values``."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return {k: math.nan for k in (*LOCATION, *SPREAD)}
    q1, median, q3 = (float(q) for q in np.percentile(v, [25, 50, 75]))
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return {"mean": mean, "median": median, "q1": q1, "q3": q3, "sd": sd,
            "iqr": q3 - q1, "cv": sd / mean if mean else math.nan}
