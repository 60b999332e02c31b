"""Every claim judged in the default domain and recomputed in each robustness variant,
and the final verdict (studies/stats.py, RULES) that combines them."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import pandas as pd

from aggregame.studies.claims import Row, check_of
from aggregame.studies.stats import Verdict, combine
from aggregame.studies.variants import (DEFAULT_NAME, ROBUST_RUNS, default_table,
                                        variant_table, variants_run)


@dataclass(frozen=True)
class Judged:
    """A claim's default row, its recomputations and its final verdict. A variant's
    row is None where the variant's choice does not enter the games the claim
    compares."""

    row: Row
    on_robust: Row | None
    variants: tuple[tuple[str, Row | None], ...]
    verdict: Verdict
    flips: tuple[str, ...]
    robust_runs: int

    def variant_note(self, name: str, other: Row | None) -> str:
        """One line on the claim in variant ``name``."""
        if other is None:
            return f"{name}: does not enter these games (same games as the default)"
        if other.stat.n and math.isnan(other.stat.mean):  # measured several ways
            return f"{name}: {other.finding}"
        size = f", {other.size}" if other.size is not None else ""
        missing = f", {other.missing} run(s) without equilibrium" if other.missing \
            else ""
        return (f"{name}: {other.finding} [{other.stat}{size}{missing}]")


def _rows(check, table: pd.DataFrame) -> dict[str, Row]:
    return {r.key: r for r in check(table)}


def _variant_rows(check, df: pd.DataFrame, name: str, keys, baseline: dict[str, Row]
                  ) -> dict[str, Row | None]:
    """The rows recomputed in variant ``name``; None for a row that the variant's
    games do not touch (the row is the same with them left out: it does not read
    them)."""
    table = variant_table(df, name, keys)
    without = _rows(check, table[table["domain"] != name])
    return {key: (row if repr(without.get(key)) != repr(baseline.get(key)) else None)
            for key, row in _rows(check, table).items()}


def judge_study(study: str, df: pd.DataFrame) -> list[Judged]:
    """The judged claims of one study's results table."""
    module = importlib.import_module(f"aggregame.studies.{study}")
    check = check_of(study)
    rows = check(default_table(df))
    if not rows:
        return []
    keys = getattr(module, "CONFIG_KEYS", ())
    runs = sorted(set(df.loc[df["domain"] == DEFAULT_NAME, "run"]))
    robust = [r for r in runs if r < ROBUST_RUNS]
    baseline = _rows(check, variant_table(df, DEFAULT_NAME, keys))
    on_robust = baseline if robust != runs else {}
    names = variants_run(df)
    per_variant = {v: _variant_rows(check, df, v, keys, baseline) for v in names}
    out = []
    for row in rows:
        variants = tuple((v, per_variant[v].get(row.key)) for v in names)
        base = on_robust.get(row.key)
        verdict, flips = combine(
            row.finding, base.finding if base else None,
            {v: r.finding for v, r in variants if r is not None})
        out.append(Judged(row, base, variants, verdict, tuple(flips), len(robust)))
    return out
