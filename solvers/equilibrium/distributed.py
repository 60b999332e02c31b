"""Backward replies on a Dask cluster, for games beyond one machine.

Given a total, players are independent (solvers/equilibrium/replies.py), so the
players are split into one shard per worker. Each shard is a Dask actor built on its
worker from the shard's own players (a game of them, with the price): their members
are shipped once, when the shard is made, and never again; a total costs one small
message per shard and returns the candidates. The replies are the very ones a local
search computes (the same code on the same players).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aggregame.errors import AggregameError
from aggregame.players import Game
from aggregame.solvers.equilibrium.replies import (
    PlayerReplies,
    Replies,
    falls_with_total,
)

#: Seconds to wait for a scheduler before giving up, with one line.
CONNECT_TIMEOUT = 3


def connect(address: str) -> Any:
    """A client of the Dask scheduler at ``address``, or one line saying why not."""
    if not address or not address.strip():
        raise AggregameError("--dask: an empty scheduler address; give one such as "
                             "tcp://host:8786, or leave --dask out to run locally")
    import dask
    from distributed import Client

    try:
        with dask.config.set({"distributed.comm.timeouts.connect":
                              f"{CONNECT_TIMEOUT}s"}):
            return Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError, TypeError) as err:
        raise AggregameError(f"--dask {address}: cannot reach a Dask scheduler: "
                             f"{' '.join(str(err).split())}") from None


class ShardReplies:
    """The backward replies of one shard of players (a Dask actor on a worker).

    ``game`` holds only the shard's players and the price; ``falling`` says, per
    player, whether its reply falls with the total in the whole game (a property of
    the player and the price, read where the whole game is known)."""

    def __init__(self, game: Game, falling: list[bool]) -> None:
        self.replies = [PlayerReplies(game, j) for j in range(len(game.players))]
        self.falling = falling

    def at(self, total: float) -> list[Replies]:
        return [r.at(total, f) for r, f in zip(self.replies, self.falling)]


class DaskReplies:
    """Every player's replies at a total, computed by one actor per worker."""

    def __init__(self, client: Any, game: Game) -> None:
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise AggregameError("--dask: the scheduler has no workers")
        count = min(len(workers), len(game.players))
        shards = np.array_split(np.arange(len(game.players)), count)
        self.order = np.concatenate(shards)
        self.actors = []
        for worker, shard in zip(workers, shards):
            part = Game(tuple(game.players[j] for j in shard), game.price)
            falling = [falls_with_total(game, int(j)) for j in shard]
            future = client.submit(ShardReplies, part, falling, actor=True,
                                   workers=[worker], allow_other_workers=False,
                                   pure=False)
            self.actors.append(future.result())

    def at(self, total: float) -> list[Replies]:
        """Every player's replies at ``total``, in the game's player order."""
        pending = [actor.at(total) for actor in self.actors]
        flat = [r for p in pending for r in p.result()]
        out: list[Replies | None] = [None] * len(flat)
        for position, j in enumerate(self.order):
            out[int(j)] = flat[position]
        return out
