"""Members read from CSV and Parquet by pyarrow: every rule of data/README.md, each
file read once however many players select groups from it, and the columns the
loader hands on (names, family codes, parameters) equal to the users it builds."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aggregame import ScenarioError, paths
from aggregame.member_files import FAMILIES
from aggregame.scenario import load_players, load_scenario

pytestmark = pytest.mark.unit

ONE = '[market]\nc = 0.001\n[[individuals]]\nusers = "{file}"\n'


def load_csv(tmp_path, text: str | bytes, scenario: str = ONE):
    data = text if isinstance(text, bytes) else text.encode()
    (tmp_path / "u.csv").write_bytes(data)
    path = tmp_path / "s.toml"
    path.write_text(scenario.format(file="u.csv"))
    return load_scenario(path)


def csv_error(tmp_path, text: str | bytes) -> str:
    with pytest.raises(ScenarioError) as info:
        load_csv(tmp_path, text)
    message = str(info.value)
    assert message.isprintable()  # one line, nothing raw
    assert message.startswith(f"{(tmp_path / 'u.csv').resolve()}: ")
    assert info.value.file == str((tmp_path / "u.csv").resolve())
    return message.split(": ", 1)[1]


# Each rule of data/README.md ("CSV and Parquet files of users"), one row each.
@pytest.mark.parametrize("text, expected", [
    # numbers: plain decimals only
    ("name,a,b\nx,1,1_0\n", "line 2: column 'b': must be a plain decimal number"),
    ("name,a,b\nx,1,\u0664\n", "line 2: column 'b': must be a plain decimal number"),
    ("name,a,b\nx,1,\uff14\n", "line 2: column 'b': must be a plain decimal number"),
    ("name,a,b\nx,1,inf\n", "line 2: column 'b': must be a plain decimal number"),
    ("name,a,b\nx,1,0x10\n", "line 2: column 'b': must be a plain decimal number"),
    ("name,a,b\nx,1,1e999\n", "line 2: column 'b': must be finite, got '1e999'"),
    ("name,a,b\nx,1,\n", "line 2: column 'b': must be a number for a quadratic "
                         "utility, got an empty cell"),
    ("name,a,b\nx,0,2\n", "line 2: column 'a': must be > 0 for a quadratic utility, "
                          "got '0'"),
    ("name,a,b\nx,1,-2\n", "line 2: column 'b': must be >= 0"),
    ("name,utility,w\nx,log,-1\n", "line 2: column 'w': must be > 0 for a log"),
    # families
    ("name,utility,a,b\nx,cubic,1,2\n", "line 2: column 'utility': must be one of "
                                        "['log', 'quadratic'], got 'cubic'"),
    ("name,utility,a,b,w\nx,log,1,,2\n", "line 2: column 'a': does not apply to a "
                                         "log utility, got '1'"),
    ("name,utility,a,b\nx,log,1,2\n", "header: no column 'w', which the log utility "
                                      "of line 2 needs"),
    # header
    ("name,a,b,b\nx,1,2,3\n", "column 'b': appears twice in the header"),
    ("name,a,name\nx,1,y\n", "column 'name': appears twice"),
    ("nmae,a,b\nx,1,2\n", "column 'nmae': unknown column; did you mean 'name'?"),
    ("nom,a,b\nx,1,2\n", "column 'nom': unknown column; expected one of ['a', 'b'"),
    ("a,b\n1,2\n", "header: needs a 'name' column (it has 2 columns)"),
    ("name,a,b\n", "content: a header and no rows"),
    ("name,a,b\n\n\n", "content: a header and no rows"),
    ("", "content: empty"),
    ("\n\n", "content: empty"),
    # rows
    ("name,a,b\nx,1,2,3\n", "line 2: 4 fields, the header has 3"),
    ("name,a,b\nx,1\n", "line 2: 2 fields, the header has 3"),
    ("name,a,b\nx,1,2\n\n\ny,1\n", "line 5: 2 fields, the header has 3"),
    ("name,a,b\nx,1,2\n\ny,1,-1\n", "line 4: column 'b': must be >= 0"),
    ("name,a,b\r\nx,1,2\r\ny,-1,2\r\n", "line 3: column 'a': must be > 0"),
    ("name,a,b\nx,1,2\nx,1,3\n", "line 3: column 'name': 'x' repeats line 2"),
    ("name,a,b\n,1,2\n", "line 2: column 'name': must not be empty"),
    ("name,a,b\n\"  \",1,2\n", "line 2: column 'name': must not be empty"),
    ("name,a,b\n" + "x" * 201 + ",1,2\n", "line 2: column 'name': must have at most "
                                         "200 characters, got 201"),
    ("name,a,b\nok,1,2\n\"a\x1bb\",1,2\n", "line 3: column 'name': must hold printable "
                                          "characters only, got '\\x1b'"),
    # quotes
    ('name,a,b\nx,1,"2\n', "line 2: a quote is not closed"),
    ('name,a,b\n"x,1,2\ny,1,2\n', "line 2: a quote is not closed"),
    ('name,a,b\n"x\ny",1,2\n', "line 2: a quoted field runs past the end of the "
                               "line"),
    ('name,a,b\nx,1,"2"3\n', "line 2: bad quoting: ',' expected after '\"'"),
    ('name,a,b\n"x" ,1,2\n', "line 2: bad quoting"),
    ('name,a,b\nx,1,2,"3"\n', "line 2: 4 fields, the header has 3"),
    # encoding
    (b"name,a,b\nx,1,\xff\n", "content: not UTF-8 text (byte 13: b'\\xff')"),
    (b"\xef\xbb\xbfname,a,b\nx,1,\xff\n", "content: not UTF-8 text (byte 16"),
])
def test_each_rule_is_one_line_naming_row_column_and_cell(tmp_path, text, expected):
    assert csv_error(tmp_path, text).startswith(expected), expected


def test_messages_show_the_offending_cell_only(tmp_path):
    secret = "SECRET-0b7e"
    message = csv_error(tmp_path, f"name,a,b\n{secret},1,1_0\n")
    assert secret not in message and "'1_0'" in message
    message = csv_error(tmp_path, f"name,a,b\n{secret},1,2,{secret}\n")
    assert secret not in message
    message = csv_error(tmp_path, f"{secret},a,b\nx,1,2\n")
    assert message.count(secret) == 1  # the one bad cell, and no other


@pytest.mark.parametrize("text, names", [
    ("name,a,b\n x ,1,2\n", ["x"]),  # cells are trimmed
    ('name,a,b\n"a,b",1,2\n"q""uote",1,2\n', ["a,b", 'q"uote']),
    ("\n\nname,a,b\n\nx,+1.5,.5\ny,2.,1E-3\n\n", ["x", "y"]),
    ("name,utility,a,b,w\nx,,1,2,\ny,log,,,3\nz,quadratic,1,0,\n", ["x", "y", "z"]),
    (b"\xef\xbb\xbfname,a,b\n\xc3\xa9,1,2\n", ["\u00e9"]),
    ("name,a,b\rx,1,2\ry,1,2\r", ["x", "y"]),
])
def test_valid_files_load_as_written(tmp_path, text, names):
    game = load_csv(tmp_path, text).game
    assert [p.name for p in game.players] == names


def test_values_equal_pythons_own_reading_of_the_cells(tmp_path):
    cells = ["1", "0.5", "+2", "3.", ".25", "1e-3", "2.5E+2", "0.1", "7e30"]
    text = "name,a,b\n" + "".join(f"u{k},1,{c}\n" for k, c in enumerate(cells))
    game = load_csv(tmp_path, text).game
    assert [p.members[0].utility.b for p in game.players] == [float(c) for c in cells]


def _parquet(path, **columns):
    pq.write_table(pa.table(columns), path)


def test_parquet_members_equal_the_csv_ones(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 0.9, 50), rng.uniform(0, 10, 50)
    names = [f"u{k}" for k in range(50)]
    groups = ["A" if k % 2 else "B" for k in range(50)]
    _parquet(tmp_path / "u.parquet", name=names, group=groups, a=a, b=b)
    (tmp_path / "u.csv").write_text("name,group,a,b\n" + "".join(
        f"{n},{g},{float(x)!r},{float(y)!r}\n"
        for n, g, x, y in zip(names, groups, a, b)))
    games = []
    for file in ("u.csv", "u.parquet"):
        path = tmp_path / f"{file}.toml"
        path.write_text(f'[market]\nc = 0.001\n[[players]]\nname = "A"\nusers = '
                        f'"{file}"\ngroup = "A"\n[[players]]\nname = "B"\nusers = '
                        f'"{file}"\ngroup = "B"\n')
        games.append(load_scenario(path).game)
    for p, q in zip(*(g.players for g in games)):
        assert [(m.name, m.utility) for m in p.members] == \
            [(m.name, m.utility) for m in q.members]
    assert games[0].players[0].size == 25


@pytest.mark.parametrize("columns, expected", [
    ({"name": ["x", None], "a": [1.0, 1.0], "b": [2.0, 2.0]},
     "row 2: column 'name': must not be empty"),
    ({"name": ["x", "y"], "a": [1.0, float("nan")], "b": [2.0, 2.0]},
     "row 2: column 'a': must be a number for a quadratic utility, got an empty cell"),
    ({"name": ["x", "y"], "a": [1.0, math.inf], "b": [2.0, 2.0]},
     "row 2: column 'a': must be finite, got inf"),
    ({"name": ["x", "y"], "a": [1.0, 1.0], "b": [True, False]},
     "column 'b': has type bool; expected numbers or strings"),
    ({"name": [1, 2], "a": [1.0, 1.0], "b": [2.0, 2.0]},
     "column 'name': has type int64; expected strings"),
    ({"name": ["x", "y"], "a": ["1", "1_0"], "b": [2.0, 2.0]},
     "row 2: column 'a': must be a plain decimal number"),
    ({"name": ["x", "y"], "a": [1.0, 1.0], "b": [2.0, 2.0], "bb": [1, 1]},
     "column 'bb': unknown column"),
    ({"name": pa.array([], pa.string()), "a": pa.array([], pa.float64()),
      "b": pa.array([], pa.float64())}, "content: no rows"),
])
def test_parquet_follows_the_same_rules(tmp_path, columns, expected):
    _parquet(tmp_path / "u.parquet", **columns)
    (tmp_path / "s.toml").write_text(ONE.format(file="u.parquet"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "s.toml")
    assert str(info.value).split(": ", 1)[1].startswith(expected)


def test_a_broken_parquet_file_is_one_line(tmp_path):
    (tmp_path / "u.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "s.toml").write_text(ONE.format(file="u.parquet"))
    with pytest.raises(ScenarioError, match="content: not a Parquet file"):
        load_scenario(tmp_path / "s.toml")


def test_each_file_is_read_once_for_every_group(tmp_path, monkeypatch):
    reads = []
    real = paths.read_bytes

    def counting(path, *args, **kwargs):
        reads.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(paths, "read_bytes", counting)
    (tmp_path / "u.csv").write_text("name,group,a,b\n" + "".join(
        f"u{k},g{k % 20},1,{k % 7}\n" for k in range(200)))
    (tmp_path / "s.toml").write_text("[market]\nc = 0.001\n" + "".join(
        f'[[players]]\nname = "P{g}"\nusers = "u.csv"\ngroup = "g{g}"\n'
        for g in range(20)) + '[[individuals]]\nusers = "./u.csv"\ngroup = "g3"\n')
    with pytest.raises(ScenarioError, match="appear in more than one place"):
        load_scenario(tmp_path / "s.toml")  # g3's users twice: read once all the same
    reads.clear()
    entries = load_players(tmp_path / "s.toml")
    assert [p.name for p in reads].count("u.csv") == 1
    assert [len(e.members) for e in entries] == [10] * 21


def test_group_errors_name_the_field(tmp_path):
    (tmp_path / "u.csv").write_text("name,group,a,b\nx,A,1,2\n")
    (tmp_path / "v.csv").write_text("name,a,b\nx,1,2\n")
    for file, group, expected in (("u.csv", "B", "no row of u.csv has group 'B'"),
                                  ("v.csv", "A", "v.csv has no 'group' column")):
        path = tmp_path / "s.toml"
        path.write_text(f'[market]\nc = 0.001\n[[players]]\nname = "P"\n'
                        f'users = "{file}"\ngroup = "{group}"\n')
        with pytest.raises(ScenarioError, match=expected) as info:
            load_scenario(path)
        assert info.value.field == "players[0].group"


def test_load_players_gives_the_columns_the_users_are_built_from(tmp_path):
    (tmp_path / "u.csv").write_text(
        "name,group,utility,a,b,w\nq1,A,,0.5,3,\nl1,A,log,,,2\nq2,B,quadratic,1,4,\n")
    path = tmp_path / "s.toml"
    path.write_text('[market]\nc = 0.001\n[[players]]\nname = "A"\nusers = "u.csv"\n'
                    'group = "A"\nalpha = 1\n[[individuals]]\nusers = "u.csv"\n'
                    'group = "B"\n[[individuals]]\nname = "inline"\nutility = "log"\n'
                    'w = 5\n')
    entries = load_players(path)
    assert [(e.name, e.individual, e.alpha) for e in entries] == [
        ("A", False, 1.0), (None, True, 0.0), (None, True, 0.0)]
    first = entries[0].members
    assert list(first.names) == ["q1", "l1"]
    assert [FAMILIES[k] for k in first.family] == ["quadratic", "log"]
    np.testing.assert_array_equal(first.params["a"], [0.5, np.nan])
    np.testing.assert_array_equal(first.params["w"], [np.nan, 2.0])
    game = load_scenario(path).game
    for entry, players in ((entries[0], game.players[:1]),
                           (entries[1], game.players[1:2]),
                           (entries[2], game.players[2:])):
        members = [m for p in players for m in p.members]
        assert [m.name for m in members] == list(entry.members.names)
        for k, m in enumerate(members):
            assert m.utility.family == FAMILIES[entry.members.family[k]]
            for name, value in m.utility.params().items():
                assert entry.members.params[name][k] == value
