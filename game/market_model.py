"""A scenario's market model (``[market] model = "module:function"``), unresolved.

The game definition never runs a scenario's code and never imports
``aggregame.solvers`` (layers point one way). So the seam is a value and a reader:
the scenario parses ``[market]`` into a :class:`MarketModel` (the text of the
fields, the scenario's folder and file), and a layer that may run code turns it into
a Price. That reader is passed in (``load_scenario(..., market_reader=...)``) or, by
default, the one ``aggregame.solvers.market`` registers when it is imported
(:func:`register_market_reader`): it imports the module from the scenario's folder
only and reads the model as a MarketPrice (solvers/market/scenario_code.py). Either
way code runs only when the caller allows it (``allow_code=True``, on the command
line ``--allow-code``); without it the scenario is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aggregame.errors import ScenarioError
from aggregame.price import Price

#: The optional keys of ``[market]`` beside ``model`` (component names, the QP
#: solver), passed to the reader as given.
MARKET_MODEL_KEYS = ("demand", "balance", "solver")


@dataclass(frozen=True)
class MarketModel:
    """``[market] model = "module:function"`` of one scenario file.

    Attributes
    ----------
    model : the field's text, ``module:function`` (checked by the reader).
    names : the other keys given (``demand``, ``balance``, ``solver``), as pairs.
    folder : the scenario's folder: the only place the module is read from.
    source : the scenario file, for messages.
    """

    model: str
    names: tuple[tuple[str, str], ...]
    folder: Path
    source: str


#: Reads a MarketModel into a Price; raises ScenarioError in one line.
MarketReader = Callable[[MarketModel], Price]
_READERS: list[MarketReader] = []


def register_market_reader(reader: MarketReader) -> None:
    """Make ``reader`` the default of load_scenario (aggregame.solvers.market calls
    this when it is imported)."""
    _READERS[:] = [reader]


def read_market_model(market: dict, folder: Path, source: str, *, allow_code: bool,
                      reader: MarketReader | None) -> Price:
    """The price of a ``[market]`` table with a ``model`` key (schema-checked)."""
    ref = MarketModel(market["model"], tuple((k, market[k]) for k in MARKET_MODEL_KEYS
                                             if k in market), folder, source)
    where = f"{source}: [market] model = {ref.model!r}"
    if not allow_code:
        raise ScenarioError(
            f"{where} runs Python code from the scenario's folder; allow it "
            "explicitly (--allow-code, or allow_code=True) if you trust the file"
        ).at(source, "market.model")
    reader = reader or (_READERS[0] if _READERS else None)
    if reader is None:
        raise ScenarioError(f"{where}: reading a market model needs aggregame.solvers "
                            "(import aggregame.solvers.market first, or pass "
                            "market_reader=)").at(source, "market.model")
    try:
        return reader(ref)
    except ScenarioError as err:
        raise err.at(source, "market.model") from None
