"""What one labeled record is: the run's config, a trajectory's seed, and the labels of one
trajectory (CPMI, MC) or of one block of trajectories whose MC rollouts share an engine call.

`cpmi_lib.labeling.label_file` streams these records into a file, resumably and by shard.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.core.costs import CostMeter, Costs
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.labeling.cpmi import CPMIConfig, cpmi_negatives, cpmi_trajectory
from cpmi_lib.labeling.cpmi_block import CPMIJob, block_scores
from cpmi_lib.labeling.label_input import InputItem
from cpmi_lib.labeling.mc import MCConfig, MCTask, check_prefix_lengths, mc_block, prefix_prompts
from cpmi_lib.labeling.negatives import NEGATIVE_SOURCES
from cpmi_lib.lm.logprob import SequenceTooLongError

Method = Literal["cpmi", "mc"]


@dataclass(frozen=True)
class LabelConfig:
    """What a labeling run does; stored in every output record and checked on resume."""

    method: Method = "cpmi"
    cpmi: CPMIConfig = field(default_factory=CPMIConfig)
    n_negatives: int = 4
    negative_sources: tuple[str, ...] = ("trajectory", "perturb")
    mc: MCConfig = field(default_factory=MCConfig)
    seed: int = 0
    #: CPMI's negatives never include the trajectory's own final answer (the ``cpmi_noself``
    #: ablation, `cpmi_lib.labeling.negatives`). Stored in the run's identity only when on, so
    #: the label files written before it existed keep theirs.
    exclude_own_answer: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("cpmi", "mc"):
            raise ValueError(f"method must be 'cpmi' or 'mc', got {self.method!r}")
        if isinstance(self.n_negatives, bool) or not isinstance(self.n_negatives, int):
            raise ValueError(f"n_negatives must be an integer, got {self.n_negatives!r}")
        if self.n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {self.n_negatives}")
        if isinstance(self.negative_sources, str) or not self.negative_sources:
            raise ValueError("negative_sources must be a non-empty sequence of source names")
        object.__setattr__(self, "negative_sources", tuple(self.negative_sources))
        unknown = [s for s in self.negative_sources if s not in NEGATIVE_SOURCES]
        if unknown:
            raise ValueError(
                f"unknown negative source {unknown[0]!r}; known: {', '.join(NEGATIVE_SOURCES)}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.exclude_own_answer, bool):
            got = self.exclude_own_answer
            raise ValueError(f"exclude_own_answer must be a boolean, got {got!r}")
        if self.exclude_own_answer and self.method != "cpmi":
            raise ValueError("exclude_own_answer selects CPMI's negatives: method must be 'cpmi'")

    def to_dict(self) -> dict[str, Any]:
        """The config as stored in JSON (tuples become lists, so stored and fresh compare equal)."""
        d = json.loads(json.dumps(asdict(self)))
        d["cpmi"] = json.loads(json.dumps(self.cpmi.to_dict()))  # without what its identity omits
        if not self.exclude_own_answer:  # off: the identity of files written before the option
            del d["exclude_own_answer"]
        # only the part of the config the method uses
        if self.method == "cpmi":
            del d["mc"]
        else:
            for k in ("cpmi", "n_negatives", "negative_sources"):
                del d[k]
        return d


def trajectory_seed(seed: int, trajectory_id: str) -> int:
    """A seed that depends only on the run's seed and the trajectory, not on its position."""
    digest = hashlib.sha256(f"{seed}:{trajectory_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _first_nonfinite(value: Any, where: str) -> str | None:
    """The path (e.g. ``steps[2].cpmi``) of the first NaN or infinity inside `value`."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items: Any = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((p for k, v in items if (p := _first_nonfinite(v, k)) is not None), None)


def label_trajectory(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    traj: Trajectory,
    cfg: LabelConfig,
    meter: CostMeter,
    *,
    where: str | None = None,
) -> dict[str, Any]:
    """The output record of one trajectory (without its index, identity and costs).

    Raises RecordError naming `where` (default: the trajectory's id) and the field for a missing
    gold answer, a sequence longer than the model's positions and a non-finite score.
    """
    where = where or f"trajectory {traj.id!r}"
    if traj.gold_answer is None:
        raise RecordError(
            where, "gold_answer", f"missing: {cfg.method.upper()} needs the gold answer"
        )
    seed = trajectory_seed(cfg.seed, traj.id)
    record: dict[str, Any] = {"id": traj.id, "method": cfg.method}
    try:
        if cfg.method == "cpmi":
            negatives, scores = cpmi_trajectory(
                model,
                tokenizer,
                traj,
                cfg.cpmi,
                cfg.n_negatives,
                sources=cfg.negative_sources,
                seed=seed,
                meter=meter,
                exclude_own_answer=cfg.exclude_own_answer,
            )
            record["negatives"] = [asdict(n) for n in negatives]
            record["steps"] = [s.to_dict() for s in scores]
        else:
            (result,) = mc_block(model, tokenizer, [_mc_task(traj, cfg)], cfg.mc, meter=meter)
            record["steps"] = [v.to_dict() for v in result.values]
    except SequenceTooLongError as exc:
        raise RecordError(where, "steps", str(exc)) from None
    except FloatingPointError as exc:
        raise RecordError(where, "steps", f"non-finite score: {exc}") from None
    bad = _first_nonfinite(record, "")
    if bad is not None:
        raise RecordError(where, bad, "non-finite score from the model; check its dtype")
    return record


def _mc_task(traj: Trajectory, cfg: LabelConfig) -> MCTask:
    assert traj.gold_answer is not None
    seed = trajectory_seed(cfg.seed, traj.id)
    return MCTask(traj.question, traj.steps, traj.gold_answer, seed)


#: What labeling one input item came to: its record and costs, or why it cannot be labeled.
Outcome = tuple[dict[str, Any], Costs] | RecordError


def label_block(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[InputItem],
    cfg: LabelConfig,
    n_params: int,
) -> dict[int, Outcome]:
    """The outcome of every item of one block (keyed by index). CPMI labels each trajectory on
    its own (or, with ``cpmi.batch_trajectories`` > 1, scores them together: `cpmi_block`); MC
    rolls out all the block's trajectories that can be labeled in one engine call.

    A block's MC costs are shared out by tokens: each record keeps its own prompt and generated
    tokens (and FLOPs), and the call's seconds in proportion to its tokens; the first record
    carries the call itself. The peaks are the call's.
    """
    device = next(model.parameters()).device
    out: dict[int, Outcome] = {}
    valid: list[InputItem] = []
    for it in items:
        if it.error is not None:
            out[it.index] = it.error
            continue
        assert it.traj is not None
        if cfg.method == "cpmi" and cfg.cpmi.batch_trajectories > 1:
            valid.append(it)
            continue
        if cfg.method == "cpmi":
            meter = CostMeter(n_params, device)
            try:
                with meter:
                    record = label_trajectory(model, tokenizer, it.traj, cfg, meter, where=it.where)
                    meter.add_items(1, it.traj.n_steps)
            except RecordError as exc:
                out[it.index] = exc
            else:
                out[it.index] = (record, meter.costs)
            continue
        try:
            _check_mc_item(model, tokenizer, it, cfg)
        except RecordError as exc:
            out[it.index] = exc
        else:
            valid.append(it)
    if cfg.method == "cpmi" and valid:
        return out | cpmi_block(model, tokenizer, valid, cfg, n_params)
    if not valid:
        return out
    trajs = [it.traj for it in valid]
    meter = CostMeter(n_params, device)
    with meter:
        results = mc_block(model, tokenizer, [_mc_task(t, cfg) for t in trajs], cfg.mc, meter)
    call = meter.costs
    tokens = [r.prompt_tokens + r.generated_tokens for r in results]
    for k, (it, traj, result) in enumerate(zip(valid, trajs, results, strict=True)):
        share = tokens[k] / max(sum(tokens), 1)
        costs = Costs(
            wall_seconds=call.wall_seconds * share,
            forward_tokens=result.prompt_tokens,
            generated_tokens=result.generated_tokens,
            generate_calls=call.generate_calls if k == 0 else 0,
            peak_rss_bytes=call.peak_rss_bytes,
            peak_cuda_bytes=call.peak_cuda_bytes,
            flops=2.0 * n_params * tokens[k],
            items=1,
            steps=traj.n_steps,
        )
        record = {"id": traj.id, "method": "mc", "steps": [v.to_dict() for v in result.values]}
        out[it.index] = (record, costs)
    return out


def cpmi_block(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[InputItem],
    cfg: LabelConfig,
    n_params: int,
) -> dict[int, Outcome]:
    """CPMI of a block (``cpmi.batch_trajectories`` > 1): each trajectory's negatives mined
    alone, with its own seed and errors, then all their requests scored in shared engine calls
    (`block_scores`). A record's costs: its own mining, and the scoring's seconds, tokens and
    FLOPs in proportion to its request tokens (the first record carries the calls)."""
    device = next(model.parameters()).device
    out: dict[int, Outcome] = {}
    mined = []
    jobs: list[CPMIJob] = []
    for it in items:
        traj = it.traj
        assert traj is not None
        meter = CostMeter(n_params, device)
        try:
            if traj.gold_answer is None:  # by file and line; negatives_for_trajectory names the id
                raise RecordError(it.where, "gold_answer", "missing: CPMI needs the gold answer")
            with meter:
                negatives = cpmi_negatives(
                    model,
                    tokenizer,
                    traj,
                    cfg.cpmi,
                    cfg.n_negatives,
                    sources=cfg.negative_sources,
                    seed=trajectory_seed(cfg.seed, traj.id),
                    meter=meter,
                    exclude_own_answer=cfg.exclude_own_answer,
                )
            answers = [traj.gold_answer, *(n.answer for n in negatives)]
        except RecordError as exc:
            out[it.index] = exc
            continue
        except SequenceTooLongError as exc:
            out[it.index] = RecordError(it.where, "steps", str(exc))
            continue
        mined.append((it, negatives, meter.costs))
        jobs.append(CPMIJob(traj.question, traj.steps, answers))
    call_meter = CostMeter(n_params, device)
    with call_meter:
        results, tokens = block_scores(model, tokenizer, jobs, cfg.cpmi, call_meter)
    call = call_meter.costs
    for k, ((it, negatives, mining), result) in enumerate(zip(mined, results, strict=True)):
        assert it.traj is not None
        if isinstance(result, Exception):
            kind = "non-finite score: " if isinstance(result, FloatingPointError) else ""
            out[it.index] = RecordError(it.where, "steps", f"{kind}{result}")
            continue
        share = tokens[k] / max(sum(tokens), 1)
        scoring = Costs(
            wall_seconds=call.wall_seconds * share,
            forward_tokens=round(call.forward_tokens * share),
            forward_calls=call.forward_calls if k == 0 else 0,
            peak_rss_bytes=call.peak_rss_bytes,
            peak_cuda_bytes=call.peak_cuda_bytes,
            flops=call.flops * share,
            items=1,
            steps=it.traj.n_steps,
        )
        record = {
            "id": it.traj.id,
            "method": "cpmi",
            "negatives": [asdict(n) for n in negatives],
            "steps": [s.to_dict() for s in result],
        }
        bad = _first_nonfinite(record, "")
        if bad is not None:
            out[it.index] = RecordError(it.where, bad, "non-finite score from the model")
            continue
        out[it.index] = (record, mining + scoring)
    return out


def _check_mc_item(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, it: InputItem, cfg: LabelConfig
) -> None:
    """RecordError (naming the item) for what would make MC fail on it: no gold, too long."""
    traj = it.traj
    assert traj is not None
    if traj.gold_answer is None:
        raise RecordError(it.where, "gold_answer", "missing: MC needs the gold answer")
    prompts = prefix_prompts(traj.question, traj.steps, cfg.mc.template, cfg.mc.step_separator)
    try:
        check_prefix_lengths(model, tokenizer, prompts, cfg.mc.max_new_tokens)
    except SequenceTooLongError as exc:
        raise RecordError(it.where, "steps", str(exc)) from None
