"""A player's members as columns, and the read-only view of them as User objects.

A game of 10^6 members holds no object per member: :class:`MemberColumns` keeps the
names (an object array of str), a family code per member (an index into
:data:`FAMILIES`) and one float64 array per utility parameter (NaN where a member's
family has no such parameter). Every backend reads these arrays (through
``Player.families``); :class:`Members`, the ``Player.members`` sequence, builds a
:class:`~aggregame.utilities.User` only when one is asked for, so small-game code and
users' scripts keep reading ``player.members[0].utility``.

The checks a User makes of itself hold for columns too, made over whole arrays
(:meth:`MemberColumns.problem`): printable names of at most
``checks.MAX_NAME_LENGTH`` characters, unique; each family's parameters finite and
in its range (``Utility.param_signs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from aggregame import checks
from aggregame.checks import shown
from aggregame.utilities import UTILITY_FAMILIES, User, Utility

#: The utility families in code order: a member's family code indexes this tuple.
FAMILIES: tuple[str, ...] = tuple(UTILITY_FAMILIES)
#: Each family's class, in code order.
FAMILY_CLASSES: tuple[type[Utility], ...] = tuple(UTILITY_FAMILIES.values())
#: Every utility parameter, each a column of MemberColumns.params.
PARAMS: tuple[str, ...] = tuple(sorted({p for cls in UTILITY_FAMILIES.values()
                                        for p in cls.param_names}))
#: Users converted at a time when a view is iterated (bounded memory, few calls).
_CHUNK = 4096


@dataclass(frozen=True)
class MemberProblem:
    """What is wrong with one member of some columns: its index, the field
    (``name`` or a parameter) and the problem, worded without the member's place
    (the caller names the player, the file or the row)."""

    index: int
    field: str
    problem: str


@dataclass(frozen=True, eq=False)
class MemberColumns:
    """Members as columns: ``names`` (an object array of str), ``family`` (int8
    codes into FAMILIES) and ``params`` (every name of PARAMS -> a float64 array,
    NaN where a member's family has no such parameter).

    The arrays are made read-only: players built from the same columns share them.
    Values are checked by :meth:`problem` (a Player calls it); the constructor
    checks shapes and codes only. :meth:`build` takes family names and leaves out
    parameters no member needs.
    """

    names: np.ndarray
    family: np.ndarray
    params: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        names = _readonly(np.asarray(self.names, dtype=object))
        family = _readonly(np.asarray(self.family, dtype=np.int8))
        n = len(family)
        if names.shape != (n,):
            raise checks.Invalid("members", f"{len(names)} names for {n} family "
                                            f"codes (one each)")
        unknown = sorted(set(self.params) - set(PARAMS))
        if unknown:
            raise checks.Invalid(f"members.{unknown[0]}", f"not a utility parameter; "
                                                          f"expected one of {PARAMS}")
        params = {}
        for p in PARAMS:
            given = self.params.get(p)
            column = np.full(n, np.nan) if given is None else np.asarray(given,
                                                                         dtype=float)
            if column.shape != (n,):
                raise checks.Invalid(f"members.{p}", f"{column.size} values for {n} "
                                                     f"members (one each)")
            params[p] = _readonly(column)
        if n and (family.min() < 0 or family.max() >= len(FAMILIES)):
            raise checks.Invalid("members.family", f"codes index {FAMILIES}, got "
                                                   f"{int(family.max())}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "params", params)

    @classmethod
    def build(cls, names: Sequence[str], params: Mapping[str, Any],
              families: str | Sequence[str] = "quadratic") -> "MemberColumns":
        """Columns from names, parameter arrays by name (e.g. ``a=..., b=...``) and
        each member's family name (one name for all). Checked by the Player that
        takes them."""
        lookup = {f: k for k, f in enumerate(FAMILIES)}
        single = isinstance(families, str)
        for fam in [families] if single else dict.fromkeys(families):
            if fam not in lookup:
                raise checks.Invalid("members.utility", f"must be one of "
                                                        f"{sorted(FAMILIES)}, got "
                                                        f"{shown(fam)}")
        codes = np.full(len(names), lookup[families], dtype=np.int8) if single else \
            np.array([lookup[f] for f in families], dtype=np.int8)
        return cls(np.asarray(list(names), dtype=object), codes, dict(params))

    @classmethod
    def from_users(cls, users: Sequence[User]) -> "MemberColumns":
        """Columns of ``users`` (each a User of a family in FAMILIES)."""
        code_of = {c: k for k, c in enumerate(FAMILY_CLASSES)}
        n = len(users)
        names = np.empty(n, dtype=object)
        family = np.empty(n, dtype=np.int8)
        params = {p: np.full(n, np.nan) for p in PARAMS}
        for i, user in enumerate(users):
            utility = user.utility
            code = code_of.get(type(utility))
            if code is None:
                raise checks.Invalid(
                    f"members[{i}].utility", f"{type(utility).__name__} is not a "
                                             f"utility family of aggregame "
                                             f"({sorted(FAMILIES)})")
            names[i], family[i] = user.name, code
            for p in utility.param_names:
                params[p][i] = getattr(utility, p)
        return cls(names, family, params)

    def __len__(self) -> int:
        return len(self.family)

    def __repr__(self) -> str:
        counts = ", ".join(f"{int(np.sum(self.family == k))} {name}"
                           for k, name in enumerate(FAMILIES)
                           if np.any(self.family == k))
        return f"MemberColumns({len(self)} members: {counts})"

    def take(self, index: Any) -> "MemberColumns":
        """The members at ``index`` (an index array or a slice, in that order)."""
        return MemberColumns(self.names[index], self.family[index],
                             {k: v[index] for k, v in self.params.items()})

    # -- one member -------------------------------------------------------------------
    def family_class(self, i: int) -> type[Utility]:
        """The utility class of member i."""
        return FAMILY_CLASSES[int(self.family[i])]

    def member_params(self, i: int) -> dict[str, float]:
        """Member i's utility parameters by name, in its family's order."""
        return {p: float(self.params[p][i]) for p in self.family_class(i).param_names}

    def utility(self, i: int) -> Utility:
        """Member i's utility as an object (its class checks it again)."""
        return self.family_class(i)(**self.member_params(i))

    def user(self, i: int) -> User:
        return User(self.names[i], self.utility(i))

    def users(self) -> list[User]:
        """The members as User objects (checked again by their classes)."""
        out: list[Any] = [None] * len(self)
        names = self.names.tolist()
        for code, cls in enumerate(FAMILY_CLASSES):
            rows = np.flatnonzero(self.family == code)
            cols = [self.params[p][rows].tolist() for p in cls.param_names]
            for i, values in zip(rows.tolist(), zip(*cols)):
                out[i] = User(names[i], cls(*values))
        return out

    def describe(self) -> list[dict[str, Any]]:
        """Each member as ``{"name", "utility", **params}`` (User order and keys)."""
        names = self.names.tolist()
        per_family = {code: [self.params[p].tolist() for p in cls.param_names]
                      for code, cls in enumerate(FAMILY_CLASSES)}
        out = []
        for i, code in enumerate(self.family.tolist()):
            cls = FAMILY_CLASSES[code]
            out.append({"name": names[i], "utility": cls.family,
                        **{p: col[i] for p, col in zip(cls.param_names,
                                                       per_family[code])}})
        return out

    # -- checks over whole arrays ---------------------------------------------------
    def problem(self) -> MemberProblem | None:
        """The first thing wrong with the members, or None: what ``User`` and
        ``Utility`` refuse, found over whole
        arrays. The first member with a problem is named; its parameters come
        before its name, as a User's utility is built before the User. Repeated
        names are :meth:`first_repeat`'s."""
        found = [f for f in (self.range_problem(), self.name_problem()) if f]
        return min(found, key=lambda f: f.index) if found else None

    def name_problem(self) -> MemberProblem | None:
        """The first name that is not a printable string of at most
        checks.MAX_NAME_LENGTH characters, not blank (checks.name_problem)."""
        names = self.names.tolist()
        try:
            # One pass each over all names (joined by a space, which is printable).
            if not names or (" ".join(names).isprintable() and all(
                    map(str.strip, names)) and max(map(len, names)) <=
                    checks.MAX_NAME_LENGTH):
                return None
        except TypeError:  # a name that is not a str: found below
            pass
        for i, name in enumerate(names):
            problem = checks.name_problem(name)
            if problem:
                return MemberProblem(i, "name", problem)
        return None

    def first_repeat(self) -> tuple[int, int] | None:
        """(first, later): the first name that repeats an earlier one, or None."""
        return first_repeat(self.names.tolist())

    def range_problem(self) -> MemberProblem | None:
        """The first member (in member order) whose family's parameter is not a
        finite number in the family's range (Utility.param_signs)."""
        found: list[MemberProblem] = []
        for code, cls in enumerate(FAMILY_CLASSES):
            mine = self.family == code
            if not mine.any():
                continue
            for p in cls.param_names:
                values = self.params[p]
                positive = cls.param_signs[p] == "positive"
                with np.errstate(invalid="ignore"):
                    ok = np.isfinite(values) & ((values > 0) if positive else
                                                (values >= 0))
                bad = mine & ~ok
                if bad.any():
                    i = int(np.argmax(bad))
                    value = float(values[i])
                    sign = "> 0" if positive else ">= 0"
                    problem = (f"must be finite, got {value!r}" if not
                               math.isfinite(value) else
                               f"must be {sign} for a {cls.family} utility, got "
                               f"{value!r}")
                    found.append(MemberProblem(i, p, problem))
        return min(found, key=lambda f: f.index) if found else None


def first_repeat(names: list[Any]) -> tuple[int, int] | None:
    """(first, later) indices of the first value of ``names`` seen twice, or None
    (a set over the whole list first: the common case has no repeat)."""
    if len(set(names)) == len(names):
        return None
    first: dict[Any, int] = {}
    for i, name in enumerate(names):
        if name in first:
            return first[name], i
        first[name] = i
    return None


def _readonly(array: np.ndarray) -> np.ndarray:
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


class Members(Sequence):
    """A player's members as a read-only sequence of User objects over its columns.

    ``len``, indexing (a slice gives another view), iteration and ``in`` work as on
    a tuple of Users; a User is built when asked for (and kept, for an index), so a
    game of 10^6 members builds none unless its code asks. ``columns`` is the
    MemberColumns behind it.
    """

    __slots__ = ("columns", "_built")

    def __init__(self, columns: MemberColumns) -> None:
        self.columns = columns
        self._built: dict[int, User] = {}

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return Members(self.columns.take(index))
        n = len(self.columns)
        k = int(index) if isinstance(index, (int, np.integer)) else index.__index__()
        if not -n <= k < n:
            raise IndexError(f"member index {k} out of range for {n} members")
        k %= n
        user = self._built.get(k)
        if user is None:
            user = self._built[k] = self.columns.user(k)
        return user

    def __iter__(self) -> Iterator[User]:
        for start in range(0, len(self.columns), _CHUNK):
            yield from self.columns.take(slice(start, start + _CHUNK)).users()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Members) and other.columns is self.columns:
            return True
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown_names = ", ".join(shown(n, 30) for n in self.columns.names[:3].tolist())
        more = ", ..." if len(self) > 3 else ""
        return f"Members({len(self)}: {shown_names}{more})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Members, (self.columns,))
