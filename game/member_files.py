"""Members as columns: read from CSV and Parquet files (pyarrow), or from a
scenario's inline users, and checked strictly, whole columns at a time.

:class:`~aggregame.members.MemberColumns` holds the members of one player (or of
one file) as arrays: names, a family code per member (an index into
:data:`~aggregame.members.FAMILIES`) and one float array per utility parameter (NaN
where a member's family has no such parameter). The rules are those of
data/README.md:

* a header with a ``name`` column, each column once, no unknown column;
* every row as many fields as the header (a blank line is skipped), quotes closed
  on the line that opens them (a quoted field never spans lines);
* names printable, at most ``checks.MAX_NAME_LENGTH`` characters, unique in a
  file; ``utility`` empty (quadratic) or a family's name;
* the family's parameters as plain decimal numbers (``1``, ``-0.5``, ``2.5e-3``:
  ASCII digits only, no ``1_0``, no ``inf`` or ``nan``), finite, in the family's
  range; nothing in another family's columns.

pyarrow reads every column as text (no type inference) and the checks are regular
expressions and comparisons over whole columns, so a file of 10^6 members is read
and checked in about a second; a row is looked at alone only to word an error
(``line 7: column 'b': must be a plain decimal number, got '1_0'``). A message
shows the offending cell, never the rest of the row.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from aggregame import checks
from aggregame.checks import Invalid, shown
from aggregame.members import FAMILIES, PARAMS, MemberColumns
from aggregame.utilities import UTILITY_FAMILIES

if TYPE_CHECKING:
    import pyarrow as pa

#: Columns a member file may have.
COLUMNS: tuple[str, ...] = ("name", "group", "utility") + PARAMS
#: A plain decimal number: optional sign, ASCII digits with an optional point, an
#: optional exponent. RE2 (pyarrow) and Python read ``[0-9]`` alike: ASCII only.
NUMBER = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
#: A name that needs no closer look: printable ASCII only (others: str.isprintable).
ASCII_NAME = r"^[\x20-\x7e]+$"
_BOM = b"\xef\xbb\xbf"
_NEWLINE = re.compile(r"\r\n|\r|\n")


def columns_from_specs(specs: Sequence[dict[str, Any]], where: Callable[[int], str]
                       ) -> MemberColumns:
    """The inline users of a scenario (tables already type-checked by the schema) as
    columns, checked like a file's; ``where(i)`` names user i in messages."""
    n = len(specs)
    family = np.array([FAMILIES.index(s.get("utility", "quadratic")) for s in specs],
                      dtype=np.int8)
    params = {p: np.array([float(s[p]) if p in s else np.nan for s in specs])
              for p in PARAMS}
    names = np.array([s.get("name", "") for s in specs], dtype=object)
    columns = MemberColumns(names, family, params)
    for i in range(n):
        problem = checks.name_problem(names[i])
        if problem:
            raise Invalid(f"{where(i)}.name", problem)
    _check_ranges(columns, lambda i, p: f"{where(i)}.{p}", lambda i, p: specs[i][p])
    return columns


def _check_ranges(columns: MemberColumns, where: Callable[[int, str], str],
                  cell: Callable[[int, str], Any]) -> None:
    """Each family's parameters in its range (Utility.param_signs): the first
    member out of range, as Invalid at ``where(i, param)`` showing ``cell(i,
    param)`` as written."""
    found = columns.range_problem()
    if found is not None:
        i, p = found.index, found.field
        cls = columns.family_class(i)
        sign = "> 0" if cls.param_signs[p] == "positive" else ">= 0"
        raise Invalid(where(i, p), f"must be {sign} for a {cls.family} utility, "
                                   f"got {shown(cell(i, p))}")


