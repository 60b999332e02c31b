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
  needed (max-min: no level higher by PROOF_RTOL of the level's scale is feasible):
  every row up to PROOF_ELEMENTS (rows x members), beyond that the profile's row, the
  best row and rows spread evenly over the rest.

A player whose rows fail is certified again on numpy alone (solvers/certify/scan.py).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from aggregame.allocation import RESIDUAL_TOL, Evidence, allocation_evidence
from aggregame.errors import InnerSolveError
from aggregame.solvers.certify.payoffs import PayoffKind, Payoffs
from aggregame.solvers.inner.native import NativeInner

#: Payoffs recomputed by numpy agree with the rows' to this, relative to the scale.
PROOF_RTOL = 1e-9
#: Rows x members re-proved by numpy per player at most, and per numpy call (larger
#: temporaries page-fault: 24 MB arrays cost more to touch than to compute).
PROOF_ELEMENTS = 2**18
PROOF_CHUNK = 2**16
#: Bounds violation (over the capacity) a proved row may have: the solvers clip
#: allocations into [0, xbar] exactly.
PROOF_BOUNDS_RTOL = 1e-14


def rows_proved(payoffs: Payoffs) -> bool:
    """True when numpy proves every row ``payoffs`` took from the compiled kernels
    (module docstring); True at once for rows that did not come from them."""
    batches = payoffs.batches
    if not batches or not getattr(payoffs.inner, "compiled", False):
        return True
    maxmin = payoffs.kind is PayoffKind.MAXMIN
    field = "tiebreak_multiplier" if maxmin else "multiplier"
    y = np.concatenate([b.y for b in batches])
    x = np.concatenate([b.x for b in batches])
    mult = np.concatenate([np.full(b.y.size, np.nan) if getattr(b, field) is None
                           else getattr(b, field) for b in batches])
    claimed = np.concatenate([b.welfare for b in batches])
    claimed_tb = np.concatenate([b.tiebreak for b in batches])
    span = payoffs.span("welfare")
    span_tb = payoffs.span("tiebreak")
    ev = _evidence(payoffs, y, x, mult, residual=False)
    checked = _checked_rows(payoffs, y.size, x.shape[1])
    step = PROOF_RTOL * span if maxmin else None
    residual = _evidence(payoffs, y[checked], x[checked], mult[checked],
                         residual=True, level_step=step).residual
    if not np.all(residual <= RESIDUAL_TOL):
        return False
    if not np.all(ev.bounds <= PROOF_BOUNDS_RTOL):
        return False
    if not _minus_inf_confirmed(payoffs,
                                y[np.isneginf(ev.welfare) & ~ev.forced
                                  & ~ev.at_capacity]):
        return False
    lenient = ev.at_capacity
    if not _agree(claimed, ev.welfare, span, lenient) or (
            maxmin and not _agree(claimed_tb, ev.tiebreak, span_tb, lenient)):
        return False
    with np.errstate(invalid="ignore"):  # NaN multiplier: unproved (NaN > tol)
        drift = np.where(ev.forced, 0.0, np.abs(mult) * ev.balance)
    return _drift_harmless(drift, claimed, claimed_tb, span, span_tb, maxmin)


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


def _checked_rows(payoffs: Payoffs, count: int, members: int) -> np.ndarray:
    """Rows whose residual numpy recomputes: all of them up to PROOF_ELEMENTS,
    else the profile's (row 0), the best one and rows spread over the rest."""
    budget = max(PROOF_ELEMENTS // max(members, 1), 2)
    if count <= budget:
        return np.arange(count)
    spread = np.linspace(0, count - 1, budget - 2).astype(int)
    best = _batch_index(payoffs, payoffs.best())
    return np.unique(np.concatenate([[0, best], spread]))


def _batch_index(payoffs: Payoffs, row: int) -> int:
    """Position of ``row``'s inner solution in the concatenated batches."""
    batch, k = payoffs.rows.source[row]
    offset = 0
    for b in payoffs.batches:
        if b is batch:
            return offset + k
        offset += b.y.size
    return 0


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
