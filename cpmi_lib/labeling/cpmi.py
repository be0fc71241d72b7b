"""Contrastive Pointwise Mutual Information (CPMI) step scores.

For template t, ``T = t.format(question=question)``; contexts are built from T and the steps:

- ``cumulative``: ``c_0 = T``, ``c_i = T + s_1 + sep + … + s_i + sep``; step i compares c_i with
  c_{i−1};
- ``marginal``: ``c_0 = T``, ``c_i = T + s_i + sep`` (only step i, as in the paper's released code);
  step i compares c_i with c_0;
- ``loo`` (leave one out): step i compares all steps with all steps but step i.

``LP(a | c)`` is the sum (``length_norm="sum"``) or mean (``"mean"``) over the tokens of
``answer_format.format(answer=a)`` (tokenized without special tokens) of their log-probabilities
after ``tokenizer(c, add_special_tokens=True)``. Then, averaged over templates t and negatives m,

    gold_term_i = mean_t [LP(A* | after_i) − LP(A* | before_i)]
    neg_term_i  = mean_t mean_m [LP(Ã_m | after_i) − LP(Ã_m | before_i)]
    cpmi_i      = gold_term_i − neg_weight · neg_term_i

With no negatives, neg_term is 0. A step that moves belief toward the gold answer and away from
the wrong ones scores high.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.text_format import ANSWER_FORMAT, DEFAULT_TEMPLATE, STEP_SEPARATOR
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.labeling.negatives import Negative, negatives_for_trajectory
from cpmi_lib.lm.logprob import (
    ScoreRequest,
    SequenceTooLongError,
    max_positions,
    packed_logprobs,
    reference_logprobs,
)

Variant = Literal["marginal", "cumulative", "loo"]
VARIANTS: tuple[Variant, ...] = ("marginal", "cumulative", "loo")

Terms = TypeVar("Terms")  # a tensor or an array of per-step terms


@dataclass(frozen=True)
class CPMIConfig:
    variant: Variant = "marginal"
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    answer_format: str = ANSWER_FORMAT
    step_separator: str = STEP_SEPARATOR
    length_norm: Literal["mean", "sum"] = "mean"
    neg_weight: float = 1.0
    engine: Literal["packed", "reference"] = "packed"
    max_batch_tokens: int = 8192
    max_row_tokens: int = 512
    #: Trajectories whose requests share the packed engine's calls (`label_block`): a few
    #: trajectories fill a call that one leaves mostly empty. 1: each trajectory alone, as the
    #: committed labels were made; more moves scores in their last bits (padding width).
    batch_trajectories: int = 1

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.length_norm not in ("mean", "sum"):
            raise ValueError(f"length_norm must be 'mean' or 'sum', got {self.length_norm!r}")
        if isinstance(self.neg_weight, bool) or not isinstance(self.neg_weight, int | float):
            raise ValueError(f"neg_weight must be a number, got {self.neg_weight!r}")
        if not math.isfinite(self.neg_weight):
            raise ValueError(f"neg_weight must be finite, got {self.neg_weight}")
        for name in ("max_batch_tokens", "max_row_tokens", "batch_trajectories"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.engine not in ("packed", "reference"):
            raise ValueError(f"engine must be 'packed' or 'reference', got {self.engine!r}")
        if isinstance(self.templates, str) or not self.templates:
            raise ValueError("templates must be a non-empty sequence of strings")
        object.__setattr__(self, "templates", tuple(self.templates))
        for t in self.templates:
            if "{question}" not in t:
                raise ValueError(f"template {t!r} has no '{{question}}' placeholder")
        if "{answer}" not in self.answer_format:
            raise ValueError(
                f"answer_format {self.answer_format!r} has no '{{answer}}' placeholder"
            )

    def to_dict(self) -> dict[str, Any]:
        """Every setting; `batch_trajectories` only when not 1, so the identity of the runs made
        before it existed stays theirs."""
        d = asdict(self)
        if self.batch_trajectories == 1:
            del d["batch_trajectories"]
        return d


@dataclass(frozen=True)
class StepScore:
    """CPMI of one step, its two terms, and the template-averaged LPs after the step."""

    cpmi: float
    gold_term: float
    neg_term: float
    lp_gold: float  # mean_t LP(A* | after_i)
    lp_negatives: tuple[float, ...] = field(default=())  # mean_t LP(Ã_m | after_i), per negative

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lp_negatives"] = list(self.lp_negatives)
        return d


def context_pairs(
    question: str, steps: Sequence[str], template: str, variant: Variant, sep: str
) -> tuple[list[str], list[tuple[int, int]]]:
    """The distinct contexts of one template and, per step, the (after, before) context indices."""
    prompt = template.format(question=question)
    n = len(steps)
    if variant == "cumulative":
        contexts = [prompt + "".join(s + sep for s in steps[:i]) for i in range(n + 1)]
        return contexts, [(i, i - 1) for i in range(1, n + 1)]
    if variant == "marginal":
        contexts = [prompt] + [prompt + s + sep for s in steps]
        return contexts, [(i, 0) for i in range(1, n + 1)]
    everything = prompt + "".join(s + sep for s in steps)
    contexts = [everything] + [
        prompt + "".join(s + sep for j, s in enumerate(steps) if j != i) for i in range(n)
    ]
    return contexts, [(0, i + 1) for i in range(n)]


def cpmi_requests(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    answers: Sequence[str],
    cfg: CPMIConfig,
) -> tuple[list[ScoreRequest], list[tuple[list[tuple[int, int]], int]]]:
    """Every (context, answer) pair CPMI needs, and per template its step pairs and offset.

    Requests are ordered template by template, context by context, answer by answer.
    """
    targets = [
        tuple(tokenizer(cfg.answer_format.format(answer=a), add_special_tokens=False).input_ids)
        for a in answers
    ]
    per_template: list[tuple[list[tuple[int, int]], int]] = []
    requests: list[ScoreRequest] = []
    for template in cfg.templates:
        contexts, pairs = context_pairs(question, steps, template, cfg.variant, cfg.step_separator)
        per_template.append((pairs, len(requests)))
        for c in contexts:
            ctx = tuple(tokenizer(c, add_special_tokens=True).input_ids)
            requests += [ScoreRequest(ctx, tgt) for tgt in targets]
    return requests, per_template


def context_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    answers: Sequence[str],
    cfg: CPMIConfig,
    meter: CostMeter | None = None,
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """LP(answer | context) averaged over templates, shape (contexts, answers), and per step the
    (after, before) context indices of `cfg.variant` (see `context_pairs`)."""
    requests, per_template = cpmi_requests(tokenizer, question, steps, answers, cfg)
    table = lp_table(score_requests(model, requests, cfg, meter), len(answers), cfg)
    if not torch.isfinite(table).all():
        raise FloatingPointError("non-finite answer log-probability; check the model's dtype")
    return table, per_template[0][0]


def score_requests(
    model: PreTrainedModel,
    requests: Sequence[ScoreRequest],
    cfg: CPMIConfig,
    meter: CostMeter | None = None,
) -> list[torch.Tensor]:
    """Each request's token log-probabilities, by `cfg.engine`."""
    if cfg.engine == "packed":
        return packed_logprobs(model, requests, cfg.max_batch_tokens, cfg.max_row_tokens, meter)
    return reference_logprobs(model, requests, meter)


