"""Everything that calls a solver: inner solves, best response, dynamics, certificates."""
