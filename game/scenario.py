"""Scenario files: a game and its solver settings in TOML (format in data/README.md).

Every error names the file, the field (e.g. ``players[2].alpha``) and the value.
"""

from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregame.errors import GameDefinitionError, ScenarioError
from aggregame.fairness import DEFAULT_FLOOR_EPS, parse_alpha
from aggregame.players import Game, Player
from aggregame.price import PRICE_KINDS, Price
from aggregame.settings import SolverSettings
from aggregame.utilities import UTILITY_FAMILIES, User, make_utility

_TOP_KEYS = {"scenario", "market", "defaults", "players", "individuals", "solver"}
_PLAYER_KEYS = {"name", "alpha", "rule", "eps", "users", "group", "individual",
                "utility"} | {k for c in UTILITY_FAMILIES.values() for k in c.param_names}
_SOLVER_KEYS = {"backend", "method", "best_response", "tol", "max_rounds", "start",
                "seed", "certificate_rtol"}


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


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError naming file and field."""
    path = resolve_scenario_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from None
    return scenario_from_dict(doc, path)


def scenario_from_dict(doc: dict[str, Any], path: Path | None = None) -> Scenario:
    where = str(path) if path else "<scenario>"

    def fail(field_name: str, msg: str) -> ScenarioError:
        return ScenarioError(f"{where}: {field_name}: {msg}")

    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown section; expected some of "
                                       f"{sorted(_TOP_KEYS)}")
    meta = doc.get("scenario", {})
    price = _price(doc.get("market"), fail)
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise fail("defaults", f"must be a table, got {defaults!r}")
    base = path.parent if path else Path.cwd()
    players: list[Player] = []
    for k, spec in enumerate(doc.get("players", [])):
        players.extend(_players(spec, f"players[{k}]", defaults, base, fail))
    for k, spec in enumerate(doc.get("individuals", [])):
        spec = dict(spec, individual=True)
        players.extend(_players(spec, f"individuals[{k}]", defaults, base, fail))
    if not players:
        raise fail("players", "a scenario needs at least one player")
    try:
        game = Game(tuple(players), price)
    except GameDefinitionError as err:
        raise fail("players", str(err)) from None
    solver = SolverSettings.from_table(doc.get("solver", {}), where)
    solver.check_players(len(players))
    return Scenario(name=str(meta.get("name", path.stem if path else "scenario")),
                    description=str(meta.get("description", "")), game=game,
                    solver=solver, path=path)


def _price(market: Any, fail) -> Price:
    if not isinstance(market, dict):
        raise fail("market", "missing table [market] with the price, e.g. "
                             "price = 'linear', c = 0.001")
    kind = market.get("price", "linear")
    cls = PRICE_KINDS.get(kind)
    if cls is None:
        raise fail("market.price", f"must be one of {sorted(PRICE_KINDS)}, got {kind!r}")
    args = {k: v for k, v in market.items() if k != "price"}
    try:
        return cls(**args)
    except TypeError:
        raise fail("market", f"a {kind} price takes fields "
                             f"{list(cls.__dataclass_fields__)}, got {sorted(args)}"
                   ) from None
    except GameDefinitionError as err:
        raise fail("market", str(err)) from None


def _players(spec: Any, name: str, defaults: dict, base: Path, fail) -> list[Player]:
    if not isinstance(spec, dict):
        raise fail(name, f"must be a table, got {spec!r}")
    bad = set(spec) - _PLAYER_KEYS
    if bad:
        raise fail(f"{name}.{sorted(bad)[0]}", f"unknown field; expected some of "
                                               f"{sorted(_PLAYER_KEYS)}")
    merged = {**defaults, **spec}
    try:
        alpha = parse_alpha(merged.get("alpha", 0.0), where=name)
    except GameDefinitionError:
        raise fail(f"{name}.alpha", f"must be a number >= 0 or 'inf', got "
                                    f"{merged.get('alpha')!r}") from None
    rule = merged.get("rule", "floor")
    eps = merged.get("eps", DEFAULT_FLOOR_EPS)
    users = _users(spec, name, base, fail)
    try:
        if spec.get("individual", False):
            return [Player.individual(u, rule=rule, eps=eps) for u in users]
        if "name" not in spec:
            raise fail(f"{name}.name", "an aggregator needs a name")
        return [Player.aggregator(spec["name"], users, alpha=alpha, rule=rule, eps=eps)]
    except GameDefinitionError as err:
        raise fail(name, str(err)) from None


def _users(spec: dict, name: str, base: Path, fail) -> list[User]:
    source = spec.get("users")
    if source is None:
        # A one-member player written inline: utility and its parameters on the table.
        if "utility" not in spec and "a" not in spec and "w" not in spec:
            raise fail(f"{name}.users", "give users inline ([[...users]]), a CSV file "
                                        "name, or a utility on the player itself")
        return [_user(spec, name, fail, default_name=spec.get("name"))]
    if isinstance(source, str):
        return _users_from_csv(source, spec.get("group"), name, base, fail)
    if isinstance(source, list):
        return [_user(u, f"{name}.users[{k}]", fail) for k, u in enumerate(source)]
    raise fail(f"{name}.users", f"must be a CSV file name or a list of tables, got "
                                f"{source!r}")


def _user(spec: Any, where: str, fail, default_name: str | None = None) -> User:
    if not isinstance(spec, dict):
        raise fail(where, f"must be a table, got {spec!r}")
    family = spec.get("utility", "quadratic")
    user_name = spec.get("name", default_name)
    if user_name is None:
        raise fail(f"{where}.name", "every user needs a name")
    params = {k: v for k, v in spec.items() if k not in {"name", "utility", "group"}}
    for key, value in params.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                math.isnan(float(value)):
            raise fail(f"{where}.{key}", f"must be a number, got {value!r}")
    try:
        return User(str(user_name), make_utility(family, params, where=where))
    except GameDefinitionError as err:
        raise fail(where, str(err)) from None


def _users_from_csv(source: str, group: Any, name: str, base: Path, fail) -> list[User]:
    path = base / source
    if not path.exists():
        from aggregame import data

        path = data.path(source)
    if not path.exists():
        raise fail(f"{name}.users", f"CSV file {source!r} not found next to the "
                                    f"scenario or in aggregame's data/")
    users = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "name" not in reader.fieldnames:
            raise fail(f"{name}.users", f"{path}: needs a header with a 'name' column")
        for row_no, row in enumerate(reader, start=2):
            if group is not None and row.get("group") != str(group):
                continue
            row = {k: v for k, v in row.items() if v not in (None, "") and k != "group"}
            family = row.pop("utility", "quadratic")
            params: dict[str, Any] = {}
            for k, v in row.items():
                if k == "name":
                    continue
                try:
                    params[k] = float(v)
                except ValueError:
                    raise ScenarioError(f"{path}: line {row_no}: column '{k}' must be "
                                        f"a number, got {v!r}") from None
            try:
                users.append(User(row["name"], make_utility(family, params,
                                                            where=f"line {row_no}")))
            except GameDefinitionError as err:
                raise ScenarioError(f"{path}: {err}") from None
    if not users:
        raise fail(f"{name}.group", f"no row of {path.name} has group {group!r}")
    return users
