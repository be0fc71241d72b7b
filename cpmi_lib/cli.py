"""Command line: ``python -m cpmi_lib COMMAND`` (see ``--help``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from cpmi_lib.core.paths import REPO


def _load_model(name: str, **kwargs):
    """`load_lm`, where the name "default" means the embedded track's default LM (trained now if
    the cache lacks it)."""
    from cpmi_lib.lm.default_lm import ensure_default_lm
    from cpmi_lib.lm.load import load_lm

    return load_lm(ensure_default_lm() if name == "default" else name, **kwargs)


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
    from cpmi_lib.core.trajectory import write_trajectories
    from cpmi_lib.data.world_data import read_problems
    from cpmi_lib.lm.sampling import SampleConfig, sample_solutions

    model, tokenizer = _load_model(args.model)
    problems = read_problems(args.problems)[: args.limit]
    cfg = SampleConfig(
        n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    n = write_trajectories(args.out, sample_solutions(model, tokenizer, problems, cfg))
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


class UsageError(Exception):
    """A bad argument: reported as one line, exit code 2, before anything is loaded or written."""


def _runtime_errors() -> tuple[type[BaseException], ...]:
    """Errors of the input or of an output file that a command reports as one line, exit 1."""
    from cpmi_lib.core.trajectory import RecordError
    from cpmi_lib.labeling.runs import LabelFileError
    from cpmi_lib.lm.logprob import SequenceTooLongError

    return (LabelFileError, RecordError, SequenceTooLongError, FileExistsError)


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _finite(option: str, value: float, *, positive: bool = False) -> None:
    import math

    if not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, got {value}")
    if positive and not value > 0:
        raise UsageError(f"{option} must be > 0, got {value}")


def _check_output_path(out: Path, option: str = "--out") -> None:
    """An output file path: not a directory, and its first existing ancestor is a directory (the
    missing ones are made)."""
    if out.is_dir():
        raise UsageError(
            f"{option} {out} is a directory; give a file path (e.g. {out}/labels.jsonl)"
        )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {out}: {parent} is not a directory")


def _same_file(a: Path, b: Path) -> bool:
    import os

    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_label_args(args: argparse.Namespace) -> tuple[int, int]:
    """Every argument error of `label`, before the model is loaded; returns the shard."""
    from cpmi_lib.core.text_format import CHAT_INSTRUCTIONS, PROMPT_TEMPLATES
    from cpmi_lib.labeling.negatives import NEGATIVE_SOURCES
    from cpmi_lib.labeling.runs import parse_shard

    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        raise UsageError(f"--shard: {exc}") from None
    k = len(CHAT_INSTRUCTIONS if args.chat else PROMPT_TEMPLATES)
    if not 1 <= args.templates <= k:
        raise UsageError(f"--templates must be between 1 and {k}, got {args.templates}")
    sources = args.negative_sources.split(",")
    for source in sources:
        if source not in NEGATIVE_SOURCES:
            raise UsageError(
                f"--negative-sources: unknown source {source!r} (known: "
                f"{', '.join(NEGATIVE_SOURCES)})"
            )
    if len(set(sources)) != len(sources):
        raise UsageError(
            f"--negative-sources: a source is given twice in {args.negative_sources!r}"
        )
    _positive(args, "n_negatives", "n_rollouts", "max_new_tokens")
    _finite("--neg-weight", args.neg_weight)
    _finite("--temperature", args.temperature, positive=True)
    _check_device(args.device, args.dtype)
    inp, out = Path(args.input), Path(args.out)
    if not inp.exists():
        raise UsageError(f"--input {inp}: no such file")
    if not inp.is_file():
        raise UsageError(f"--input {inp}: not a file")
    _check_output_path(out)
    if _same_file(out, inp):
        raise UsageError(f"--out {out} is the --input file; write the labels to a new file")
    if out.exists() and not args.resume:
        raise UsageError(f"--out {out} exists: pass --resume to complete it, or choose a new --out")
    return shard


def _check_device(device: str, dtype: str | None) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device: unknown device {device!r} (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    if dtype not in (None, "auto") and not isinstance(
        getattr(torch, dtype.removeprefix("torch."), None), torch.dtype
    ):
        raise UsageError(f"--dtype: unknown dtype {dtype!r} (e.g. float32, bfloat16, auto)")


def _cmd_label(args: argparse.Namespace) -> None:
    from cpmi_lib.core.text_format import CHAT_INSTRUCTIONS, PROMPT_TEMPLATES, chat_prompt_template
    from cpmi_lib.labeling.cpmi import CPMIConfig
    from cpmi_lib.labeling.label_file import LabelConfig, check_resumable, label_file
    from cpmi_lib.labeling.label_results import describe_skip
    from cpmi_lib.labeling.mc import MCConfig

    shard = _check_label_args(args)
    templates = PROMPT_TEMPLATES[: args.templates]
    try:
        cfg = LabelConfig(
            method=args.method,
            cpmi=CPMIConfig(
                variant=args.variant,
                templates=templates,
                length_norm=args.length_norm,
                neg_weight=args.neg_weight,
            ),
            n_negatives=args.n_negatives,
            negative_sources=tuple(args.negative_sources.split(",")),
            mc=MCConfig(
                n_rollouts=args.n_rollouts,
                temperature=args.temperature,
                max_new_tokens=args.max_new_tokens,
                template=templates[0],
            ),
            seed=args.seed,
        )
    except ValueError as exc:  # what the checks above missed, still before the model loads
        raise UsageError(str(exc)) from None
    if args.chat:  # the prompts come from the tokenizer: load it first
        model, tokenizer = _load_model(args.model, device=args.device, dtype=args.dtype)
        try:
            chat = tuple(
                chat_prompt_template(tokenizer, t) for t in CHAT_INSTRUCTIONS[: len(templates)]
            )
        except ValueError as exc:
            raise UsageError(f"--chat: {args.model}: {exc}") from None
        cfg = replace(
            cfg, cpmi=replace(cfg.cpmi, templates=chat), mc=replace(cfg.mc, template=chat[0])
        )
    # The input and an output being resumed are checked before the model loads, too (with
    # --chat, right after: the prompts are part of the run's identity).
    check_resumable(
        args.input, args.out, cfg, args.model, shard=shard, skip_invalid=args.skip_invalid
    )
    if not args.chat:
        model, tokenizer = _load_model(args.model, device=args.device, dtype=args.dtype)
    skipped: list[dict] = []
    costs = label_file(
        model,
        tokenizer,
        args.model,
        args.input,
        args.out,
        cfg,
        resume=args.resume,
        shard=shard,
        skip_invalid=args.skip_invalid,
        skipped=skipped,
    )
    summary = Path(str(args.out) + ".costs.json")
    summary.write_text(json.dumps(costs.to_dict(), indent=2, allow_nan=False) + "\n")
    for s in skipped:
        print(f"skipped: {args.input} {describe_skip(s)}", file=sys.stderr)
    per_step = costs.per_step() if costs.steps else {}
    print(
        f"labeled {costs.items} trajectories ({costs.steps} steps) into {args.out}"
        + (f"; skipped {len(skipped)} invalid record(s) (listed on stderr)" if skipped else "")
        + f"; {costs.wall_seconds:.1f} s, {costs.forward_tokens:,} forward tokens, "
        f"{costs.generated_tokens:,} generated tokens; per step: "
        f"{per_step.get('wall_seconds', 0):.4f} s, "
        f"{per_step.get('generated_tokens', 0):.1f} generated tokens; costs in {summary}"
    )


def _cmd_merge(args: argparse.Namespace) -> None:
    out = Path(args.out)
    shards = [Path(p) for p in args.shards]
    _check_output_path(out)
    for i, p in enumerate(shards):
        if not p.is_file():
            raise UsageError(f"shard file {p}: no such file")
        if _same_file(out, p):
            raise UsageError(f"--out {out} is the shard file {p}; write the merged file anew")
        for q in shards[:i]:
            if _same_file(p, q):
                raise UsageError(f"shard file {p} is given twice")

    from cpmi_lib.labeling.label_results import merge_label_files, read_labels, total_costs

    out.parent.mkdir(parents=True, exist_ok=True)
    n = merge_label_files(shards, out)
    labeled = read_labels(out)
    summary = Path(str(args.out) + ".costs.json")
    summary.write_text(json.dumps(total_costs(labeled).to_dict(), indent=2) + "\n")
    skipped = f" and {n - len(labeled)} skipped record(s)" if n > len(labeled) else ""
    print(
        f"merged {len(labeled)} labeled trajectories{skipped} into {args.out}; costs in {summary}"
    )


def _cmd_train_prm(args: argparse.Namespace) -> None:
    """Train a PRM from any labeler's file (or the exact truth) on trajectories JSONL."""
    from cpmi_lib.core.trajectory import read_trajectories
    from cpmi_lib.labeling.label_results import read_labels
    from cpmi_lib.lm.default_lm import ensure_default_lm
    from cpmi_lib.prm.config import PRMConfig
    from cpmi_lib.prm.targets import SCORE_FIELD, scores_for_trajectories
    from cpmi_lib.prm.train import train_prm

    field = SCORE_FIELD[args.target]

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
        batch_size=args.batch_size,
        pos_weight=args.pos_weight,
        seed=args.seed,
        target=args.target,
    )
    backbone = ensure_default_lm() if args.backbone == "default" else args.backbone
    result = train_prm(backbone, train, dev, args.out, cfg, progress=True)
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


