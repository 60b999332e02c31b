"""The certificate's rows re-proved by the definition alone (numpy).

The compiled kernels (solvers/inner/compiled.py) are the dynamics' fast path too, so a
certificate whose rows came from them re-proves them with aggregame.allocation's
``allocation_evidence``, which shares nothing with the kernels but the formulas:

* every row's payoff, recomputed from its allocation, matches the one the certificate
  used to PROOF_RTOL of the payoff's scale (infinite payoffs exactly, except at the
  capacity, where the two sides' rounding of s = 0 may disagree on -inf);
* no row claims J = -inf between 0 and the capacity that numpy alone does not
  confirm (such a -inf is a surplus below its rounding, which a residual in
  allocation units cannot tell from a member left at zero surplus by a failing
  solver);
* every row adds up to its purchase closely enough that the payoff of the purchase it
  does add up to moves by less than PROOF_RTOL of the scale (|multiplier| times the
  balance gap), where that could change the verdict;
* every row stays inside its bounds (to PROOF_BOUNDS_RTOL);
* the rows' residuals are below RESIDUAL_TOL, with a finite multiplier wherever one is
  needed (max-min: no level higher by PROOF_RTOL of the level's scale is feasible;
  leximin: aggregame.leximin's residual, with the levels' largest speed
  max_i |U_i' - p| for a multiplier): every row while NOMINAL_ROWS rows stay within
  PROOF_ELEMENTS (rows x members), beyond that every k-th row (the profile's among
  them) and the best row.

The evidence is taken batch by batch as the certificate evaluates rows
(``RowProof``), so no player's rows are held at once: 10^6 members x 160 rows
would be 1.3 GB of allocations.

A player whose rows fail is certified again on numpy alone (solvers/certify/scan.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from aggregame.allocation import (
    RESIDUAL_TOL,
    Evidence,
    allocation_evidence,
    evaluate,
    inner_setup,
    purchase_prices,
)
from aggregame.errors import InnerSolveError
from aggregame.leximin import leximin_residual
from aggregame.solvers.certify.payoffs import PayoffKind, Payoffs
from aggregame.solvers.inner.batch import InnerBatch
from aggregame.solvers.inner.native import NativeInner

#: Payoffs recomputed by numpy agree with the rows' to this, relative to the scale.
PROOF_RTOL = 1e-9
#: Rows x members whose residual numpy recomputes per player, for a player of
#: NOMINAL_ROWS rows (beyond it, every k-th row: ``_checked``); and per numpy call
#: (larger temporaries page-fault: 24 MB arrays cost more to touch than to compute).
PROOF_ELEMENTS = 2**18
NOMINAL_ROWS = 160
PROOF_CHUNK = 2**16
#: Bounds violation (over the capacity) a proved row may have: the solvers clip
#: allocations into [0, xbar] exactly.
PROOF_BOUNDS_RTOL = 1e-14


@dataclass(frozen=True)
class BatchProof:
    """numpy's evidence on one batch of rows (``RowProof.prepare``)."""

    first: int
    compiled: bool
    columns: dict[str, np.ndarray]
    #: Rows whose residual has been recomputed (it may be NaN: unproved).
    checked: np.ndarray
    evidence: Evidence


@dataclass
class PartBest:
    """The best scalar row of one part of an evaluation (``RowProof.part``): its
    row, J and allocation, kept until the proof needs it or a better row comes."""

    row: int | None = None
    value: float = -np.inf
    x: np.ndarray | None = None

    def offer(self, row: int, value: float, x: np.ndarray) -> None:
        """Row ``row`` (J = ``value``) replaces the kept one if it is better (the
        first of equal rows wins, as ``Payoffs.best``)."""
        if self.row is None or value > self.value:
            self.row, self.value, self.x = row, value, x.copy()


