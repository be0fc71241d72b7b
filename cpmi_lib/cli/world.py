"""Commands that make the embedded world and its LM: build-world, train-lm, sample, reproduce.

`sample` runs under a launcher too (``torchrun --nproc_per_node N -m cpmi_lib sample …``): rank r
generates the batches b with b % WORLD_SIZE == r, each seeded as one process seeds it, and rank 0
writes them all to --out in a single process's order (docs/scaling-out.md)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from cpmi_lib.cli.common import launch_of, load_model, rank_device
from cpmi_lib.core.paths import REPO


def _cmd_build_world(args: argparse.Namespace) -> None:
    from cpmi_lib.data.world_data import WorldSpec, build_world_files

    spec = WorldSpec(
        sizes={"train": args.train, "dev": args.dev, "test": args.test},
        benchmark_per_subset=args.benchmark_per_subset,
        seed=args.seed,
    )
    out = build_world_files(spec, args.out)
    print(f"world written to {out}")


def _cmd_train_lm(args: argparse.Namespace) -> None:
    from cpmi_lib.lm.default_lm import LMTrainConfig, ensure_default_lm, training_record

    cfg = replace(
        LMTrainConfig(), seed=args.seed, **({"train_steps": args.steps} if args.steps else {})
    )
    path = ensure_default_lm(cfg, cache=args.cache)
    rec = training_record(path)
    print(
        f"default LM at {path} ({rec['parameters']:,} parameters, trained in "
        f"{rec['train_seconds']:.0f} s, final loss {rec['final_loss']:.3f})"
    )


def _cmd_sample(args: argparse.Namespace) -> None:
    from cpmi_lib.core.launch import every_rank_succeeds, gather_all, process_group
    from cpmi_lib.core.trajectory import write_trajectories
    from cpmi_lib.data.world_data import read_problems
    from cpmi_lib.lm.sampling import SampleConfig, sampled_groups

    launch = launch_of()
    device = rank_device(None, launch) if launch.distributed else "cpu"
    cfg = SampleConfig(
        n=args.n,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        engine=args.engine,
    )
    with process_group(launch):
        with every_rank_succeeds():  # a rank's error ends every rank before the gather
            model, tokenizer = load_model(args.model, device=device)
            problems = read_problems(args.problems)[: args.limit]
            mine = sampled_groups(
                model, tokenizer, problems, cfg, progress=launch.rank == 0, part=launch.shard
            )
        groups = sorted((g for part in gather_all(mine) for g in part), key=lambda g: g[0])
    if launch.rank == 0:
        n = write_trajectories(args.out, (t for _, ts in groups for t in ts))
        print(f"{n} trajectories written to {args.out}")


def _cmd_reproduce(args: argparse.Namespace) -> None:
    """Build the default world, train (or reuse) the default LM, measure and record its quality."""
    import torch

    from cpmi_lib.data.world_data import WorldSpec, build_world_files, read_problems
    from cpmi_lib.lm.default_lm import LMTrainConfig, ensure_default_lm, training_record
    from cpmi_lib.lm.load import load_lm
    from cpmi_lib.lm.quality import measure_lm_quality

    torch.set_num_threads(2)
    spec = WorldSpec()
    world_dir = build_world_files(spec, Path(args.cache) / "worlds" / f"world-{spec.key()}")
    print(f"world: {world_dir}")
    lm_cfg = LMTrainConfig()
    lm_dir = ensure_default_lm(lm_cfg, cache=args.cache)
    rec = training_record(lm_dir)
    print(
        f"default LM: {lm_dir} ({rec['parameters']:,} parameters, trained in "
        f"{rec['train_seconds']:.0f} s)"
    )
    model, tokenizer = load_lm(lm_dir)
    test = read_problems(world_dir / "problems-test.jsonl")
    start = time.perf_counter()
    quality = measure_lm_quality(model, tokenizer, test)
    report = {
        "lm": {
            "key": lm_cfg.key(),
            "config": lm_cfg.to_dict(),
            "parameters": rec["parameters"],
            "train_seconds": round(rec["train_seconds"], 1),
            "final_loss": rec["final_loss"],
        },
        "world": {"key": spec.key(), "spec": spec.to_dict()},
        "quality": quality.to_dict(),
        "eval_seconds": round(time.perf_counter() - start, 1),
    }
    out = REPO / "results" / "default_lm.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    lo, hi = quality.greedy_accuracy_ci95
    print(
        f"held-out greedy accuracy: {quality.greedy_accuracy:.1%} (95% CI {lo:.1%}-{hi:.1%}) on "
        f"{quality.n_problems} test problems; mean {quality.greedy_mean_steps:.2f} steps\n"
        f"sampled (T={quality.temperature}, {quality.samples_per_problem}/problem): accuracy "
        f"{quality.sampled_accuracy:.1%}; problems with both right and wrong samples: "
        f"{quality.mixed_rate:.1%}\nrecorded in {out.relative_to(REPO)}"
    )


def register_reproduce(sub: argparse._SubParsersAction) -> None:
    """`reproduce`: first in the help, as the first command a reviewer runs."""
    from cpmi_lib.lm.default_lm import DEFAULT_CACHE

    p = sub.add_parser("reproduce", help="build the world, train/load the default LM, report it")
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.set_defaults(func=_cmd_reproduce)


def register(sub: argparse._SubParsersAction) -> None:
    """build-world, train-lm, sample."""
    from cpmi_lib.lm.default_lm import DEFAULT_CACHE

    p = sub.add_parser("build-world", help="generate the arithmetic world into a directory")
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--dev", type=int, default=600)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--benchmark-per-subset", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_build_world)

    p = sub.add_parser("train-lm", help="train (or reuse) the default LM")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.set_defaults(func=_cmd_train_lm)

    p = sub.add_parser("sample", help="sample N solutions per world problem from an LM")
    p.add_argument("--model", required=True, help="'default', hub id, directory or .gguf")
    p.add_argument("--problems", required=True, help="problems-*.jsonl of a world directory")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--n",
        "--samples-per-problem",
        dest="n",
        type=int,
        default=4,
        help="solutions per problem (under torchrun write --samples-per-problem: its parser "
        "takes --n for an abbreviation of its own options)",
    )
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--engine",
        choices=("generate", "rows"),
        default="generate",
        help="generate: Hugging Face generate, a random stream per batch (the committed results); "
        "rows: the rollout engine, a random stream per problem, faster (other samples)",
    )
    p.set_defaults(func=_cmd_sample)
