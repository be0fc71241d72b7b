"""Commands that train and judge PRMs: train-prm, evaluate, prm-experiment, workload.

`train-prm` runs under a launcher too (``torchrun --nproc_per_node N -m cpmi_lib train-prm …``):
Trainer's own DDP, ``--batch-size`` the whole batch (each rank takes --batch-size / WORLD_SIZE,
so the effective batch is a single process's), rank 0 alone saving the PRM."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path


def _cmd_train_prm(args: argparse.Namespace) -> None:
    """Train a PRM from any labeler's file (or the exact truth) on trajectories JSONL."""
    from cpmi_lib.cli.common import UsageError, launch_of
    from cpmi_lib.core.trajectory import read_trajectories
    from cpmi_lib.labeling.label_results import read_labels
    from cpmi_lib.lm.default_lm import ensure_default_lm
    from cpmi_lib.prm.config import PRMConfig
    from cpmi_lib.prm.targets import SCORE_FIELD, scores_for_trajectories
    from cpmi_lib.prm.train import train_prm

    field = SCORE_FIELD[args.target]
    launch = launch_of()
    if launch.distributed and args.batch_size % launch.world_size:
        raise UsageError(
            f"--batch-size {args.batch_size}: must be a multiple of WORLD_SIZE "
            f"{launch.world_size} (each rank takes --batch-size / WORLD_SIZE)"
        )
    threads = None
    if launch.distributed:
        import torch

        threads = None if torch.cuda.is_available() else launch.cpu_threads()

    def pairs(traj_path: str, label_path: str | None):
        trajs = read_trajectories(traj_path)
        records = read_labels(label_path) if field is not None and label_path else []
        if field is not None and not label_path:
            raise SystemExit(f"--target {args.target} needs a labels file")
        return list(zip(trajs, scores_for_trajectories(trajs, records, field), strict=True))

    train = pairs(args.trajectories, args.labels)
    dev = pairs(args.dev_trajectories, args.dev_labels)
    cfg = PRMConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size // launch.world_size,
        pos_weight=args.pos_weight,
        seed=args.seed,
        target=args.target,
        threads=threads,
    )
    backbone = ensure_default_lm() if args.backbone == "default" else args.backbone
    result = train_prm(backbone, train, dev, args.out, cfg, progress=launch.rank == 0)
    if launch.rank != 0:
        return
    print(
        f"PRM saved to {result.path} ({result.train_seconds:.0f} s, best dev loss "
        f"{result.best_eval_loss})"
    )


def _cmd_evaluate(args: argparse.Namespace) -> None:
    """ProcessBench-style F1 of a PRM: tau chosen on --dev files, reported on --test files, CIs
    seeded by --seed (`evaluate_prm`)."""
    from cpmi_lib.data.loaders import load_processbench
    from cpmi_lib.eval.evaluate import evaluate_prm
    from cpmi_lib.prm.model import load_prm

    prm = load_prm(args.prm)
    dev = {Path(p).stem: load_processbench(p) for p in args.dev}
    test = {Path(p).stem: load_processbench(p) for p in args.test}
    evaluation = evaluate_prm(prm, dev, test, seed=args.seed)
    result = {
        "prm": args.prm,
        "config": json.loads((Path(args.prm) / "prm.json").read_text())["config"],
        "costs": evaluation.costs.to_dict(),
        **evaluation.to_dict(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    t, tau = result["test"], evaluation.threshold_from_dev
    print(
        f"F1 {t['headline_f1']:.3f} (95% CI {t['headline_ci'][0]:.3f}-{t['headline_ci'][1]:.3f})"
        f" at tau {tau:.2f} chosen on dev; written to {args.out}"
    )


def _cmd_prm_experiment(args: argparse.Namespace) -> None:
    from cpmi_lib.experiment.presets import RESULT_ROOTS, experiment_config
    from cpmi_lib.experiment.summary import run_experiment
    from cpmi_lib.studies.label_quality import label_quality

    cfg = experiment_config(args.preset)
    sizes = {"train_problems": args.train_problems, "bon_problems": args.bon_problems}
    cfg = replace(cfg, **{k: v for k, v in sizes.items() if v is not None})
    out = RESULT_ROOTS[args.preset] / "results" / "prm_experiment.json"
    summary = run_experiment(cfg, out=out, label_quality=label_quality)
    for name, r in summary["processbench"].items():
        t = r["test"]
        lo, hi = t["headline_ci"]
        print(
            f"PRM from {name} labels: ProcessBench-style F1 {t['headline_f1']:.3f} "
            f"(95% CI {lo:.3f}-{hi:.3f}; tau {r['threshold_from_dev']:.2f} chosen on dev)"
        )
    print(f"results in {out}")


def _cmd_workload(args: argparse.Namespace) -> None:
    from cpmi_lib.experiment.config import ASSUMED_DECODE_STEP_S, workload
    from cpmi_lib.experiment.presets import experiment_config

    w = workload(experiment_config(args.preset), decode_step_s=args.decode_step_s)
    for name, value in w.items():
        print(f"{name:>24}: {value:,.2f}" if isinstance(value, float) else f"{name:>24}: {value:,}")
    assumed = " (assumed, not measured)" if args.decode_step_s == ASSUMED_DECODE_STEP_S else ""
    print(f"an upper-bound estimate at {args.decode_step_s} s per decode step{assumed}")


def register(sub: argparse._SubParsersAction) -> None:
    """train-prm, evaluate, prm-experiment, workload."""
    from cpmi_lib.experiment.config import ASSUMED_DECODE_STEP_S
    from cpmi_lib.experiment.presets import PRESET_NAMES

    p = sub.add_parser("train-prm", help="train a PRM from a labels file or the exact truth")
    p.add_argument("--trajectories", required=True)
    p.add_argument("--labels", default=None, help="output of `label` (not for --target truth)")
    p.add_argument("--dev-trajectories", required=True)
    p.add_argument("--dev-labels", default=None)
    p.add_argument(
        "--target",
        default="zsig",
        choices=["zsig", "sign", "quantile", "mc_soft", "mc_hard", "truth"],
    )
    p.add_argument("--backbone", default="default")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=float, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="trajectories per optimizer step; under a launcher divided among the ranks",
    )
    p.add_argument("--pos-weight", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train_prm)

    p = sub.add_parser(
        "evaluate", help="ProcessBench-style F1 of a PRM (ProcessBench-schema files)"
    )
    p.add_argument("--prm", required=True)
    p.add_argument("--dev", nargs="+", required=True, help="files to choose the threshold on")
    p.add_argument("--test", nargs="+", required=True, help="files to report on (one per subset)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap CIs")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "prm-experiment",
        help="PRMs from CPMI, MC (and exact) labels: ProcessBench F1, Best-of-N, label quality",
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default="default")
    p.add_argument("--train-problems", type=int, default=None, help="default: the preset's")
    p.add_argument("--bon-problems", type=int, default=None, help="default: the preset's")
    p.set_defaults(func=_cmd_prm_experiment)

    p = sub.add_parser(
        "workload", help="what a preset generates, and an estimate of its GPU decode hours"
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default="paper-mini")
    p.add_argument(
        "--decode-step-s",
        type=float,
        default=ASSUMED_DECODE_STEP_S,
        help="seconds per decode step of a batch (default: an assumption; measure it)",
    )
    p.set_defaults(func=_cmd_workload)