class RowProof:
    """numpy's evidence on one player's compiled rows, taken batch by batch as the
    certificate evaluates them (``Payoffs``' ledger): each row keeps a few numbers,
    not its allocation, so a player of 10^6 members holds one batch at a time.
    ``prepare`` reads nothing but the batch and its part (``part``: threads may
    run parts at once); ``record`` keeps its result, in row order.

    The residual is recomputed on the rows ``_checked`` picks as they come
    (max-min's, whose tolerance is read from the final scale, at the end), and
    on the best row: a scalar payoff's best allocation is kept until a better row
    replaces it."""

    def __init__(self) -> None:
        self._batches: list[BatchProof] = []
        #: The best scalar row of each part not yet outdone by another part's.
        self._parts: list[PartBest] = []

    def part(self) -> PartBest:
        """A new part of the rows (a sequence of batches one thread prepares)."""
        self._parts.append(PartBest())
        return self._parts[-1]

    def prepare(self, payoffs: Payoffs, batch: InnerBatch, first: int,
                part: PartBest) -> BatchProof:
        """The evidence on ``batch``, whose rows will be rows ``first``, ...;
        its best scalar row is offered to ``part``."""
        leximin = payoffs.kind is PayoffKind.LEXIMIN
        field = "tiebreak_multiplier" if payoffs.kind is PayoffKind.MAXMIN \
            else "multiplier"
        y, x = batch.y, batch.x
        mult = _level_speed(payoffs, y, x) if leximin else (
            np.full(y.size, np.nan) if getattr(batch, field) is None
            else np.asarray(getattr(batch, field), dtype=float))
        residual = np.full(y.size, np.nan)
        checked = np.zeros(y.size, dtype=bool)
        if payoffs.kind is not PayoffKind.MAXMIN:
            checked = _checked(payoffs, first + np.arange(y.size))
            if checked.any():
                residual[checked] = self._residual(payoffs, y[checked], x[checked],
                                                   mult[checked])
        columns = {"y": y, "claimed": batch.welfare, "claimed_tb": batch.tiebreak,
                   "mult": mult, "residual": residual}
        if payoffs.kind is PayoffKind.SCALAR:
            k = int(np.argmax(batch.welfare))
            part.offer(first + k, float(batch.welfare[k]), x[k:k + 1])
        return BatchProof(first, bool(getattr(payoffs.inner, "compiled", False)),
                          {n: np.asarray(v, dtype=float) for n, v in columns.items()},
                          checked, _evidence(payoffs, y, x, mult, residual=False))

    def record(self, proof: BatchProof) -> None:
        """Keep ``proof`` (batches in row order), and the best part's row alone
        (the first of equal rows wins, as ``Payoffs.best``)."""
        self._batches.append(proof)
        kept = [p for p in self._parts if p.row is not None]
        if kept:
            top = max(p.value for p in kept)
            self._parts = [min((p for p in kept if p.value == top),
                               key=lambda p: p.row)]

    def proved(self, payoffs: Payoffs) -> bool:
        """True when numpy proves every row (module docstring); True at once
        when no row came from the compiled kernels."""
        if not any(b.compiled for b in self._batches):
            return True
        col = {name: np.concatenate([b.columns[name] for b in self._batches])
               for name in self._batches[0].columns}
        ev = Evidence(*(np.concatenate([getattr(b.evidence, f.name)
                                        for b in self._batches])
                        if getattr(self._batches[0].evidence, f.name) is not None
                        else None for f in fields(Evidence)))
        residual, checked = self._late_residuals(payoffs, col)
        if not np.all(residual[checked] <= RESIDUAL_TOL):
            return False
        return _consistent(payoffs, col, ev)

    def _residual(self, payoffs, y, x, mult, level_step=None) -> np.ndarray:
        if payoffs.kind is PayoffKind.LEXIMIN:
            return _leximin_residual(payoffs, y, x)
        return _evidence(payoffs, y, x, mult, residual=True,
                         level_step=level_step).residual

    def _late_residuals(self, payoffs: Payoffs, col: dict
                        ) -> tuple[np.ndarray, np.ndarray]:
        """(residual, checked) of every row, with max-min's (its level tolerance is
        PROOF_RTOL of the final scale) and the best row's added."""
        residual = col["residual"].copy()
        checked = np.concatenate([b.checked for b in self._batches])
        best = payoffs.best()
        if payoffs.kind is PayoffKind.MAXMIN:
            rows = np.union1d(np.flatnonzero(_checked(payoffs,
                                                      np.arange(residual.size))),
                              [best])
            step = PROOF_RTOL * payoffs.span("welfare")
            x = np.concatenate([_allocation(payoffs, k) for k in rows])
            residual[rows] = self._residual(payoffs, col["y"][rows], x,
                                            col["mult"][rows], level_step=step)
            checked[rows] = True
        elif not checked[best]:
            if payoffs.kind is not PayoffKind.SCALAR:
                x = _allocation(payoffs, best)
            elif self._parts and self._parts[0].row == best:
                x = self._parts[0].x
            else:  # (the best row's allocation was not kept: nothing proves it)
                x = None
            residual[best] = np.inf if x is None else self._residual(
                payoffs, col["y"][[best]], x, col["mult"][[best]])[0]
            checked[best] = True
        return residual, checked


