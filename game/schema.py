"""The typed schema of scenario files: what every table may hold, checked strictly,
and the same description exported as JSON Schema for editors.

Why a hand-written checker and not pydantic: the schema is small (seven kinds of
table), its keys depend on other keys (a market's fields on its ``price`` kind, a
user's on its ``utility`` family), and every error must be one line naming the file,
the field path (``players[2].users[0].bb``) and the value, with a did-you-mean guess
for unknown keys. pydantic would bring a dependency and a second error format to
translate; here the key tables below are the single source of both the checks and
the JSON Schema (``python -m aggregame.schema`` or ``aggregame schema``), and the
ranges of numbers stay where they are defined, in the game definition classes.

The checks are type checks: numbers are TOML integers or floats (never booleans,
never strings such as ``"0.3"``), integers where integers are meant, strings where
names are meant, tables and arrays of tables where the format has them, and no key
that the format does not know.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from aggregame import checks, member_files, settings
from aggregame.checks import Invalid
from aggregame.fairness import MaxMinRule, PricedOutRule
from aggregame.price import PRICE_KINDS
from aggregame.utilities import UTILITY_FAMILIES

#: Strings that mean alpha = infinity (max-min fairness).
INF_ALPHAS = ("inf", "infinity", "maxmin", "max-min")
#: Parameters of each utility family, as the files name them.
UTILITY_PARAMS = {name: cls.param_names for name, cls in UTILITY_FAMILIES.items()}
ALL_UTILITY_PARAMS = tuple(sorted({p for ps in UTILITY_PARAMS.values() for p in ps}))
#: Fields of each price kind.
PRICE_FIELDS = {kind: tuple(f.name for f in dataclasses.fields(cls) if f.init)
                for kind, cls in PRICE_KINDS.items()}
FAIRNESS_KEYS = ("alpha", "rule", "eps", "maxmin")
USER_KEYS = ("name", "utility") + ALL_UTILITY_PARAMS
PLAYER_KEYS = ("name", "users", "group") + FAIRNESS_KEYS + ("utility",) \
    + ALL_UTILITY_PARAMS
TOP_KEYS = ("scenario", "market", "defaults", "players", "individuals", "solver")
#: Columns of a CSV or Parquet file of users (game/member_files.py).
CSV_COLUMNS = member_files.COLUMNS
#: Keys that do not apply to an [[individuals]] entry, and why.
NOT_FOR_INDIVIDUALS = {
    "alpha": "one member: every alpha orders its purchases alike (alpha = 0 is "
             "used); an aggregator is a [[players]] entry",
    "maxmin": "applies to max-min aggregators; an individual has one member"}
#: Longest scenario description (characters): it is printed on one line.
MAX_DESCRIPTION_LENGTH = 2000


# -- checks ---------------------------------------------------------------------
def check_document(doc: dict[str, Any]) -> None:
    """Check the types and keys of a whole scenario document (a parsed TOML file);
    raises :class:`~aggregame.checks.Invalid` at the first problem. The [solver]
    table is checked by :class:`~aggregame.settings.SolverSettings`."""
    checks.no_unknown_keys(doc, TOP_KEYS, "", "table")
    meta = checks.table(doc.get("scenario", {}), "scenario")
    checks.no_unknown_keys(meta, ("name", "description"), "scenario")
    if "name" in meta:
        checks.name(meta["name"], "scenario.name")
    if "description" in meta:
        text = checks.string(meta["description"], "scenario.description",
                             nonempty=False)
        if len(text) > MAX_DESCRIPTION_LENGTH or not text.isprintable():
            raise Invalid("scenario.description",
                          f"must be one line of at most {MAX_DESCRIPTION_LENGTH} "
                          f"printable characters, got {checks.shown(text)}")
    if "market" not in doc:
        raise Invalid("market", "missing table [market] with the price, e.g. "
                                "price = 'linear', c = 0.001")
    check_market(doc["market"])
    check_fairness(checks.table(doc.get("defaults", {}), "defaults"), "defaults",
                   only=True)
    for section in ("players", "individuals"):
        for k, spec in enumerate(checks.tables(doc.get(section, []), section)):
            check_player(spec, f"{section}[{k}]", aggregator=section == "players")


def check_market(market: Any) -> None:
    market = checks.table(market, "market")
    kind = checks.choice(market.get("price", "linear"), "market.price", PRICE_KINDS)
    checks.no_unknown_keys(market, ("price",) + PRICE_FIELDS[kind], "market",
                           f"{kind}-price key")
    for name in PRICE_FIELDS[kind]:
        if name not in market:
            raise Invalid(f"market.{name}", f"a {kind} price needs it (fields "
                                            f"{list(PRICE_FIELDS[kind])})")
        checks.number(market[name], f"market.{name}")


def check_fairness(spec: dict[str, Any], where: str, only: bool = False) -> None:
    """alpha (a number >= 0 or 'inf'), rule and eps; ``only``: no other key."""
    if only:
        checks.no_unknown_keys(spec, FAIRNESS_KEYS, where)
    if "alpha" in spec:
        alpha = spec["alpha"]
        if isinstance(alpha, str):
            checks.choice(alpha.strip().lower(), f"{where}.alpha", INF_ALPHAS)
        elif not (isinstance(alpha, float) and math.isinf(alpha) and alpha > 0):
            checks.number(alpha, f"{where}.alpha")
    if "rule" in spec:
        checks.choice(spec["rule"], f"{where}.rule", PricedOutRule.names())
    if "eps" in spec:
        checks.number(spec["eps"], f"{where}.eps")
    if "maxmin" in spec:
        checks.choice(spec["maxmin"], f"{where}.maxmin", MaxMinRule.names())


def check_player(spec: dict[str, Any], where: str, aggregator: bool) -> None:
    checks.no_unknown_keys(spec, PLAYER_KEYS, where)
    if not aggregator:
        for key, why in NOT_FOR_INDIVIDUALS.items():
            if key in spec:
                raise Invalid(f"{where}.{key}", f"does not apply to an individual "
                                                f"({why})")
    check_fairness(spec, where)
    users = spec.get("users")
    if "name" in spec:
        if not aggregator and users is not None:
            raise Invalid(f"{where}.name", "does not apply: each user of `users` is "
                                           "an individual named by its own name")
        checks.name(spec["name"], f"{where}.name")
    elif aggregator or users is None:
        raise Invalid(f"{where}.name", "missing: an aggregator or a one-member player "
                                       "written inline needs a name")
    inline = [k for k in ("utility",) + ALL_UTILITY_PARAMS if k in spec]
    if users is None:
        if not inline:
            raise Invalid(f"{where}.users", "missing: give users inline "
                                            "([[...users]]), a CSV file name, or a "
                                            "utility on the player itself")
        check_user(spec, where, extra=PLAYER_KEYS)
    elif inline:
        raise Invalid(f"{where}.{inline[0]}", "belongs to a user; this player has "
                                              "`users`")
    elif isinstance(users, str):
        checks.string(users, f"{where}.users")  # a file: game/paths.py decides
    elif isinstance(users, list):
        for k, user in enumerate(checks.tables(users, f"{where}.users")):
            check_user(user, f"{where}.users[{k}]")
    else:
        raise Invalid(f"{where}.users", f"must be a file name (CSV or Parquet) or an "
                                        f"array of tables, got "
                                        f"{checks.type_name(users)} "
                                        f"{checks.shown(users)}")
    if "group" in spec:
        group = spec["group"]
        if not isinstance(users, str):
            raise Invalid(f"{where}.group", "applies only to users from a file (CSV "
                                            "or Parquet)")
        if isinstance(group, bool) or not isinstance(group, (str, int)):
            raise Invalid(f"{where}.group", f"must be a string, got "
                                            f"{checks.type_name(group)} "
                                            f"{checks.shown(group)}")


def check_user(spec: dict[str, Any], where: str,
               extra: tuple[str, ...] = ()) -> None:
    """A user's name, utility family and exactly that family's parameters."""
    family = checks.choice(spec.get("utility", "quadratic"), f"{where}.utility",
                           UTILITY_FAMILIES)
    params = UTILITY_PARAMS[family]
    allowed = set(extra or USER_KEYS) - set(ALL_UTILITY_PARAMS) | set(params)
    checks.no_unknown_keys(spec, allowed, where, f"{family}-utility key")
    if "name" in spec:
        checks.name(spec["name"], f"{where}.name")
    elif not extra:
        raise Invalid(f"{where}.name", "missing: every user needs a name")
    for name in params:
        if name not in spec:
            raise Invalid(f"{where}.{name}", f"missing: a {family} utility needs "
                                             f"{list(params)}")
        checks.number(spec[name], f"{where}.{name}")


# -- JSON Schema ----------------------------------------------------------------
_NUMBER = {"type": "number"}
_NAME = {"type": "string", "minLength": 1, "maxLength": checks.MAX_NAME_LENGTH}


def _fairness_props(individual: bool = False) -> dict[str, Any]:
    props = {
        "alpha": {"description": "0 social welfare, 1 proportional, any >= 0, or 'inf' "
                                 "(max-min)",
                  "oneOf": [{"type": "number", "minimum": 0},
                            {"enum": list(INF_ALPHAS)}]},
        "rule": {"enum": PricedOutRule.names(),
                 "description": "rule for priced-out members"},
        "eps": {"type": "number", "description": "floor added to each surplus "
                                                 "(floor rule)"},
        "maxmin": {"enum": MaxMinRule.names(),
                   "description": "reading of alpha = inf: leximin (default) or "
                                  "the minimum with a total-surplus tie-break"}}
    return {k: v for k, v in props.items()
            if not (individual and k in NOT_FOR_INDIVIDUALS)}


def _user_schema(extra: dict[str, Any] | None = None,
                 required: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    variants = []
    for family, params in UTILITY_PARAMS.items():
        props = {"name": _NAME, "utility": {"const": family},
                 **{p: _NUMBER for p in params}, **(extra or {})}
        variants.append({"type": "object", "properties": props,
                         "required": [*required, *params],
                         "additionalProperties": False})
    return {"oneOf": variants}


def _market_schema() -> dict[str, Any]:
    return {"oneOf": [{"type": "object", "additionalProperties": False,
                       "properties": {"price": {"const": kind},
                                      **{f: _NUMBER for f in fields}},
                       "required": ["price", *fields] if kind != "linear"
                       else list(fields)}
                      for kind, fields in PRICE_FIELDS.items()]}


def _player_schema(aggregator: bool) -> dict[str, Any]:
    group = {"type": ["string", "integer"], "description": "rows of this group only"}
    files = {"type": "string", "description": "a CSV or Parquet (.parquet) file in "
                                              "the scenario's folder"}
    with_users = {"type": "object", "additionalProperties": False,
                  "properties": {**({"name": _NAME} if aggregator else {}),
                                 **_fairness_props(not aggregator), "group": group,
                                 "users": {"oneOf": [
                                     files,
                                     {"type": "array", "items": _user_schema()}]}},
                  "required": ["name", "users"] if aggregator else ["users"]}
    inline = _user_schema(_fairness_props(not aggregator))
    return {"oneOf": [with_users, *inline["oneOf"]]}


def json_schema() -> dict[str, Any]:
    """The scenario format as a JSON Schema (draft 2020-12) document."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "aggregame scenario",
        "description": "A scenario file (TOML): the price, the players and their "
                       "users, and the solver settings.",
        "type": "object", "additionalProperties": False, "required": ["market"],
        "properties": {
            "scenario": {"type": "object", "additionalProperties": False,
                         "properties": {"name": _NAME, "description": {
                             "type": "string",
                             "maxLength": MAX_DESCRIPTION_LENGTH}}},
            "market": _market_schema(),
            "defaults": {"type": "object", "additionalProperties": False,
                         "properties": _fairness_props()},
            "players": {"type": "array", "items": _player_schema(True)},
            "individuals": {"type": "array", "items": _player_schema(False)},
            "solver": {"type": "object", "additionalProperties": False,
                       "properties": settings.FIELDS},
        },
    }


def main() -> None:
    """``python -m aggregame.schema``: print the JSON Schema."""
    print(json.dumps(json_schema(), indent=1))


if __name__ == "__main__":
    main()