# -- files ---------------------------------------------------------------------
@dataclass(eq=False)
class MemberFile:
    """The checked members of one file and their groups; ``row(k)`` names data row
    k as the file counts it (``line 7`` of a CSV, ``row 6`` of a Parquet file)."""

    path: Path
    columns: MemberColumns
    groups: "pa.Array | None"
    row: Callable[[int], str]
    _by_group: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def select(self, group: str | int | None, where: str) -> MemberColumns:
        """Every member (``group`` None) or the members of one group, in file order;
        Invalid at ``where`` when the group has none."""
        if group is None:
            return self.columns
        if self.groups is None:
            raise Invalid(where, f"{self.path.name} has no 'group' column")
        index = self.group_index.get(str(group).strip())
        if index is None:
            raise Invalid(where, f"no row of {self.path.name} has group "
                                 f"{shown(group)}")
        return self.columns.take(index)

    @cached_property
    def group_index(self) -> dict[str, np.ndarray]:
        """Group -> the rows in it, found once for every player that selects one."""
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(self.groups)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(encoded.dictionary) + 1))
        return {str(value): order[bounds[k]:bounds[k + 1]]
                for k, value in enumerate(encoded.dictionary.to_pylist())}


def read_member_file(path: Path, raw: bytes) -> MemberFile:
    """The members of the file ``path`` (content ``raw``): Parquet if its name ends
    in ``.parquet``, else CSV; Invalid at the first bad header, row or cell."""
    if path.suffix.lower() == ".parquet":
        return _parquet(path, raw)
    return _csv(path, raw)


def release_file_memory() -> None:
    """Hand the memory pyarrow's pool keeps after reading files back to the
    system (mimalloc keeps freed blocks: ~90 MB after a file of 10^6 members,
    which a solve of that size would have on top of its own)."""
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()


def _csv(path: Path, raw: bytes) -> MemberFile:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    start = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        text = raw[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        at = err.start + start
        raise Invalid("content", f"not UTF-8 text (byte {at}: "
                                 f"{raw[at:at + 1]!r})") from None
    header, header_line = _header(text)
    if '"' in text:  # quotes: checked by Python's strict reader (pyarrow is lenient)
        _check_quoting(text, len(header))
    invalid: list[int] = []  # field counts of rows pyarrow found malformed

    def on_invalid_row(row: Any) -> str:
        invalid.append(row.actual_columns)
        return "skip"  # and reported below: never dropped

    try:
        table = pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(raw)[start:]),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in header},
                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid:  # worded from our own reading of the lines
        _check_field_counts(text, len(header))
        raise Invalid("content", "not a CSV file pyarrow can read") from None
    if invalid:
        _check_field_counts(text, len(header))  # names the first such line
        raise Invalid("content", f"{len(invalid)} row(s) whose fields do not match "
                                 f"the header's {len(header)}")
    if table.column_names != header:
        raise Invalid("header", "pyarrow and Python read the header differently; "
                                "write it without quotes")
    if table.num_rows == 0:
        raise Invalid("content", "a header and no rows: write one row per user")
    lines = _LineNumbers(text, header_line)
    return _members(path, {c: table.column(c) for c in header},
                    lambda k: f"line {lines[k]}")


def _header(text: str) -> tuple[list[str], int]:
    """The header's column names (checked) and its line number."""
    number, start = 1, 0
    for end in _NEWLINE.finditer(text):  # blank lines before the header are skipped
        if end.start() > start:
            break
        number, start = number + 1, end.end()
    line = text[start:].split("\n", 1)[0].split("\r", 1)[0]
    if not line:
        raise Invalid("content", "empty: write a header with a 'name' column and one "
                                 "row per user")
    try:
        columns = next(csv.reader([line], strict=True))
    except csv.Error as err:
        raise Invalid("header", f"not a CSV line: {err}") from None
    _check_header(columns)
    return columns, number


