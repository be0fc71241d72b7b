"""What `make reproduce-from-scratch` adds to `make reproduce`: every LM of the grid trained anew.

Run: ``make bench-lms`` (``.venv/bin/python -m benchmarks.bench_lm_training``; 40 min on 2 CPU
cores, so not part of ``make bench``). In an empty temporary cache, with ``CPMI_FROM_SCRATCH=1``
so that no shipped checkpoint is used, it trains every LM the preset's grid uses, in the order
the grid first needs them: the policy, the PRM backbone, the labeler axis's LMs, the natural
benchmark's generators.
It writes ``results/benchmarks/lm_training.{json,md}``: each LM's training seconds as `train_lm`
records them, the total, the last full grid's seconds (``results/timings.json``) and their sum,
the from-scratch time by its parts; and, per LM, whether its weights are bitwise the shipped
checkpoint's (sha256 against ``models/manifest.json``), i.e. whether retraining on this machine
gives the committed results exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cpmi_lib.core.files import write_atomically
from cpmi_lib.experiment.natural import generator_lms
from cpmi_lib.experiment.presets import PRESET_NAMES, preset
from cpmi_lib.grid import read_timings
from cpmi_lib.lm.default_lm import ContinuedLMConfig, LMTrainConfig, ensure_lm, training_record
from cpmi_lib.lm.shipped import FROM_SCRATCH_ENV, read_manifest

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
REPO = Path(__file__).resolve().parents[1]


def grid_lms(name: str) -> dict[str, LMTrainConfig | ContinuedLMConfig]:
    """Every LM of preset `name`'s grid by role, parents before children, each config once."""
    cfg = preset(name).config
    roles: dict[str, LMTrainConfig | ContinuedLMConfig] = {"policy": cfg.lm}
    if cfg.prm_lm is not None:
        roles["prm backbone"] = cfg.prm_lm
    for labeler in preset(name).labelers:
        if labeler.lm is not None:
            roles[f"labeler {labeler.name}"] = labeler.lm
    for generator, lm in generator_lms(cfg).items():
        roles[f"generator {generator}"] = lm
    unique: dict[str, LMTrainConfig | ContinuedLMConfig] = {}
    for role, lm in roles.items():
        if lm.key() not in {seen.key() for seen in unique.values()}:
            unique[role] = lm
    return unique


def measure(name: str) -> dict:
    """Train every LM of `name`'s grid from nothing; their seconds and shipped-weight agreement."""
    os.environ[FROM_SCRATCH_ENV] = "1"
    manifest = read_manifest()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cpmi-lms-") as cache:
        for role, lm in tqdm(grid_lms(name).items(), desc="LMs from scratch", unit="LM"):
            start = time.perf_counter()
            path = ensure_lm(lm, cache=cache)
            wall = time.perf_counter() - start
            shipped = manifest.get(path.name)
            sha = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
            rows.append(
                {
                    "role": role,
                    "checkpoint": path.name,
                    "train_seconds": round(training_record(path)["train_seconds"], 1),
                    "wall_seconds": round(wall, 1),
                    "shipped_train_seconds": shipped and round(shipped["train_seconds"], 1),
                    "weights_equal_shipped": None
                    if shipped is None
                    else sha == shipped["files"]["model.safetensors"],
                }
            )
    lm_seconds = sum(r["train_seconds"] for r in rows)
    grid = read_timings(REPO)
    grid_seconds = sum(grid.values()) if grid else None
    return {
        "preset": name,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}",
        "lms": rows,
        "lm_train_seconds": round(lm_seconds, 1),
        "grid_seconds_last_full_run": grid_seconds and round(grid_seconds, 1),
        "from_scratch_seconds_by_parts": grid_seconds and round(lm_seconds + grid_seconds, 1),
    }


def markdown(result: dict) -> str:
    """The result as the table in ``lm_training.md``."""
    lines = [
        f"# Every LM of the `{result['preset']}` grid trained from scratch ({result['machine']})",
        "",
        "| LM | checkpoint | train s | shipped checkpoint's train s | weights = shipped |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for r in result["lms"]:
        shipped = r["shipped_train_seconds"]
        same = {True: "yes, bitwise", False: "no", None: "not shipped"}[r["weights_equal_shipped"]]
        lines.append(
            f"| {r['role']} | `{r['checkpoint']}` | {r['train_seconds']:,.0f} | "
            f"{'–' if shipped is None else f'{shipped:,.0f}'} | {same} |"
        )
    lines += ["", f"All LMs: {result['lm_train_seconds']:,.0f} s."]
    if result["from_scratch_seconds_by_parts"] is not None:
        lines.append(
            f"With the last full grid run (`results/timings.json`, "
            f"{result['grid_seconds_last_full_run']:,.0f} s), from scratch by its parts: "
            f"{result['from_scratch_seconds_by_parts']:,.0f} s "
            f"({result['from_scratch_seconds_by_parts'] / 60:.0f} min)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=PRESET_NAMES, default="default")
    args = parser.parse_args()
    result = measure(args.preset)
    OUT.mkdir(parents=True, exist_ok=True)
    write_atomically(OUT / "lm_training.json", json.dumps(result, indent=2) + "\n")
    write_atomically(OUT / "lm_training.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
