"""Pyomo components built from a checked game: no solving, no files, no plots."""
