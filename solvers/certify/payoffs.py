"""A player's payoffs at the purchases the certificate evaluates, and how they rank.

Every purchase is a row of the certificate's own inner solver (no state shared with
the search that produced the profile; a one-member player's payoff is a formula,
aggregame.one_member). Rows are kept with what the bounds need (the multiplier of
sum x = y, the price) and what the proof needs (the allocations).

Payoffs rank by the player's own order (docs/model.md, section "Certificate"):

* ``SCALAR``: J_j (alpha < inf, and every one-member player: its payoff rises with
  its one surplus);
* ``MAXMIN`` (max-min, total-surplus reading): the level min_i (s_i + e_i), ties
  broken by the total surplus;
* ``LEXIMIN``: the sorted vector of levels, compared component by component.

Two levels tie when they differ by less than LEVEL_TIE_RTOL of the levels compared
(never of the largest level of the player: a household's level 0.01 against 2.26
must not tie because another member's level is 2e8). A level pinned by a priced-out
member is known exactly (its floor), so pinned levels tie exactly.
"""

from __future__ import annotations

import enum
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from aggregame.leximin import compare
from aggregame.leximin import first_difference as leximin_first_difference
from aggregame.leximin import levels as sorted_levels
from aggregame.one_member import OneMemberPayoff
from aggregame.players import Game
from aggregame.solvers.inner.batch import InnerBatch
from aggregame.solvers.inner.native import CHUNK_ELEMENTS, NativeInner

#: Two levels closer than this, relative to the larger of the two, are equal.
LEVEL_TIE_RTOL = 1e-12
#: Members from which a player's rows are solved in two halves (``_solved``).
SPLIT_MEMBERS = 20_000


_ROW_THREAD: list[ThreadPoolExecutor] = []
_ROW_THREAD_LOCK = threading.Lock()


def _row_thread() -> ThreadPoolExecutor:
    """The one thread that solves the second half of a large player's rows, for
    the whole process: the arrays it frees stay in its own malloc arena for the
    next half (solvers/inner/malloc.py), where a new thread per evaluation took a
    new arena each time, ~150 MB more at 10^6 members. The first half runs in the
    caller's thread."""
    with _ROW_THREAD_LOCK:
        if not _ROW_THREAD:
            _ROW_THREAD.append(ThreadPoolExecutor(
                1, thread_name_prefix="aggregame-rows"))
        return _ROW_THREAD[0]


class PayoffKind(enum.Enum):
    """How a player's payoffs rank (module docstring)."""

    SCALAR = "scalar"
    MAXMIN = "maxmin"
    LEXIMIN = "leximin"

    @classmethod
    def of(cls, game: Game, j: int) -> "PayoffKind":
        fairness = game.players[j].fairness
        if not fairness.is_maxmin or game.players[j].size == 1:
            return cls.SCALAR
        return cls.LEXIMIN if fairness.is_leximin else cls.MAXMIN


def levels_tie(a: float, b: float) -> bool:
    """Levels equal to LEVEL_TIE_RTOL of the two compared (exactly equal pinned
    levels, and equal infinities, tie too)."""
    if a == b:
        return True
    return abs(a - b) <= LEVEL_TIE_RTOL * max(abs(a), abs(b))


