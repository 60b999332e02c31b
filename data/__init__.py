"""Input data shipped with aggregame: scenario files (TOML) and users (CSV).

See ``data/README.md`` for the scenario format and how the paper's users were drawn.
"""

from importlib import resources
from pathlib import Path


def path(name: str) -> Path:
    """Filesystem path of a shipped data file, e.g. ``path('fig4.toml')``."""
    return Path(str(resources.files(__name__).joinpath(name)))


def scenarios() -> list[str]:
    """Names of the shipped scenario files."""
    return sorted(p.name for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".toml"))
