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

        The surplus is concave with value 0 at x = 0, so {x : s(x) >= 0} is the interval
        [0, this]. Generic version: safeguarded Newton on s(x) = 0 from the right of the
        surplus peak; families with a closed form override it.
        """
        price = np.asarray(price, dtype=float)
        slope0 = cls.dU(0.0, p) - price
        viable = slope0 > 0
        # Bracket: s > 0 just right of 0; find hi with s(hi) < 0 by doubling.
        hi = np.ones(np.broadcast(price, slope0).shape)
        for _ in range(200):
            s_hi = cls.U(hi, p) - price * hi
            grow = viable & (s_hi >= 0)
            if not grow.any():
                break
            hi = np.where(grow, 2 * hi, hi)
        lo = np.zeros_like(hi)
        # The root of the concave s lies right of its peak; bisection is safe and
        # 80 halvings of a doubling bracket reach double precision.
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            pos = (cls.U(mid, p) - price * mid) > 0
            lo = np.where(pos, mid, lo)
            hi = np.where(pos, hi, mid)
        return np.where(viable, lo, 0.0)

    @classmethod
    def peak_surplus(cls, price: float, p: Mapping[str, np.ndarray],
                     xbar: np.ndarray) -> np.ndarray:
        """Each member's largest surplus U(x) - price x, found by bisection on
        U'(x) = price over [0, xbar] (the consumption where the surplus is 0 again);
        families with a closed form override it."""
        lo, hi = np.zeros_like(xbar), xbar.copy()
        # 200 halvings: a log member's xbar can exceed its peak by 1e60.
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            up = cls.dU(mid, p) - price > 0
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        peak = 0.5 * (lo + hi)
        return cls.U(peak, p) - price * peak

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

    @classmethod
    def peak_surplus(cls, price, p, xbar):
        # At x = (b - price) / (2 a): (b - price)^2 / (4 a), 0 when priced out.
        gain = np.maximum(p["b"] - price, 0.0)
        return gain * gain / (4.0 * p["a"])


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


def make_utility(family: str, params: Mapping[str, Any], *, where: str = "user"
                 ) -> Utility:
    """Build a utility of a named family, with errors that name ``where``."""
    cls = UTILITY_FAMILIES.get(family)
    if cls is None:
        raise GameDefinitionError(
            f"{where}: field 'utility' must be one of {sorted(UTILITY_FAMILIES)}, "
            f"got {family!r}"
        )
    missing = [name for name in cls.param_names if name not in params]
    if missing:
        raise GameDefinitionError(
            f"{where}: {family} utility needs field(s) {missing}, got {sorted(params)}"
        )
    try:
        return cls(**{name: params[name] for name in cls.param_names})
    except GameDefinitionError as err:
        raise GameDefinitionError(f"{where}: {err}") from None


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
