"""Prices read from the user's own Pyomo market models.

- ``MarketPrice`` (price.py): p(Y) of one demand and one balance, exact and
  piecewise affine, with its kinks and jumps;
- ``NodalMarketPrice`` (nodal.py): bus prices of a network model, a price per bus,
  and the nodal equilibrium (each player priced at its bus);
- jumps.py: the refusal of a profile whose total sits at a price jump;
- scenario_code.py: the market model a scenario file names, imported from the
  scenario's own folder and only when the caller allows code to run;
- qp.py, supply.py: the parametric QP and the solves both prices share.
"""

from aggregame.solvers.market.jumps import refuse_at_jump
from aggregame.solvers.market.price import MarketPrice, PriceJump, Segment

__all__ = ["MarketPrice", "PriceJump", "Segment", "refuse_at_jump"]
