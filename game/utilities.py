"""Utility families of users (paper Sec. IV-A and Assumption 1).

Each family writes its formulas once, as functions of ``(x, params, lib)`` where ``lib``
is :mod:`numpy` for numbers and arrays or :mod:`pyomo.environ` for Pyomo expressions.
The native backend, the Pyomo inner model and the stacked KKT model all evaluate the
same lines, so the backends cannot drift apart.

Every family satisfies Assumption 1: U concave, U(0) = 0, and U'(0) > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from aggregame.checks import name_problem
from aggregame.elementwise import anything, select
from aggregame.errors import GameDefinitionError


def check_finite(owner: str, field_name: str, value: Any, *, positive: bool = False,
                 nonnegative: bool = False) -> float:
    """``value`` as a float, or a GameDefinitionError naming ``owner``, the field
    (also as its ``field``, for a caller to place in its own path) and the value."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GameDefinitionError(
            f"{owner}: field '{field_name}' must be a number, got {value!r}"
        ).at(field=field_name) from None
    if not math.isfinite(number):
        problem = "must be finite"
    elif positive and number <= 0:
        problem = "must be > 0"
    elif nonnegative and number < 0:
        problem = "must be >= 0"
    else:
        return number
    raise GameDefinitionError(f"{owner}: field '{field_name}' {problem}, got "
                              f"{value!r}").at(field=field_name)


#: Doublings of the bracket of ``zero_surplus_search`` (from 1 up to 2^200).
ZERO_SURPLUS_DOUBLINGS = 200
#: Halvings of that bracket: 80 halvings of a doubling bracket reach double
#: precision.
ZERO_SURPLUS_HALVINGS = 80


def zero_surplus_search(U, params, price, slope_at_zero):  # noqa: N803
    """Largest x with s(x) = U(x, params) - price x >= 0, elementwise (numpy arrays,
    or the compiled kernels' scalars): 0 where U'(0) - price = ``slope_at_zero`` <= 0;
    else a bracket doubled from 1 until s < 0, then bisection. The root of the
    concave s lies right of its peak, where s falls through zero: bisection is
    safe there."""
    viable = slope_at_zero > 0
    hi = 1.0 + 0.0 * viable  # (the shape of the members, as numbers)
    for _ in range(ZERO_SURPLUS_DOUBLINGS):
        grow = viable & (U(hi, params) - price * hi >= 0)
        if not anything(grow):
            break
        hi = select(grow, 2 * hi, hi)
    lo = 0.0 * hi
    for _ in range(ZERO_SURPLUS_HALVINGS):
        mid = 0.5 * (lo + hi)
        positive = U(mid, params) - price * mid > 0
        lo, hi = select(positive, mid, lo), select(positive, hi, mid)
    return select(viable, lo, 0.0)


