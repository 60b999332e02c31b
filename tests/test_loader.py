"""The scenario loader refuses every bad input in one line naming file, field and
value; a fuzz test checks that nothing but a Scenario or an AggregameError comes out."""

import json
import math
import string
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregame import AggregameError, ScenarioError, SettingsError
from aggregame.scenario import Scenario, load_scenario
from aggregame.schema import CSV_COLUMNS, PLAYER_KEYS, TOP_KEYS, json_schema
from aggregame.settings import FIELDS, SolverSettings

pytestmark = pytest.mark.unit

BASE = """[market]
price = "linear"
c = 0.001
[[players]]
name = "A"
users = [{name = "u", a = 1, b = 2}]
"""


def write(tmp_path: Path, text: str | bytes, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def one_line_error(path: Path, error=ScenarioError) -> str:
    with pytest.raises(error) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


@pytest.mark.parametrize("text, expected", [
    ("players = 5\n" + BASE.split("[[players]]")[0], "players: must be an array"),
    ("scenario = 5\n" + BASE, "scenario: must be a table, got an integer 5"),
    (BASE.replace('"linear"', '["linear"]'), "market.price: must be one of"),
    ("individuals = {a = 1}\n" + BASE, "individuals: must be an array of tables"),
    (BASE + "alpah = 1\n", "players[0].alpah: unknown key 'alpah'; did you mean 'alpha'?"),
    (BASE + 'rul = "strict"\n', "did you mean 'rule'?"),
    (BASE.replace('name = "A"', 'nmae = "A"'), "did you mean 'name'?"),
    (BASE.replace("b = 2", "bb = 2"), "players[0].users[0].bb: unknown quadratic-utility"
                                      " key 'bb'; did you mean 'b'?"),
    (BASE.replace("a = 1", "a = true"), "players[0].users[0].a: must be a number, got a "
                                        "boolean True"),
    (BASE.replace("a = 1", 'a = "0.3"'), "users[0].a: must be a number, got a string "
                                         "'0.3'"),
    (BASE.replace("c = 0.001", "c = true"), "market.c: must be a number"),
    (BASE + 'utility = "quadratic"\n', "players[0].utility: belongs to a user"),
    (BASE.replace("c = 0.001", "c = 0.001\ncc = 1"), "unknown linear-price key 'cc'"),
    ("[market]\nc = 1\n", "players: a scenario needs at least one player"),
])
def test_bad_toml_is_one_line_naming_the_field(tmp_path, text, expected):
    assert expected in one_line_error(write(tmp_path, text))


@pytest.mark.parametrize("solver, expected", [
    ('start = ["a", "b"]', "[solver] start[0]: must be a number, got a string 'a'"),
    ("seed = -1", "[solver] seed: must be an integer >= 0, got an integer -1"),
    ("seed = 1.5", "[solver] seed: must be an integer >= 0, got a float 1.5"),
    ("max_rounds = 0", "[solver] max_rounds: must be an integer >= 1"),
    ("max_rounds = true", "[solver] max_rounds: must be an integer >= 1, got a boolean"),
    ("tol = 1.0", "[solver] tol: must be in [1e-10, 1), got 1.0"),
    ("tol = 1e-13", "[solver] tol: must be in [1e-10, 1), got 1e-13"),
    ("certificate_rtol = 0.5", "[solver] certificate_rtol: must be in (0, 0.01]"),
    ("methd = 'jacobi'", "[solver] methd: unknown setting 'methd'; did you mean 'method'?"),
    ("start = [1.0, 2.0]", "[solver] start: needs one purchase per player (1), got 2"),
    ('backend = "ipopt"', "[solver] backend: must be one of ['native', 'pyomo']"),
])
def test_solver_table_errors_name_file_and_table(tmp_path, solver, expected):
    message = one_line_error(write(tmp_path, BASE + "[solver]\n" + solver + "\n"),
                             SettingsError)
    assert expected in message


def test_settings_error_is_a_value_error_and_builds_dynamics_settings():
    from aggregame.solvers.equilibrium.dynamics import DynamicsSettings

    assert issubclass(SettingsError, ValueError)
    settings = SolverSettings.from_table({"tol": 1e-8, "start": [1, 2], "seed": 3},
                                         "x.toml")
    dyn = DynamicsSettings(**settings.dynamics_kwargs())
    assert dyn.tol == 1e-8 and dyn.start == (1.0, 2.0) and dyn.seed == 3
    with pytest.raises(SettingsError, match=r"^cli: \[solver\] tol"):
        settings.replace(tol=0.0, source="cli")


@pytest.mark.parametrize("csv, expected", [
    ("name,a,b,bb\nx,1,2,3\n", "column 'bb': unknown column; did you mean 'b'?"),
    ("name,a,b\nx,1,2,3\n", "line 2: 4 fields, the header has 3"),
    ("name,a,b\n,1,2\n", "line 2: column 'name': must not be empty"),
    ("name,a,b\nx,1,true\n", "line 2: column 'b': must be a plain decimal number "
                             "(ASCII digits, '.', an exponent), got 'true'"),
    ("name,a,b\nx,1,nan\n", "column 'b': must be a plain decimal number"),
    ("name,utility,a,b,w\nx,log,1,,2\n", "column 'a': does not apply to a log utility"),
    ("a,b\n1,2\n", "header: needs a 'name' column"),
    (b"name,a,b\nx,1,\xff\n", "not UTF-8 text (byte 13"),
    ("name,a,b\nx,-1,2\n", "line 2: column 'a': must be > 0 for a quadratic utility"),
])
def test_bad_csv_is_one_line_naming_the_column(tmp_path, csv, expected):
    write(tmp_path, csv, "u.csv")
    path = write(tmp_path, '[market]\nc = 0.001\n[[individuals]]\nusers = "u.csv"\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert "u.csv" in str(info.value)


def test_byte_order_marks_are_accepted(tmp_path):
    write(tmp_path, b"\xef\xbb\xbfname,a,b\ny,1,2\n", "u.csv")
    path = write(tmp_path, b"\xef\xbb\xbf" + b'[market]\nc = 0.001\n[[individuals]]\n'
                                              b'users = "u.csv"\n')
    scenario = load_scenario(path)
    assert scenario.game.players[0].members[0].name == "y"


def test_files_that_are_not_text_files_are_refused(tmp_path):
    assert "not UTF-8 text (byte" in one_line_error(write(tmp_path, b"# \xff\xfe\n"))
    assert "is a directory, not a regular file" in one_line_error(tmp_path)
    assert "is a device or pipe" in one_line_error(Path("/dev/zero"))


@pytest.mark.parametrize("entry, expected", [
    ('name = "v"\na = 1\nb = 2\nalpha = 1.7', "individuals[0].alpha: does not apply "
                                             "to an individual"),
    ('name = "v"\na = 1\nb = 2\nalpha = 0', "individuals[0].alpha: does not apply"),
    ('name = "v"\na = 1\nb = 2\nmaxmin = "leximin"', "individuals[0].maxmin: does "
                                                     "not apply to an individual"),
    ('name = "v"\nusers = [{name = "u", a = 1, b = 2}]', "individuals[0].name: does "
                                                          "not apply"),
    ('name = "v"\na = 1\nb = 2\ngroup = "A"', "individuals[0].group: applies only "
                                             "to users from a file"),
])
def test_keys_that_do_not_apply_to_an_individual_are_refused(tmp_path, entry,
                                                             expected):
    text = "[market]\nc = 0.001\n[[individuals]]\n" + entry + "\n"
    assert expected in one_line_error(write(tmp_path, text))


def test_shipped_scenarios_use_only_schema_keys():
    from aggregame import data

    schema = json_schema()
    assert set(schema["properties"]) == set(TOP_KEYS)
    assert set(schema["properties"]["solver"]["properties"]) == set(FIELDS)
    for name in data.scenarios():
        doc = tomllib.loads(data.path(name).read_text())
        assert set(doc) <= set(TOP_KEYS)
        assert isinstance(load_scenario(name), Scenario)


@pytest.mark.unit
def test_the_schema_lists_every_registered_rule():
    """A rule class defined anywhere (tests/test_recipes.py defines some) is a
    value the schema accepts, as the loader's check does."""
    from aggregame.rules import MaxMinRule, PricedOutRule

    aggregator = json_schema()["properties"]["players"]["items"]["oneOf"]
    kinds = [a["properties"] for a in aggregator if "rule" in a["properties"]]
    assert kinds, "no player with a priced-out rule in the schema"
    for props in kinds:
        assert props["rule"]["enum"] == PricedOutRule.names()
        assert props["maxmin"]["enum"] == MaxMinRule.names()


# -- fuzz -------------------------------------------------------------------------
KEYS = sorted(set(TOP_KEYS) | set(PLAYER_KEYS) | set(FIELDS) | {"price", "c", "p0",
              "k", "P", "description", "users", "alpah", "bb"})
scalars = st.one_of(
    st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
        ["linear", "inf", "floor", "viable", "quadratic", "log", "zero", "random",
         "u.csv", "A", "0.3", "", "../u.csv", "/etc/passwd", "u.parquet",
         "paper_small_users.csv", "a\x1b[31m", "two\nlines", "x" * 201, "\u202e"]),
    st.text(max_size=5))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=12)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"


