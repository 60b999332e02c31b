"""The report in Markdown (``studies.md``): the same sections, verdict tables, domain
tables and untested claims as report.html, without the images (each section names
its figure files)."""

from __future__ import annotations

import pandas as pd

from aggregame.studies.report_model import Section, header_text, rules, untested
from aggregame.studies.robustness import HEADS, judged_cells


def _md(text: object) -> str:
    """One table cell: pipes escaped, no line breaks."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _cell(cell: str | list[str]) -> str:
    return "<br>".join(_md(c) for c in cell) if isinstance(cell, list) else _md(cell)


def _frame(df: pd.DataFrame) -> str:
    df = df.reset_index()
    lines = ["| " + " | ".join(_md(c) for c in df.columns) + " |",
             "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _section(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""]
    lines += [*(f"{t}\n" for t in section.text)]
    lines.append(f"Domain: {section.domain}. Figures: "
                 f"{', '.join(p.name for p in section.figures) or 'none'}.\n")
    if section.judged:
        lines += ["| " + " | ".join(HEADS) + " |", "|" + "---|" * len(HEADS)]
        for j in section.judged:
            cells = judged_cells(j, section.domain)
            if j.row.group:
                cells[0] = "- " + cells[0]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    for title, df in section.tables:
        lines += [f"### {title}", "", _frame(df), ""]
    return lines


def render_markdown(all_sections: list[Section], versions: dict[str, str]) -> str:
    """The whole report as Markdown."""
    lines = ["# Section IV studies: every sub-claim judged", "",
             "Written by `aggregame report` from the study folders of one run (do not "
             "edit by hand).", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
             ""]
    lines += [*(f"{t}\n" for t in header_text())]
    lines += ["## Verdicts and how they are decided", ""]
    lines += [f"- **{k}**: {v}" for k, v in rules()] + [""]
    lines += ["## Every claim", "", "| figure | claim | verdict |", "|---|---|---|"]
    lines += [f"| {_md(j.row.figure)} | {_md(j.row.claim)} | {j.verdict.value} |"
              for s in all_sections for j in s.judged if not j.row.group] + [""]
    for section in all_sections:
        lines += _section(section)
    lines += ["## Claims not tested", "", _frame(untested().set_index("figure")), ""]
    return "\n".join(lines)
