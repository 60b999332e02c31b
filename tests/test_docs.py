"""The documentation is self-contained: every pointer in the package lands inside it.

Docstrings, comments, READMEs and data files may point to ``docs/<file>`` and to a
section of it as ``docs/<file>.md, section "<heading>"`` (the older form
``docs/<file>.md, "<heading>"`` is accepted too). These tests check that each such file
and heading exists, that docs/README.md indexes every file of docs/, and that nothing
points to notes outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Folders whose files are the package, its data, tests, benchmarks and docs.
FOLDERS = ("game", "cli", "models", "solvers", "studies", "data", "docs", "tests",
           "benchmarks", "examples", "scripts")
#: Top-level files read the same way.
TOP_FILES = ("README.md", "pyproject.toml", "bootstrap.sh")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".json", ".sh", ".txt", ".cfg", ".csv"}
#: Pointers to notes that live outside the repository. Spelled in pieces so this
#: file, which is scanned too, does not contain them.
FORBIDDEN = ("MODEL" + ".md", "PYOMO" + "-NOTES", "../" + "shared", "/work/" + "shared")

# A path into docs/ that is not part of a longer path (``mydocs/``, ``a/docs/``).
DOC_PATH = re.compile(r"(?<![\w./-])docs/([\w.-]+\.\w+)")
# ``docs/<file>.md, section "<heading>"`` or without ``section`` (the path may be in
# backticks), after joining lines; inside docs/ a bare ``section "<heading>"`` names a
# heading of the same file.
SECTION_REF = re.compile(
    r'(?:(?<![\w./-])docs/(?P<doc>[\w.-]+\.md)`?,\s+(?:section\s+)?'
    r'|(?<![\w-])section\s+)"(?P<title>[^"]+)"')
# ``docs/<file>.md, section`` not followed by a quoted heading: a malformed reference.
BARE_SECTION = re.compile(r'(?<![\w./-])docs/[\w.-]+\.md,\s+section\s+(?!")')
# A line break plus what continues a comment, a NumPy docstring or a Markdown list.
CONTINUATION = re.compile(r"[ \t]*\n[ \t]*(?:#:?[ \t]*|[*-][ \t]+)?")


def _text_files() -> list[Path]:
    files = [ROOT / name for name in TOP_FILES if (ROOT / name).is_file()]
    for folder in FOLDERS:
        base = ROOT / folder
        if not base.is_dir():
            continue
        files += sorted(p for p in base.rglob("*")
                        if p.is_file() and p.suffix in TEXT_SUFFIXES
                        and "__pycache__" not in p.parts
                        and "results" not in p.relative_to(ROOT).parts[:2])
    return files


def _joined(path: Path) -> str:
    """The file's text with each line break (and comment marker) turned into a space,
    so a reference wrapped over two lines reads as one."""
    return CONTINUATION.sub(" ", path.read_text(encoding="utf-8"))


def _headings(doc: Path) -> set[str]:
    return {line.lstrip("#").strip() for line in doc.read_text(encoding="utf-8")
            .splitlines() if re.match(r"#{1,6} ", line)}


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_files_are_found():
    files = {_where(p) for p in _text_files()}
    # A guard against a scan that silently reads nothing.
    for expected in ("README.md", "game/fairness.py", "solvers/inner/native.py",
                     "data/README.md", "tests/test_docs.py", "docs/model.md"):
        assert expected in files


def test_nothing_points_outside_the_repository():
    found = [f"{_where(p)}: {bad}" for p in _text_files()
             for bad in FORBIDDEN if bad in p.read_text(encoding="utf-8")]
    assert found == []


def test_every_docs_path_exists():
    mentioned = {(m.group(1), _where(p)) for p in _text_files()
                 for m in DOC_PATH.finditer(p.read_text(encoding="utf-8"))}
    assert len({name for name, _ in mentioned}) >= 3
    missing = sorted(f"{where}: docs/{name}" for name, where in mentioned
                     if not (DOCS / name).is_file())
    assert missing == []


def test_every_section_reference_names_a_heading():
    refs = [(m["doc"] or p.name, " ".join(m["title"].split()), _where(p))
            for p in _text_files() for m in SECTION_REF.finditer(_joined(p))
            if (m["doc"] or p.parent == DOCS) and not m["title"].startswith("<")]
    # Most docstrings point at a section; far fewer would mean the pattern broke.
    assert len(refs) >= 15
    assert {doc for doc, _, _ in refs} >= {"model.md", "pyomo.md"}
    headings = {doc: _headings(DOCS / doc) for doc in {d for d, _, _ in refs}
                if (DOCS / doc).is_file()}
    wrong = sorted(f'{where}: docs/{doc}, section "{title}"'
                   for doc, title, where in refs
                   if title not in headings.get(doc, set()))
    assert wrong == []


def test_section_references_quote_their_heading():
    bare = sorted(f"{_where(p)}: {m.group(0).strip()}" for p in _text_files()
                  for m in BARE_SECTION.finditer(_joined(p)))
    assert bare == []


def test_model_has_the_sections_the_package_relies_on():
    required = {"Game", "Inner problem", "The total derivative",
                "Allocation for a given lambda", "Priced-out members",
                "Quasiconcavity and the best response", "Max-min", "Leximin",
                "Total-surplus tie-break", "Stacked KKT", "Certificate",
                "Global best response"}
    assert required <= _headings(DOCS / "model.md")


def test_docs_index_lists_every_file():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\]\(([\w.-]+)\)", index))
    present = {p.name for p in DOCS.iterdir() if p.is_file() and p.name != "README.md"}
    assert listed == present


# -- the README's layout table ----------------------------------------------------
#: Top-level folders that are not the project's: tool state and build output
#: (hidden folders such as .venv and .ci are left out by their dot).
NOT_LAYOUT = {"build", "dist", "results", "__pycache__"}


def _layout_rows() -> dict[str, str]:
    """folder -> package column of the README's "## Layout" table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for folder in re.findall(r"`([\w.-]+)/`", cells[0]):
            rows[folder] = cells[1].strip("`")
    return rows


def _package_dirs() -> dict[str, str]:
    """folder -> package, from pyproject.toml's [tool.setuptools.package-dir]."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {folder: package for package, folder
            in config["tool"]["setuptools"]["package-dir"].items()}


def test_layout_table_lists_exactly_the_top_level_folders():
    rows = _layout_rows()
    assert len(rows) >= 8  # the table was found and read
    present = {p.name for p in ROOT.iterdir()
               if p.is_dir() and not p.name.startswith(".")
               and p.name not in NOT_LAYOUT and not p.name.endswith(".egg-info")}
    assert sorted(set(rows) - present) == []   # every folder listed exists
    assert sorted(present - set(rows)) == []   # every folder is listed


def test_layout_table_names_each_folders_package():
    rows, packages = _layout_rows(), _package_dirs()
    assert {folder: rows.get(folder) for folder in packages} == packages
    assert all(rows[folder] == "" for folder in set(rows) - set(packages))
