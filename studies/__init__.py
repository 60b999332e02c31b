"""Reproductions of the paper's Section IV: the only code that writes result files."""
