"""Operations the member formulas may use on numpy arrays and on compiled scalars.

The member-level formulas (aggregame.fairness, aggregame.allocation) are written once
and read by numpy, Pyomo and the compiled kernels (solvers/inner/compiled/, numba). A
few numpy operations do not carry over to numba's scalars as they are: np.where makes
a 0-d array of scalars, np.any of a scalar is no scalar, and a power with a runtime
exponent is a libm pow (~14 ns) even where the exponent is 1 or 2. The formulas use
the functions below instead; here they are plain numpy (and Python operators, so
Pyomo expressions pass through ``power``), and solvers/inner/compiled/jit.py registers
scalar versions of ``select``, ``anything`` and ``power`` for numba.

The two halves of a safeguarded Newton step on a decreasing residual are here too:
every root of an inner solve (a multiplier, a level, a member's consumption) takes
the same step, on arrays of rows in numpy and on one row in the kernels.
"""

from __future__ import annotations

import numpy as np


def select(condition, if_true, if_false):
    """np.where(condition, if_true, if_false)."""
    return np.where(condition, if_true, if_false)


def anything(condition) -> bool:
    """True when any element of ``condition`` holds (a loop's stopping test)."""
    return bool(np.any(condition))


def power(base, exponent):
    """base ** exponent. The compiled version takes exponents 0, +-0.5, +-1 and +-2
    (alpha = 0, 0.5, 1, 2) without pow, to within one rounding of it."""
    return base ** exponent


def bracket_root(z, r, lo, hi, atol, active):
    """First half of a safeguarded Newton step on a residual r(z) that decreases in
    z: the bracket [lo, hi] shrinks to the side of r's sign, and a root stays
    ``active`` while |r| > atol and the bracket is wider than rounding of z.
    Returns (lo, hi, active)."""
    lo = select(r > 0, z, lo)
    hi = select(r < 0, z, hi)
    active = active & (np.abs(r) > atol) & (
        hi - lo > 1e-15 * np.maximum(np.abs(z), 1e-300))
    return lo, hi, active


def newton_or_bisect(z, r, slope, lo, hi, active):
    """Second half: the Newton step z - r / slope where it stays strictly inside the
    bracket, else the bracket's middle (a step outside it, or no finite step);
    inactive roots keep z.

    A Newton step below the rounding of z (z - r / slope == z) moves one float
    toward the root instead: the root is then within an ulp or two, and the probe's
    sign closes the bracket. Bisecting from the bracket's far end instead took ~30
    more steps (a purchase of 1e-6 among 10^5 members: r ~ 1e-16 is the rounding
    of the sum, far above ROOT_RTOL * y)."""
    newton = z - r / slope
    newton = select(newton == z, np.nextafter(z, select(r < 0, lo, hi)), newton)
    good = np.isfinite(newton) & (newton > lo) & (newton < hi)
    return select(active, select(good, newton, 0.5 * (lo + hi)), z)