def _cmd_grid(args: argparse.Namespace) -> None:
    from cpmi_lib import grid

    grid.run_cli(args, "python -m cpmi_lib grid")


def _cmd_seeds(args: argparse.Namespace) -> None:
    from cpmi_lib import seeds

    seeds.run_cli(args)


def build_parser() -> argparse.ArgumentParser:
    from cpmi_lib.experiment.presets import PRESET_NAMES
    from cpmi_lib.lm.default_lm import DEFAULT_CACHE

    parser = _Parser(prog="python -m cpmi_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reproduce", help="build the world, train/load the default LM, report it")
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.set_defaults(func=_cmd_reproduce)

    from cpmi_lib import grid, seeds

    p = sub.add_parser(
        "grid",
        help="run a preset's notebook grid: results/, figures/ (make reproduce: --preset default)",
        description=grid.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid.add_arguments(p)
    p.set_defaults(func=_cmd_grid)

    p = sub.add_parser(
        "seeds",
        help="rerun the headline notebooks with other seeds; their spread next to the CIs",
        description=seeds.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seeds.add_arguments(p)
    p.set_defaults(func=_cmd_seeds)

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
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("label", help="label trajectories with CPMI or MC (streamed, resumable)")
    p.add_argument("--method", choices=["cpmi", "mc"], required=True)
    p.add_argument("--input", required=True, help="trajectories JSONL")
    p.add_argument(
        "--model", required=True, help="'default' (the default LM), hub id, directory or .gguf"
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--resume",
        action="store_true",
        help="complete an interrupted output file of the same run (a missing one is started)",
    )
    p.add_argument("--shard", default="0/1", help="i/n: label every n-th trajectory from the i-th")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip (and report) records that are invalid or cannot be labeled, instead of stopping",
    )
    p.add_argument("--variant", choices=["marginal", "cumulative", "loo"], default="marginal")
    p.add_argument(
        "--templates", type=int, default=1, help="K: use the first K prompt templates (1-4)"
    )
    p.add_argument(
        "--chat",
        action="store_true",
        help="prompt a chat LM through its tokenizer's chat template (K of 1-3 instructions)",
    )
    p.add_argument("--length-norm", choices=["mean", "sum"], default="mean")
    p.add_argument("--neg-weight", type=float, default=1.0)
    p.add_argument("--n-negatives", type=int, default=4)
    p.add_argument(
        "--negative-sources",
        default="trajectory,perturb",
        help="comma-separated: trajectory, perturb, lm",
    )
    p.add_argument("--n-rollouts", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.set_defaults(func=_cmd_label)

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
    p.add_argument("--batch-size", type=int, default=16)
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

    from cpmi_lib.experiment.config import ASSUMED_DECODE_STEP_S

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

    p = sub.add_parser("merge", help="join shard label files into one, in input order")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")
    p.set_defaults(func=_cmd_merge)
    return parser


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (``PROG: error: MESSAGE``, exit code 2), without the usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> None:
    """Run a command. Argument errors exit with code 2 and input or output-file errors (a bad
    record, a refused resume or merge) with code 1, each as one line on stderr, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        args.func(args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if not isinstance(exc, _runtime_errors()):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
