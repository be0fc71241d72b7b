"""PRM inputs: a trajectory as token ids, the position of each step's label, and batches.

The prompt (with the model's special tokens, e.g. BOS), then for each step its own tokens followed
by the separator's token ids. The separator is appended as ids, never by joining strings: joining
can merge the separator with the step's last characters into different tokens, and then the label
position would not be where the step ends. Over-long trajectories lose whole trailing steps, never
part of a step. Shared by both PRM heads (`cpmi_lib.prm.model`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from cpmi_lib.core.text_format import DEFAULT_TEMPLATE, STEP_SEPARATOR, render_prompt
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.prm.features import StepSpans

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedTrajectory:
    """Token ids of prompt + steps and, per kept step, the position that carries its label."""

    input_ids: list[int]
    label_positions: list[int]
    n_steps_kept: int
    truncated: bool
    n_prompt_tokens: int  # the first step starts here


def encode_for_prm(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    template: str = DEFAULT_TEMPLATE,
    separator: str = STEP_SEPARATOR,
    max_length: int = 1024,
    *,
    trajectory_id: str | None = None,
) -> EncodedTrajectory:
    """Encode a trajectory for the PRM, dropping whole trailing steps beyond `max_length`.

    Raises `RecordError` naming the trajectory when not even the prompt and the first step fit.
    """
    where = f"trajectory {trajectory_id!r}" if trajectory_id is not None else "trajectory"
    if not steps:
        raise RecordError(where, "steps", "no steps to encode")
    ids: list[int] = list(
        tokenizer(render_prompt(question, template), add_special_tokens=True).input_ids
    )
    sep_ids: list[int] = list(tokenizer(separator, add_special_tokens=False).input_ids)
    n_prompt = len(ids)
    positions: list[int] = []
    for i, step in enumerate(steps):
        span = list(tokenizer(step, add_special_tokens=False).input_ids) + sep_ids
        if not span:
            raise RecordError(where, f"steps[{i}]", f"step {step!r} encodes to no tokens")
        if len(ids) + len(span) > max_length:
            if i == 0:
                raise RecordError(
                    where,
                    "steps[0]",
                    f"the prompt ({len(ids)} tokens) and the first step ({len(span)} tokens) "
                    f"exceed max_length={max_length}; raise max_length or shorten the question",
                )
            return EncodedTrajectory(ids, positions, i, True, n_prompt)
        ids += span
        positions.append(len(ids) - 1)
    return EncodedTrajectory(ids, positions, len(steps), False, n_prompt)


def build_prm_features(
    tokenizer: PreTrainedTokenizerBase,
    data: Sequence[tuple[Trajectory, Sequence[float]]],
    template: str = DEFAULT_TEMPLATE,
    separator: str = STEP_SEPARATOR,
    max_length: int = 1024,
    *,
    split: str = "train",
) -> tuple[list[dict[str, list]], int]:
    """Training rows ``{"input_ids", "labels"}`` (float targets at label positions, -100 elsewhere)
    and how many trajectories lost trailing steps (each logged with its id)."""
    rows: list[dict[str, list]] = []
    n_truncated = 0
    for traj, targets in data:
        check_targets(traj, targets)
        enc = encode_for_prm(
            tokenizer,
            traj.question,
            traj.steps,
            template,
            separator,
            max_length,
            trajectory_id=traj.id,
        )
        if enc.truncated:
            n_truncated += 1
            log.warning(
                "%s trajectory %r: %d of %d steps fit in max_length=%d; the last %d are dropped",
                split,
                traj.id,
                enc.n_steps_kept,
                traj.n_steps,
                max_length,
                traj.n_steps - enc.n_steps_kept,
            )
        labels = [float(IGNORE_INDEX)] * len(enc.input_ids)
        for pos, y in zip(enc.label_positions, targets, strict=False):
            labels[pos] = float(y)
        rows.append(
            {"input_ids": enc.input_ids, "labels": labels, "n_prompt_tokens": enc.n_prompt_tokens}
        )
    return rows, n_truncated


def check_targets(traj: Trajectory, targets: Sequence[float]) -> None:
    """One finite target in [0, 1] per step, or a `RecordError` naming the trajectory."""
    where = f"trajectory {traj.id!r}"
    if len(targets) != traj.n_steps:
        raise RecordError(where, "targets", f"{len(targets)} targets for {traj.n_steps} steps")
    for i, y in enumerate(targets):
        if isinstance(y, bool) or not isinstance(y, int | float) or not 0.0 <= y <= 1.0:
            raise RecordError(where, f"targets[{i}]", f"must be a number in [0, 1], got {y!r}")


@dataclass
class PRMCollator:
    """Right-pads a batch: input ids with the pad id, float labels with -100, attention 0."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, list]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        n = len(features)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), float(IGNORE_INDEX), dtype=torch.float32)
        for row, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[row, :k] = torch.tensor(f["input_ids"], dtype=torch.long)
            attention[row, :k] = 1
            if "labels" in f:
                labels[row, :k] = torch.tensor(f["labels"], dtype=torch.float32)
        batch = {"input_ids": input_ids, "attention_mask": attention}
        if "labels" in features[0]:
            batch["labels"] = labels
        return batch


def step_spans(input_ids: list[int], ends: Sequence[int], n_prompt: int) -> StepSpans:
    """Step i runs from just after step i-1's last token (the prompt's, for the first step)."""
    return StepSpans(input_ids, [n_prompt] + [e + 1 for e in ends[:-1]], list(ends))
