"""Wholesale price as a function of total purchase Y (paper Assumption 1b).

p must be continuous and increasing; the paper uses p = c Y with c = 0.001. Every price
gives its value and derivative for numbers and numpy arrays, and a Pyomo expression of
a Pyomo Y, from one formula written with ``lib`` (numpy or pyomo.environ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from aggregame.errors import EmbeddingError, GameDefinitionError
from aggregame.utilities import check_finite


class Price:
    """Base class: an increasing differentiable price p(Y) for Y >= 0."""

    kind: str = ""
    #: p is convex (p'' >= 0): p(Y) y is then convex in y, and a one-member
    #: player's payoff concave (docs/model.md, section "One-member players").
    convex: bool = False
    #: p is linear between its ``breakpoints`` and ``derivative`` is the slope of
    #: the segment starting at Y (a merit order, a supply model's curve).
    piecewise_linear: bool = False
    #: Whether p = +inf is a price here (a supply curve beyond its capacity) rather
    #: than an overflow: so for any price but the closed forms below, which are
    #: finite everywhere and whose inf is an overflow.
    may_be_infinite: bool = True

    def value(self, total: Any, lib: Any = np) -> Any:
        raise NotImplementedError

    def overflow_field(self, total: float, log_limit: float) -> tuple[str, str]:
        """The field to name when the price overflows at ``total`` (where p(Y) Y
        must stay below exp(log_limit)), and what would fit: ``('c', '')``."""
        return ("c", "") if hasattr(self, "c") else ("", "")

    def derivative(self, total: Any, lib: Any = np) -> Any:
        raise NotImplementedError

    def expression(self, total: Any) -> Any:
        """Pyomo expression of the price of a Pyomo total purchase."""
        import pyomo.environ as pyo

        return self.value(total, lib=pyo)

    def affine_coefficients(self) -> tuple[float, float] | None:
        """(p0, c) when p = p0 + c Y (closed forms need it), else None."""
        return None

    def check_increasing(self, upto: float) -> None:
        """Refuse (GameDefinitionError) a price that does not rise with the total
        on [0, upto]; the built-in prices rise by construction."""

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

    def breakpoints(self, lo: float, hi: float) -> np.ndarray:
        """Totals Y in (lo, hi) where p is not differentiable (kinks of a supply curve).

        The scan best response samples both sides of each, like price-out points.
        Smooth prices have none.
        """
        return np.empty(0)

    def slope_range(self, lo: float, hi: float) -> tuple[float, float]:
        """(least, largest) slope of p on [lo, hi]: bounds the certificate relies
        on (solvers/certify/bounds.py). A piecewise linear price (a supply curve)
        reads the slopes of the segments [lo, hi] meets; a convex price's slope
        rises, so its ends bound it; any other price that knows nothing of its
        slope says (0, inf): increasing is all it promises, and the certificate's
        bounds between samples then close only at first order (many more samples,
        or a verdict of 'bounded')."""
        if self.convex and not self.piecewise_linear:
            ends = np.asarray(self.derivative(np.array([max(lo, 0.0), max(hi, 0.0)])),
                              dtype=float)
            return float(ends[0]), float(ends[1])
        if not self.piecewise_linear:
            return 0.0, np.inf
        ends = np.concatenate([[lo], self.breakpoints(lo, hi)])
        slopes = np.asarray(self.derivative(ends), dtype=float)
        return float(slopes.min()), float(slopes.max())

    def curvature_range(self, lo: float, hi: float) -> tuple[float, float] | None:
        """(least, largest) p'' on [lo, hi], or None where p is not twice
        differentiable there or does not say (the search over totals bounds the
        backward replies' slopes with it: solvers/equilibrium/intervals.py)."""
        return None

    def jumps(self, lo: float, hi: float) -> np.ndarray:
        """Totals Y in (lo, hi) where p jumps (a subset of ``breakpoints``).

        The game assumes a continuous price (paper Assumption 1b); every closed form
        here is continuous. A price read from a market model can jump
        (aggregame.solvers.market), and a profile whose total sits at a jump is
        refused rather than certified.
        """
        return np.empty(0)


@dataclass(frozen=True)
class LinearPrice(Price):
    """p = c Y with c > 0 (the paper, c = 0.001)."""

    c: float
    kind = "linear"
    convex = True
    may_be_infinite = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "c", check_finite("linear price", "c", self.c,
                                                   positive=True))

    def value(self, total, lib=np):
        return self.c * total

    def derivative(self, total, lib=np):
        return self.c + 0 * total

    def inverse(self, price: float) -> float:
        return max(price, 0.0) / self.c

    def affine_coefficients(self) -> tuple[float, float]:
        return 0.0, self.c

    def slope_range(self, lo: float, hi: float) -> tuple[float, float]:
        return self.c, self.c

    def curvature_range(self, lo: float, hi: float) -> tuple[float, float]:
        return 0.0, 0.0

    def describe(self):
        return {"price": self.kind, "c": self.c}