@dataclass(frozen=True)
class Utility:
    """Base class of utility families; subclasses are frozen dataclasses of floats.

    Subclasses define ``family`` (the name used in scenario files), ``param_names``
    and the static formulas ``U``, ``dU``, ``d2U`` written with ``lib.log`` etc. so
    that they serve numpy arrays and Pyomo expressions alike.
    """

    family: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    #: Each parameter's range: "positive" (> 0) or "nonnegative" (>= 0); checked
    #: here for one user and, over whole columns, by the scenario loader.
    param_signs: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for name, sign in self.param_signs.items():
            value = getattr(self, name)
            # A float in range passes as is (the common case, kept cheap: a game of
            # 10^6 members builds 10^6 utilities); anything else is converted or
            # refused by check_finite.
            if value.__class__ is float and (0.0 < value < math.inf or (
                    value == 0.0 and sign == "nonnegative")):
                continue
            object.__setattr__(self, name, check_finite(
                f"{self.family} utility", name, value, positive=sign == "positive",
                nonnegative=sign == "nonnegative"))

    def params(self) -> dict[str, float]:
        """Parameters by name, e.g. ``{'a': 0.5, 'b': 3.0}``."""
        return {name: getattr(self, name) for name in self.param_names}

    # Formulas shared by every backend ------------------------------------------
    @staticmethod
    def U(x: Any, p: Mapping[str, Any], lib: Any = np) -> Any:  # noqa: N802
        raise NotImplementedError

    @staticmethod
    def dU(x: Any, p: Mapping[str, Any], lib: Any = np) -> Any:  # noqa: N802
        raise NotImplementedError

    @staticmethod
    def d2U(x: Any, p: Mapping[str, Any], lib: Any = np) -> Any:  # noqa: N802
        raise NotImplementedError

    @classmethod
    def zero_surplus_consumption(cls, price: np.ndarray, p: Mapping[str, np.ndarray]
                                 ) -> np.ndarray:
        """Largest x with U(x) - price * x >= 0 (0 where U'(0) <= price).

        The surplus is concave with value 0 at x = 0, so {x : s(x) >= 0} is the
        interval [0, this]. Generic version: ``zero_surplus_search``; families with a
        closed form override it.
        """
        price = np.asarray(price, dtype=float)
        return zero_surplus_search(cls.U, p, price, cls.dU(0.0, p) - price)

    def marginal_at_zero(self) -> float:
        """U'(0): the member is priced out of the market once the price reaches it."""
        return float(self.dU(0.0, self.params()))


@dataclass(frozen=True)
class QuadraticUtility(Utility):
    """U(x) = -a x^2 + b x with a > 0, b >= 0 (the paper's users)."""

    a: float
    b: float
    family: ClassVar[str] = "quadratic"
    param_names: ClassVar[tuple[str, ...]] = ("a", "b")
    param_signs: ClassVar[dict[str, str]] = {"a": "positive", "b": "nonnegative"}

    @staticmethod
    def U(x, p, lib=np):  # noqa: N802
        return -p["a"] * x**2 + p["b"] * x

    @staticmethod
    def dU(x, p, lib=np):  # noqa: N802
        return -2 * p["a"] * x + p["b"]

    @staticmethod
    def d2U(x, p, lib=np):  # noqa: N802
        return -2 * p["a"] + 0 * x

    @staticmethod
    def zero_surplus_consumption(price, p):
        # -a x^2 + (b - price) x = 0  =>  x = (b - price) / a. A plain formula (a
        # staticmethod), so the compiled inner solve reads it too.
        return np.maximum(p["b"] - price, 0.0) / p["a"]



@dataclass(frozen=True)
class LogUtility(Utility):
    """U(x) = w log(1 + x) with w > 0: a concave family with an unbounded satiation."""

    w: float
    family: ClassVar[str] = "log"
    param_names: ClassVar[tuple[str, ...]] = ("w",)
    param_signs: ClassVar[dict[str, str]] = {"w": "positive"}

    @staticmethod
    def U(x, p, lib=np):  # noqa: N802
        return p["w"] * lib.log(1 + x)

    @staticmethod
    def dU(x, p, lib=np):  # noqa: N802
        return p["w"] / (1 + x)

    @staticmethod
    def d2U(x, p, lib=np):  # noqa: N802
        return -p["w"] / (1 + x) ** 2


UTILITY_FAMILIES: dict[str, type[Utility]] = {
    cls.family: cls for cls in (QuadraticUtility, LogUtility)
}


@dataclass(frozen=True)
class User:
    """A named consumer with a utility of one family."""

    name: str
    utility: Utility = field(repr=True)

    def __post_init__(self) -> None:
        problem = name_problem(self.name)
        if problem:
            raise GameDefinitionError(f"user: field 'name' {problem}")
        if not isinstance(self.utility, Utility):
            raise GameDefinitionError(
                f"user '{self.name}': field 'utility' must be a Utility, "
                f"got {type(self.utility).__name__}"
            )
