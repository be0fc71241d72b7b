"""The packed CPMI engine against an earlier version of itself, at equal outputs.

Run: ``.venv/bin/python -m benchmarks.bench_packed_engine --baseline REV`` (in a git checkout;
``make bench`` passes the version before the batch building lost its per-token Python loops).
Loads ``cpmi_lib/lm/logprob.py`` as it was at REV beside today's, scores the same CPMI requests
of default-world trajectories with both (three variants, K = 1 and 4 templates, one and eight
trajectories per call), alternating the two several times on the same model so that a noisy
machine moves both alike, and checks that every log-probability is the same bit for bit.
Writes ``results/benchmarks/packed_engine.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_labeling import six_step_trajectories
from cpmi_lib.core.text_format import PROMPT_TEMPLATES
from cpmi_lib.labeling.cpmi import CPMIConfig, cpmi_requests
from cpmi_lib.lm import logprob
from cpmi_lib.lm.default_lm import ensure_default_lm
from cpmi_lib.lm.load import load_lm

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"
SETTINGS = [("marginal", 1), ("marginal", 4), ("cumulative", 4), ("loo", 4)]


def module_at(rev: str, tmp: Path):
    """`cpmi_lib/lm/logprob.py` as committed at `rev`, imported under another name."""
    shown = subprocess.run(
        ["git", "show", f"{rev}:cpmi_lib/lm/logprob.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if shown.returncode != 0:  # e.g. a shallow clone that lacks `rev`
        raise SystemExit(
            f"bench_packed_engine: cannot read cpmi_lib/lm/logprob.py at {rev} "
            f"({shown.stderr.strip() or 'git failed'}); it needs the repository's history "
            "(git fetch --unshallow)"
        )
    source = shown.stdout
    path = tmp / "baseline_logprob.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_logprob", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def request_sets(tok, n_trajectories: int) -> list[list[logprob.ScoreRequest]]:
    """One call's requests per trajectory and setting, and calls of eight trajectories each."""
    trajs = six_step_trajectories(n_trajectories)
    rng = random.Random(0)
    sets = []
    for variant, k in SETTINGS:
        cfg = CPMIConfig(variant=variant, templates=PROMPT_TEMPLATES[:k])
        for t in trajs:
            negatives = [str(rng.randint(1, 500)) for _ in range(4)]
            sets.append(
                cpmi_requests(tok, t.question, t.steps, [t.gold_answer, *negatives], cfg)[0]
            )
    per_call = len(trajs)
    blocks = [sum(sets[i : i + 8], []) for i in range(per_call, 2 * per_call, 8)]
    return sets + blocks


def time_engine(module, model, sets) -> tuple[float, list]:
    start = time.perf_counter()
    outs = [module.packed_logprobs(model, r, 8192, CPMIConfig.max_row_tokens) for r in sets]
    return time.perf_counter() - start, outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="git revision to compare against")
    parser.add_argument("--trajectories", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tok = load_lm(ensure_default_lm())
    sets = request_sets(tok, args.trajectories)
    with tempfile.TemporaryDirectory() as tmp:
        engines = {"baseline": module_at(args.baseline, Path(tmp)), "today": logprob}
        seconds = {name: [] for name in engines}
        outputs = {}
        for _ in range(args.repeats):
            for name, module in engines.items():
                s, outputs[name] = time_engine(module, model, sets)
                seconds[name].append(s)
    pairs = zip(outputs["baseline"], outputs["today"], strict=True)
    differing = sum(not torch.equal(a, b) for x, y in pairs for a, b in zip(x, y, strict=True))
    n_requests = sum(len(r) for r in sets)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "baseline": args.baseline,
        "calls": len(sets),
        "requests": n_requests,
        "repeats": args.repeats,
        "seconds": seconds,
        "median_seconds": median,
        "requests_per_s": {name: n_requests / s for name, s in median.items()},
        "speedup": median["baseline"] / median["today"],
        "requests_with_other_bits": differing,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "packed_engine.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (
        f"Machine: {result['machine']}. {len(sets)} packed calls ({n_requests:,} requests: "
        f"{args.trajectories} six-step trajectories x {SETTINGS} with M = 4, and calls of 8 "
        f"trajectories), each engine {args.repeats} times, alternating.\n\n"
        "| engine | median seconds | requests/s |\n| --- | ---: | ---: |\n"
        + "".join(
            f"| {'`' + args.baseline + '`' if n == 'baseline' else 'today'} | {median[n]:.2f} | "
            f"{result['requests_per_s'][n]:,.0f} |\n"
            for n in engines
        )
        + f"\nSpeed-up {result['speedup']:.2f}x; requests whose log-probabilities differ in any "
        f"bit: {differing} of {n_requests:,}.\n"
    )
    (OUT / "packed_engine.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
