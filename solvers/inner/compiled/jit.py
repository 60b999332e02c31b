"""numba for the kernels: whether it is used, where compiled code is kept, and how the
definition's formulas become callable from compiled code.

``jit`` compiles a kernel for scalars. ``share`` registers a formula of the game
definition (aggregame.allocation, aggregame.fairness, aggregame.utilities) so that
compiled code calls it by its own name, as numpy does: numba compiles the same lines
for the scalar types it is called with. The scalar versions of aggregame.elementwise's
``select``, ``anything`` and ``power`` are registered here too.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import sys
import tempfile
from typing import Any, Callable

import numpy as np

from aggregame.elementwise import anything, power, select

try:  # optional: the numpy path is complete without it
    import numba
    import numba.extending
except ImportError:  # pragma: no cover - exercised where numba is not installed
    numba = None

#: True when the compiled path is used (numba installed, AGGREGAME_JIT not "0").
ENABLED = (numba is not None and os.environ.get("AGGREGAME_JIT", "1") != "0"
           and not numba.config.DISABLE_JIT)
#: Versions of the compiled kernels kept on disk (each a few MB); older ones go.
KEPT_CACHES = 8
#: Options of every compiled function: numpy's error model (1/0 is inf, not an
#: exception), sums that may be reordered (fastmath "reassoc" only: no assumption
#: about inf or NaN, which the formulas rely on), and nogil (the certificate runs
#: players' searches in threads).
OPTIONS: dict[str, Any] = dict(error_model="numpy", fastmath={"reassoc"}, nogil=True)


def _sources() -> list[str]:
    """Files whose text decides the compiled code: the definition's formulas and
    every module of this package."""
    from aggregame import allocation, elementwise, fairness, utilities
    from aggregame.solvers.inner import batch

    files = [elementwise.__file__, fairness.__file__, utilities.__file__,
             batch.__file__]
    for folder in (allocation.__path__[0], os.path.dirname(__file__)):
        files += sorted(glob.glob(os.path.join(folder, "*.py")))
    return files


def _cache_dir() -> str | None:
    """Where compiled kernels are kept between runs: a folder named by a hash of the
    sources they are compiled from, or None (no cache) where it cannot be written.

    numba's own cache checks only the file of each function, so a kernel that
    inlined a formula of aggregame.allocation would outlive an edit of that formula;
    a folder per version of all the sources cannot.
    """
    digest = hashlib.sha256(f"{numba.__version__} {sys.version}".encode())
    for name in _sources():
        with open(name, "rb") as source:
            digest.update(source.read())
    base = os.environ.get("AGGREGAME_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "aggregame")
    path = os.path.join(base, "numba-" + digest.hexdigest()[:16])
    try:
        fresh = not os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return None
    if fresh:
        _prune(base, keep=KEPT_CACHES)
    return path


def _prune(base: str, keep: int) -> None:
    """Remove all but the ``keep`` most recently made kernel folders in ``base``."""
    folders = sorted((os.path.join(base, f) for f in os.listdir(base)
                      if f.startswith("numba-")), key=os.path.getmtime, reverse=True)
    for old in folders[keep:]:
        shutil.rmtree(old, ignore_errors=True)


#: The folder of this version's compiled kernels (None: not kept between runs).
CACHE_DIR = _cache_dir() if ENABLED else None


def jit(fn: Callable | None = None, *, inline: bool = False) -> Any:
    """Compile ``fn`` for scalars with OPTIONS, cached in CACHE_DIR; or leave it as
    it is without numba.

    ``inline=True`` puts its body into each caller (numba's inline="always"): the
    loops over members that way see the caller's constant alpha (``solve_rows``),
    and the branches on alpha inside phi, phi' and ``power`` fold away.
    """
    if fn is None:
        return lambda f: jit(f, inline=inline)
    if not ENABLED:
        return fn
    options = dict(OPTIONS, inline="always" if inline else "never")
    if CACHE_DIR is None:
        return numba.njit(**options)(fn)
    saved, numba.config.CACHE_DIR = numba.config.CACHE_DIR, CACHE_DIR
    try:  # the cache locator reads the folder when the function is decorated
        return numba.njit(cache=True, **options)(fn)
    finally:
        numba.config.CACHE_DIR = saved


def share(*formulas: Callable, inline: bool = False) -> None:
    """Make each of ``formulas`` callable from compiled code by its own name: numba
    compiles its lines (with OPTIONS) for the scalar types of each call. Functions
    passed to a formula as arguments (a member's U, say) must be compiled ones.
    ``inline``: as for ``jit``."""
    if not ENABLED:
        return
    for formula in formulas:
        numba.extending.overload(
            formula, jit_options=OPTIONS, strict=False,
            inline="always" if inline else "never")(
                lambda *args, formula=formula, **kwargs: formula)


if ENABLED:
    @numba.extending.overload(select)
    def _select_scalar(condition, if_true, if_false):
        """``select`` of scalars: a branch, not a 0-d array."""
        def impl(condition, if_true, if_false):
            return if_true if condition else if_false
        return impl

    @numba.extending.overload(anything)
    def _anything_scalar(condition):
        """``anything`` of a scalar: the condition itself."""
        def impl(condition):
            return condition
        return impl

    @numba.extending.overload(power)
    def _power_scalar(base, exponent):
        """``power`` of scalars: the exponents of alpha = 0, 0.5, 1 and 2 (phi,
        phi', phi'' and the residual's (s + e)^alpha) by multiplication, division
        and sqrt; pow costs ~14 ns a member, and those are most games."""
        def impl(base, exponent):
            if exponent == 1:
                return base
            if exponent == 0:
                return 1.0
            if exponent == -1:
                return 1.0 / base
            if exponent == 2:
                return base * base
            if exponent == -2:
                return 1.0 / (base * base)
            if exponent == 0.5:
                return np.sqrt(base)
            if exponent == -0.5:
                return 1.0 / np.sqrt(base)
            return base ** exponent
        return impl