@dataclass
class Rows:
    """Every evaluated purchase of one player, in evaluation order (columns)."""

    y: list[float] = field(default_factory=list)
    welfare: list[float] = field(default_factory=list)
    tiebreak: list[float] = field(default_factory=list)
    #: lambda (alpha < inf), nu of the tie-break stage (max-min), NaN where none.
    multiplier: list[float] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    #: Leximin: each row's sorted levels; else None per row.
    vectors: list[np.ndarray | None] = field(default_factory=list)
    #: (batch, row) of the inner solution behind each payoff (None: a formula, or
    #: an allocation not kept: ``Payoffs._add_batch``).
    source: list[tuple[InnerBatch, int] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


class BatchLedger(Protocol):
    """What takes each batch of inner solutions as it comes: ``prepare`` reads
    the batch alone (in a worker thread, for a large player), ``record`` keeps its
    result, in row order."""

    def part(self) -> Any:
        """What one part of an evaluation (batches one thread solves in turn)
        shares between its ``prepare`` calls."""

    def prepare(self, payoffs: "Payoffs", batch: InnerBatch, first: int,
                part: Any) -> Any:
        """``batch``'s rows will be rows ``first``, ``first + 1``, ... of
        ``payoffs``."""

    def record(self, prepared: Any) -> None:
        """Keep what ``prepare`` gave."""


class Payoffs:
    """Payoffs of one player's purchases against the others' total ``others``."""

    def __init__(self, game: Game, j: int, others: float, compiled: bool = True,
                 ledger: BatchLedger | None = None, workers: int = 1) -> None:
        self.game, self.j, self.others = game, j, others
        #: Threads a large player's rows run in (``_solved``).
        self.workers = workers
        self._second_inner: NativeInner | None = None
        #: Told of every batch of inner solutions as it comes (the certificate's
        #: proof of the compiled rows, solvers/certify/proof.py).
        self.ledger = ledger
        self.player = game.players[j]
        self.kind = PayoffKind.of(game, j)
        self.one_member = OneMemberPayoff.of(game, j)
        self.inner = None if self.one_member is not None else NativeInner(
            game, j, compiled=compiled)
        self.rows = Rows()
        #: Indices of the evenly spread rows: the payoff's scale is read from them.
        self.spread: list[int] = []
        self.batches: list[InnerBatch] = []
        self._medians: dict[tuple[str | int, int], float] = {}
        self._spans: dict[tuple[str | int, int, int], float] = {}
        # The level at which a counted priced-out member pins a max-min player, and
        # the price from which it does (None: never, e.g. the viable rule).
        fairness = self.player.fairness
        self._pin_price = float(self.player.marginal_at_zero.min()) if (
            fairness.is_maxmin and fairness.rule.counted(np.array([True]))[0]) \
            else None
        self.pinned_level = fairness.floor

    # -- evaluation ---------------------------------------------------------------
    def evaluate(self, ys, spread: bool = False) -> list[int]:
        """Row indices of the payoffs at purchases ``ys`` (``_solved``);
        ``spread`` marks them as the payoff's scale samples."""
        ys = np.atleast_1d(np.asarray(ys, dtype=float))
        first = len(self.rows)
        if self.one_member is not None:
            self._add_formulas(ys)
        else:
            for batch, prepared in self._solved(ys, first):
                self._add_batch(batch, prepared)
        out = list(range(first, len(self.rows)))
        if spread:
            self.spread.extend(out)
        return out

    def _solved(self, ys: np.ndarray, first: int) -> list[tuple[InnerBatch, Any]]:
        """(batch, the ledger's evidence on it) of purchases ``ys``, in order, in
        batches of at most CHUNK_ELEMENTS purchases x members. A player of
        SPLIT_MEMBERS members or more solves each half of ``ys`` with an inner
        solver of its own, in ``workers`` threads: the same rows however many
        threads run them."""
        step = max(1, CHUNK_ELEMENTS // max(self.player.size, 1))
        if self.player.size < SPLIT_MEMBERS or ys.size < 2 * step:
            return self._solve_part(self.inner, ys, first, step, self._part())
        if self._second_inner is None:
            self._second_inner = NativeInner(self.game, self.j,
                                             compiled=self.inner.compiled,
                                             like=self.inner)
        half = ys.size // 2
        parts = ((self.inner, ys[:half], first, step, self._part()),
                 (self._second_inner, ys[half:], first + half, step, self._part()))
        if self.workers < 2:
            return self._solve_part(*parts[0]) + self._solve_part(*parts[1])
        second = _row_thread().submit(self._solve_part, *parts[1])
        try:
            first_half = self._solve_part(*parts[0])
        finally:
            second_half = second.result()
        return first_half + second_half

    def _part(self) -> Any:
        return None if self.ledger is None else self.ledger.part()

    def _solve_part(self, inner: NativeInner, ys: np.ndarray, first: int,
                    step: int, part: Any) -> list[tuple[InnerBatch, Any]]:
        """``_solved`` of one part, each batch starting where the last ended
        (``NativeInner.carry``); a batch whose allocations are not kept
        (``_keeps``) is stripped of them once the ledger has read them."""
        out = []
        for k in range(0, ys.size, step):
            batch = inner.solve(ys[k:k + step], self.others)
            if k + step < ys.size:
                inner.carry(batch)
            prepared = None if self.ledger is None else self.ledger.prepare(
                self, batch, first + k, part)
            if not self._keeps:
                batch = replace(batch, x=None, surplus=None)
            out.append((batch, prepared))
        return out

    def _add_formulas(self, ys: np.ndarray) -> None:
        point = self.one_member.batch(ys, self.others)
        rows = self.rows
        rows.y.extend(point.y.tolist())
        rows.welfare.extend(point.welfare.tolist())
        rows.tiebreak.extend(point.surplus.tolist())
        rows.multiplier.extend(point.slope.tolist())
        rows.price.extend(point.price.tolist())
        rows.vectors.extend([None] * ys.size)
        rows.source.extend([None] * ys.size)

    @property
    def _keeps(self) -> bool:
        """Whether rows keep their allocations: the bounds read them (max-min,
        leximin), or no ledger proves them as they come."""
        return self.kind is not PayoffKind.SCALAR or self.ledger is None

    def _add_batch(self, batch: InnerBatch, prepared: Any) -> None:
        """The batch's rows, and the ledger's evidence on them."""
        rows = self.rows
        keep = self._keeps
        if keep:
            self.batches.append(batch)
        mult = batch.tiebreak_multiplier if self.kind is PayoffKind.MAXMIN \
            else batch.multiplier
        vectors = None
        if self.kind is PayoffKind.LEXIMIN:
            vectors = sorted_levels(self.player, batch.surplus, batch.price)
            vectors = np.where(np.isneginf(batch.welfare)[:, None], -np.inf, vectors)
        for k in range(batch.y.size):
            y = float(batch.y[k])
            rows.y.append(y)
            rows.welfare.append(self._read_level(y, float(batch.welfare[k])))
            rows.tiebreak.append(float(batch.tiebreak[k]))
            rows.multiplier.append(math.nan if mult is None else float(mult[k]))
            rows.price.append(float(batch.price[k]))
            rows.vectors.append(None if vectors is None else vectors[k])
            rows.source.append((batch, k) if keep else None)
        if self.ledger is not None:
            self.ledger.record(prepared)

    # -- the max-min level pinned by a priced-out member ------------------------
    def pinned(self, y: float) -> bool:
        """True when a counted member is priced out at purchase y (floor and strict
        rules): the level is then exactly its floor, the least there is, and stays
        so for every larger purchase (the price only rises)."""
        return self._pin_price is not None and float(
            self.game.price.value(self.others + y)) >= self._pin_price

    def _read_level(self, y: float, welfare: float) -> float:
        """Where the level is pinned, its exact value (the computed one differs by
        the surpluses' rounding between purchases, which would rank them)."""
        if self.kind is not PayoffKind.SCALAR and self.pinned(y) \
                and math.isfinite(welfare):
            return self.pinned_level
        return welfare

    # -- order --------------------------------------------------------------------
    def compare(self, i: int, k: int) -> int:
        """+1 when row i ranks above row k, -1 below, 0 tied."""
        r = self.rows
        wi, wk = r.welfare[i], r.welfare[k]
        if self.kind is PayoffKind.SCALAR:
            return (wi > wk) - (wi < wk)
        if self.kind is PayoffKind.MAXMIN:
            if not levels_tie(wi, wk):
                return 1 if wi > wk else -1
            ti, tk = r.tiebreak[i], r.tiebreak[k]
            return (ti > tk) - (ti < tk)
        return compare_vectors(r.vectors[i], r.vectors[k])

    def best(self, rows: list[int] | None = None) -> int:
        """Index of the best row (of ``rows``, default all; the first one wins
        ties)."""
        rows = list(range(len(self.rows))) if rows is None else rows
        if self.kind is PayoffKind.SCALAR:
            return rows[int(np.argmax(np.array([self.rows.welfare[i]
                                                for i in rows])))]
        if self.kind is PayoffKind.LEXIMIN:
            return self._leximin_best(rows)
        best = rows[0]
        for i in rows[1:]:
            if self.compare(i, best) > 0:
                best = i
        return best

    def _leximin_best(self, rows: list[int]) -> int:
        """The best leximin row, component by component: keep the rows whose k-th
        level ties with the largest k-th level among those kept. Ties are not
        transitive, so a running maximum by ``compare`` can step down a chain of
        ties (a first level falling by less than the tie per row while the second
        rises) and end far below the largest first level; anchoring every tie to
        the largest level cannot. Among rows tied in every component the first
        wins if it is among them (a tie is no gain), else the exact maximum."""
        vectors = [self.rows.vectors[i] for i in rows]
        keep = list(range(len(rows)))
        width = min(len(v) for v in vectors)
        for k in range(width):
            values = [float(vectors[i][k]) for i in keep]
            top = max(values)
            keep = [i for i, v in zip(keep, values) if levels_tie(v, top)]
            if len(keep) == 1:
                break
        if keep[0] == 0:  # the first row ties with the best: it wins
            return rows[0]
        # Of rows tied in every component, the exact lexicographic maximum.
        return rows[max(keep, key=lambda i: tuple(vectors[i].tolist()))]

    # -- scale --------------------------------------------------------------------
    def column(self, name: str | int) -> list[float]:
        """A payoff component of every row: 'welfare' (J, or max-min's level),
        'tiebreak' (the total surplus), or k, a leximin row's k-th sorted level."""
        if isinstance(name, str):
            return getattr(self.rows, name)
        return [float(v[name]) if v is not None else math.nan
                for v in self.rows.vectors]

    def span(self, name: str | int) -> float:
        """Scale of a payoff component (``column``): best value minus the median of
        the evenly spread rows (refinement rows crowd around the maxima and would
        pull the median up); best minus least where they agree. Rows are only
        ever added, so a span is read once per count of rows (the bounds ask for
        it per interval)."""
        state = (name, len(self.rows), len(self.spread))
        if state not in self._spans:
            self._spans[state] = self._span(name)
        return self._spans[state]

    def _span(self, name: str | int) -> float:
        column = self.column(name)
        key = (name, len(self.spread))
        if key not in self._medians:  # the spread rows are fixed once sampled
            values = np.array([column[i] for i in self.spread], dtype=float)
            values = values[np.isfinite(values)]
            self._medians[key] = float(np.median(values)) if values.size else math.nan
        median = self._medians[key]
        every = np.array(column, dtype=float)
        every = every[np.isfinite(every)]
        if not every.size or math.isnan(median):
            return 0.0
        top = float(every.max())
        robust = top - median
        return robust if robust > 0 else top - float(every.min())


def compare_vectors(a: np.ndarray, b: np.ndarray) -> int:
    """Lexicographic order of two sorted level vectors, each component tied to
    LEVEL_TIE_RTOL of the two levels compared."""
    return compare(a, b, LEVEL_TIE_RTOL)


def first_difference(a: np.ndarray, b: np.ndarray) -> int:
    """Index of the first component where a and b do not tie, or -1."""
    return leximin_first_difference(a, b, LEVEL_TIE_RTOL)
