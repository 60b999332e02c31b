"""The certificate on members of wildly different scales, against an independent scan.

An aggregator of households (a ~ 0.5-1, b ~ 1-10) beside a huge member (a down to
1e-6, b up to 1e4) has a feasible interval of ~1e5-1e9 while everything that matters
to its households happens below ~10: an even grid there has no point but 0. The
certificate must prove such a profile an equilibrium only when it is one, for every
rule, both max-min readings and every alpha; tests/oracle.py's scan decides, sharing
no code with the certificate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from oracle import relative_regret

from aggregame import Game, LinearPrice, Player, QuadraticUtility, User
from aggregame.solvers.certify import certify
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium

#: The certificate's tolerance in these tests.
RTOL = 1e-6
#: A proved profile's regret by the scan may exceed RTOL by the scan's own error.
PROVED_SLACK = 1e-4
#: A regret the scan finds above this must never be proved.
CLEAR_GAIN = 1e-3


def _log_uniform(lo: float, hi: float):
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0 ** e)


@st.composite
def mixed_members(draw, count: int) -> list[User]:
    """Households and huge members side by side (at least one of each where there
    is room for both)."""
    kinds = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    if count > 1:
        kinds[0], kinds[1] = False, True
    out = []
    for k, huge in enumerate(kinds):
        if huge:
            a, b = draw(_log_uniform(1e-6, 1e-3)), draw(_log_uniform(100.0, 1e4))
        else:
            a, b = draw(st.floats(0.5, 1.0)), draw(st.floats(1.0, 10.0))
        out.append(User(f"m{k}", QuadraticUtility(a, b)))
    return out


@st.composite
def mixed_scale_games(draw) -> Game:
    alpha = draw(st.sampled_from((0.0, 1.0, 2.0, math.inf)))
    reading = draw(st.sampled_from(("total-surplus", "leximin")))
    # The reference's leximin search splits two members.
    count = 2 if (math.isinf(alpha) and reading == "leximin") else draw(
        st.integers(2, 4))
    aggregator = Player.aggregator(
        "agg", draw(mixed_members(count)), alpha=alpha,
        rule=draw(st.sampled_from(("floor", "viable", "strict"))),
        eps=draw(st.sampled_from((1e-3, 1e-2))), maxmin=reading)
    players = [aggregator]
    if draw(st.booleans()):
        players.append(Player.individual(User("single", QuadraticUtility(
            draw(st.floats(0.1, 1.0)), draw(st.floats(1.0, 10.0))))))
    return Game(tuple(players), LinearPrice(draw(_log_uniform(1e-5, 1e-2))))


def _check(game: Game, profile: np.ndarray) -> None:
    cert = certify(game, profile, RTOL)
    for j, result in enumerate(cert.players):
        scanned, where = relative_regret(game, j, profile)
        event(f"verdict {result.verdict.value}")
        if result.verdict.value == "proved":
            assert scanned <= PROVED_SLACK, (j, profile, scanned, where, result)
        if scanned > CLEAR_GAIN:
            assert result.verdict.value == "refuted", (j, profile, scanned, where,
                                                       result)


@pytest.mark.unit
@settings(max_examples=25)
@given(game=mixed_scale_games(), fractions=st.lists(st.floats(0.0, 1.0), min_size=2,
                                                    max_size=2))
def test_mixed_scale_profiles_are_never_proved_wrong(game, fractions):
    """At profiles anywhere in the feasible box, including the ones that price the
    households out (the aggregator buying most of a huge member's interval)."""
    profile = np.zeros(len(game.players))
    for j in range(len(game.players)):
        others = float(profile.sum() - profile[j])
        profile[j] = fractions[j] * game.feasible_max(j, others)
    _check(game, profile)


@pytest.mark.unit
@settings(max_examples=15)
@given(game=mixed_scale_games())
def test_mixed_scale_equilibria_are_proved_only_when_they_are(game):
    """Where the dynamics stop: proved means the scan finds no gain."""
    eq = solve_equilibrium(game, settings=DynamicsSettings(max_rounds=60))
    event(f"dynamics {eq.status}")
    _check(game, eq.profile)


def _household_game(reading: str, alpha: float = math.inf) -> Game:
    """The blind spot's game: three households beside one huge member, one
    individual, linear price c = 0.001."""
    members = [User("h1", QuadraticUtility(0.6, 3.0)),
               User("h2", QuadraticUtility(0.8, 3.5)),
               User("h3", QuadraticUtility(1.0, 4.0)),
               User("huge", QuadraticUtility(1e-4, 300.0))]
    return Game((Player.aggregator("agg", members, alpha=alpha, maxmin=reading),
                 Player.individual(User("single", QuadraticUtility(0.5, 5.0)))),
                LinearPrice(0.001))


@pytest.mark.unit
@pytest.mark.parametrize("reading", ["total-surplus", "leximin"])
def test_pricing_the_households_out_is_refuted(reading):
    """Buying enough to price every household out pins their levels at the floor;
    a small purchase keeps them in at ~2.2: the certificate finds it, however far
    below the huge member's interval it lies."""
    game = _household_game(reading)
    y_max = game.feasible_max(0, 5.0)
    profile = np.array([0.5 * y_max, 5.0])
    cert = certify(game, profile, RTOL)
    assert cert.players[0].verdict.value == "refuted"
    assert cert.players[0].deviation < 10.0 < profile[0]


@pytest.mark.unit
@pytest.mark.parametrize("reading", ["total-surplus", "leximin"])
def test_the_households_equilibrium_is_proved(reading):
    """The dynamics find the equilibrium that keeps the households in; it is
    proved, and the reference scan agrees (its leximin splits two members only, so
    under leximin it checks the individual; the mixed-scale property test holds
    two-member leximin aggregators against it)."""
    game = _household_game(reading)
    eq = solve_equilibrium(game)
    assert eq.is_equilibrium and eq.certificate.certified
    assert eq.price < 1.0  # households (b = 3-4) priced in
    for j in range(2) if reading == "total-surplus" else (1,):
        assert relative_regret(game, j, eq.profile)[0] <= PROVED_SLACK


@pytest.mark.unit
def test_a_member_exactly_at_its_threshold_is_solved():
    """A player whose members have U'(0) = p at the equilibrium (0, 2.5): the
    purchase left above its bound by the last moves of the others is cut to it,
    and the equilibrium is proved, not reported as regret inf."""
    members = [User("h1", QuadraticUtility(1.0, 2.5)),
               User("h2", QuadraticUtility(0.5, 2.5))]
    game = Game((Player.aggregator("agg", members, alpha=1.0),
                 Player.individual(User("single", QuadraticUtility(0.5, 7.5)))),
                LinearPrice(1.0))
    cert = certify(game, np.array([0.0, 2.5]), RTOL)
    assert cert.certified
    eq = solve_equilibrium(game)
    assert eq.is_equilibrium
    np.testing.assert_allclose(eq.profile, [0.0, 2.5], atol=1e-9)