def _check_header(columns: list[str]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column not in COLUMNS:
            raise Invalid(f"column {shown(column, 40)}",
                          f"unknown column; {checks.suggestion(column, COLUMNS)}")
        if column in seen:
            raise Invalid(f"column {column!r}", "appears twice in the header")
        seen.add(column)
    if "name" not in seen:
        raise Invalid("header", f"needs a 'name' column (it has {len(columns)} "
                                f"column{'' if len(columns) == 1 else 's'})")


def _check_quoting(text: str, width: int) -> None:
    """Quotes closed where they open, no field spanning lines, every row as wide as
    the header: Python's csv reader in strict mode, line by line."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for row in reader:
            if row and any("\n" in f or "\r" in f for f in row):
                raise Invalid(f"line {start}", "a quoted field runs past the end of "
                                               "the line (a quote not closed?)")
            if row and len(row) != width:
                raise Invalid(f"line {start}", _width_problem(len(row), width))
            start = reader.line_num + 1
    except csv.Error as err:
        problem = ("a quote is not closed" if "end of data" in str(err) else
                   "a NUL character" if "NUL" in str(err) else f"bad quoting: {err}")
        raise Invalid(f"line {start}", problem) from None


def _check_field_counts(text: str, width: int) -> None:
    """The first line (no quotes in the file) whose field count is not the
    header's, as Invalid."""
    for number, line in enumerate(_NEWLINE.split(text), start=1):
        if line and line.count(",") + 1 != width:
            raise Invalid(f"line {number}", _width_problem(line.count(",") + 1, width))


def _width_problem(count: int, width: int) -> str:
    return (f"{count} field{'' if count == 1 else 's'}, the header has {width} "
            f"(a comma inside a name needs quotes)" if count > width else
            f"{count} field{'' if count == 1 else 's'}, the header has {width}")


class _LineNumbers:
    """The line of each data row (blank lines are skipped), counted on demand: only
    an error needs one."""

    def __init__(self, text: str, header_line: int) -> None:
        self._text, self._header, self._lines = text, header_line, None

    def __getitem__(self, k: int) -> int:
        if self._lines is None:
            self._lines = [n for n, line in enumerate(_NEWLINE.split(self._text),
                                                      start=1)
                           if line and n > self._header]
        return self._lines[k]


def _parquet(path: Path, raw: bytes) -> MemberFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError, ValueError) as err:
        message = checks.shown(" ".join(str(err).split()), 120).strip("'\"")
        raise Invalid("content", f"not a Parquet file pyarrow can read ({message})"
                      ) from None
    _check_header(list(table.column_names))
    if table.num_rows == 0:
        raise Invalid("content", "no rows: write one row per user")
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            columns[name] = column.cast(pa.string()).fill_null("")
        elif name in PARAMS and (pa.types.is_integer(kind) or
                                 pa.types.is_floating(kind)):
            columns[name] = column.cast(pa.float64())
        elif name == "group" and pa.types.is_integer(kind):
            columns[name] = column.cast(pa.string()).fill_null("")
        else:
            expected = "numbers or strings" if name in PARAMS else "strings"
            raise Invalid(f"column {name!r}", f"has type {kind}; expected {expected}")
    return _members(path, columns, lambda k: f"row {k + 1}")


