"""Commands that label trajectories: label (CPMI or MC; resumable, sharded) and merge.

Under a launcher (``torchrun --nproc_per_node N -m cpmi_lib label …``, ``accelerate launch``,
several nodes) `label` runs as WORLD_SIZE ranks: rank r labels shard r/WORLD_SIZE — exactly
``--shard r/WORLD_SIZE`` — into ``OUT.shard-r-of-WORLD_SIZE`` (with its cost summary), and once
every rank has succeeded rank 0 merges the shard files into OUT as `merge` does. See
docs/scaling-out.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from cpmi_lib.cli.common import (
    UsageError,
    check_finite,
    check_output_path,
    check_positive,
    load_model,
    model_source,
    same_file,
)


def _parse_shard(text: str | None) -> tuple[int, int]:
    from cpmi_lib.labeling.runs import parse_shard

    try:
        return parse_shard("0/1" if text is None else text)
    except ValueError as exc:
        raise UsageError(f"--shard: {exc}") from None


def _check_label_args(args: argparse.Namespace, out: Path) -> None:
    """Every argument error of `label` writing `out`, before the model is loaded."""
    from cpmi_lib.core.text_format import CHAT_INSTRUCTIONS, PROMPT_TEMPLATES
    from cpmi_lib.labeling.negatives import NEGATIVE_SOURCES

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
    check_positive(args, "n_negatives", "n_rollouts", "max_new_tokens")
    if args.batch_trajectories is not None:
        check_positive(args, "batch_trajectories")
    check_finite("--neg-weight", args.neg_weight)
    check_finite("--temperature", args.temperature, positive=True)
    _check_device(args.device, args.dtype)
    inp = Path(args.input)
    if not inp.exists():
        raise UsageError(f"--input {inp}: no such file")
    if not inp.is_file():
        raise UsageError(f"--input {inp}: not a file")
    _check_out(out, inp, args.resume)


def _check_out(out: Path, inp: Path, resume: bool) -> None:
    check_output_path(out)
    if same_file(out, inp):
        raise UsageError(f"--out {out} is the --input file; write the labels to a new file")
    if out.exists() and not resume:
        raise UsageError(f"--out {out} exists: pass --resume to complete it, or choose a new --out")
    from cpmi_lib.labeling.outputs import check_outputs

    check_outputs(out, [inp])  # its cost summary, a lock held by another process


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
    from cpmi_lib.cli.common import launch_of

    launch = launch_of()
    if launch.distributed:
        _label_ranked(args, launch)
        return
    if args.device is None:
        args.device = "cpu"
    _label(args, Path(args.out), _parse_shard(args.shard))


def shard_path(out: Path, rank: int, world: int) -> Path:
    """Where rank `rank` of `world` writes its shard under a launcher: ``OUT.shard-R-of-N``."""
    return out.with_name(f"{out.name}.shard-{rank}-of-{world}")


def _label_ranked(args: argparse.Namespace, launch) -> None:
    """`label` as one rank of a launched job: its shard, then (rank 0) the merge into --out."""
    from cpmi_lib.cli.common import rank_device
    from cpmi_lib.core.launch import every_rank_succeeds, process_group, same_on_all_ranks
    from cpmi_lib.labeling.outputs import check_outputs

    if args.shard is not None:
        raise UsageError(
            f"--shard {args.shard}: under a launcher (WORLD_SIZE {launch.world_size}) each rank "
            "labels shard RANK/WORLD_SIZE; leave --shard out"
        )
    args.device = rank_device(args.device, launch)
    out = Path(args.out)
    shards = [shard_path(out, r, launch.world_size) for r in range(launch.world_size)]
    with process_group(launch):
        same_on_all_ranks(args.device, "--device")
        with every_rank_succeeds():  # its error, or another rank's, ends all before the merge
            # only rank 0 checks (and probes the lock of) the merged file: two ranks probing one
            # lock at once would each see the other's probe as a writer
            merged = out if launch.rank == 0 else None
            if merged is not None:
                _check_out(out, Path(args.input), args.resume)
                check_outputs(out, shards, "also a shard file")
            _label(args, shards[launch.rank], launch.shard, merged=merged)
    if launch.rank == 0:
        _merge_into(shards, out)


def _label(
    args: argparse.Namespace, out: Path, shard: tuple[int, int], merged: Path | None = None
) -> None:
    """Label `shard` of --input into `out`, checked first (and a `merged` file of the whole
    run being resumed, under a launcher), then its cost summary; report it."""
    from cpmi_lib.core.text_format import CHAT_INSTRUCTIONS, PROMPT_TEMPLATES, chat_prompt_template
    from cpmi_lib.labeling.cpmi import CPMIConfig
    from cpmi_lib.labeling.label_file import LabelConfig, check_resumable, label_file
    from cpmi_lib.labeling.label_results import describe_skip
    from cpmi_lib.labeling.mc import MCConfig
    from cpmi_lib.labeling.outputs import write_costs
    from cpmi_lib.lm.identity import model_identity

    _check_label_args(args, out)
    templates = PROMPT_TEMPLATES[: args.templates]
    try:
        cfg = LabelConfig(
            method=args.method,
            cpmi=CPMIConfig(
                variant=args.variant,
                templates=templates,
                length_norm=args.length_norm,
                neg_weight=args.neg_weight,
                **(
                    {"batch_trajectories": args.batch_trajectories}
                    if args.batch_trajectories is not None and args.method == "cpmi"
                    else {}
                ),
            ),
            n_negatives=args.n_negatives,
            negative_sources=tuple(args.negative_sources.split(",")),
            exclude_own_answer=args.exclude_own_answer,
            mc=MCConfig(
                n_rollouts=args.n_rollouts,
                temperature=args.temperature,
                max_new_tokens=args.max_new_tokens,
                **(
                    {}
                    if args.batch_trajectories is None or args.method != "mc"
                    else {"batch_trajectories": args.batch_trajectories}
                ),
                template=templates[0],
            ),
            seed=args.seed,
        )
    except ValueError as exc:  # what the checks above missed, still before the model loads
        raise UsageError(str(exc)) from None
    if args.chat:  # the prompts come from the tokenizer: load it first
        model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
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
    # --chat, right after: the prompts are part of the run's identity), the model's content
    # identity included (its files' sha256, so a resume never mixes two models' labels).
    # First all that needs no model file, then the model's content (hashing weights is slower).
    check = dict(skip_invalid=args.skip_invalid)
    resumed = [(out, shard)] + ([(merged, (0, 1))] if merged and merged.is_file() else [])
    for path, part in resumed:
        check_resumable(args.input, path, cfg, args.model, shard=part, **check, model_content=False)
    identity = model_identity(model_source(args.model))
    for path, part in resumed:
        if path.is_file():
            check_resumable(
                args.input, path, cfg, args.model, shard=part, **check, model_identity=identity
            )
    if not args.chat:
        model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    skipped: list[dict] = []
    costs = label_file(
        model,
        tokenizer,
        args.model,
        args.input,
        out,
        cfg,
        resume=args.resume,
        shard=shard,
        skip_invalid=args.skip_invalid,
        skipped=skipped,
        model_identity=identity,
    )
    summary = write_costs(out, costs.to_dict())
    for s in skipped:
        print(f"skipped: {args.input} {describe_skip(s)}", file=sys.stderr)
    per_step = costs.per_step() if costs.steps else {}
    if not costs.items and not skipped:
        print(
            f"shard {shard[0]}/{shard[1]} selects no record of {args.input}: an empty, complete "
            "shard"
        )
    print(
        f"labeled {costs.items} trajectories ({costs.steps} steps) into {out}"
        + (f"; skipped {len(skipped)} invalid record(s) (listed on stderr)" if skipped else "")
        + f"; {costs.wall_seconds:.1f} s, {costs.forward_tokens:,} forward tokens, "
        f"{costs.generated_tokens:,} generated tokens; per step: "
        f"{per_step.get('wall_seconds', 0):.4f} s, "
        f"{per_step.get('generated_tokens', 0):.1f} generated tokens; costs in {summary}"
    )


def _cmd_merge(args: argparse.Namespace) -> None:
    out = Path(args.out)
    shards = [Path(p) for p in args.shards]
    check_output_path(out)
    for i, p in enumerate(shards):
        if not p.is_file():
            raise UsageError(f"shard file {p}: no such file")
        if same_file(out, p):
            raise UsageError(f"--out {out} is the shard file {p}; write the merged file anew")
        for q in shards[:i]:
            if same_file(p, q):
                raise UsageError(f"shard file {p} is given twice")

    _merge_into(shards, out)


def _merge_into(shards: list[Path], out: Path) -> None:
    """Merge the shard files of one run into `out`, write its cost summary, report it."""
    from cpmi_lib.labeling.label_results import merge_label_files, read_labels, total_costs
    from cpmi_lib.labeling.outputs import write_costs

    out.parent.mkdir(parents=True, exist_ok=True)
    n = merge_label_files(shards, out)
    labeled = read_labels(out)
    summary = write_costs(out, total_costs(labeled).to_dict())
    skipped = f" and {n - len(labeled)} skipped record(s)" if n > len(labeled) else ""
    print(f"merged {len(labeled)} labeled trajectories{skipped} into {out}; costs in {summary}")


def register_label(sub: argparse._SubParsersAction) -> None:
    """The `label` command."""
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
    p.add_argument(
        "--shard",
        default=None,
        help="i/n: label blocks i, i+n, ... (a block: one record for CPMI, --batch-trajectories "
        "for MC; default 0/1; under a launcher, RANK/WORLD_SIZE into OUT.shard-RANK-of-WORLD_SIZE, "
        "then merged into OUT)",
    )
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
    p.add_argument(
        "--exclude-own-answer",
        action="store_true",
        help="CPMI: never contrast with the trajectory's own final answer (the cpmi_noself "
        "control, with --negative-sources perturb)",
    )
    p.add_argument("--n-rollouts", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--batch-trajectories",
        type=int,
        default=None,
        help="trajectories whose rollouts (MC) or scoring requests (CPMI) share engine calls; a "
        "shard takes whole blocks (default: MC 4; CPMI 1, each trajectory alone)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device",
        default=None,
        help="cpu (the default), cuda or cuda:N; under a launcher each rank takes its own GPU "
        "(default when there are GPUs: cuda) or a share of the CPU cores",
    )
    p.add_argument("--dtype", default=None)
    p.set_defaults(func=_cmd_label)


def register_merge(sub: argparse._SubParsersAction) -> None:
    """The `merge` command (last in the help: it follows sharded `label` runs)."""
    p = sub.add_parser("merge", help="join shard label files into one, in input order")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")
    p.set_defaults(func=_cmd_merge)
