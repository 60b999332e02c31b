"""Scenario files: a game and its solver settings in TOML (format in data/README.md).

Every error names the file, the field (e.g. ``players[2].alpha``) and the value.
"""

from __future__ import annotations

import csv
import io
import math
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from aggregame import schema
from aggregame.checks import Invalid
from aggregame.errors import GameDefinitionError, ScenarioError
from aggregame.fairness import DEFAULT_FLOOR_EPS, MaxMinRule, parse_alpha
from aggregame.players import Game, Player
from aggregame.price import PRICE_KINDS, Price
from aggregame.settings import SolverSettings
from aggregame.utilities import UTILITY_FAMILIES, User

T = TypeVar("T")

#: Largest scenario or CSV file read (bytes): a larger one is a mistake (a device, a
#: log file), refused before reading it into memory.
MAX_FILE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario: the game, solver settings and where it came from."""

    name: str
    description: str
    game: Game
    solver: SolverSettings = field(default_factory=SolverSettings)
    path: Path | None = None


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A path as given, else a file shipped in aggregame.data (``fig4`` or ``fig4.toml``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    from aggregame import data

    for candidate in (str(name_or_path), f"{name_or_path}.toml"):
        shipped = data.path(candidate)
        if shipped.exists():
            return shipped
    raise ScenarioError(
        f"scenario '{name_or_path}' not found: not a file, and not one of the shipped "
        f"scenarios {[s.removesuffix('.toml') for s in data.scenarios()]}"
    )


def read_text(path: Path) -> str:
    """The text of a regular, UTF-8 file of at most MAX_FILE_BYTES (a byte-order mark
    is allowed); anything else is a ScenarioError naming the file."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device or pipe"
            raise ScenarioError(f"{path}: is {kind}, not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ScenarioError(f"{path}: {info.st_size} bytes, more than the "
                                f"{MAX_FILE_BYTES} a scenario or CSV file may have")
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {err.start}: "
                            f"{raw[err.start:err.start + 1]!r})") from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError naming file and field."""
    path = resolve_scenario_path(name_or_path)
    try:
        doc = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from None
    return scenario_from_dict(doc, path)


def scenario_from_dict(doc: dict[str, Any], path: Path | None = None) -> Scenario:
    """A scenario from a parsed document: types and keys checked by the schema, then
    the game built by its definition classes (which check the values' ranges)."""
    where = str(path) if path else "<scenario>"
    try:
        schema.check_document(doc)
    except Invalid as err:
        raise ScenarioError(f"{where}: {err}") from None
    solver = SolverSettings.from_table(doc.get("solver", {}), where)
    base = path.parent if path else Path.cwd()
    players: list[Player] = []
    try:
        price = _price(doc["market"])
        defaults = doc.get("defaults", {})
        for section in ("players", "individuals"):
            for k, spec in enumerate(doc.get(section, [])):
                players.extend(_players(spec, f"{section}[{k}]", defaults, base,
                                        individual=section == "individuals"))
        if not players:
            raise Invalid("players", "a scenario needs at least one player")
        game = _game(players, price)
    except Invalid as err:
        raise ScenarioError(f"{where}: {err}") from None
    solver.check_players(len(players))
    meta = doc.get("scenario", {})
    return Scenario(name=meta.get("name", path.stem if path else "scenario"),
                    description=meta.get("description", ""), game=game,
                    solver=solver, path=path)


def _defined(where: str, build: Callable[[], T]) -> T:
    """``build()``, its definition errors (and arithmetic trouble with extreme
    numbers) reported as a problem of ``where``."""
    try:
        return build()
    except (GameDefinitionError, ArithmeticError) as err:
        raise Invalid(where, str(err)) from None


def _game(players: list[Player], price: Price) -> Game:
    return _defined("players", lambda: Game(tuple(players), price))


def _price(market: dict[str, Any]) -> Price:
    kind = market.get("price", "linear")
    args = {k: v for k, v in market.items() if k != "price"}
    return _defined("market", lambda: PRICE_KINDS[kind](**args))


def _players(spec: dict[str, Any], where: str, defaults: dict[str, Any], base: Path,
             individual: bool) -> list[Player]:
    merged = {**defaults, **spec}
    try:
        alpha = parse_alpha(merged.get("alpha", 0.0), where=where)
    except GameDefinitionError:
        raise Invalid(f"{where}.alpha", f"must be a number >= 0 or 'inf', got "
                                        f"{merged.get('alpha')!r}") from None
    rule = merged.get("rule", "floor")
    eps = merged.get("eps", DEFAULT_FLOOR_EPS)
    maxmin = merged.get("maxmin", MaxMinRule.LEXIMIN)
    if "maxmin" in spec and (individual or not math.isinf(alpha)):
        # A default may cover every player; a player's own key must mean something.
        raise Invalid(f"{where}.maxmin", "applies to max-min players (alpha = 'inf') "
                                         f"only; this one has alpha = "
                                         f"{'n/a (an individual)' if individual else alpha}")
    users = _users(spec, where, base)
    if individual:
        return _defined(where, lambda: [Player.individual(u, rule=rule, eps=eps)
                                        for u in users])
    return [_defined(where, lambda: Player.aggregator(spec["name"], users, alpha=alpha,
                                                      rule=rule, eps=eps,
                                                      maxmin=maxmin))]


def _users(spec: dict[str, Any], where: str, base: Path) -> list[User]:
    source = spec.get("users")
    if source is None:  # a one-member player written inline
        return [_user(spec, where)]
    if isinstance(source, str):
        return _users_from_csv(source, spec.get("group"), where, base)
    return [_user(u, f"{where}.users[{k}]") for k, u in enumerate(source)]


def _user(spec: dict[str, Any], where: str) -> User:
    family = spec.get("utility", "quadratic")
    params = {p: spec[p] for p in schema.UTILITY_PARAMS[family]}
    return _defined(where, lambda: User(spec["name"], UTILITY_FAMILIES[family](
        **params)))


def _csv_path(source: str, where: str, base: Path) -> Path:
    path = base / source
    if not path.exists():
        from aggregame import data

        path = data.path(source)
    if not path.exists():
        raise Invalid(f"{where}.users", f"CSV file {source!r} not found next to the "
                                        f"scenario or in aggregame's data/")
    return path


def _users_from_csv(source: str, group: Any, where: str, base: Path) -> list[User]:
    path = _csv_path(source, where, base)
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    users = []
    try:
        schema.check_csv_header(reader.fieldnames)
        for line, row in enumerate(reader, start=2):
            if group is not None and (row.get("group") or "").strip() != str(group):
                continue
            name, family, params = schema.csv_user(row, line)
            users.append(_defined(f"line {line}", lambda: User(
                name, UTILITY_FAMILIES[family](**params))))
    except csv.Error as err:
        raise ScenarioError(f"{path}: not a valid CSV file: {err}") from None
    except Invalid as err:
        raise ScenarioError(f"{path}: {err}") from None
    if not users:
        raise Invalid(f"{where}.group", f"no row of {path.name} has group {group!r}")
    return users
