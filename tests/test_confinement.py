"""A scenario file is hostile: it reads files of its own folder only (after every
symbolic link), never echoes what lies outside, and names nothing unprintable.
Fuzzed paths and names join the loader's fuzz tests (tests/test_loader.py)."""

import json
import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aggregame import AggregameError, GameDefinitionError, Player, ScenarioError, User
from aggregame.checks import MAX_NAME_LENGTH
from aggregame.cli import ExitCode, main
from aggregame.errors import OutsideFolderError, ScenarioTypeError, UnknownPlayerError
from aggregame.scenario import Scenario, load_scenario
from aggregame.utilities import QuadraticUtility

pytestmark = pytest.mark.unit

SECRET = "SECRET-TOKEN-8c1f"
USERS = "name,a,b\nu1,1,2\nu2,0.5,3\n"


def scenario_with(folder: Path, users: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "s.toml"
    path.write_text(f'[market]\nc = 0.001\n[[players]]\nname = "A"\n'
                    f'users = {json.dumps(users)}\n')
    return path


@pytest.fixture
def outside(tmp_path):
    """A folder next to the scenario's, holding a secret where a header would be
    (every message that echoed a header would show it) and a valid users file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.csv").write_text(f"{SECRET},a,b\nx,1,2\n")
    (folder / "users.csv").write_text(USERS)
    return folder


def refused(path: Path) -> str:
    with pytest.raises(OutsideFolderError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message and SECRET not in message
    assert "--allow-outside" in message and info.value.file == str(path)
    assert info.value.field == "players[0].users"
    return message


def test_paths_leading_out_are_refused_before_reading(tmp_path, outside):
    here = tmp_path / "here"
    refused(scenario_with(here, str(outside / "secret.csv")))  # absolute
    refused(scenario_with(here, "../outside/secret.csv"))  # ..
    refused(scenario_with(here, "sub/../../outside/secret.csv"))
    refused(scenario_with(here, "/etc/passwd"))
    refused(scenario_with(here, "../outside/no-such-file.csv"))  # existence not told
    (here / "link.csv").symlink_to(outside / "secret.csv")
    refused(scenario_with(here, "link.csv"))  # a link leading out
    (here / "dir").symlink_to(outside, target_is_directory=True)
    refused(scenario_with(here, "dir/users.csv"))
    # Through aggregame's data/ folder (the fallback for shipped files) neither.
    refused(scenario_with(here, "../../../../../../../etc/passwd"))


def test_allow_outside_reads_them_and_the_package_data_stays_allowed(tmp_path,
                                                                      outside):
    here = tmp_path / "here"
    path = scenario_with(here, "../outside/users.csv")
    game = load_scenario(path, allow_outside=True).game
    assert [m.name for m in game.players[0].members] == ["u1", "u2"]
    (here / "link.csv").symlink_to(outside / "users.csv")
    assert load_scenario(scenario_with(here, "link.csv"), allow_outside=True)
    # Inside the folder (a subfolder, a link that stays inside): allowed.
    (here / "sub").mkdir()
    (here / "sub" / "u.csv").write_text(USERS)
    (here / "inner.csv").symlink_to(here / "sub" / "u.csv")
    for users in ("sub/u.csv", "./sub/../sub/u.csv", "inner.csv",
                  str(here / "sub" / "u.csv")):
        assert isinstance(load_scenario(scenario_with(here, users)), Scenario)
    # The shipped users, named from a scenario anywhere: the package's own folder.
    game = load_scenario(scenario_with(here, "paper_small_users.csv")).game
    assert game.players[0].size == 400


def test_cli_refuses_outside_paths_unless_allowed(tmp_path, outside, capsys):
    path = scenario_with(tmp_path / "here", "../outside/users.csv")
    for command in (["solve"], ["crosscheck", "--backends", "native"],
                    ["uniqueness", "--methods", "best-response", "--starts", "1"]):
        code = main([command[0], str(path), *command[1:], "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert code == ExitCode.BAD_INPUT and doc["command"] == command[0]
        assert doc["error"]["kind"] == "outside-folder"
        assert doc["error"]["file"] == str(path)
        assert doc["error"]["field"] == "players[0].users"
    assert main(["solve", str(path), "--allow-outside", "-q"]) == ExitCode.OK
    code = main(["compare", str(path), "--methods", "best-response", "--backends",
                 "native", "--out", str(tmp_path / "cmp"), "-q"])
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_INPUT and "--allow-outside" in err


# -- names -------------------------------------------------------------------------
BAD_NAMES = ["a\x1b[31mred", "two\nlines", "nul\x00", "tab\tbed", "bidi\u202eevil",
             "x" * (MAX_NAME_LENGTH + 1), "   ", ""]
GOOD_NAMES = ["Ümlaut-Ålborg", "中文 名字", "x" * MAX_NAME_LENGTH, "quote'\"s",
              "a,b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_everywhere(tmp_path, name):
    with pytest.raises(GameDefinitionError, match="field 'name'"):
        User(name, QuadraticUtility(1, 2))
    with pytest.raises(GameDefinitionError, match="field 'name'"):
        Player.aggregator(name, [User("u", QuadraticUtility(1, 2))])
    toml = tmp_path / "s.toml"
    toml.write_text(f'[market]\nc = 0.001\n[[players]]\nname = {_toml(name)}\n'
                    f'users = [{{name = "u", a = 1, b = 2}}]\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(toml)
    assert info.value.field == "players[0].name" and _clean(str(info.value))
    csv = tmp_path / "u.csv"
    quoted = '"' + name.replace('"', '""') + '"'
    csv.write_text(f"name,a,b\nok,1,2\n{quoted},1,2\n")
    toml.write_text('[market]\nc = 0.001\n[[individuals]]\nusers = "u.csv"\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(toml)
    message = str(info.value)
    assert _clean(message) and info.value.file == str(csv.resolve())
    assert message.startswith(f"{csv.resolve()}: line 3")


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_printable_names_load_as_written(tmp_path, name):
    toml = tmp_path / "s.toml"
    toml.write_text(f'[market]\nc = 0.001\n[[players]]\nname = {_toml(name)}\n'
                    f'users = [{{name = {_toml(name)}, a = 1, b = 2}}]\n')
    game = load_scenario(toml).game
    assert game.players[0].name == name and game.players[0].members[0].name == name


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; other characters raw)."""
    return json.dumps(text, ensure_ascii=False)


def _clean(text: str) -> bool:
    """No control or other non-printable character (a message is one safe line)."""
    return text.isprintable()


def test_output_never_prints_raw_control_characters(tmp_path, capsys):
    for argv, escaped in ((["solve", "no\x1b[2Jsuch"], "no\\x1b[2Jsuch"),
                          (["solve", str(tmp_path / "a\nb.toml")], "a\\nb.toml")):
        assert main(argv) == ExitCode.BAD_INPUT
        err = capsys.readouterr().err
        assert err.endswith("\n") and _clean(err[:-1]) and escaped in err
    # A scenario named by its file, whose name holds an escape.
    path = tmp_path / "evil\x1b[31m.toml"
    path.write_text('[market]\nc = 0.001\n[[individuals]]\nname = "v"\na = 1\nb = 2\n')
    assert main(["solve", str(path)]) == ExitCode.OK
    out, _ = capsys.readouterr()
    assert "\x1b" not in out and "evil\\x1b[31m" in out
    description = tmp_path / "d.toml"
    description.write_text('[scenario]\ndescription = "x\\u001b[2J"\n[market]\nc = 1\n'
                           '[[individuals]]\nname = "v"\na = 1\nb = 2\n')
    with pytest.raises(ScenarioError, match="scenario.description: must be one line"):
        load_scenario(description)


# -- reprs and typed misuse ---------------------------------------------------------
def test_reprs_are_short_and_misuse_raises_typed_errors():
    scenario = load_scenario("fig3")
    for thing in (scenario, scenario.game, scenario.game.players[0]):
        assert len(repr(thing)) < 300 and "\n" not in repr(thing)
    assert repr(scenario.game) == "Game(400 players, 400 members, LinearPrice(c=0.001))"
    assert repr(load_scenario("fig4").game.players[0]) == (
        "Player('aggregator-A', 100 members, alpha=0, rule=floor)")
    for bad in (123, None, 1.5, ["fig4"], b"fig4"):
        with pytest.raises(ScenarioTypeError, match="expected a scenario name or a "
                                                    "path") as info:
            load_scenario(bad)
        assert isinstance(info.value, TypeError) and isinstance(info.value,
                                                                AggregameError)
    with pytest.raises(UnknownPlayerError) as info:
        scenario.game.player("nope")
    assert isinstance(info.value, KeyError)
    assert str(info.value).startswith("no player named 'nope'; players are [")
    assert len(str(info.value)) < 300  # 400 players: the list is cut


# -- fuzz ---------------------------------------------------------------------------
path_parts = st.lists(st.sampled_from(["..", ".", "sub", "in", "out", "link-out",
                                       "link-in", "users.csv", "secret.csv", ""]),
                      min_size=1, max_size=5)


def _tree(root: Path) -> Path:
    """root/here (the scenario's folder: sub/, in/users.csv, link-in -> in,
    link-out -> ../out) and root/out (users.csv, secret.csv)."""
    here, out = root / "here", root / "out"
    if not here.exists():
        (here / "sub").mkdir(parents=True)
        (here / "in").mkdir()
        out.mkdir()
        for folder in (here, here / "in", here / "sub", out):
            (folder / "users.csv").write_text(USERS)
        (out / "secret.csv").write_text(f"{SECRET},a,b\nx,1,2\n")
        (here / "in" / "secret.csv").write_text(f"{SECRET},a,b\nx,1,2\n")
        (here / "link-in").symlink_to(here / "in", target_is_directory=True)
        (here / "link-out").symlink_to(out, target_is_directory=True)
    return here


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=path_parts, absolute=st.booleans())
def test_fuzz_paths_load_inside_or_refuse_without_reading(tmp_path, parts, absolute):
    here = _tree(tmp_path)
    source = "/".join(parts)
    if absolute:
        source = str(here / source)
    path = scenario_with(here, source)
    target = (here / source).resolve()
    inside = target == here.resolve() or here.resolve() in target.parents
    try:
        game = load_scenario(path).game
    except OutsideFolderError as err:
        assert not inside and SECRET not in str(err)
        return
    except ScenarioError as err:  # not found, a folder, a bad header...
        assert "\n" not in str(err)
        # Only a file inside may be read, so only inside may a header be echoed.
        assert SECRET not in str(err) or inside
        return
    assert inside and [m.name for m in game.players[0].members] == ["u1", "u2"]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=8) | st.text(alphabet=string.printable, max_size=8)
       | st.sampled_from(BAD_NAMES + GOOD_NAMES), where=st.sampled_from(
           ["toml", "csv"]))
