"""Every claim judged in the default domain and recomputed in each robustness variant,
and the final verdict (studies/stats.py, RULES) that combines them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from aggregame.studies import (claims_alpha, claims_conj1, claims_market,
                               claims_spread)
from aggregame.studies.claims import Check, Row
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


def _checks() -> dict[str, Check]:
    return {"fig3": claims_market.claims_fig3, "fig4": claims_market.claims_fig4,
            "fig5": claims_market.claims_fig5, "fig6": claims_market.claims_fig6,
            "fig8": claims_spread.claims_fig8, "fig10": claims_alpha.claims_fig10,
            "fig12": claims_alpha.claims_fig12, "conj1": claims_conj1.claims_conj1}


def check_of(study: str) -> Check:
    """The check of ``study`` (a study without claims has none: no rows)."""
    return _checks().get(study, lambda _df: [])


def judge_study(study: str, df: pd.DataFrame) -> list[Judged]:
    """The judged claims of one study's results table."""
    from aggregame.studies.registry import STUDY_MODULES

    module = STUDY_MODULES[study]
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


HEADS = ("sub-claim", "verdict", "effect per run: mean +- SE (n), z", "effect size",
         "criterion", "domain", "robustness (one choice changed at a time)",
         "paper; our numbers")


def judged_cells(j: Judged, domain: str) -> list[str | list[str]]:
    """The cells of one verdict row, as text (a list: one item per line)."""
    r = j.row
    verdict = j.verdict.value
    if j.flips:
        verdict += f" (changed by: {', '.join(j.flips)})"
    default = f"default: {r.finding}"
    if r.stat.n and math.isnan(r.stat.mean):  # a claim measured several ways
        effect = f"{r.measure} (rows below)"
    else:
        effect = f"{r.measure}: {r.stat}"
    if math.isfinite(r.stat.z):
        effect += f", z = {r.stat.z:.3g}"
    if r.missing:
        effect += f"; {r.missing} run(s) without equilibrium left out"
    notes = []
    if j.on_robust is not None:
        notes.append(f"default on the first {j.robust_runs} runs: "
                     f"{j.on_robust.finding}")
    notes += [j.variant_note(name, other) for name, other in j.variants
              if other is not None]
    idle = [name for name, other in j.variants if other is None]
    if idle:
        notes.append(f"{', '.join(idle)}: do not enter these games (same games as "
                     f"the default)")
    if not j.variants:
        notes.append("no robustness variant: no choice of the domain enters these "
                     "games")
    paper = [r.paper] + ([r.detail] if r.detail else [])
    return [r.claim, [verdict, default], effect,
            str(r.size) if r.size is not None else "-", r.criterion,
            r.domain or domain, notes, paper]
