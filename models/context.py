"""Context managers for the two things a driver does around a solve and undoes after.

- :func:`muted_logger` raises a logger's threshold for the duration of a block (Pyomo
  warns when it loads a value a hair outside a bound, which Ipopt's bound relaxation
  produces on purpose; the caller projects it back, so the warning is noise).
- :func:`temporary_changes` sets values, fixes variables and switches components on or
  off for the duration of a block (fixing rivals, a tie-break stage, a probe of the
  demand), and puts every one of them back in ``finally``, whatever the block raised.

Both restore exactly what they found, so they nest and compose; "build once, solve
many times" stays true only if nothing a driver touches outlives its block.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pyomo.environ as pyo

#: The Pyomo logger that warns on loading solutions (bounds, values of fixed vars).
PYOMO_CORE_LOGGER = "pyomo.core"


@contextmanager
def muted_logger(name: str = PYOMO_CORE_LOGGER, level: int = logging.ERROR
                 ) -> Iterator[logging.Logger]:
    """Let only records of ``level`` and above through logger ``name`` in the block.

    A logger already stricter than ``level`` is left as it is (muting never makes
    a logger louder); its own level, not the effective one, is restored on exit.

    Examples
    --------
    >>> import logging
    >>> log = logging.getLogger("pyomo.core")
    >>> before = log.level
    >>> with muted_logger():
    ...     log.isEnabledFor(logging.WARNING)
    False
    >>> log.level == before
    True
    """
    logger = logging.getLogger(name)
    saved = logger.level
    if logger.getEffectiveLevel() < level:
        logger.setLevel(level)
    try:
        yield logger
    finally:
        logger.setLevel(saved)


#: What to change: (component, value) pairs, or a ComponentMap of them.
Changes = Mapping[Any, Any] | Iterable[tuple[Any, Any]]


def _pairs(changes: Changes) -> list[tuple[Any, Any]]:
    return list(changes.items()) if isinstance(changes, Mapping) else list(changes)


def _data(components: Iterable[Any]) -> list[Any]:
    """Component data objects: an indexed component stands for all its entries."""
    out = []
    for c in components:
        out.extend(c.values() if c.is_indexed() else [c])
    return out


@contextmanager
def temporary_changes(*, values: Changes = (), fix: Changes = (),
                      activate: Iterable[Any] = (), deactivate: Iterable[Any] = (),
                      restore: Iterable[Any] = ()) -> Iterator[None]:
    """Change a Pyomo model for the duration of a block, then put it back.

    Parameters
    ----------
    values : (mutable Param or Var, value) pairs, or a ComponentMap (Pyomo
        components are not hashable, so no dict): the values to set.
    fix : (Var, value) pairs or a ComponentMap: the variables to fix, at that value
        (None fixes them at their current value).
    activate, deactivate : Constraints, Objectives or Blocks to switch on or off.
    restore : Params or Vars whose values the block itself changes (a probe): their
        values on entry are put back on exit.

    Every value, fixed flag and active flag touched is recorded on entry and restored
    in ``finally``, also when the block raises. Variable values are restored without
    validation: a value a solver loaded a hair outside a bound comes back as it was.
    """
    values, fix = _pairs(values), _pairs(fix)
    switched = [*activate, *deactivate]
    saved_values = [(c, c.value)
                    for c in _data([*(c for c, _ in [*values, *fix]), *restore])]
    saved_fixed = [(v, v.fixed) for v in _data(var for var, _ in fix)]
    # Containers before their entries: switching a container switches every entry.
    saved_active = [(c, c.active) for c in [*switched, *_data(switched)]]
    try:
        for c, v in values:
            c.set_value(v)
        for var, v in fix:
            if v is None:
                var.fix()
            else:
                var.fix(v)
        for c in activate:
            c.activate()
        for c in deactivate:
            c.deactivate()
        yield
    finally:
        _put_back(saved_active, saved_fixed, saved_values)


def _put_back(active: list[tuple[Any, bool]], fixed: list[tuple[Any, bool]],
              values: list[tuple[Any, Any]]) -> None:
    for c, was in active:
        if was:
            c.activate()
        else:
            c.deactivate()
    for var, was in fixed:
        if was:
            var.fix()
        else:
            var.unfix()
    for c, v in values:
        if c.ctype is pyo.Var:
            c.set_value(v, skip_validation=True)
        else:
            c.set_value(v)