def rows_proved(payoffs: Payoffs) -> bool:
    """True when numpy proves every row ``payoffs`` took from the compiled kernels
    (module docstring; ``payoffs.ledger`` is the RowProof that gathered them)."""
    ledger = payoffs.ledger
    return ledger.proved(payoffs) if isinstance(ledger, RowProof) else True


def _consistent(payoffs: Payoffs, col: dict, ev: Evidence) -> bool:
    """Bounds, -inf claims, payoffs and drift of every row (module docstring)."""
    maxmin = payoffs.kind is PayoffKind.MAXMIN
    if not np.all(ev.bounds <= PROOF_BOUNDS_RTOL):
        return False
    y = col["y"]
    if not _minus_inf_confirmed(payoffs,
                                y[np.isneginf(ev.welfare) & ~ev.forced
                                  & ~ev.at_capacity]):
        return False
    span, span_tb = payoffs.span("welfare"), payoffs.span("tiebreak")
    claimed, claimed_tb = col["claimed"], col["claimed_tb"]
    lenient = ev.at_capacity
    if not _agree(claimed, ev.welfare, span, lenient) or (
            maxmin and not _agree(claimed_tb, ev.tiebreak, span_tb, lenient)):
        return False
    with np.errstate(invalid="ignore"):  # NaN multiplier: unproved (NaN > tol)
        drift = np.where(ev.forced, 0.0, np.abs(col["mult"]) * ev.balance)
    if payoffs.kind is PayoffKind.LEXIMIN:
        # Every sorted level moves by at most the drift: the scale it must stay
        # under is the levels' own (the smallest level may be flat, span 0).
        span = _level_scale(payoffs)
    return _drift_harmless(drift, claimed, claimed_tb, span, span_tb, maxmin)


def _level_scale(payoffs: Payoffs) -> float:
    """The largest finite |level| of any leximin row."""
    tops = [float(np.max(np.abs(v[np.isfinite(v)]))) for v in payoffs.rows.vectors
            if v is not None and np.isfinite(v).any()]
    return max(tops, default=0.0)


def _drift_harmless(drift, claimed, claimed_tb, span, span_tb, maxmin) -> bool:
    """True when no row's payoff, moved by its drift (|multiplier| times its
    balance gap: the payoff of the purchase the row does add up to), could change
    the verdict: the profile's row (the first one), and every row that could reach
    the best payoff with it. (Rows at y_max sit 1e-14 from the capacity, where
    lambda ~ -1e9 turns a balance gap of rounding into a drift far below the best:
    harmless.) Max-min: the total surplus ranks the rows whose level is the best."""
    finite = np.isfinite(claimed)
    if not finite.any():
        return True
    if maxmin:
        top = np.max(claimed[finite])
        ties = np.array([c == top or (np.isfinite(c) and abs(c - top) <= 1e-12
                                      * max(abs(c), abs(top))) for c in claimed])
        value, scale = claimed_tb, span_tb
    else:
        ties = np.ones(claimed.size, dtype=bool)
        value, scale = claimed, span
    target = np.max(np.where(ties & np.isfinite(value), value, -np.inf))
    tol = PROOF_RTOL * scale + 1e-12 * np.abs(np.nan_to_num(value))
    with np.errstate(invalid="ignore"):
        reach = ties & ~(value + drift < target - tol)  # NaN drift: reaches
    reach[0] = True
    return bool(np.all(drift[reach] <= tol[reach]))


