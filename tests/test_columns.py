"""Members held as columns: the User view, the checks over whole arrays, and games
built from columns equal to the same games built from User objects."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregame import (
    AggregameError,
    Game,
    GameDefinitionError,
    LinearPrice,
    LogUtility,
    Player,
    QuadraticUtility,
    User,
    load_scenario,
)
from aggregame.members import FAMILIES, MemberColumns, Members
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.inner.native import NativeInner
from strategies import games, purchases

pytestmark = pytest.mark.unit


def _columns_of(users: list[User]) -> MemberColumns:
    """The columns of ``users`` built from raw lists by MemberColumns.build (not by
    from_users, which a Player of Users calls)."""
    params: dict[str, list[float]] = {"a": [], "b": [], "w": []}
    for u in users:
        for name, column in params.items():
            column.append(getattr(u.utility, name, math.nan))
    return MemberColumns.build([u.name for u in users], params,
                               [u.utility.family for u in users])


def _twin(game: Game) -> Game:
    """``game`` with every player's members given as columns."""
    players = tuple(Player(p.name, _columns_of(list(p.members)), p.fairness)
                    for p in game.players)
    return Game(players, game.price)


@st.composite
def mixed_games(draw):
    """games() with some members turned into log users (two families, in any
    order inside a player)."""
    game = draw(games(max_players=3))
    players = []
    for p in game.players:
        members = [User(f"{m.name}log", LogUtility(m.utility.b))
                   if draw(st.booleans()) else m for m in p.members]
        players.append(Player(p.name, members, p.fairness))
    return Game(tuple(players), game.price)


def _same_rows(game: Game, twin: Game) -> None:
    """Every player's inner solves at purchases across its feasible interval agree
    bit for bit (allocations, payoffs, residuals) on both games."""
    for j in range(len(game.players)):
        y = purchases(game, j, 1.0)
        rows = []
        for g in (game, twin):
            try:
                rows.append(NativeInner(g, j).solve(y, 1.0))
            except AggregameError as err:  # a solver failure: the same on both
                rows.append(str(err))
        if isinstance(rows[0], str):
            assert rows[0] == rows[1]
            continue
        for field in ("x", "surplus", "welfare", "residual"):
            a, b = (getattr(r, field) for r in rows)
            assert np.array_equal(a, b, equal_nan=True), field


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mixed_games())
def test_a_game_from_columns_is_the_game_from_users(game):
    """Same description, families and inner solves bit for bit, whichever way the
    members were given (two utility families, in any order)."""
    twin = _twin(game)
    assert twin.describe() == game.describe()
    for p, q in zip(game.players, twin.players):
        assert list(q.members) == list(p.members)
        for f, g in zip(p.families, q.families, strict=True):
            assert f.family is g.family and np.array_equal(f.index, g.index)
            assert all(np.array_equal(f.params[k], g.params[k]) for k in f.params)
    _same_rows(game, twin)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(games(max_players=3))
def test_a_game_from_columns_has_the_same_equilibrium(game):
    """The same equilibrium bit for bit (profile, price, allocations, certificate,
    the result's member tables)."""
    twin = _twin(game)
    results = []
    for g in (game, twin):
        try:
            results.append(solve_equilibrium(g))
        except AggregameError as err:  # a solver failure: the same on both
            results.append(str(err))
    eq, eq2 = results
    if isinstance(eq, str):
        assert eq == eq2
        return
    assert np.array_equal(eq.profile, eq2.profile)
    assert eq.price == eq2.price and eq.is_equilibrium == eq2.is_equilibrium
    assert all(np.array_equal(a, b) for a, b in zip(eq.allocations, eq2.allocations))
    assert eq.to_dict()["players"] == eq2.to_dict()["players"]


def test_members_is_a_read_only_sequence_of_users():
    users = [User("q1", QuadraticUtility(0.5, 3.0)), User("l1", LogUtility(2.0)),
             User("q2", QuadraticUtility(0.25, 4.0))]
    p = Player.aggregator("P", users)
    view = p.members
    assert isinstance(view, Members) and len(view) == 3
    assert list(view) == users and view == users and tuple(users) == view
    assert view[1] == users[1] and view[-1] == users[2] and view[1] is view[1]
    assert list(view[1:]) == users[1:] and isinstance(view[1:], Members)
    assert users[2] in view and view.index(users[1]) == 1
    with pytest.raises(IndexError):
        view[3]
    with pytest.raises(TypeError):
        view[0] = users[0]
    with pytest.raises(ValueError):  # the arrays a player holds cannot be changed
        p.columns.params["a"][0] = 1.0
    # A view given back (dataclasses.replace, Player(p.name, p.members, ...)) keeps
    # the same columns.
    assert Player("Q", p.members).columns is p.columns


