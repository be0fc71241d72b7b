"""Throughput of the embedded track's default LM: training steps/s and sampling tokens/s.

Run: ``.venv/bin/python -m benchmarks.bench_default_lm`` (about a minute on 2 CPU cores). The
default LM's full training time is recorded by `make reproduce` in `results/default_lm.json`; this
measures the per-step rate on a short run so a change to the recipe's speed shows at once.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.text_format import render_prompt
from cpmi_lib.data.world import build_world
from cpmi_lib.lm.default_lm import LMTrainConfig, train_lm, training_record
from cpmi_lib.lm.load import count_parameters, load_lm
from cpmi_lib.lm.sampling import SampleConfig, generate_texts

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "default_lm.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--problems", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    cfg = replace(
        LMTrainConfig(), train_steps=args.train_steps, n_train_problems=5000, warmup_steps=10
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = train_lm(cfg, Path(tmp) / "lm", progress=False)
        rec = training_record(path)
        model, tok = load_lm(path)
        problems = build_world(cfg.world, {"test": args.problems}, seed=0)["test"]
        prompts = [render_prompt(p.question) for p in problems]
        meter = CostMeter(count_parameters(model))
        start = time.perf_counter()
        with meter:
            generate_texts(
                model, tok, prompts, SampleConfig(n=4, temperature=0.7, batch_size=64), meter=meter
            )
        seconds = time.perf_counter() - start
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "parameters": rec["parameters"],
        "train_steps": cfg.train_steps,
        "train_batch_size": cfg.batch_size,
        "train_steps_per_second": cfg.train_steps / rec["train_seconds"],
        "projected_default_training_minutes": LMTrainConfig().train_steps
        * rec["train_seconds"]
        / cfg.train_steps
        / 60,
        "sampled_solutions": len(prompts) * 4,
        "sampling_generated_tokens_per_second": meter.costs.generated_tokens / seconds,
        "sampling_costs": meter.costs.to_dict(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