def _checked(payoffs: Payoffs, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` (indices) get their residual recomputed: every row while
    NOMINAL_ROWS of them stay within PROOF_ELEMENTS (rows x members), else every
    k-th, the profile's row (0) among them."""
    members = max(payoffs.player.size, 1)
    stride = max(1, -(-members * NOMINAL_ROWS // PROOF_ELEMENTS))
    return rows % stride == 0


def _allocation(payoffs: Payoffs, row: int) -> np.ndarray:
    """Row's allocation, (1, members), from the batch kept behind it."""
    batch, k = payoffs.rows.source[row]
    return batch.x[k:k + 1]


def _evidence(payoffs: Payoffs, y, x, mult, residual, level_step=None) -> Evidence:
    """allocation_evidence of rows, in chunks whose temporaries stay in cache."""
    chunk = max(1, PROOF_CHUNK // x.shape[1])
    parts = [allocation_evidence(payoffs.game, payoffs.j, y[k:k + chunk],
                                 payoffs.others, x[k:k + chunk], mult[k:k + chunk],
                                 residual, level_step)
             for k in range(0, y.size, chunk)]
    return Evidence(*(None if getattr(parts[0], f.name) is None else
                      np.concatenate([getattr(ev, f.name) for ev in parts])
                      for f in fields(Evidence)))


def _level_speed(payoffs: Payoffs, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A leximin row's stand-in for a multiplier: max_i |U_i'(x_i) - p|, which
    bounds how fast any member's level moves with the purchase (a leximin
    allocation moves every x_i the same way, by at most the purchase's change), so
    it times the balance gap bounds the drift of every sorted level."""
    price, _ = purchase_prices(payoffs.game, y, payoffs.others)
    with np.errstate(all="ignore"):
        slope = evaluate(payoffs.player, "dU", x) - price[:, None]
    return np.abs(slope).max(axis=1, initial=0.0)


def _leximin_residual(payoffs: Payoffs, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """aggregame.leximin's residual of leximin rows (0 where y is infeasible), by
    numpy from the allocations alone."""
    setup = inner_setup(payoffs.game, payoffs.j, y, payoffs.others)
    with np.errstate(all="ignore"):
        res = leximin_residual(payoffs.player, setup.y, setup.price, x, setup.xbar,
                               setup.floor, setup.weight > 0)
    return np.where(setup.y > setup.cap * (1 + 1e-12) + 1e-300, 0.0, res)


def _minus_inf_confirmed(payoffs: Payoffs, y: np.ndarray) -> bool:
    """True when numpy alone also finds J = -inf at these purchases."""
    if not y.size:
        return True
    try:
        again = NativeInner(payoffs.game, payoffs.j, compiled=False).solve(
            y, payoffs.others)
    except InnerSolveError:
        return False
    return not np.any(np.isfinite(again.welfare))


def _agree(claimed: np.ndarray, truth: np.ndarray, span: float,
           lenient: np.ndarray) -> bool:
    """Payoffs equal to PROOF_RTOL of their scale (infinite ones exactly, except
    that a ``lenient`` row may be finite on one side and -inf on the other)."""
    both = np.isfinite(claimed) & np.isfinite(truth)
    rounding = lenient & (np.isneginf(claimed) | np.isneginf(truth))
    if not np.array_equal(claimed[~both & ~rounding], truth[~both & ~rounding]):
        return False
    tol = PROOF_RTOL * span + 1e-12 * np.abs(truth[both])
    return bool(np.all(np.abs(claimed[both] - truth[both]) <= tol))