# -- checks over whole columns -------------------------------------------------------
def _members(path: Path, table: dict[str, Any], row: Callable[[int], str]
             ) -> MemberFile:
    """Check every column of a file's table (text, or numbers from Parquet) and
    return its members; the first bad cell (in row order) is the error."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = {name: pc.utf8_trim_whitespace(col).combine_chunks()
            for name, col in table.items() if col.type == pa.string()}
    n = len(next(iter(table.values())))
    names = text["name"]
    problems = _Problems(row)
    empty = _np(pc.equal(pc.utf8_length(names), 0))
    problems.add(empty, "name", lambda i: "must not be empty")
    plain = _np(pc.match_substring_regex(names, ASCII_NAME)) & \
        _np(pc.less_equal(pc.utf8_length(names), checks.MAX_NAME_LENGTH))
    look = np.flatnonzero(~plain & ~empty)
    if look.size:  # non-ASCII (or long) names: Python's own definition decides
        looked = names.take(look).to_pylist()
        bad = np.zeros(n, dtype=bool)
        bad[look] = [checks.name_problem(v) is not None for v in looked]
        problems.add(bad, "name", lambda i: checks.name_problem(_cell(names, i)))
    family = _families(text.get("utility"), n, problems)
    params = {}
    for p in PARAMS:
        params[p] = _parameter(p, table.get(p), text.get(p), family, problems)
    problems.raise_first()
    name_array = names.to_numpy(zero_copy_only=False)
    _unique(name_array, row)
    columns = MemberColumns(name_array, family, params)
    _check_ranges(columns, lambda i, p: f"{row(i)}: column {p!r}",
                  lambda i, p: _cell(text[p], i) if p in text else params[p][i])
    return MemberFile(path, columns, text.get("group"), row)


def _families(utility: Any, n: int, problems: "_Problems") -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if utility is None:
        return np.zeros(n, dtype=np.int8)
    codes = pc.index_in(utility, value_set=pa.array(("",) + FAMILIES))
    unknown = _np(pc.is_null(codes))
    problems.add(unknown, "utility", lambda i: (
        f"must be one of {sorted(FAMILIES)}, got {shown(_cell(utility, i))}"))
    codes = _np(pc.fill_null(codes, 1)).astype(np.int8)
    return np.maximum(codes - 1, 0).astype(np.int8)  # "" (code 0) is quadratic


def _parameter(p: str, column: Any, text: Any, family: np.ndarray,
               problems: "_Problems") -> np.ndarray:
    """Parameter ``p`` of every member (NaN where its family has none), checking
    the cells: numbers where the family needs ``p``, empty elsewhere."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(family)
    needs = np.isin(family, [k for k, f in enumerate(FAMILIES)
                             if p in UTILITY_FAMILIES[f].param_names])
    of_family = lambda i: FAMILIES[family[i]]  # noqa: E731
    if column is None:
        if needs.any():
            i = int(np.argmax(needs))
            raise Invalid("header", f"no column {p!r}, which the {of_family(i)} "
                                    f"utility of {problems.row(i)} needs")
        return np.full(n, np.nan)
    if text is None:  # numbers (Parquet): null or NaN means empty
        values = column.to_numpy(zero_copy_only=False).astype(float)
        present = ~np.isnan(values)
        shown_cell = lambda i: float(values[i])  # noqa: E731
    else:
        present = ~_np(pc.equal(pc.utf8_length(text), 0))
        number = _np(pc.match_substring_regex(text, NUMBER))
        problems.add(needs & present & ~number, p, lambda i: (
            f"must be a plain decimal number (ASCII digits, '.', an exponent), got "
            f"{shown(_cell(text, i))}"))
        values = _np(pc.cast(pc.if_else(pa.array(number), text, "nan"),
                             pa.float64())).astype(float)
        shown_cell = lambda i: _cell(text, i)  # noqa: E731
    problems.add(needs & ~present, p, lambda i: (
        f"must be a number for a {of_family(i)} utility, got an empty cell"))
    # Present cells that are numbers: NaN is not present (Parquet) or not a number.
    problems.add(needs & present & ~np.isnan(values) & ~np.isfinite(values), p,
                 lambda i: f"must be finite, got {shown(shown_cell(i))}")
    problems.add(~needs & present, p, lambda i: (
        f"does not apply to a {of_family(i)} utility, got {shown(shown_cell(i))}"))
    return np.where(needs, values, np.nan)


def _unique(names: np.ndarray, row: Callable[[int], str]) -> None:
    if len(set(names.tolist())) == len(names):
        return
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            raise Invalid(f"{row(i)}: column 'name'", f"{shown(name, 40)} repeats "
                                                      f"{row(first[name])} (a name "
                                                      f"identifies one user)")
        first[name] = i


class _Problems:
    """Bad-cell masks over the rows; the error is the first bad row's first
    problem (in the order the checks were added)."""

    def __init__(self, row: Callable[[int], str]) -> None:
        self.row = row
        self._found: list[tuple[int, int, str, Callable[[int], str]]] = []

    def add(self, mask: np.ndarray, column: str, problem: Callable[[int], str]
            ) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            self._found.append((i, len(self._found), column, problem))

    def raise_first(self) -> None:
        if self._found:
            i, _, column, problem = min(self._found, key=lambda f: f[:2])
            raise Invalid(f"{self.row(i)}: column {column!r}", problem(i))


def _cell(column: Any, i: int) -> Any:
    return column[int(i)].as_py()


def _np(array: Any) -> np.ndarray:
    """A pyarrow boolean or numeric (chunked) array as numpy."""
    return array.to_numpy(zero_copy_only=False) if hasattr(array, "to_numpy") \
        else np.asarray(array)
