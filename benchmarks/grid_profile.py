"""Where a grid run's time goes: a py-spy profile of it, summed by the library's functions.

Run (py-spy is not a dependency of the suite; ``pip install py-spy`` into any environment)::

    py-spy record --subprocesses -r 5 -f raw -o grid.prof -- \
        .venv/bin/python -m cpmi_lib grid --preset default
    .venv/bin/python -m benchmarks.grid_profile grid.prof --rate 5

It writes ``results/benchmarks/grid_profile.md``: for each function of interest, the seconds of
samples whose stack passes through it (inclusive; a stack counts once per function however often
the function recurs in it). Sampled seconds are CPU-side wall seconds of all the grid's kernels.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"

#: The functions the summary names, with what each stands for.
FUNCTIONS: dict[str, str] = {
    "answer_deltas (cpmi_lib/labeling/cpmi.py)": "CPMI scoring (every caller)",
    "packed_logprobs (cpmi_lib/lm/logprob.py)": "the packed engine's calls",
    "_Trie.insert (cpmi_lib/lm/logprob.py)": "its trie building",
    "mc_block (cpmi_lib/labeling/mc.py)": "MC rollouts",
    "sample_solutions (cpmi_lib/lm/sampling.py)": "policy sampling",
    "GenerationMixin.generate (transformers/generation/utils.py)": "HF generate",
    "score_solutions (cpmi_lib/studies/real_verifier.py)": "real-text CPMI (SmolLM2)",
    "step_terms (cpmi_lib/studies/labeler_skill.py)": "labeler axis: CPMI terms",
    "budget_plan (cpmi_lib/studies/budget.py)": "equal-budget plans",
    "cpmi_ablation (cpmi_lib/studies/ablations.py)": "ablations",
    "train_prm (cpmi_lib/prm/train.py)": "PRM training",
    "ProcessRewardModel.predict (cpmi_lib/prm/model.py)": "PRM scoring",
    "_bootstrap (cpmi_lib/core/intervals.py)": "bootstrap intervals",
}

#: A torch module's call: below an engine's frame, the seconds of its model's forward passes.
FORWARD = "Module._wrapped_call_impl (torch/nn/modules/module.py)"
#: The engines whose time the summary splits into forward passes and the rest.
ENGINES = (
    "packed_logprobs (cpmi_lib/lm/logprob.py)",
    "mc_block (cpmi_lib/labeling/mc.py)",
    "GenerationMixin.generate (transformers/generation/utils.py)",
)


def inclusive_seconds(lines: list[str], rate: float) -> tuple[float, Counter[str]]:
    """Total sampled seconds and, per function (line numbers dropped), the seconds of the
    stacks that pass through it."""
    per_function: Counter[str] = Counter()
    total = 0
    for line in lines:
        frames, n = _frames(line)
        total += n
        for name in set(frames):
            per_function[name] += n
    return total / rate, Counter({k: v / rate for k, v in per_function.items()})


def _frames(line: str) -> tuple[list[str], int]:
    """A raw line's frames (line numbers dropped) and its sample count; ([], 0) if empty."""
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack:
        return [], 0
    return [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")], int(count)


def seconds_within(lines: list[str], rate: float, outer: str, inner: str) -> float:
    """Seconds of the stacks in which `inner` is called (at any depth) below `outer`."""
    n = 0
    for line in lines:
        frames, count = _frames(line)
        if outer in frames and inner in frames[frames.index(outer) + 1 :]:
            n += count
    return n / rate


def summary(lines: list[str], rate: float) -> str:
    """The markdown table of `FUNCTIONS` in the profile, largest first."""
    total, seconds = inclusive_seconds(lines, rate)
    rows = sorted(((seconds.get(f, 0.0), f, what) for f, what in FUNCTIONS.items()), reverse=True)
    out = [
        f"Sampled seconds in all: {total:,.0f} (py-spy, {rate:g} samples/s).",
        "",
        "| seconds | share | function | what |",
        "| ---: | ---: | --- | --- |",
    ]
    for s, f, what in rows:
        out.append(f"| {s:,.0f} | {s / total:.0%} | `{f.split(' ')[0]}` | {what} |")
    out += [
        "",
        "| engine | seconds | of which forward passes | share |",
        "| --- | ---: | ---: | ---: |",
    ]
    for engine in ENGINES:
        s, forward = seconds.get(engine, 0.0), seconds_within(lines, rate, engine, FORWARD)
        share = f"{forward / s:.0%}" if s else "-"
        out.append(f"| `{engine.split(' ')[0]}` | {s:,.0f} | {forward:,.0f} | {share} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", type=Path, help="py-spy raw output (-f raw)")
    ap.add_argument("--rate", type=float, default=5.0, help="py-spy's samples per second (-r)")
    ap.add_argument("--out", type=Path, default=OUT / "grid_profile.md")
    args = ap.parse_args()
    text = summary(args.profile.read_text().splitlines(), args.rate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Where the default grid's time goes\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
