"""Robustness: the domains a verdict is recomputed in, one choice at a time.

The default domain (studies/common.py: K = sum of b/a, floor rule, eps = 0.01,
max-min read as leximin) is where every figure is drawn and every verdict stated.
Each verdict is then recomputed in the domains that differ from the default in one
choice (:data:`VARIANTS`): eps = 0.001 and eps = 0.1, K = 400, the viable rule, and
max-min read with the total-surplus tie-break. Varying one choice at a time keeps
the cost to five extra domains (all combinations would be 23): at the paper's sizes
the report must run in minutes on two cores.

A variant is run only for the configurations it can change (:func:`choices_in`):

* K enters every game with the large user;
* eps and the rule enter aggregators with alpha > 0 only. A one-member player
  maximizes its own surplus under any rule and eps, and at alpha = 0 phi(s + eps) =
  s + eps changes the welfare by a constant while a priced-out member has s = 0
  under either rule (docs/model.md, sections "One-member players" and
  "Priced-out members"); tests/test_report.py checks this on small games;
* the max-min reading enters max-min aggregators only.

Elsewhere the variant's game is the default's, and so is its outcome: the variant's
table takes the default rows there (:func:`variant_table`).

Variants run on the first :data:`ROBUST_RUNS` runs (seeds) of a study; the default
verdict is recomputed on the same runs before the two are compared, so a verdict
that changes with a variant changed with the choice, not with the number of runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from aggregame.studies.common import DEFAULT, Domain

#: Runs (seeds) of each study the variants are computed on.
ROBUST_RUNS = 10
#: The name of the default domain in results tables.
DEFAULT_NAME = "default"


class Choice(str, enum.Enum):
    """A choice of the domain that a variant changes."""

    K = "K"
    EPS = "eps"
    RULE = "rule"
    MAXMIN = "max-min reading"


@dataclass(frozen=True)
class Variant:
    """A domain that differs from the default in one choice."""

    name: str
    choice: Choice
    domain: Domain


VARIANTS = (
    Variant("eps=0.001", Choice.EPS, DEFAULT.with_(eps=0.001)),
    Variant("eps=0.1", Choice.EPS, DEFAULT.with_(eps=0.1)),
    Variant("K=400", Choice.K, DEFAULT.with_(large="K=400")),
    Variant("rule=viable", Choice.RULE, DEFAULT.with_(rule="viable")),
    Variant("max-min=total-surplus", Choice.MAXMIN,
            DEFAULT.with_(maxmin="total-surplus")),
)
_BY_NAME = {v.name: v for v in VARIANTS}


def domain_of(name: str) -> Domain:
    """The domain a results row names (``DEFAULT_NAME`` or a variant's name)."""
    if name == DEFAULT_NAME:
        return DEFAULT
    try:
        return _BY_NAME[name].domain
    except KeyError:
        raise ValueError(f"unknown domain {name!r}; domains are "
                         f"{[DEFAULT_NAME, *_BY_NAME]}") from None


def choices_in(alphas: Sequence[float | str] | None, large: bool) -> frozenset[Choice]:
    """The choices that change a game of aggregators with ``alphas`` (None: users
    alone) and, if ``large``, the large user (module docstring)."""
    out = {Choice.K} if large else set()
    values = [float(a) for a in alphas or ()]
    if any(a > 0 for a in values):
        out |= {Choice.EPS, Choice.RULE}
    if any(a == float("inf") for a in values):
        out.add(Choice.MAXMIN)
    return frozenset(out)


def with_variants(base: list[dict], enters: Callable[[dict], frozenset[Choice]]
                  ) -> list[dict]:
    """The default task of every entry of ``base``, then one task per variant whose
    choice enters it, for the first ROBUST_RUNS runs."""
    out = [dict(p, domain=DEFAULT_NAME) for p in base]
    for p in base:
        if p["run"] < ROBUST_RUNS:
            out += [dict(p, domain=v.name) for v in VARIANTS if v.choice in enters(p)]
    return out


def schedule_rank(params: dict) -> int:
    """Submission order of a task (smaller first): the viable rule's runs, the
    slowest (measured: up to 17 s where the dynamics do not settle, against 0.01-3 s
    for the others), then the other variants, then the default's many short runs, so
    that no long run is left alone at the end of a study."""
    domain = params.get("domain", DEFAULT_NAME)
    return 0 if domain == "rule=viable" else (2 if domain == DEFAULT_NAME else 1)


def variant_table(df: pd.DataFrame, name: str, keys: Sequence[str]) -> pd.DataFrame:
    """The results of domain ``name`` on the robustness runs: the variant's rows where
    it ran, the default's rows for the configurations (``keys`` and run) it does not
    change. With ``name`` = DEFAULT_NAME: the default's rows on those runs."""
    robust = df[df["run"] < ROBUST_RUNS]
    base = robust[robust["domain"] == DEFAULT_NAME]
    if name == DEFAULT_NAME:
        return base.reset_index(drop=True)
    over = robust[robust["domain"] == name]
    cols = [*keys, "run"]
    ran = pd.MultiIndex.from_frame(over[cols].drop_duplicates().astype(str))
    keep = ~pd.MultiIndex.from_frame(base[cols].astype(str)).isin(ran)
    return pd.concat([base[keep], over], ignore_index=True)


def default_table(df: pd.DataFrame) -> pd.DataFrame:
    """The default domain's rows of every run."""
    return df[df["domain"] == DEFAULT_NAME].reset_index(drop=True)


def variants_run(df: pd.DataFrame) -> list[str]:
    """The variants that have rows in ``df``, in :data:`VARIANTS` order."""
    present = set(df["domain"])
    return [v.name for v in VARIANTS if v.name in present]
