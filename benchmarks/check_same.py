"""Check that a code change keeps every equilibrium: record before, compare after.

Solves every shipped scenario (its own [solver] settings, native backend) and the
benchmark games of bench_fig4.py / bench_cournot.py, and stores the profiles.
``--save FILE`` records them; ``--compare FILE`` solves again and fails if any purchase
moved by more than 1e-10 relative to max(1, max purchase) or a certificate verdict
changed. Run: python benchmarks/check_same.py --save before.json; (change the code);
python benchmarks/check_same.py --compare before.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from aggregame import data
from aggregame.scenario import load_scenario
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium

sys.path.insert(0, str(Path(__file__).parent))
from games import extra_games  # noqa: E402

RTOL = 1e-10


def games():
    """(label, game, dynamics settings) of every checked game."""
    for name in data.scenarios():
        sc = load_scenario(name)
        yield name, sc.game, DynamicsSettings(**sc.solver.dynamics_kwargs())
    for label, game in extra_games():
        yield label, game, DynamicsSettings()


def solve_all() -> dict[str, dict]:
    out = {}
    for label, game, settings in games():
        eq = solve_equilibrium(game, settings=settings)
        out[label] = {"profile": eq.profile.tolist(), "certified": eq.is_equilibrium,
                      "max_regret": eq.max_regret}
        print(f"{label}: certified {eq.is_equilibrium}, regret {eq.max_regret:.2e}",
              flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path)
    group.add_argument("--compare", type=Path)
    args = parser.parse_args()
    now = solve_all()
    if args.save:
        args.save.write_text(json.dumps(now, indent=1))
        return 0
    before = json.loads(args.compare.read_text())
    bad = 0
    for label, row in before.items():
        old, new = np.array(row["profile"]), np.array(now[label]["profile"])
        gap = float(np.abs(old - new).max() / max(1.0, float(np.abs(old).max())))
        same = gap <= RTOL and row["certified"] == now[label]["certified"]
        bad += not same
        print(f"{'ok  ' if same else 'DIFF'} {label}: relative gap {gap:.2e}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