def lp_table(token_lps: Sequence[torch.Tensor], n_answers: int, cfg: CPMIConfig) -> torch.Tensor:
    """The (contexts, answers) table of template-averaged LPs of one trajectory's requests
    (in `cpmi_requests`' order); non-finite entries are left for the caller to refuse."""
    reduce = torch.mean if cfg.length_norm == "mean" else torch.sum
    lp = torch.tensor([float(reduce(x.double())) for x in token_lps], dtype=torch.float64)
    n_ctx = len(token_lps) // (n_answers * len(cfg.templates))
    return lp.reshape(len(cfg.templates), n_ctx, n_answers).mean(dim=0)


def answer_deltas(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    answers: Sequence[str],
    cfg: CPMIConfig,
    meter: CostMeter | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per step and answer, template-averaged: LP(answer | after_i) and its change
    LP(answer | after_i) − LP(answer | before_i); both (steps, answers). Every CPMI term is a
    mean of columns of the second: the gold term is column 0, the negative term the mean of the
    negatives' columns (`cpmi_step_scores`; `cpmi_lib.studies.labeler_skill` keeps them apart)."""
    if not steps:
        raise ValueError("no steps to score")
    return deltas_of(*context_logprobs(model, tokenizer, question, steps, answers, cfg, meter))


def deltas_of(
    table: torch.Tensor, pairs: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """`answer_deltas` from a trajectory's LP table and its (after, before) context pairs."""
    after = torch.stack([table[a] for a, _ in pairs])
    before = torch.stack([table[b] for _, b in pairs])
    return after, after - before


def combine_terms(gold_term: Terms, neg_term: Terms, neg_weight: float) -> Terms:
    """CPMI from its two terms, per step (tensors or arrays alike): the one place the formula
    is written, so every labeler and study scores steps the same way."""
    return gold_term - neg_weight * neg_term  # type: ignore[operator]


def cpmi_step_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    gold: str,
    negatives: Sequence[str],
    cfg: CPMIConfig,
    meter: CostMeter | None = None,
) -> list[StepScore]:
    """One `StepScore` per step (see the module docstring for the exact definition)."""
    after, delta = answer_deltas(model, tokenizer, question, steps, [gold, *negatives], cfg, meter)
    return step_scores_of(after, delta, cfg)


def step_scores_of(after: torch.Tensor, delta: torch.Tensor, cfg: CPMIConfig) -> list[StepScore]:
    """The `StepScore`s from `answer_deltas` of [gold, *negatives]."""
    gold_term = delta[:, 0]
    neg_term = delta[:, 1:].mean(dim=1) if delta.shape[1] > 1 else torch.zeros_like(gold_term)
    cpmi = combine_terms(gold_term, neg_term, cfg.neg_weight)
    return [
        StepScore(
            cpmi=float(cpmi[i]),
            gold_term=float(gold_term[i]),
            neg_term=float(neg_term[i]),
            lp_gold=float(after[i, 0]),
            lp_negatives=tuple(float(x) for x in after[i, 1:]),
        )
        for i in range(after.shape[0])
    ]


def check_fits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    gold: str,
    cfg: CPMIConfig,
) -> None:
    """SequenceTooLongError when the longest context (in characters) of some template plus the
    gold answer exceeds the model's positions; nothing to check when it does not say how many.

    A cheap refusal, run before negatives are mined and verified: it tokenizes one context per
    template, as `cpmi_requests` does. Longer negatives are still caught when scoring.
    """
    limit = max_positions(model)
    if limit is None:
        return
    target = tokenizer(cfg.answer_format.format(answer=gold), add_special_tokens=False).input_ids
    for template in cfg.templates:
        contexts, _ = context_pairs(question, steps, template, cfg.variant, cfg.step_separator)
        longest = max(contexts, key=len)
        n_ctx = len(tokenizer(longest, add_special_tokens=True).input_ids)
        n = n_ctx + len(target)
        if n > limit:
            raise SequenceTooLongError(
                f"context ({n_ctx} tokens) + answer ({len(target)} tokens) = {n} tokens "
                f"exceeds the model's limit of {limit} positions"
            )


