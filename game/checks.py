"""Strict checks of values read from files: one place for what a number, an integer, a
choice or a table is, and for the did-you-mean suggestion on unknown keys.

Each check raises :class:`Invalid` carrying the field's path (``players[2].alpha``)
and what was wrong; the scenario loader and :class:`~aggregame.settings.SolverSettings`
turn it into their own error with the file's name in front. TOML gives booleans as
``bool``, a subclass of ``int`` in Python: every numeric check refuses them first.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable, Mapping

from aggregame.errors import AggregameError


class Invalid(ValueError, AggregameError):
    """A value failed a check; ``field`` is its path, ``problem`` the rest."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


#: Longest name of a player or user (characters): names are printed in tables and
#: messages; a longer one is a mistake (a whole line pasted into a cell).
MAX_NAME_LENGTH = 200


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, on one line (``repr`` escapes
    control characters, so nothing raw from a file reaches the terminal)."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """``text`` with every character that is not printable (control characters such
    as ANSI escapes, NUL or a newline; format characters such as a right-to-left
    override) written as its escape (``\\x1b``), for messages on a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def name_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as a player's or user's name, or None.

    A name is a string of printable Unicode characters (``str.isprintable``: no
    control, format or separator character other than the space), not blank, of
    at most MAX_NAME_LENGTH characters.
    """
    if not isinstance(value, str):
        return f"must be a string, got {type_name(value)} {shown(value)}"
    if not value.strip():
        return "must not be empty"
    if len(value) > MAX_NAME_LENGTH:
        return (f"must have at most {MAX_NAME_LENGTH} characters, got "
                f"{len(value)} ({shown(value, 40)})")
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return (f"must hold printable characters only, got {bad!r} at position "
                f"{value.index(bad)} of {shown(value, 40)}")
    return None


def name(value: Any, where: str) -> str:
    """A valid name (see :func:`name_problem`), or Invalid naming ``where``."""
    problem = name_problem(value)
    if problem:
        raise Invalid(where, problem)
    return value


def type_name(value: Any) -> str:
    """The TOML word for the type of ``value``."""
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"),
                       (str, "a string"), (dict, "a table"), (list, "an array")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def suggestion(key: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'alpha'?)' for a near miss, else the list of allowed keys."""
    allowed = sorted(allowed)
    close = close_match(key, allowed)
    return f"did you mean {close!r}?" if close else f"expected one of {allowed}"


def close_match(key: str, allowed: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return close[0] if close else None


def no_unknown_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str,
                    what: str = "key") -> None:
    """Refuse the first key of ``table`` that is not in ``allowed``."""
    allowed = set(allowed)
    for key in table:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            hint = suggestion(str(key), allowed)
            raise Invalid(path, f"unknown {what} {key!r}; {hint}")


def table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(where, f"must be a table, got {type_name(value)} {shown(value)}")
    return value


def tables(value: Any, where: str) -> list[dict[str, Any]]:
    """An array of tables (``[[players]]``)."""
    if not isinstance(value, list):
        raise Invalid(where, f"must be an array of tables ([[{where}]]), got "
                             f"{type_name(value)} {shown(value)}")
    for k, item in enumerate(value):
        table(item, f"{where}[{k}]")
    return value


def number(value: Any, where: str) -> float:
    """A finite int or float; never a boolean or a string that looks like a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(where, f"must be a number, got {type_name(value)} {shown(value)}")
    if math.isnan(value):
        raise Invalid(where, f"must be a number, got {shown(value)}")
    if math.isinf(value):
        raise Invalid(where, f"must be finite, got {shown(value)}")
    return float(value)


def integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Invalid(where, f"must be an integer >= {minimum}, got "
                             f"{type_name(value)} {shown(value)}")
    return value


def string(value: Any, where: str, nonempty: bool = True) -> str:
    if not isinstance(value, str):
        raise Invalid(where, f"must be a string, got {type_name(value)} {shown(value)}")
    if nonempty and not value.strip():
        raise Invalid(where, "must not be empty")
    return value


def choice(value: Any, where: str, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    if not isinstance(value, str) or value not in choices:
        close = close_match(value, choices) if isinstance(value, str) else None
        hint = f"; did you mean {close!r}?" if close else ""
        raise Invalid(where, f"must be one of {choices}, got {shown(value)}{hint}")
    return value
