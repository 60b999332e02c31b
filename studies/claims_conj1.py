"""Conjecture 1 (uniqueness) and Sec. IV-B's claim that best response reaches the same
equilibrium from any start, judged on the conj1 study's table."""

from __future__ import annotations

import json
import math

import pandas as pd

from aggregame.studies.claims import Row
from aggregame.studies.conj1 import COUNTER_FAMILY
from aggregame.studies.stats import Finding, Stat, Verdict
from aggregame.studies.uniqueness import Uniqueness

CONJECTURE = ("the Nash equilibrium is unique under the setup of Theorem 2 "
              "(Assumption 1: concave utilities with U(0) = 0, a continuous increasing "
              "price)")


def counterexample_text(row: pd.Series) -> str:
    """The two equilibria of the counterexample, with their evidence, in one line."""
    profiles = json.loads(row["profiles"])
    prices = json.loads(row["prices"])
    proofs = json.loads(row["global"])
    bounds = json.loads(row["global_bound"])
    return "; ".join(f"y = ({', '.join(f'{v:.6g}' for v in y)}), price {p:.6g}, "
                     f"global certificate {g} (relative regret <= {b:.2g})"
                     for y, p, g, b in zip(profiles, prices, proofs, bounds))


def _as_stated(df: pd.DataFrame) -> Row:
    counter = df[df["family"] == COUNTER_FAMILY]
    if counter.empty:
        finding = Finding(Verdict.UNTESTED, "the counterexample was not run")
        detail = ""
    else:
        row = counter.iloc[0]
        proved = [g == "proved" for g in json.loads(row["global"])]
        detail = counterexample_text(row)
        if row["decision"] == Uniqueness.NOT_UNIQUE.value and len(proved) >= 2 and \
                all(proved):
            finding = Finding(Verdict.REFUTED, f"the aggregate-space engine: "
                                               f"{row['verdict']}; each equilibrium "
                                               f"proved by SCIP's global certificate")
        else:
            finding = Finding(Verdict.UNTESTED, f"the counterexample did not "
                                                f"reproduce: {row['evidence']}")
    return Row("conj1-as-stated", "Conjecture 1", CONJECTURE, "distinct equilibria of "
               "data/two_equilibria.toml (two users, concave saturating price)",
               Stat(float(len(json.loads(counter.iloc[0]["profiles"]))) if len(counter)
                    else math.nan, math.nan, 1 if len(counter) else 0), None,
               "one game satisfying the hypotheses with two certified equilibria "
               "refutes it", finding, "conj1", detail=detail,
               paper="text: 'supported by extensive simulation evidence'",
               domain="data/two_equilibria.toml as shipped: two users alone (no large "
                      "user, no aggregator: no choice of the domain enters)")


def _counts(inst: pd.DataFrame) -> tuple[int, int, int, int]:
    """(instances, proved unique, not unique, undecided or no equilibrium)."""
    counts = inst["decision"].value_counts()
    proved, multi = (int(counts.get(u.value, 0)) for u in (Uniqueness.PROVED_UNIQUE,
                                                          Uniqueness.NOT_UNIQUE))
    return len(inst), proved, multi, len(inst) - proved - multi


def _linear_class(df: pd.DataFrame, alpha0: bool) -> Row:
    inst = df[(df["family"] != COUNTER_FAMILY) & (df["alpha0"].astype(bool) == alpha0)]
    n, proved, multi, undecided = _counts(inst)
    families = ", ".join(dict.fromkeys(inst["family"])) or "none run"
    verdicts = "; ".join(f"{k}: {v}" for k, v in
                         inst["verdict"].value_counts().items()) or "none"
    if multi:
        finding = Finding(Verdict.REFUTED, f"{multi} instance(s) with two or more "
                                           f"certified equilibria")
    elif n and proved == n:
        finding = Finding(Verdict.SUPPORTED, f"proved unique on all {n} instances")
    else:
        finding = Finding(Verdict.UNTESTED, f"{undecided} of {n} instances undecided "
                                            f"(equilibria found, not proved to be all)")
    which = ("users alone and social-welfare (alpha = 0) aggregators" if alpha0 else
             "alpha > 0 and max-min aggregators")
    key = "conj1-linear-alpha0" if alpha0 else "conj1-linear-other"
    proofs = inst.loc[inst["decision"] == Uniqueness.PROVED_UNIQUE.value, "why"]
    why = str(proofs.iloc[0]) if len(proofs) else ""
    return Row(key, "Conjecture 1", f"restricted to the paper's linear price p = "
               f"0.001 Y, {which} (small instances): the equilibrium is unique",
               "instances proved unique / not unique / undecided by the aggregate-"
               "space engine", Stat(float(proved), math.nan, n), None,
               "refuted by one instance with two certified equilibria; supported "
               "only if every instance is proved unique (an equilibrium found is not "
               "a proof that it is the only one)", finding, "conj1",
               detail=f"{proved} proved unique, {multi} not unique, {undecided} "
                      f"undecided, of {n} ({families}); engine verdicts: {verdicts}"
                      + (f"; the engine's proof on the first: {why}" if why else ""),
               paper="text: 'supported by extensive simulation evidence'")


def _same_end(df: pd.DataFrame) -> Row:
    inst = df[df["family"] != COUNTER_FAMILY]
    good = (inst["br_certified"] == inst["br_runs"]) & (inst["br_clusters"] == 1)
    n, k = len(inst), int(good.sum())
    counter = df[df["family"] == COUNTER_FAMILY]
    note = ""
    if len(counter):
        c = counter.iloc[0]
        note = (f"; on the counterexample best response from {int(c['br_runs'])} "
                f"random starts ends at {int(c['br_clusters'])} different equilibria")
    finding = (Finding(Verdict.SUPPORTED, f"all {n} instances") if n and k == n else
               Finding(Verdict.NOT_SUPPORTED, f"{n - k} of {n} instances end in no "
                                              f"certified equilibrium or in several")
               if n else Finding(Verdict.NOT_SUPPORTED, "no instance"))
    failed = inst.loc[~good, "family"].tolist()
    return Row("sec4b-same-equilibrium", "Sec. IV-B", "best response always converges "
               "to the same equilibrium, regardless of how it is initiated",
               "instances whose best-response runs from random starts all end in one "
               "certified equilibrium", Stat(float(k), math.nan, n), None,
               "every instance", finding, "conj1",
               detail=f"{k} of {n}" + (f" (not: {', '.join(failed)})" if failed else "")
               + note, paper="text: 'always converges to the same Nash equilibrium'",
               missing=int((inst["br_certified"] < inst["br_runs"]).sum()))


def claims_conj1(df: pd.DataFrame) -> list[Row]:
    if df.empty:
        return []
    return [_as_stated(df), _linear_class(df, alpha0=True),
            _linear_class(df, alpha0=False), _same_end(df)]