@dataclass(frozen=True)
class AffinePrice(Price):
    """p = p0 + c Y with p0 >= 0, c > 0."""

    p0: float
    c: float
    kind = "affine"
    convex = True
    may_be_infinite = False

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

    def affine_coefficients(self) -> tuple[float, float]:
        return self.p0, self.c

    def slope_range(self, lo: float, hi: float) -> tuple[float, float]:
        return self.c, self.c

    def curvature_range(self, lo: float, hi: float) -> tuple[float, float]:
        return 0.0, 0.0


@dataclass(frozen=True)
class PowerPrice(Price):
    """p = c Y^k with c > 0, k >= 1 (convex cost of supply, increasing)."""

    c: float
    k: float
    kind = "power"
    convex = True  # k >= 1
    may_be_infinite = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "c", check_finite("power price", "c", self.c,
                                                   positive=True))
        k = check_finite("power price", "k", self.k)
        if k < 1:
            raise GameDefinitionError(f"power price: field 'k' must be >= 1, got {k!r}"
                                      ).at(field="k")
        object.__setattr__(self, "k", k)

    def value(self, total, lib=np):
        return self.c * total**self.k

    def derivative(self, total, lib=np):
        return self.c * self.k * total ** (self.k - 1)

    def slope_range(self, lo: float, hi: float) -> tuple[float, float]:
        # k >= 1: p' = c k Y^(k-1) is non-decreasing.
        return (float(self.derivative(max(lo, 0.0))),
                float(self.derivative(max(hi, 0.0))))

    def curvature_range(self, lo: float, hi: float) -> tuple[float, float] | None:
        # p'' = c k (k - 1) Y^(k-2): monotone in Y (rising for k >= 2, falling
        # below), unbounded at Y = 0 for 1 < k < 2.
        if self.k == 1:
            return 0.0, 0.0
        if lo <= 0 and self.k < 2:
            return None
        ends = [self.c * self.k * (self.k - 1) * max(v, 0.0) ** (self.k - 2)
                for v in (lo, hi)]
        return min(ends), max(ends)

    def overflow_field(self, total: float, log_limit: float) -> tuple[str, str]:
        # c Y^k Y <= exp(log_limit): k <= (log_limit - log c) / log Y - 1.
        if total <= 1.0:
            return "k", ""
        k_max = (log_limit - math.log(self.c)) / math.log(total) - 1.0
        if k_max >= 1.0:
            return "k", f"k must be at most {k_max:.4g} at this scale"
        return "c", ""

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
    may_be_infinite = False

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

    def slope_range(self, lo: float, hi: float) -> tuple[float, float]:
        # Concave: p' = (P / w) exp(-Y / w) decreases.
        return (float(self.derivative(max(hi, 0.0))),
                float(self.derivative(max(lo, 0.0))))

    def curvature_range(self, lo: float, hi: float) -> tuple[float, float]:
        # p'' = -(P / w^2) exp(-Y / w): negative, rising towards 0.
        return tuple(-self.P / self.w**2 * math.exp(-max(v, 0.0) / self.w)
                     for v in (lo, hi))

    def describe(self):
        return {"price": self.kind, "P": self.P, "w": self.w}


