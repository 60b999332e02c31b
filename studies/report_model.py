"""The report's content, once: sections with their text, figures, tables and judged
claims. studies/report.py renders it as HTML, studies/report_md.py as Markdown, so
the two say the same thing."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aggregame.studies.claims import UNTESTED
from aggregame.studies.common import DEFAULT, MAX_ROUNDS
from aggregame.studies.robustness import Judged, judge_study
from aggregame.studies.stats import (LOCATION, RULES, SPREAD, THRESHOLDS, Stat,
                                     Verdict)
from aggregame.studies.variants import (DEFAULT_NAME, ROBUST_RUNS, VARIANTS,
                                        default_table, variant_table)

#: Study folders of the report, in the paper's order.
ORDER = ("fig3", "fig4", "fig5", "fig6", "fig8", "fig10", "fig12", "conj1")
#: Section titles by study.
TITLES = {"fig3": "Fig. 3: small users alone, convergence",
          "fig4": "Fig. 4: two aggregators and a large user, convergence",
          "fig5": "Fig. 5: the large user's size",
          "fig6": "Figs. 6-7: surplus and consumption by configuration",
          "fig8": "Figs. 8-9: distributions of consumption and surplus",
          "fig10": "Figs. 10-11: the aggregators' alpha",
          "fig12": "Figs. 12-13: the number of aggregators",
          "conj1": "Conjecture 1 and Sec. IV-B: uniqueness"}
#: The domain a study's games are drawn in, as its rows state it.
DOMAINS = {"fig3": DEFAULT.label(aggregators=False, maxmin=False, large=False),
           "fig5": "K on the axis (0..400) and K = sum of b/a; no aggregator: eps, "
                   "rule and max-min reading do not enter"}
UNITS = ("Units: consumption x and purchases y in energy units; utility U, surplus "
         "s = U(x) - p x and eps in money units ($); price p = 0.001 Y in $ per energy "
         "unit; K = b/a of the large user in energy units. 'n' is the number of runs "
         "(seeds) behind a number, 'SE' its standard error over runs, z = mean / SE.")


@dataclass
class Section:
    """One part of the report."""

    key: str
    title: str
    text: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    judged: list[Judged] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    domain: str = ""


def _load(out: Path, study: str) -> tuple[pd.DataFrame, dict] | None:
    folder = out / study
    if not (folder / "results.csv").exists():
        return None
    meta = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
    return pd.read_csv(folder / "results.csv"), meta


def _runs_text(meta: dict, study: str) -> str:
    from aggregame.studies.registry import STUDY_MODULES

    module = STUDY_MODULES[study]
    have, full = int(meta["settings"]["runs"]), int(module.DEFAULT_RUNS)
    robust = min(have, ROBUST_RUNS)
    size = "full size" if have >= full else f"QUICK: {have} of the paper's {full} runs"
    return (f"{have} run(s) per configuration ({size}), seed {meta['settings']['seed']}"
            f"; robustness variants on the first {robust} run(s).")


def study_section(out: Path, study: str) -> Section:
    """The section of one study: its figures, judged claims and tables."""
    section = Section(study, TITLES[study], domain=DOMAINS.get(study, DEFAULT.label()))
    loaded = _load(out, study)
    if loaded is None:
        section.text.append(f"Not run. Run: aggregame study {study} --out DIR, DIR "
                            f"being this page's folder")
        return section
    df, meta = loaded
    folder = out / study
    section.text.append(_runs_text(meta, study))
    section.figures = sorted(folder.glob("*.png"))
    section.files = [folder / "results.csv", *sorted(folder.glob("*.svg"))]
    section.judged = judge_study(study, df)
    section.tables += EXTRA_TABLES.get(study, lambda _df: [])(df)
    if study == "conj1":
        section.text += conj1_text(df)
    return section


def _cell(values: pd.Series, total: int) -> str:
    stat = Stat.of(values.dropna().to_numpy(float))
    failed = total - stat.n
    return f"{stat}" + (f"; {failed} without equilibrium" if failed else "")


def domain_table(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """``value`` (mean +- SE over runs) per configuration in every domain, all on the
    robustness runs."""
    cols = {}
    for name in [DEFAULT_NAME, *[v.name for v in VARIANTS]]:
        if name != DEFAULT_NAME and name not in set(df["domain"]):
            continue
        table = variant_table(df, name, keys)
        table = table.assign(v=table[value].where(table["equilibrium"].astype(bool)))
        per = table.groupby([*keys, "run"], sort=False)["v"].mean()
        cols[name] = per.groupby(level=list(range(len(keys))), sort=False).apply(
            lambda g: _cell(g, len(g)))
    frame = pd.DataFrame(cols)
    frame.index.names = keys
    return frame


def _fig6_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [_fig6_distribution(df),
            ("Average small-user surplus [$] per configuration and domain (robustness "
             "runs): K = 400 against the default K = sum of b/a, and the other "
             "choices", domain_table(df, ["config"], "avg_surplus")),
            ("Average small-user consumption [energy units], likewise",
             domain_table(df, ["config"], "avg_consumption"))]


def _distribution(per_config: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """Each measure's mean over runs (runs without equilibrium left out), per
    (configuration, variable)."""
    rows = []
    for (config, variable), per in per_config.items():
        row = {"configuration": config, "variable": variable}
        row.update({m: f"{per[m].mean():.4g}" for m in (*LOCATION, *SPREAD)})
        row["runs"] = int(per["mean"].notna().sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index(["configuration", "variable"])


def _fig8_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    from aggregame.studies.claims_spread import per_run
    from aggregame.studies.fig8 import CONFIGS

    base = default_table(df)
    table = _distribution({(c, v): per_run(base, c, v) for c in CONFIGS
                           for v in ("consumption", "surplus")})
    return [("Distributions of small users' consumption and surplus, default domain: "
             "each measure computed per run over the small users, then averaged over "
             "runs", table)]


def _fig6_distribution(df: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    from aggregame.studies.fig6 import CONFIGS

    base = default_table(df)
    base = base[base["equilibrium"].astype(bool)]
    per = {(c, "surplus"): base[base["config"] == c].rename(
        columns=lambda k: k[2:] if k.startswith("s_") else f"_{k}")
        for c in CONFIGS}
    return ("Distribution of small users' surplus per configuration, default domain "
            "(per run, then averaged over runs)", _distribution(per))


def _fig10_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    per_run = df.assign(total=df["avg_surplus"] * df["members"])
    g = per_run.groupby(["domain", "variant", "alpha", "run"], sort=False)
    avg = (g["total"].sum(min_count=1) / g["members"].sum()).rename("avg_surplus")
    ok = g["equilibrium"].all().rename("equilibrium")
    flat = pd.concat([avg, ok], axis=1).reset_index()
    flat["alpha"] = [("max-min" if math.isinf(a) else f"{a:g}") for a in flat["alpha"]]
    return [("Average small-user surplus [$] in every domain (robustness runs): eps "
             "sensitivity, K = 400, the viable rule and max-min's reading",
             domain_table(flat, ["variant", "alpha"], "avg_surplus"))]


def _fig12_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [("Average small-user surplus [$] in every domain (robustness runs)",
             domain_table(df, ["objective", "aggregators"], "avg_surplus"))]


def _conj1_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    from aggregame.studies.conj1 import COUNTER_FAMILY

    inst = df[df["family"] != COUNTER_FAMILY]
    counts = {}
    for name in [DEFAULT_NAME, *[v.name for v in VARIANTS]]:
        if name != DEFAULT_NAME and name not in set(inst["domain"]):
            continue
        table = variant_table(inst, name, ["family"])
        counts[name] = table.groupby("family", sort=False)["decision"].apply(
            lambda d: ", ".join(f"{n} {k}" for k, n in d.value_counts().items()))
    frame = pd.DataFrame(counts)
    frame.index.name = "family"
    return [("Decisions per family of small instances, in every domain (robustness "
             "runs; a variant that does not enter a family's games shares the "
             f"default's; method: {', '.join(sorted(set(inst['method'])))})", frame)]


EXTRA_TABLES = {"fig6": _fig6_tables, "fig8": _fig8_tables, "fig10": _fig10_tables,
                "fig12": _fig12_tables, "conj1": _conj1_tables}


def conj1_text(df: pd.DataFrame) -> list[str]:
    from aggregame.studies.claims_conj1 import counterexample_text
    from aggregame.studies.conj1 import COUNTER_FAMILY

    counter = df[df["family"] == COUNTER_FAMILY]
    text = ["Conjecture 1 claims uniqueness under the setup of Theorem 2 (Assumption "
            "1). data/two_equilibria.toml satisfies it as written - two users with "
            "U = 10 x - 1e-4 x^2 (concave, U(0) = 0) and p = 9.9 (1 - exp(-Y / 50)) "
            "(continuous, increasing, the derivative of a convex cost) - and has two "
            "equilibria."]
    if len(counter):
        text.append(f"Found by the aggregate-space engine "
                    f"({counter.iloc[0]['verdict']}) and certified: "
                    f"{counterexample_text(counter.iloc[0])}. "
                    f"Conjecture 1 is therefore refuted as stated; whether it holds "
                    f"for the paper's linear price is the question below.")
    text.append("The linear-price class (the paper's own games, small instances): each "
                "instance is decided by the aggregate-space engine "
                "(studies/uniqueness.decide_uniqueness): every equilibrium total is a "
                "root of Z(Y) = sum_j b_j(Y) - Y over the players' backward replies; "
                "the engine certifies each root's profile and proves it found them "
                "all where a theorem or a validated bound covers the players. "
                "'Proved unique' is said only then; where it finds equilibria without "
                "that proof the instance is undecided ('found N'), never unique. "
                "Users alone and social-welfare (alpha = 0) aggregators are reported "
                "apart from alpha > 0 and max-min aggregators.")
    return text


def header_text() -> list[str]:
    variants = "; ".join(f"{v.name} ({v.choice.value})" for v in VARIANTS)
    return [
        f"Default domain of every figure and verdict: {DEFAULT.label()}. K = sum of "
        f"b/a follows the paper's general rule (Sec. IV-A: the large user 'as large as "
        f"the sum of all small users'; Fig. 6: 'market power equivalent to 200 small "
        f"users'); K = 400, the top of Fig. 5's range, is a sensitivity. Max-min read "
        f"as leximin is the limit of alpha-fairness as alpha grows.",
        f"Robustness: each verdict is recomputed in the domains that differ from the "
        f"default in one choice ({variants}), on the first {ROBUST_RUNS} runs of each "
        f"study; a variant runs only where its choice changes the game, elsewhere its "
        f"table takes the default's rows. One choice at a time keeps the report within "
        f"minutes on two cores (all combinations would be 23 domains).",
        f"Runs without a certified equilibrium (the dynamics cycled, hit the limit of "
        f"{MAX_ROUNDS} rounds, or ended at a point whose regret is above tolerance) "
        f"are kept in the results, counted in every row they touch, and never "
        f"averaged in.",
        UNITS,
    ]


def rules() -> list[tuple[str, str]]:
    return [(v.value, RULES[v]) for v in Verdict] + [("size words", THRESHOLDS)]


def untested() -> pd.DataFrame:
    return pd.DataFrame([{"figure": f, "claim": c, "verdict": "untested", "why": why}
                         for f, c, why in UNTESTED])


def sections(out: Path) -> list[Section]:
    """Every study's section, in the paper's order."""
    return [study_section(out, study) for study in ORDER]
