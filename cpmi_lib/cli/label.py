"""Commands that label trajectories: label (CPMI or MC; resumable, sharded) and merge."""

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
    check_positive(args, "n_negatives", "n_rollouts", "max_new_tokens")
    check_finite("--neg-weight", args.neg_weight)
    check_finite("--temperature", args.temperature, positive=True)
    _check_device(args.device, args.dtype)
    inp, out = Path(args.input), Path(args.out)
    if not inp.exists():
        raise UsageError(f"--input {inp}: no such file")
    if not inp.is_file():
        raise UsageError(f"--input {inp}: not a file")
    check_output_path(out)
    if same_file(out, inp):
        raise UsageError(f"--out {out} is the --input file; write the labels to a new file")
    if out.exists() and not args.resume:
        raise UsageError(f"--out {out} exists: pass --resume to complete it, or choose a new --out")
    from cpmi_lib.labeling.outputs import check_outputs

    check_outputs(out, [inp])  # its cost summary, a lock held by another process
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
    from cpmi_lib.labeling.outputs import write_costs
    from cpmi_lib.lm.identity import model_identity

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
            exclude_own_answer=args.exclude_own_answer,
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
    check = dict(shard=shard, skip_invalid=args.skip_invalid)
    check_resumable(args.input, args.out, cfg, args.model, **check, model_content=False)
    identity = model_identity(model_source(args.model))
    if Path(args.out).is_file():
        check_resumable(args.input, args.out, cfg, args.model, **check, model_identity=identity)
    if not args.chat:
        model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
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
        model_identity=identity,
    )
    summary = write_costs(Path(args.out), costs.to_dict())
    for s in skipped:
        print(f"skipped: {args.input} {describe_skip(s)}", file=sys.stderr)
    per_step = costs.per_step() if costs.steps else {}
    if not costs.items and not skipped:
        print(f"shard {args.shard} selects no record of {args.input}: an empty, complete shard")
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
    check_output_path(out)
    for i, p in enumerate(shards):
        if not p.is_file():
            raise UsageError(f"shard file {p}: no such file")
        if same_file(out, p):
            raise UsageError(f"--out {out} is the shard file {p}; write the merged file anew")
        for q in shards[:i]:
            if same_file(p, q):
                raise UsageError(f"shard file {p} is given twice")

    from cpmi_lib.labeling.label_results import merge_label_files, read_labels, total_costs
    from cpmi_lib.labeling.outputs import write_costs

    out.parent.mkdir(parents=True, exist_ok=True)
    n = merge_label_files(shards, out)
    labeled = read_labels(out)
    summary = write_costs(out, total_costs(labeled).to_dict())
    skipped = f" and {n - len(labeled)} skipped record(s)" if n > len(labeled) else ""
    print(
        f"merged {len(labeled)} labeled trajectories{skipped} into {args.out}; costs in {summary}"
    )


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
    p.add_argument(
        "--exclude-own-answer",
        action="store_true",
        help="CPMI: never contrast with the trajectory's own final answer (the cpmi_noself "
        "control, with --negative-sources perturb)",
    )
    p.add_argument("--n-rollouts", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.set_defaults(func=_cmd_label)


def register_merge(sub: argparse._SubParsersAction) -> None:
    """The `merge` command (last in the help: it follows sharded `label` runs)."""
    p = sub.add_parser("merge", help="join shard label files into one, in input order")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")
    p.set_defaults(func=_cmd_merge)