def test_fuzz_names_load_as_written_or_refuse_in_one_clean_line(tmp_path, name,
                                                                 where):
    # A CSV cell is trimmed: only names without surrounding spaces read as written.
    assume(where == "toml" or name == name.strip())
    path = tmp_path / "s.toml"
    if where == "toml":
        path.write_text(f'[market]\nc = 0.001\n[[individuals]]\n'
                        f'name = {_toml(name)}\na = 1\nb = 2\n', encoding="utf-8",
                        errors="surrogatepass")
    else:
        quoted = '"' + name.replace('"', '""') + '"'
        (tmp_path / "u.csv").write_bytes(f"name,a,b\n{quoted},1,2\n".encode(
            "utf-8", "surrogatepass"))
        path.write_text('[market]\nc = 0.001\n[[individuals]]\nusers = "u.csv"\n')
    valid = bool(name.strip()) and len(name) <= MAX_NAME_LENGTH and name.isprintable()
    try:
        loaded = load_scenario(path).game.players[0].name
    except AggregameError as err:
        assert _clean(str(err)), repr(str(err))
        assert not valid, str(err)
        return
    assert valid and loaded == name


def test_a_nul_byte_or_a_long_name_in_a_path_is_not_found_not_a_crash(capsys):
    for weird in ("a\x00b", "x" * 5000):
        with pytest.raises(ScenarioError, match="not found"):
            load_scenario(weird)
    assert main(["solve", "a\x00b"]) == ExitCode.BAD_INPUT
    assert "\\x00" in capsys.readouterr().err


def test_paths_module_reads_no_fifo_or_device(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    path = scenario_with(tmp_path, "pipe.csv")
    with pytest.raises(ScenarioError, match="is a device or pipe"):
        load_scenario(path)  # returns at once: no open() blocks on the pipe
