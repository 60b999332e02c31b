"""What a study keeps of one equilibrium search, and a cache of them shared by studies.

Several studies solve the same game: Fig. 4's games are Fig. 6's at seed 0, Fig. 8's
and the two-aggregator games of Figs. 10 and 12 are Fig. 6's too, and robustness
variants of one study meet those of another. A solve is keyed by everything that
determines its result (the players, their members' utilities, the fairness and its
choices, the price, the backend, the dynamics' settings and a digest of the code of
the game definition, the models and the solvers), and its :class:`Outcome` is kept
as ``<key>.json`` in a folder that every study of one report shares (``--out``'s
``solved/``). A hit returns the stored outcome; since the key holds everything the
solve depends on, it is the number a fresh solve gives, bit for bit (JSON keeps a
float's shortest round-trip repr). A missing, unreadable or foreign file is a miss:
the game is solved and the file written again (atomically).

Runs that end without a certified equilibrium are outcomes too: ``equilibrium`` is
False, ``reason`` says why, and studies record them, never average them in.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from aggregame import Game, Player, Price
from aggregame.settings import Backend

LOG = logging.getLogger(__name__)

#: Where solves are cached in this process (set by the study runner per task).
_FOLDER: list[Path | None] = [None]


@dataclass(frozen=True)
class PlayerOutcome:
    """One player at the end point: its purchase, and each member's x and s."""

    name: str
    y: float
    members: tuple[str, ...]
    x: tuple[float, ...]
    s: tuple[float, ...]


@dataclass(frozen=True)
class Outcome:
    """The end point of a best-response run and its evidence."""

    equilibrium: bool
    status: str
    reason: str
    rounds: int
    max_regret: float
    price: float
    path: tuple[tuple[float, ...], ...]
    players: tuple[PlayerOutcome, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.players)

    def small_users(self) -> tuple[np.ndarray, np.ndarray]:
        """Consumption and surplus of every small user (members named s...)."""
        pairs = [(x, s) for p in self.players for m, x, s in zip(p.members, p.x, p.s)
                 if m.startswith("s")]
        x, s = zip(*pairs) if pairs else ((), ())
        return np.array(x, dtype=float), np.array(s, dtype=float)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["max_regret"] = _num(self.max_regret)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Outcome":
        players = tuple(PlayerOutcome(p["name"], float(p["y"]), tuple(p["members"]),
                                      tuple(map(float, p["x"])),
                                      tuple(map(float, p["s"])))
                        for p in doc["players"])
        regret = doc["max_regret"]
        path = tuple(tuple(map(float, y)) for y in doc["path"])
        return cls(bool(doc["equilibrium"]), str(doc["status"]), str(doc["reason"]),
                   int(doc["rounds"]), math.inf if regret is None else float(regret),
                   float(doc["price"]), path, players)


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@contextlib.contextmanager
def cache_folder(folder: str | Path | None) -> Iterator[None]:
    """Cache this process's solves in ``folder`` (None: no cache) while inside."""
    previous = _FOLDER[0]
    _FOLDER[0] = Path(folder) if folder is not None else None
    try:
        yield
    finally:
        _FOLDER[0] = previous


def solver_code() -> list[tuple[Path, Path]]:
    """(package folder, file) of every module that computes an equilibrium: the game
    definition, the models and the solvers."""
    import aggregame
    import aggregame.models
    import aggregame.solvers

    return [(folder, path)
            for folder in (Path(package.__file__).parent for package in
                           (aggregame, aggregame.models, aggregame.solvers))
            for path in sorted(folder.rglob("*.py"))]


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    digest = hashlib.sha256()
    for folder, path in solver_code():
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _describe_player(player: Player) -> dict[str, Any]:
    f = player.fairness
    return {"name": player.name, "alpha": repr(f.alpha), "rule": f.rule.value,
            "eps": repr(f.eps), "maxmin": f.maxmin.value,
            "members": [[m.name, m.utility.family,
                         {k: repr(v) for k, v in m.utility.params().items()}]
                        for m in player.members]}


def solve_key(players: Sequence[Player], price: Price, backend: str,
              settings: dict[str, Any]) -> str:
    """The cache key of a solve: a digest of everything its result depends on."""
    doc = {"players": [_describe_player(p) for p in players],
           "price": {k: repr(v) for k, v in price.describe().items()},
           "backend": str(backend), "settings": settings, "code": _code_digest()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _read(path: Path, key: str) -> Outcome | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("key") == key:
            return Outcome.from_json(doc["outcome"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        LOG.warning("%s: unreadable cached solve (%s); solving again", path, err)
    return None


def _write(path: Path, key: str, outcome: Outcome) -> None:
    from aggregame.studies.worker import write_whole

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, json.dumps({"key": key, "outcome": outcome.to_json()}))
    except OSError as err:  # a cache that cannot be written is no cache
        LOG.warning("%s: cannot cache this solve (%s)", path, err)


def solve_players(players: Sequence[Player], price: Price,
                  backend: str = Backend.NATIVE) -> Outcome:
    """The outcome of best-response dynamics on the game of ``players`` at ``price``
    (from the cache where this process has one and it holds the game)."""
    from aggregame.studies.common import MAX_ROUNDS
    from aggregame.solvers.equilibrium.dynamics import DynamicsSettings

    settings = DynamicsSettings(max_rounds=MAX_ROUNDS)
    folder = _FOLDER[0]
    key = solve_key(players, price, backend, settings.describe()) if folder else ""
    if folder is not None:
        hit = _read(folder / f"{key}.json", key)
        if hit is not None:
            return hit
    outcome = _solve(Game(tuple(players), price), backend, settings)
    if folder is not None:
        _write(folder / f"{key}.json", key, outcome)
    return outcome


def _solve(game: Game, backend: str, settings: Any) -> Outcome:
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

    eq = solve_equilibrium(game, backend=backend, settings=settings)
    players = tuple(PlayerOutcome(p.name, float(eq.profile[j]),
                                  tuple(m.name for m in p.members),
                                  tuple(map(float, eq.allocations[j])),
                                  tuple(map(float, eq.surpluses[j])))
                    for j, p in enumerate(game.players))
    return Outcome(eq.is_equilibrium, eq.status.value, eq.reason(), int(eq.iterations),
                   float(eq.max_regret), float(eq.price),
                   tuple(tuple(map(float, y)) for y in eq.path), players)


def evidence(outcome: Outcome) -> dict[str, Any]:
    """The columns every results row carries about its solve."""
    return {"equilibrium": outcome.equilibrium, "status": outcome.status,
            "rounds": outcome.rounds, "max_regret": _num(outcome.max_regret),
            "reason": None if outcome.equilibrium else outcome.reason}