def cpmi_trajectory(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    traj: Trajectory,
    cfg: CPMIConfig,
    n_negatives: int,
    *,
    sources: Sequence[str] = ("trajectory", "perturb"),
    seed: int = 0,
    meter: CostMeter | None = None,
    exclude_own_answer: bool = False,
) -> tuple[list[Negative], list[StepScore]]:
    """CPMI of one trajectory: its hard negatives (`negatives_for_trajectory`, drawn with
    `seed`; with `exclude_own_answer` never its own final answer), then every step's score
    against them. The one per-trajectory pipeline: label files,
    the ablations and the labeling benchmark all go through it, so they score alike.

    A trajectory that cannot fit the model (`check_fits`) is refused first, before the costly
    mining and verification of negatives."""
    negatives = cpmi_negatives(
        model,
        tokenizer,
        traj,
        cfg,
        n_negatives,
        sources=sources,
        seed=seed,
        meter=meter,
        exclude_own_answer=exclude_own_answer,
    )
    assert traj.gold_answer is not None  # negatives_for_trajectory refuses a missing one
    scores = cpmi_step_scores(
        model,
        tokenizer,
        traj.question,
        traj.steps,
        traj.gold_answer,
        [n.answer for n in negatives],
        cfg,
        meter=meter,
    )
    return negatives, scores


def cpmi_negatives(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    traj: Trajectory,
    cfg: CPMIConfig,
    n_negatives: int,
    *,
    sources: Sequence[str] = ("trajectory", "perturb"),
    seed: int = 0,
    meter: CostMeter | None = None,
    exclude_own_answer: bool = False,
) -> list[Negative]:
    """The first half of `cpmi_trajectory`: the fit check, then the hard negatives."""
    if traj.gold_answer is not None:  # else negatives_for_trajectory says it is missing
        check_fits(model, tokenizer, traj.question, traj.steps, traj.gold_answer, cfg)
    return negatives_for_trajectory(
        traj,
        n_negatives,
        sources=sources,
        model=model,
        tokenizer=tokenizer,
        seed=seed,
        meter=meter,
        exclude_own_answer=exclude_own_answer,
    )
