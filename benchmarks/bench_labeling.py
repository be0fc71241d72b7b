"""Labeling cost on the default LM: the packed CPMI engine vs the one-pass-per-pair reference, and
CPMI vs MC per labeled step, on the same trajectories, model and machine.

Run: ``make bench`` (or ``.venv/bin/python -m benchmarks.bench_labeling``). Trains the default LM
first if the cache does not have it. Writes ``results/benchmarks/labeling.json`` and ``.md``.

Setting (issue #3): arithmetic-world trajectories with S = 6 steps, M = 4 hard negatives, K = 4
prompt templates. The engine's forward tokens are compared with the floor: every distinct context
prefix encoded once plus every answer token once.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from pathlib import Path

import torch

from cpmi_lib.core.costs import CostMeter, Costs
from cpmi_lib.core.text_format import PROMPT_TEMPLATES
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.labeling.cpmi import VARIANTS, CPMIConfig, cpmi_requests, cpmi_trajectory
from cpmi_lib.labeling.label_file import LabelConfig, label_trajectory
from cpmi_lib.labeling.label_input import InputItem
from cpmi_lib.labeling.label_records import label_block
from cpmi_lib.labeling.mc import MCConfig, MCTask, mc_block
from cpmi_lib.lm.default_lm import LMTrainConfig, ensure_default_lm
from cpmi_lib.lm.load import count_parameters, load_lm
from cpmi_lib.lm.logprob import trie_floor

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"


def six_step_trajectories(n: int, seed: int = 0) -> list[Trajectory]:
    """Half gold, half corrupted trajectories of 6-step test problems of the default world."""
    cfg = LMTrainConfig().world
    problems = [p for p in build_world(cfg, {"test": 40 * n}, seed=seed)["test"] if p.n_steps == 6]
    rng = random.Random(seed)
    out = []
    for i, p in enumerate(problems[:n]):
        t = corrupt(p, rng, kinds=["slip", "operand", "operation"]) if i % 2 else None
        out.append(t or p.gold_trajectory())
    return out


def engine_vs_reference(model, tok, trajs: list[Trajectory], m: int, k: int) -> list[dict]:
    rows = []
    n_params = count_parameters(model)
    for variant in VARIANTS:
        results = {}
        for engine in ("reference", "packed"):
            cfg = CPMIConfig(variant=variant, templates=PROMPT_TEMPLATES[:k], engine=engine)
            meter = CostMeter(n_params)
            floor = 0
            with meter:
                for t in trajs:
                    negatives, _ = cpmi_trajectory(model, tok, t, cfg, m, meter=meter)
                    negs = [n.answer for n in negatives]
                    meter.add_items(1, t.n_steps)
                    requests, _ = cpmi_requests(
                        tok, t.question, t.steps, [t.gold_answer, *negs], cfg
                    )
                    floor += trie_floor(requests)
            results[engine] = (meter.costs, floor)
        ref, floor = results["reference"]
        fast, _ = results["packed"]
        rows.append(
            {
                "variant": variant,
                "reference_steps_per_s": ref.steps / ref.wall_seconds,
                "engine_steps_per_s": fast.steps / fast.wall_seconds,
                "speedup": ref.wall_seconds / fast.wall_seconds,
                "reference_forward_tokens": ref.forward_tokens,
                "engine_forward_tokens": fast.forward_tokens,
                "floor_tokens": floor,
                "engine_tokens_over_floor": fast.forward_tokens / floor,
                "reference_tokens_over_floor": ref.forward_tokens / floor,
            }
        )
    return rows


def cpmi_vs_mc(model, tok, trajs: list[Trajectory], m: int, k: int, n_rollouts: int) -> dict:
    n_params = count_parameters(model)
    out = {}
    configs = {
        "cpmi": LabelConfig(
            method="cpmi", n_negatives=m, cpmi=CPMIConfig(templates=PROMPT_TEMPLATES[:k])
        ),
        "cpmi_lm_negatives": LabelConfig(
            method="cpmi",
            n_negatives=m,
            negative_sources=("lm", "perturb"),
            cpmi=CPMIConfig(templates=PROMPT_TEMPLATES[:k]),
        ),
        "mc": LabelConfig(method="mc", mc=MCConfig(n_rollouts=n_rollouts, max_new_tokens=160)),
    }
    for name, cfg in configs.items():
        total = Costs()
        if cfg.method == "mc":  # MC as `label` runs it: blocks of trajectories, one call each
            block = cfg.mc.batch_trajectories
            for start in range(0, len(trajs), block):
                chunk = trajs[start : start + block]
                tasks = [MCTask(t.question, t.steps, t.gold_answer, seed=0) for t in chunk]
                meter = CostMeter(n_params)
                with meter:
                    mc_block(model, tok, tasks, cfg.mc, meter)
                    meter.add_items(len(chunk), sum(t.n_steps for t in chunk))
                total = total + meter.costs
            out[name] = {"total": total.to_dict(), "per_step": total.per_step()}
            continue
        for t in trajs:
            meter = CostMeter(n_params)
            with meter:
                label_trajectory(model, tok, t, cfg, meter)
                meter.add_items(1, t.n_steps)
            total = total + meter.costs
        out[name] = {"total": total.to_dict(), "per_step": total.per_step()}
    mc = out["mc"]["per_step"]
    for name in ("cpmi", "cpmi_lm_negatives"):
        c = out[name]["per_step"]
        out[name]["saving_vs_mc"] = {
            key: 1 - c[key] / mc[key] for key in ("wall_seconds", "generated_tokens", "flops")
        }
    return out


def cpmi_blocks(model, tok, trajs: list[Trajectory], m: int, blocks: list[int]) -> list[dict]:
    """CPMI as `label` runs it (`label_block`, the default setting) with `batch_trajectories`
    trajectories per block, on the same trajectories: steps/s, and the largest difference of a
    step's score from blocks of 1 (packing moves only the last bits)."""
    n_params = count_parameters(model)
    items = [InputItem(i, f"bench line {i + 1}", t) for i, t in enumerate(trajs)]
    steps = sum(t.n_steps for t in trajs)
    rows, reference = [], None
    warm = LabelConfig(method="cpmi", n_negatives=m, cpmi=CPMIConfig(templates=PROMPT_TEMPLATES))
    label_block(model, tok, items[:2], warm, n_params)  # the first calls pay for allocation
    for block in blocks:
        cfg = LabelConfig(
            method="cpmi",
            n_negatives=m,
            cpmi=CPMIConfig(templates=PROMPT_TEMPLATES, batch_trajectories=block),
        )
        start = time.perf_counter()
        out: dict = {}
        for first in range(0, len(items), block):
            out |= label_block(model, tok, items[first : first + block], cfg, n_params)
        seconds = time.perf_counter() - start
        scores = [s["cpmi"] for i in range(len(items)) for s in out[i][0]["steps"]]
        reference = reference or scores
        rows.append(
            {
                "batch_trajectories": block,
                "seconds": seconds,
                "steps_per_s": steps / seconds,
                "speedup": rows[0]["seconds"] / seconds if rows else 1.0,
                "max_abs_diff_vs_blocks_of_1": max(
                    abs(a - b) for a, b in zip(scores, reference, strict=True)
                ),
                "all_finite": all(math.isfinite(x) for x in scores),
            }
        )
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"Machine: {result['machine']}; model: default LM ({result['parameters']:,} parameters); "
        f"{result['trajectories']} trajectories x {result['steps_per_trajectory']} steps, "
        f"M = {result['negatives']} negatives, K = {result['templates']} templates.",
        "",
        "| variant | reference steps/s | engine steps/s | speed-up | engine tokens / floor |"
        " reference tokens / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["engine_vs_reference"]:
        lines.append(
            f"| {r['variant']} | {r['reference_steps_per_s']:.1f} | {r['engine_steps_per_s']:.1f}"
            f" | {r['speedup']:.1f}x | {r['engine_tokens_over_floor']:.2f} |"
            f" {r['reference_tokens_over_floor']:.2f} |"
        )
    cm = result["cpmi_vs_mc"]
    lines += [
        "",
        "| per labeled step | CPMI | saving vs MC | CPMI, LM-sampled negatives | saving vs MC |"
        f" MC (N = {result['rollouts']}) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in [
        ("wall_seconds", "seconds"),
        ("generated_tokens", "generated tokens"),
        ("forward_tokens", "forward tokens"),
        ("flops", "FLOPs"),
    ]:
        cells = []
        for name in ("cpmi", "cpmi_lm_negatives"):
            saving = cm[name]["saving_vs_mc"].get(key)
            cells += [
                f"{cm[name]['per_step'][key]:.4g}",
                f"{saving:.1%}" if saving is not None else "",
            ]
        lines.append(f"| {label} | {' | '.join(cells)} | {cm['mc']['per_step'][key]:.4g} |")
    blocks = result.get("cpmi_blocks")
    if blocks:
        lines += [
            "",
            f"CPMI as `label` runs it (default setting, K = {len(PROMPT_TEMPLATES)}) on "
            f"{result['block_trajectories']} trajectories, `--batch-trajectories` per packed "
            "call:",
            "",
            "| trajectories per call | steps/s | speed-up | max abs. score difference vs 1 |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for r in blocks:
            lines.append(
                f"| {r['batch_trajectories']} | {r['steps_per_s']:.1f} | {r['speedup']:.2f}x | "
                f"{r['max_abs_diff_vs_blocks_of_1']:.1e} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trajectories", type=int, default=20)
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--templates", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--block-trajectories", type=int, default=64)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tok = load_lm(ensure_default_lm())
    trajs = six_step_trajectories(args.trajectories)
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "parameters": count_parameters(model),
        "trajectories": len(trajs),
        "steps_per_trajectory": 6,
        "negatives": args.negatives,
        "templates": args.templates,
        "rollouts": args.rollouts,
        "engine_vs_reference": engine_vs_reference(
            model, tok, trajs, args.negatives, args.templates
        ),
        "cpmi_vs_mc": cpmi_vs_mc(model, tok, trajs, args.negatives, args.templates, args.rollouts),
        "block_trajectories": args.block_trajectories,
        "cpmi_blocks": cpmi_blocks(
            model, tok, six_step_trajectories(args.block_trajectories), args.negatives, args.blocks
        ),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "labeling.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "labeling.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
