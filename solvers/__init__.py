"""Everything that calls a solver, in rooms by role (docs/architecture.md).

* ``inner``: one player's allocation for given purchases (native numpy and compiled
  kernels, Pyomo models, the safe re-solve, leximin's progressive filling);
* ``certify``: a profile's regrets (the scan certificate and SCIP's global bounds);
* ``equilibrium``: best responses, dynamics, the search over the total for every
  equilibrium, closed forms, results;
* ``kkt``: the stacked KKT system solved as one model;
* ``compare``: cross-checks, the uniqueness probe, timed solver comparisons;
* ``solver_choice`` (which Pyomo solver, with which options) and ``market`` (prices
  read from the user's supply model) serve them all.

The package exports the entry point most scripts need, ``solve_equilibrium``; each
room exports its own (``aggregame.solvers.certify.certify``, ...).
"""

from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.equilibrium.results import Equilibrium

__all__ = ["DynamicsSettings", "Equilibrium", "solve_equilibrium"]