def _document(doc: dict) -> str:
    return "".join(f"{k} = {_toml(v)}\n" for k, v in doc.items())


csv_cells = st.one_of(st.sampled_from(["1", "0.5", "-1", "nan", "x", "", "log",
                                       "quadratic", "A", "1_0", "\u0664", "1e999",
                                       '"q', '"a,b"', '"x"y', "\x1b"]), st.text(
    alphabet=string.printable, max_size=4))
csv_files = st.tuples(
    st.lists(st.sampled_from(list(CSV_COLUMNS) + ["bb", ""]), min_size=1, max_size=5),
    st.lists(st.lists(csv_cells, max_size=6), max_size=4))


def _loads_or_refuses(path: Path) -> None:
    """A scenario whose names are all printable, or one printable line (nothing
    unprintable from the file, nothing at all from outside its folder)."""
    try:
        scenario = load_scenario(path)
    except AggregameError as err:
        assert str(err).isprintable() and "root:" not in str(err), str(err)
        return
    assert isinstance(scenario, Scenario)
    for player in scenario.game.players:
        assert player.name.isprintable() and len(player.name) <= 200
        assert all(m.name.isprintable() for m in player.members)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents, market=st.booleans())
def test_fuzz_toml_gives_a_scenario_or_one_error(tmp_path, doc, market):
    head = BASE if market else ""
    _loads_or_refuses(write(tmp_path, head + _document(doc)))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=csv_files, extra=st.dictionaries(st.sampled_from(
    ["group", "alpha", "rule", "name"]), scalars, max_size=2))
def test_fuzz_csv_gives_a_scenario_or_one_error(tmp_path, table, extra):
    header, rows = table
    text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    write(tmp_path, text, "u.csv")
    spec = "".join(f"{k} = {_toml(v)}\n" for k, v in extra.items())
    _loads_or_refuses(write(tmp_path, '[market]\nc = 0.001\n[[individuals]]\n'
                                      'users = "u.csv"\n' + spec))
