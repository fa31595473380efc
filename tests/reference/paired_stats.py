"""Fixtures for `scorecl compare`'s paired statistics (host/tests/compare_stats.rs).

For several vectors of per-seed differences (on − off, k-NN points), SciPy's
mean, sample standard deviation, Student-t quantile and two-sided interval
of the mean (`scipy.stats.t.interval`), written to
tests/fixtures/paired/paired_stats.json.

    python3 tests/reference/paired_stats.py
"""
import json
import pathlib

import numpy as np
import scipy
from scipy import stats

rng = np.random.default_rng(17)
cases = [
    ("n2", [1.5, -0.5], 0.95),
    ("n3_hand", [1.0, 2.0, 3.0], 0.95),
    ("n5_main_job", [-2.3, -1.6, 0.8, 0.0, 0.3], 0.95),
    ("n5_level90", [-2.3, -1.6, 0.8, 0.0, 0.3], 0.90),
    ("n10_random", list(rng.normal(0.5, 2.0, 10)), 0.95),
    ("n30_random", list(rng.normal(-1.0, 0.7, 30)), 0.95),
    ("n4_constant", [0.7, 0.7, 0.7, 0.7], 0.95),
]
out = []
for name, d, level in cases:
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    mean = float(d.mean())
    std = float(d.std(ddof=1))
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    sem = std / np.sqrt(n)
    if sem > 0:
        lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    else:
        lo, hi = mean, mean
    out.append({"name": name, "diffs": [float(x) for x in d], "level": level,
                "mean": mean, "std": std, "t": t, "lo": float(lo), "hi": float(hi)})
path = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "paired" / "paired_stats.json"
path.write_text(json.dumps({"scipy": scipy.__version__, "cases": out}, indent=1) + "\n")
print(f"wrote {path} ({len(out)} cases, scipy {scipy.__version__})")