def test_families_and_formulas_read_the_columns_without_users():
    columns = MemberColumns.build(["q", "l", "r"], {"a": [0.5, np.nan, 2.0],
                                                     "b": [3.0, np.nan, 5.0],
                                                     "w": [np.nan, 2.0, np.nan]},
                                  ["quadratic", "log", "quadratic"])
    with mock.patch.object(User, "__post_init__", side_effect=AssertionError):
        p = Player.aggregator("P", columns)
        x = np.array([1.0, 2.0, 0.5])
        expected = np.array([-0.5 + 3.0, 2.0 * math.log(3.0), -0.5 + 2.5])
        assert np.allclose(p.evaluate("U", x), expected, rtol=1e-15)
        assert np.array_equal(p.marginal_at_zero, [3.0, 2.0, 5.0])
        xbar = p.zero_surplus_consumption(1.0)
        assert xbar[0] == 4.0 and xbar[2] == 2.0 and xbar[1] > 0
        assert [f.family for f in p.families] == [QuadraticUtility, LogUtility]
        assert p.describe()["members"][1] == {"name": "l", "utility": "log", "w": 2.0}
        Game((p,), LinearPrice(0.01))


def test_the_loader_builds_no_user():
    with mock.patch.object(User, "__post_init__", side_effect=AssertionError):
        game = load_scenario("fig4").game
    assert [p.size for p in game.players] == [100, 100, 1]


# -- the checks a User makes, over whole arrays -------------------------------------
BAD_COLUMNS = [
    ({"names": ["u0", "u1"], "a": [0.5, -1.0]},
     r"player 'P', user 'u1' \(member 1\): field 'a' must be > 0 for a quadratic "
     r"utility, got -1.0"),
    ({"names": ["u0", "u1"], "b": [np.nan, 1.0]},
     r"player 'P', user 'u0' \(member 0\): field 'b' must be finite, got nan"),
    ({"names": ["u0", "u1"], "a": [0.5, np.inf]},
     r"user 'u1' \(member 1\): field 'a' must be finite, got inf"),
    ({"names": ["u0", "u1\x1b[31m"]},
     r"player 'P', member 1: field 'name' must hold printable characters only"),
    ({"names": ["u0", "   "]}, r"player 'P', member 1: field 'name' must not be "
                               r"empty"),
    ({"names": ["u0", "x" * 201]}, r"member 1: field 'name' must have at most 200"),
    ({"names": ["u0", 7]}, r"member 1: field 'name' must be a string, got an "
                           r"integer 7"),
    ({"names": ["u0", "u0"]}, r"player 'P': duplicate user name\(s\) \['u0'\] "
                              r"\(members 0 and 1\)"),
]


@pytest.mark.parametrize(("change", "message"), BAD_COLUMNS)
def test_bad_columns_give_one_line_naming_player_and_member(change, message):
    names = change.pop("names")
    params = {"a": [0.5, 0.25], "b": [3.0, 2.0], **change}
    columns = MemberColumns.build(names, params)
    with pytest.raises(GameDefinitionError, match=message) as err:
        Player.aggregator("P", columns)
    assert "\n" not in str(err.value)


def test_a_user_in_two_players_is_named_with_both():
    one = MemberColumns.build(["u0", "u1"], {"a": [0.5, 0.5], "b": [1.0, 2.0]})
    two = MemberColumns.build(["v0", "u1"], {"a": [0.5, 0.5], "b": [1.0, 2.0]})
    with pytest.raises(GameDefinitionError, match=r"user name\(s\) \['u1'\] appear in "
                       r"more than one place \(players 'A' and 'B'\)"):
        Game((Player("A", one), Player("B", two)), LinearPrice(0.01))


def test_malformed_columns_are_refused():
    with pytest.raises(ValueError, match="3 values for 2 members"):
        MemberColumns.build(["u0", "u1"], {"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0]})
    with pytest.raises(ValueError, match="not a utility parameter"):
        MemberColumns.build(["u0"], {"a": [1.0], "c": [1.0]})
    with pytest.raises(ValueError, match=r"must be one of \['log', 'quadratic'\]"):
        MemberColumns.build(["u0"], {"a": [1.0]}, "cubic")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FAMILIES),
                          st.sampled_from(["u", "v", "", " ", "w\x00", "é", "x" * 201]),
                          st.sampled_from([1.0, 0.0, -1.0, 2.5, math.inf, math.nan]),
                          st.sampled_from([1.0, 0.0, -1.0, 2.5, math.inf, math.nan])),
                min_size=1, max_size=6))
def test_columns_are_refused_exactly_when_users_are(rows):
    """A member the User and Utility classes refuse is refused in columns, on the
    same field; names that repeat are refused either way."""
    names = [f"{name}{k}" if name not in ("", " ") else name
             for k, (_, name, _, _) in enumerate(rows)]
    if rows and rows[-1][1] == "u":
        names[-1] = names[0]  # sometimes a repeat
    params = {"a": [r[2] for r in rows], "b": [r[3] for r in rows],
              "w": [r[2] for r in rows]}
    families = [r[0] for r in rows]

    def by_users():
        users = [User(n, QuadraticUtility(a, b) if f == "quadratic" else
                      LogUtility(w)) for n, f, a, b, w in
                 zip(names, families, params["a"], params["b"], params["w"])]
        return Player.aggregator("P", users)

    try:
        by_users()
        expected = None
    except GameDefinitionError as err:
        expected = err
    columns = MemberColumns.build(names, params, families)
    if expected is None:
        Player.aggregator("P", columns)
        return
    with pytest.raises(GameDefinitionError) as got:
        Player.aggregator("P", columns)
    if getattr(expected, "field", None):
        assert f"field '{expected.field}'" in str(got.value)
