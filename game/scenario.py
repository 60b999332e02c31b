"""Scenario files: a game and its solver settings in TOML (format in data/README.md).

Every error names the file, the field (e.g. ``players[2].alpha``) and the value, and
carries them (``err.file``, ``err.field``) for the command line's JSON errors.

Loading runs in two steps: :func:`load_players` reads the document and every data
file it names (each file once, however many players select groups from it, checked
whole: game/member_files.py) into :class:`PlayerColumns`, each player's members as
arrays; :func:`load_scenario` then builds the game's players on those columns (no
object per member). A scenario reads files of its own folder only (game/paths.py)
unless ``allow_outside`` is given.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from aggregame import paths, schema
from aggregame.checks import Invalid, printable, shown
from aggregame.errors import GameDefinitionError, ScenarioError, ScenarioTypeError
from aggregame.fairness import DEFAULT_FLOOR_EPS, MaxMinRule, parse_alpha
from aggregame.market_model import MarketReader, read_market_model
from aggregame.member_files import (
    MemberColumns,
    MemberFile,
    columns_from_specs,
    read_member_file,
    release_file_memory,
)
from aggregame.players import Game, Player
from aggregame.price import PRICE_KINDS, Price
from aggregame.settings import SolverSettings

T = TypeVar("T")


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario: the game, solver settings and where it came from."""

    name: str
    description: str
    game: Game
    solver: SolverSettings = field(default_factory=SolverSettings)
    path: Path | None = None

    def __repr__(self) -> str:
        return (f"Scenario({shown(self.name, 40)}, {self.game!r}, "
                f"path={shown(str(self.path) if self.path else None, 80)})")


@dataclass(frozen=True, eq=False)
class PlayerColumns:
    """One ``[[players]]`` entry (an aggregator), or one ``[[individuals]]`` entry
    (each member a player of its own), with its members as columns."""

    name: str | None  # None for individuals: each takes its member's name
    individual: bool
    alpha: float
    rule: str
    eps: float
    maxmin: str
    members: MemberColumns
    where: str  # players[0], individuals[2]

    def players(self) -> list[Player]:
        """The game's Player objects of this entry, holding the columns (no User
        is built)."""
        if self.individual:
            return [Player.aggregator(self.members.names[i],
                                      self.members.take(slice(i, i + 1)),
                                      rule=self.rule, eps=self.eps)
                    for i in range(len(self.members))]
        return [Player.aggregator(self.name, self.members, alpha=self.alpha,
                                  rule=self.rule, eps=self.eps, maxmin=self.maxmin)]


def resolve_scenario_path(name_or_path: str | os.PathLike) -> Path:
    """A path as given, else a file shipped in aggregame.data (``fig4`` or
    ``fig4.toml``)."""
    if isinstance(name_or_path, bool) or not isinstance(name_or_path,
                                                        (str, os.PathLike)):
        raise ScenarioTypeError(
            f"load_scenario: expected a scenario name or a path (str or "
            f"os.PathLike), got {type(name_or_path).__name__} {shown(name_or_path)}")
    path = Path(name_or_path)
    if _exists(path):
        return path
    from aggregame import data

    for candidate in (str(name_or_path), f"{name_or_path}.toml"):
        if os.sep in candidate or candidate.startswith("."):
            continue  # a shipped scenario is named by its file name alone
        shipped = data.path(candidate)
        if _exists(shipped):
            return shipped
    shipped = [s.removesuffix(".toml") for s in data.scenarios()]
    raise ScenarioError(
        f"scenario {shown(str(name_or_path), 300)} not found: not a file, and not one "
        f"of the shipped scenarios {shipped}").at(str(name_or_path))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a NUL byte, a name too long
        return False


def read_text(path: Path) -> str:
    """The text of a regular, UTF-8 scenario file of at most paths.MAX_FILE_BYTES
    (a byte-order mark is allowed); anything else is a ScenarioError naming it."""
    return paths.read_text(path, paths.MAX_FILE_BYTES)


def _document(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}").at(path) from None


