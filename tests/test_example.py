"""`examples/minimal_cpmi.py` runs as a user would run it and prints CPMI and MC side by side."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "minimal_cpmi.py"
ROW = re.compile(r"^\s*(\d+)\s+(right|wrong)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.+)$")


def test_minimal_example_prints_cpmi_and_mc_per_step(tmp_path):
    # Its own cache: the example trains the smoke LM there, never in the repository's .cache.
    # The Hugging Face variables come from conftest (fresh caches, offline) through os.environ.
    env = {**os.environ, "CPMI_CACHE": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert (tmp_path / "cache" / "models").is_dir(), "the LM went to the CPMI_CACHE given"
    header = next(line for line in out.splitlines() if line.lstrip().startswith("step"))
    assert header.split()[:6] == ["step", "truth", "CPMI", "gold", "neg", "MC"]
    rows = [m for line in out.splitlines() if (m := ROW.match(line))]
    assert rows, out
    assert [int(m[1]) for m in rows] == list(range(1, len(rows) + 1)), "one row per step, in order"
    assert len(rows) >= 3
    for m in rows:
        cpmi, gold, neg, mc = (float(m[i]) for i in (3, 4, 5, 6))
        assert all(math.isfinite(x) for x in (cpmi, gold, neg, mc)), m[0]
        assert abs(cpmi - (gold - neg)) <= 2e-3, "CPMI is the gold term minus the negative term"
        assert 0.0 <= mc <= 1.0
    truths = [m[2] for m in rows]
    assert truths[0] == "right" and truths[1] == "wrong", "the error is at step 2"
    assert re.search(r"CPMI:.*\b0 generated tokens", out), "CPMI generates nothing"
    assert re.search(r"MC:.*forward tokens", out)
