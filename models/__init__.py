"""Pyomo components built from a checked game: no solving, no files, no plots.

The aggregator's problem as a block of a user's model: ``AggregatorBlock`` (a
block class, scalar or indexed; models/block.py) or ``add_aggregator`` (fills a
block the caller owns; models/aggregator.py).
"""

from aggregame.models.aggregator import add_aggregator, build_aggregator_model
from aggregame.models.block import AggregatorBlock, AggregatorBlockData

__all__ = ["AggregatorBlock", "AggregatorBlockData", "add_aggregator",
           "build_aggregator_model"]