def load_scenario(name_or_path: str | os.PathLike, *, allow_outside: bool = False,
                  allow_code: bool = False, market_reader: MarketReader | None = None
                  ) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError naming file and field.

    ``allow_outside``: let the scenario read data files outside its own folder
    (and aggregame's data/); by default such a path is refused (OutsideFolderError).
    ``allow_code``: let ``[market] model = "module:function"`` run that module of
    the scenario's folder (game/market_model.py; ``market_reader`` reads it, by
    default aggregame.solvers.market's); by default such a scenario is refused.
    """
    path = resolve_scenario_path(name_or_path)
    return scenario_from_dict(_document(path), path, allow_outside=allow_outside,
                              allow_code=allow_code, market_reader=market_reader)


def load_players(name_or_path: str | os.PathLike, *, allow_outside: bool = False
                 ) -> list[PlayerColumns]:
    """Every player entry of a scenario with its members as columns (names, family
    codes, parameters), checked like load_scenario checks them, without building
    Player or User objects."""
    path = resolve_scenario_path(name_or_path)
    doc = _document(path)
    _check_schema(doc, str(path))
    return _Reader(path, allow_outside).entries(doc)


def scenario_from_dict(doc: dict[str, Any], path: Path | None = None, *,
                       allow_outside: bool = False, allow_code: bool = False,
                       market_reader: MarketReader | None = None) -> Scenario:
    """A scenario from a parsed document: types and keys checked by the schema, then
    the game built by its definition classes (which check the values' ranges).
    Data files are read relative to ``path``'s folder (else the working folder)."""
    where = str(path) if path else "<scenario>"
    _check_schema(doc, where)
    solver = SolverSettings.from_table(doc.get("solver", {}), where)
    entries = _Reader(path, allow_outside).entries(doc)
    market = doc["market"]
    try:
        if "model" in market:  # the user's supply model: code, if allowed
            price = read_market_model(market, path.parent if path else Path.cwd(),
                                      where, allow_code=allow_code,
                                      reader=market_reader)
        else:
            price = _defined("market", lambda: _price(market))
        players = [p for entry in entries
                   for p in _defined(entry.where, entry.players)]
        game = _defined("players", lambda: Game(tuple(players), price))
    except Invalid as err:
        raise ScenarioError(f"{where}: {err}").at(path, err.field) from None
    solver.check_players(len(players))
    del entries  # (with them the files read: their memory can go back)
    release_file_memory()
    meta = doc.get("scenario", {})
    # A name taken from the file's name is shown as it is printable (the file's own
    # name, if any, was checked by the schema).
    return Scenario(name=meta.get("name", printable(path.stem) if path else "scenario"),
                    description=meta.get("description", ""), game=game,
                    solver=solver, path=path)


def _check_schema(doc: dict[str, Any], where: str) -> None:
    try:
        schema.check_document(doc)
    except Invalid as err:
        raise ScenarioError(f"{where}: {err}").at(
            None if where == "<scenario>" else where, err.field) from None


def _defined(where: str, build: Callable[[], T]) -> T:
    """``build()``, its definition errors (and arithmetic trouble with extreme
    numbers) reported as a problem of ``where``, or of the field the error names."""
    try:
        return build()
    except (GameDefinitionError, ArithmeticError) as err:
        field, text = getattr(err, "field", None), str(err)
        if field and text.startswith(f"{field}: "):
            text = text[len(field) + 2:]
        if field and not any(c in field for c in ".["):  # a bare field: of `where`
            field = f"{where}.{field}"
        raise Invalid(field or where, text) from None


def _price(market: dict[str, Any]) -> Price:
    kind = market.get("price", "linear")
    args = {k: v for k, v in market.items() if k != "price"}
    return PRICE_KINDS[kind](**args)


class _Reader:
    """One load: the scenario's folder, whether outside paths are allowed, and every
    data file read so far (each read and checked once)."""

    def __init__(self, path: Path | None, allow_outside: bool) -> None:
        self.path = path
        self.where = str(path) if path else "<scenario>"
        self.base = path.parent if path else Path.cwd()
        self.allow_outside = allow_outside
        self.files: dict[Path, MemberFile] = {}

    def entries(self, doc: dict[str, Any]) -> list[PlayerColumns]:
        defaults = doc.get("defaults", {})
        out = []
        for section in ("players", "individuals"):
            for k, spec in enumerate(doc.get(section, [])):
                out.append(self._entry(spec, f"{section}[{k}]", defaults,
                                       individual=section == "individuals"))
        if not out:
            raise ScenarioError(f"{self.where}: players: a scenario needs at least "
                                f"one player").at(self.path, "players")
        return out

    def _entry(self, spec: dict[str, Any], where: str, defaults: dict[str, Any],
               individual: bool) -> PlayerColumns:
        merged = {**defaults, **spec}
        try:
            alpha = 0.0 if individual else self._alpha(spec, merged, where)
            members = self._members(spec, where)
        except Invalid as err:
            raise ScenarioError(f"{self.where}: {err}").at(self.path,
                                                           err.field) from None
        return PlayerColumns(
            name=None if individual else spec["name"], individual=individual,
            alpha=alpha, rule=merged.get("rule", "floor"),
            eps=merged.get("eps", DEFAULT_FLOOR_EPS),
            maxmin=merged.get("maxmin", MaxMinRule.LEXIMIN), members=members,
            where=where)

    @staticmethod
    def _alpha(spec: dict[str, Any], merged: dict[str, Any], where: str) -> float:
        try:
            alpha = parse_alpha(merged.get("alpha", 0.0), where=where)
        except GameDefinitionError:
            raise Invalid(f"{where}.alpha", f"must be a number >= 0 or 'inf', got "
                                            f"{shown(merged.get('alpha'))}") from None
        if "maxmin" in spec and not math.isinf(alpha):
            # A default may cover every player; a player's own key must mean something.
            raise Invalid(f"{where}.maxmin", f"applies to max-min players (alpha = "
                                             f"'inf') only; this one has alpha = "
                                             f"{alpha:g}")
        return alpha

    def _members(self, spec: dict[str, Any], where: str) -> MemberColumns:
        source = spec.get("users")
        if source is None:  # a one-member player written inline
            return columns_from_specs([spec], lambda i: where)
        if isinstance(source, str):
            return self._file(source, where).select(spec.get("group"),
                                                    f"{where}.group")
        return columns_from_specs(source, lambda i: f"{where}.users[{i}]")

    def _file(self, source: str, where: str) -> MemberFile:
        path = paths.data_file(source, self.base, scenario=self.where,
                               field=f"{where}.users",
                               allow_outside=self.allow_outside)
        if path not in self.files:
            raw = paths.read_bytes(path, paths.MAX_DATA_BYTES, follow=False)
            try:
                self.files[path] = read_member_file(path, raw)
            except Invalid as err:
                raise ScenarioError(f"{path}: {err}").at(path, err.field) from None
        return self.files[path]
