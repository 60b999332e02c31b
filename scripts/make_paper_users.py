"""Write data/paper_small_users.csv: the small users of the paper's Section IV-A.

a ~ Uniform(0.1, 0.9), b ~ Uniform(0, 10), drawn with numpy's default_rng(SEED).
Groups: A = users 0-99 and B = 100-199 (the two aggregators of Fig. 4 and Figs. 6-9),
C = 200-399 (with A and B, the 400 users trading alone in Fig. 3).
Rerun to regenerate; the committed CSV is the reference input.
"""

from pathlib import Path

import numpy as np

SEED = 20240801
COUNT = 400


def main() -> None:
    rng = np.random.default_rng(SEED)
    a = rng.uniform(0.1, 0.9, COUNT)
    b = rng.uniform(0.0, 10.0, COUNT)
    out = Path(__file__).resolve().parents[1] / "data" / "paper_small_users.csv"
    with out.open("w") as fh:
        fh.write("name,group,utility,a,b\n")
        for i in range(COUNT):
            group = "A" if i < 100 else "B" if i < 200 else "C"
            fh.write(f"s{i:03d},{group},quadratic,{a[i]:.12g},{b[i]:.12g}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
