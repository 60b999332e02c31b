"""Wholesale price as a function of total purchase Y (paper Assumption 1b).

p must be continuous and increasing; the paper uses p = c Y with c = 0.001. Every price
gives its value and derivative for numbers and numpy arrays, and a Pyomo expression of
a Pyomo Y, from one formula written with ``lib`` (numpy or pyomo.environ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from aggregame.errors import GameDefinitionError
from aggregame.utilities import check_finite


class Price:
    """Base class: an increasing differentiable price p(Y) for Y >= 0."""

    kind: str = ""

    def value(self, total: Any, lib: Any = np) -> Any:
        raise NotImplementedError

    def derivative(self, total: Any, lib: Any = np) -> Any:
        raise NotImplementedError

    def expression(self, total: Any) -> Any:
        """Pyomo expression of the price of a Pyomo total purchase."""
        import pyomo.environ as pyo

        return self.value(total, lib=pyo)

    def inverse(self, price: float) -> float:
        """Total purchase Y at which p(Y) = price (inf if never reached, 0 if below p(0))."""
        if price <= float(self.value(0.0)):
            return 0.0
        hi = 1.0
        while float(self.value(hi)) < price:
            hi *= 2.0
            if hi > 1e300:
                return float("inf")
        lo = 0.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if float(self.value(mid)) < price:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-15 * hi:
                break
        return 0.5 * (lo + hi)

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class LinearPrice(Price):
    """p = c Y with c > 0 (the paper, c = 0.001)."""

    c: float
    kind = "linear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "c", check_finite("linear price", "c", self.c,
                                                   positive=True))

    def value(self, total, lib=np):
        return self.c * total

    def derivative(self, total, lib=np):
        return self.c + 0 * total

    def inverse(self, price: float) -> float:
        return max(price, 0.0) / self.c

    def describe(self):
        return {"price": self.kind, "c": self.c}


@dataclass(frozen=True)
class AffinePrice(Price):
    """p = p0 + c Y with p0 >= 0, c > 0."""

    p0: float
    c: float
    kind = "affine"

    def __post_init__(self) -> None:
        object.__setattr__(self, "p0", check_finite("affine price", "p0", self.p0,
                                                    nonnegative=True))
        object.__setattr__(self, "c", check_finite("affine price", "c", self.c,
                                                   positive=True))

    def value(self, total, lib=np):
        return self.p0 + self.c * total

    def derivative(self, total, lib=np):
        return self.c + 0 * total

    def inverse(self, price: float) -> float:
        return max(price - self.p0, 0.0) / self.c

    def describe(self):
        return {"price": self.kind, "p0": self.p0, "c": self.c}


@dataclass(frozen=True)
class PowerPrice(Price):
    """p = c Y^k with c > 0, k >= 1 (convex cost of supply, increasing)."""

    c: float
    k: float
    kind = "power"

    def __post_init__(self) -> None:
        object.__setattr__(self, "c", check_finite("power price", "c", self.c,
                                                   positive=True))
        k = check_finite("power price", "k", self.k)
        if k < 1:
            raise GameDefinitionError(f"power price: field 'k' must be >= 1, got {k!r}")
        object.__setattr__(self, "k", k)

    def value(self, total, lib=np):
        return self.c * total**self.k

    def derivative(self, total, lib=np):
        return self.c * self.k * total ** (self.k - 1)

    def describe(self):
        return {"price": self.kind, "c": self.c, "k": self.k}


@dataclass(frozen=True)
class SaturatingPrice(Price):
    """p = P (1 - exp(-Y / w)) with P, w > 0: increasing and concave, capped at P.

    It satisfies the paper's Assumption 1b (continuous, increasing), yet a concave
    price can make J_j non-quasiconcave and the equilibrium non-unique: see
    data/two_equilibria.toml.
    """

    P: float
    w: float
    kind = "saturating"

    def __post_init__(self) -> None:
        object.__setattr__(self, "P", check_finite("saturating price", "P", self.P,
                                                   positive=True))
        object.__setattr__(self, "w", check_finite("saturating price", "w", self.w,
                                                   positive=True))

    def value(self, total, lib=np):
        return self.P * (1 - lib.exp(-total / self.w))

    def derivative(self, total, lib=np):
        return self.P / self.w * lib.exp(-total / self.w)

    def inverse(self, price: float) -> float:
        if price <= 0:
            return 0.0
        return -self.w * float(np.log1p(-price / self.P)) if price < self.P else \
            float("inf")

    def describe(self):
        return {"price": self.kind, "P": self.P, "w": self.w}


class FunctionPrice(Price):
    """Any increasing differentiable price given as ``value(Y, lib)`` and its derivative.

    Both callables receive ``lib`` (numpy or pyomo.environ) so the same formula can
    become a Pyomo expression. Monotonicity is checked on a grid of ``check_upto``:
    a derivative < 0 or a decreasing value there is refused at construction.
    """

    kind = "function"

    def __init__(self, value: Callable[[Any, Any], Any],
                 derivative: Callable[[Any, Any], Any], *, name: str = "custom",
                 check_upto: float = 1e4) -> None:
        if not callable(value) or not callable(derivative):
            raise GameDefinitionError(
                "function price: fields 'value' and 'derivative' must be callables"
            )
        self._value, self._derivative, self.name = value, derivative, name
        grid = np.linspace(0.0, check_upto, 2001)
        values = np.asarray(value(grid, np), dtype=float)
        slopes = np.asarray(derivative(grid, np), dtype=float)
        if not (np.all(np.isfinite(values)) and np.all(np.isfinite(slopes))):
            raise GameDefinitionError(
                f"function price '{name}': value or derivative is not finite on "
                f"[0, {check_upto}]"
            )
        if np.any(slopes < 0) or np.any(np.diff(values) < -1e-12 * np.abs(values[1:])):
            worst = float(grid[np.argmin(slopes)])
            raise GameDefinitionError(
                f"function price '{name}': price must be increasing, but it decreases "
                f"near Y = {worst:g} (derivative {float(slopes.min()):g})"
            )
        if values[0] < 0:
            raise GameDefinitionError(
                f"function price '{name}': p(0) must be >= 0, got {values[0]:g}"
            )

    def value(self, total, lib=np):
        return self._value(total, lib)

    def derivative(self, total, lib=np):
        return self._derivative(total, lib)

    def describe(self):
        return {"price": self.kind, "name": self.name}


PRICE_KINDS: dict[str, type[Price]] = {
    "linear": LinearPrice, "affine": AffinePrice, "power": PowerPrice,
    "saturating": SaturatingPrice,
}
