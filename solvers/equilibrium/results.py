"""The result of an equilibrium search: profile, price, tables, path and certificate."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from aggregame.one_member import OneMemberPayoff
from aggregame.players import Game
from aggregame.settings import Backend
from aggregame.solvers.certify.certificate import Certificate, verdict_text
from aggregame.solvers.inner.batch import InnerSolver


def _alpha_json(alpha: float) -> float | str:
    return "inf" if math.isinf(alpha) else alpha


def _num(v: float) -> float | None:
    """JSON has no inf/NaN: None stands for them."""
    v = float(v)
    return v if math.isfinite(v) else None


class Status(enum.StrEnum):
    """How an equilibrium search ended; only ``CONVERGED`` passed its stopping test.

    A str mixin whose str() is the word: ``eq.status == "converged"``, f-strings and
    JSON output read as before.
    """

    CONVERGED = "converged"
    ROUND_LIMIT = "round-limit"         # best-response dynamics: max_rounds reached
    CYCLING = "cycling"                 # a profile came back: the rounds cycle
    TIME_LIMIT = "time-limit"           # the KKT solve hit its solver's time limit
    KKT_RESIDUAL = "kkt-residual"       # KKT: status settled, complementarity too large
    STATUS_CYCLING = "status-cycling"   # KKT: the priced-out status kept changing
    NO_ROOT = "no-root"                 # aggregate: no total satisfies every reply


@dataclass
class Equilibrium:
    """Where the dynamics (or the KKT solve) ended, with everything to judge it.

    ``converged`` says the method's own stopping test passed; ``certified`` says the
    regret certificate (a scan of every player's feasible interval) is below its
    tolerance. Call it an equilibrium only when both hold (``is_equilibrium``).
    """

    game: Game
    profile: np.ndarray
    price: float
    converged: bool
    status: Status
    iterations: int
    path: np.ndarray
    certificate: Certificate
    backend: Backend
    method: str
    settings: dict[str, Any]
    welfare: np.ndarray
    allocations: list[np.ndarray]
    surpluses: list[np.ndarray]
    seconds: float = 0.0
    evaluations: int = 0
    strategies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Drivers may pass the words; an unknown one is a bug here, not user input.
        self.status = Status(self.status)
        self.backend = Backend(self.backend)

    def __repr__(self) -> str:
        # One line: the default dataclass repr prints the path and every member.
        head = ", ".join(f"{v:.6g}" for v in self.profile[:4])
        more = f", ... ({self.profile.size} players)" if self.profile.size > 4 else ""
        return (f"Equilibrium(status={self.status.value!r}, is_equilibrium="
                f"{self.is_equilibrium}, profile=[{head}{more}], price={self.price:.6g}, "
                f"max_regret={self.max_regret:.3g}, iterations={self.iterations}, "
                f"backend={self.backend.value!r}, method={str(self.method)!r})")

    @classmethod
    def from_run(cls, game: Game, profile: np.ndarray,
                 inners: Sequence[InnerSolver | None], **kw: Any) -> "Equilibrium":
        """The equilibrium at ``profile``; an inner of None marks a one-member
        player, whose allocation (x = y) and payoff are formulas (one_member)."""
        total = float(profile.sum())
        allocations, surpluses, welfare = [], [], []
        for j, inner in enumerate(inners):
            if inner is None:
                point = OneMemberPayoff(game.players[j], game.price)(
                    float(profile[j]), total - float(profile[j]))
                allocations.append(np.array([point.x]))
                surpluses.append(np.array([point.surplus]))
                welfare.append(point.welfare)
                continue
            sol = inner.solve(np.array([profile[j]]), total - profile[j])
            allocations.append(sol.x[0])
            surpluses.append(sol.surplus[0])
            welfare.append(float(sol.welfare[0]))
        return cls(game=game, profile=np.asarray(profile, dtype=float),
                   price=float(game.price.value(total)), welfare=np.array(welfare),
                   allocations=allocations, surpluses=surpluses, **kw)

    @property
    def total(self) -> float:
        return float(self.profile.sum())

    @property
    def max_regret(self) -> float:
        return self.certificate.max_regret

    @property
    def certified(self) -> bool:
        return self.certificate.certified

    @property
    def is_equilibrium(self) -> bool:
        return self.converged and self.certified

    def reason(self) -> str:
        """One line on why this is or is not an equilibrium."""
        if self.is_equilibrium:
            how = ("by the search over the total" if self.method == "aggregate"
                   else f"after {self.iterations} rounds")
            return f"equilibrium {how}, max relative regret {self.max_regret:.3g}"
        if not self.converged:
            return (f"no equilibrium: dynamics stopped by {self.status} after "
                    f"{self.iterations} rounds (last max regret {self.max_regret:.3g})")
        return (f"no equilibrium proved: dynamics converged; "
                f"{self.certificate.summary(self.game.names)}")

    # -- tables ----------------------------------------------------------------
    def players_table(self) -> pd.DataFrame:
        rows = []
        for j, player in enumerate(self.game.players):
            rows.append({
                "player": player.name, "alpha": player.alpha,
                "rule": player.fairness.rule.value, "members": player.size,
                "y": self.profile[j], "welfare": self.welfare[j],
                "total_surplus": float(self.surpluses[j].sum()),
                "regret": self.certificate.regrets[j],
                "relative_regret": self.certificate.relative_regrets[j],
                "bound": self.certificate.bounds[j],
                "certificate": verdict_text(self.certificate.players[j]),
                "best_deviation": self.certificate.deviations[j],
            })
        return pd.DataFrame(rows)

    def members_table(self) -> pd.DataFrame:
        rows = []
        for j, player in enumerate(self.game.players):
            for i, member in enumerate(player.members):
                rows.append({"player": player.name, "member": member.name,
                             "utility": member.utility.family, **member.utility.params(),
                             "x": self.allocations[j][i],
                             "surplus": self.surpluses[j][i]})
        return pd.DataFrame(rows)

    # -- export ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        players = []
        for j, player in enumerate(self.game.players):
            members = []
            for i, member in enumerate(player.members):
                members.append({"name": member.name, "utility": member.utility.family,
                                **member.utility.params(),
                                "x": float(self.allocations[j][i]),
                                "surplus": float(self.surpluses[j][i])})
            players.append({"name": player.name, "alpha": _alpha_json(player.alpha),
                            "rule": player.fairness.rule.value,
                            "eps": player.fairness.eps,
                            "maxmin": player.fairness.maxmin.value
                            if player.fairness.is_maxmin else None,
                            "y": float(self.profile[j]),
                            "welfare": _num(self.welfare[j]),
                            "regret": _num(self.certificate.regrets[j]),
                            "relative_regret": _num(
                                self.certificate.relative_regrets[j]),
                            "certificate": {
                                "verdict": self.certificate.verdicts[j],
                                "bound": _num(self.certificate.bounds[j]),
                                "reason": self.certificate.players[j].reason},
                            "members": members})
        return {
            "price": self.price, "total": self.total, "converged": self.converged,
            "certified": self.certified, "status": self.status,
            "iterations": self.iterations, "max_regret": _num(self.max_regret),
            "backend": self.backend, "method": self.method, "seconds": self.seconds,
            "settings": self.settings, "market": self.game.price.describe(),
            "path": self.path.tolist(), "players": players,
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def summary(self) -> str:
        """A readable multi-line summary for the terminal."""
        lines = [self.reason(),
                 f"price {self.price:.6g}   total purchase {self.total:.6g}   "
                 f"backend {self.backend}   method {self.method}   "
                 f"{self.seconds * 1e3:.1f} ms"]
        table = self.players_table()[["player", "alpha", "rule", "members", "y",
                                      "welfare", "total_surplus",
                                      "relative_regret", "certificate"]]
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        return "\n".join(lines)
