"""Operations the member formulas may use on numpy arrays and on compiled scalars.

The member-level formulas (aggregame.fairness, aggregame.allocation) are written once
and read by numpy, Pyomo and the compiled kernels (solvers/inner/compiled.py, numba). A few
numpy operations do not carry over to numba's scalars as they are: np.where makes a
0-d array of scalars, and a power with a runtime exponent is a libm pow (~14 ns)
even where the exponent is 1 or 2. The formulas use these two functions instead;
here they are plain numpy (and Python operators, so Pyomo expressions pass through
``power``), and solvers/inner/compiled.py registers scalar versions of both for numba.
"""

from __future__ import annotations

import numpy as np


def select(condition, if_true, if_false):
    """np.where(condition, if_true, if_false)."""
    return np.where(condition, if_true, if_false)


def power(base, exponent):
    """base ** exponent. The compiled version takes exponents 0, +-0.5, +-1 and +-2
    (alpha = 0, 0.5, 1, 2) without pow, to within one rounding of it."""
    return base ** exponent
