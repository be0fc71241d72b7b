"""CPMI scores of several trajectories whose requests share the packed engine's calls.

One trajectory's requests (contexts x answers x templates, prefixes shared in a trie) fill a
small part of a call of ``max_batch_tokens``; a block of ``batch_trajectories`` fills it. Each
trajectory's scores are computed as `cpmi_step_scores` computes them, from its own slice of the
engine's output; only the padding width of the shared calls differs, which can move a score's
last bits. So blocks are fixed by input index (`cpmi_lib.labeling.runs.shard_block`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.labeling.cpmi import (
    CPMIConfig,
    StepScore,
    cpmi_requests,
    deltas_of,
    lp_table,
    score_requests,
    step_scores_of,
)
from cpmi_lib.lm.logprob import SequenceTooLongError, check_lengths


@dataclass(frozen=True)
class CPMIJob:
    """One trajectory to score: its question, steps and answers (the gold first)."""

    question: str
    steps: Sequence[str]
    answers: Sequence[str]


def block_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    jobs: Sequence[CPMIJob],
    cfg: CPMIConfig,
    meter: CostMeter | None = None,
) -> tuple[list[list[StepScore] | Exception], list[int]]:
    """Per job its step scores, or the error that refuses it alone (a sequence too long for the
    model, a non-finite log-probability); and per job its request tokens (to share costs by).

    The requests of every job that fits are scored together; a job that does not fit is left
    out of the call, so it changes no other job's scores.
    """
    results: list[list[StepScore] | Exception] = []
    built = []
    for job in jobs:
        requests, per_template = cpmi_requests(tokenizer, job.question, job.steps, job.answers, cfg)
        try:
            check_lengths(model, requests)
        except SequenceTooLongError as exc:  # this job alone is refused
            results.append(exc)
            built.append(None)
            continue
        results.append([])
        built.append((requests, per_template[0][0]))
    scored = [r for b in built if b is not None for r in b[0]]
    token_lps = score_requests(model, scored, cfg, meter) if scored else []
    start = 0
    tokens = []
    for k, (job, b) in enumerate(zip(jobs, built, strict=True)):
        if b is None:
            tokens.append(0)
            continue
        requests, pairs = b
        tokens.append(sum(len(r.context) + len(r.target) for r in requests))
        table = lp_table(token_lps[start : start + len(requests)], len(job.answers), cfg)
        start += len(requests)
        if not torch.isfinite(table).all():
            results[k] = FloatingPointError(
                "non-finite answer log-probability; check the model's dtype"
            )
            continue
        results[k] = step_scores_of(*deltas_of(table, pairs), cfg)
    return results, tokens