class FunctionPrice(Price):
    """Any increasing differentiable price given as ``value(Y, lib)`` and its derivative.

    Both callables receive ``lib`` (numpy or pyomo.environ) so the same formula can
    become a Pyomo expression. Monotonicity is checked on a grid of ``check_upto``
    at construction, and on a grid of the game's reach by the game: a derivative
    < 0 or a decreasing value there is refused.
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
        self.checked_upto = 0.0
        self.check_increasing(check_upto)

    def check_increasing(self, upto: float) -> None:
        """Refuse a price that is not finite, increasing and >= 0 on a grid of [0,
        upto] (a game checks its own reach too: every part of the product assumes
        a price that rises with the total)."""
        if upto <= self.checked_upto:
            return
        name = self.name
        grid = np.linspace(0.0, upto, 2001)
        with np.errstate(all="ignore"):
            values = np.asarray(self._value(grid, np), dtype=float)
            slopes = np.asarray(self._derivative(grid, np), dtype=float)
        if not (np.all(np.isfinite(values)) and np.all(np.isfinite(slopes))):
            raise GameDefinitionError(
                f"function price '{name}': value or derivative is not finite on "
                f"[0, {upto:g}]"
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
        self.checked_upto = upto

    def value(self, total, lib=np):
        return self._value(total, lib)

    def derivative(self, total, lib=np):
        return self._derivative(total, lib)

    def describe(self):
        return {"price": self.kind, "name": self.name}


@dataclass(frozen=True, eq=False)
class MeritOrderPrice(Price):
    """Price of a merit order of generators with C_g(q) = c1_g q + c2_g q^2, 0 <= q <= cap_g.

    p(Y) is the marginal cost at which total supply equals Y: each generator supplies
    clip((p - c1_g) / (2 c2_g), 0, cap_g), which is linear in p between the prices
    where a generator starts (c1_g) or reaches its capacity (c1_g + 2 c2_g cap_g). So
    p(Y) is piecewise linear through those points: exact by interpolation, with
    ``breakpoints`` at their totals. ``derivative`` is the right derivative (the
    slope of the segment starting at Y). Beyond the total capacity p = inf.
    c2_g > 0 is required, and the curve must have no gap (a generator must start by
    the time the cheaper ones are full) so that p is continuous.
    """

    c1: tuple[float, ...]
    c2: tuple[float, ...]
    cap: tuple[float, ...]
    kind = "merit-order"
    piecewise_linear = True

    def __post_init__(self) -> None:
        n = len(self.c1)
        if n == 0 or len(self.c2) != n or len(self.cap) != n:
            raise GameDefinitionError(
                f"merit-order price: fields 'c1', 'c2', 'cap' must be non-empty and of "
                f"one length, got {len(self.c1)}, {len(self.c2)}, {len(self.cap)}")
        for name, pos in (("c1", False), ("c2", True), ("cap", True)):
            vals = tuple(check_finite("merit-order price", name, v, positive=pos,
                                      nonnegative=not pos) for v in getattr(self, name))
            object.__setattr__(self, name, vals)
        c1, c2, cap = (np.array(v) for v in (self.c1, self.c2, self.cap))
        prices = np.unique(np.concatenate([c1, c1 + 2 * c2 * cap]))
        supply = self.supply(prices)
        # A flat step of the supply (to rounding: c1 + 2 c2 cap of one generator
        # equal to the next c1 leaves a difference of ~1e-15) is a jump of the price.
        flat = np.diff(supply) <= 1e-12 * max(1.0, float(supply[-1]))
        gap = np.flatnonzero(flat & (prices[1:] > c1.min()))
        if gap.size:
            raise GameDefinitionError(
                f"merit-order price: no generator supplies between prices "
                f"{prices[gap[0]]:g} and {prices[gap[0] + 1]:g}, so the price would jump "
                f"at Y = {supply[gap[0]]:g}; add a generator or widen a capacity")
        object.__setattr__(self, "_prices", prices)
        object.__setattr__(self, "_totals", supply)

    def supply(self, price: Any) -> np.ndarray:
        """Total supply at ``price``: sum_g clip((p - c1_g) / (2 c2_g), 0, cap_g)."""
        p = np.asarray(price, dtype=float)[..., None]
        c1, c2, cap = (np.array(v) for v in (self.c1, self.c2, self.cap))
        return np.clip((p - c1) / (2 * c2), 0.0, cap).sum(axis=-1)

    def value(self, total, lib=np):
        if lib is not np:
            raise EmbeddingError(
                "merit-order price: no smooth Pyomo expression (its supply curve is "
                "kinked); the stacked KKT model needs a differentiable closed form")
        y = np.asarray(total, dtype=float)
        out = np.interp(y, self._totals, self._prices)
        return np.where(y > self._totals[-1], np.inf, out)

    def derivative(self, total, lib=np):
        y = np.asarray(total, dtype=float)
        slopes = np.diff(self._prices) / np.diff(self._totals)
        k = np.clip(np.searchsorted(self._totals, y, side="right") - 1, 0,
                    slopes.size - 1)
        return np.where(y >= self._totals[-1], np.inf, slopes[k])

    def inverse(self, price: float) -> float:
        return float(self.supply(price))

    def breakpoints(self, lo: float, hi: float) -> np.ndarray:
        t = self._totals
        return t[(t > lo) & (t < hi)]


    def describe(self):
        return {"price": self.kind, "c1": list(self.c1), "c2": list(self.c2),
                "cap": list(self.cap)}


PRICE_KINDS: dict[str, type[Price]] = {
    "linear": LinearPrice, "affine": AffinePrice, "power": PowerPrice,
    "saturating": SaturatingPrice,
}
