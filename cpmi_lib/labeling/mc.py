"""Monte Carlo (MC) step values, Math-Shepherd style: the baseline CPMI is compared against.

For template t and separator sep, prefix i of a solution is the context CPMI's ``cumulative``
variant uses, ``c_i = t.format(question=question) + s_1 + sep + … + s_i + sep`` (i = 1..S). From
each prefix the same LM samples N completions; a completion's final answer is the first answer line
`split_solution` finds in it (none means wrong), checked against the gold with
`answers_equivalent`. The value of step i is the fraction of its N rollouts that reach the gold
answer (Math-Shepherd's soft label); its hard label is whether any does.

Steps never include the answer line, so the rollouts of the last prefix only have to write it.

Before anything is generated, every prefix plus ``max_new_tokens`` must fit the model's positions
(`cpmi_lib.lm.logprob.max_positions`): a rollout may run that long, and past the positions a model
was built for it fails (learned position embeddings) or degrades silently (rotary ones). A prefix
that does not fit raises `SequenceTooLongError` naming the step and the token counts.

All S × N rollouts go through `generate_texts` together, each prefix repeated N times with one
sample per row, so a generate call holds up to ``batch_size`` sequences and the whole estimate
takes ``ceil(S·N / batch_size)`` calls (rollouts of one prefix may straddle two calls). Batch b is
seeded with ``seed + b``: the same inputs and config give the same values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.text_format import (
    DEFAULT_TEMPLATE,
    STEP_SEPARATOR,
    render_prompt,
    split_solution,
)
from cpmi_lib.lm.logprob import SequenceTooLongError, max_positions
from cpmi_lib.lm.sampling import SampleConfig, generate_texts


@dataclass(frozen=True)
class MCConfig:
    """How MC values are estimated; invalid settings raise ValueError when the config is made."""

    n_rollouts: int = 8
    temperature: float = 0.7  # must be > 0: MC needs sampling (greedy rollouts would all agree)
    max_new_tokens: int = 256
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    step_separator: str = STEP_SEPARATOR
    batch_size: int = 64  # sequences per generate call

    def __post_init__(self) -> None:
        if self.n_rollouts < 1:
            raise ValueError(f"n_rollouts must be >= 1, got {self.n_rollouts}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(
                f"temperature must be finite and > 0 (MC needs sampling), got {self.temperature}"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if "{question}" not in self.template:
            raise ValueError(f"template {self.template!r} has no '{{question}}' placeholder")
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepValue:
    """MC value of one step: the share of rollouts from its prefix that reach the gold answer."""

    value: float  # n_correct / n_rollouts (soft label)
    n_correct: int
    n_rollouts: int

    @property
    def hard(self) -> bool:
        """Math-Shepherd's hard label: some rollout from this prefix reaches the gold answer."""
        return self.value > 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hard": self.hard}


@dataclass(frozen=True)
class MCResult:
    """Step values with the rollouts behind them, kept for inspection and error analysis."""

    values: list[StepValue]
    prompts: list[str]  # prefix i's prompt (template + steps 1..i, each followed by sep)
    rollouts: list[list[str]]  # rollouts[i]: the N completions sampled from prompts[i]
    answers: list[list[str | None]]  # answers[i][j]: final answer of rollouts[i][j], None if none


def prefix_prompts(
    question: str, steps: Sequence[str], template: str, sep: str = STEP_SEPARATOR
) -> list[str]:
    """The prompt of each prefix s_1..s_i (i = 1..S), the cumulative contexts CPMI uses."""
    prompt = render_prompt(question, template)
    return [prompt + "".join(s + sep for s in steps[:i]) for i in range(1, len(steps) + 1)]


def check_prefix_lengths(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
) -> None:
    """SequenceTooLongError if some prefix prompt plus `max_new_tokens` exceeds the model's
    positions (nothing to check when the model does not say how many it has).

    Prefixes grow, so when the longest fits, all do: one tokenization instead of S (quadratic in
    the solution's length). Only when it does not fit are they scanned in order, to name the
    first step that does not.
    """
    limit = max_positions(model)
    if limit is None or not prompts:
        return
    if len(tokenizer(max(prompts, key=len)).input_ids) + max_new_tokens <= limit:
        return
    for i, prompt in enumerate(prompts):
        n = len(tokenizer(prompt).input_ids)  # as `generate_texts` encodes it
        if n + max_new_tokens > limit:
            raise SequenceTooLongError(
                f"prefix of step {i + 1} ({n} tokens) + max_new_tokens ({max_new_tokens}) = "
                f"{n + max_new_tokens} tokens exceeds the model's limit of {limit} positions"
            )


def mc_rollouts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    gold: str,
    cfg: MCConfig,
    meter: CostMeter | None = None,
) -> MCResult:
    """MC values of every step, with the prompts, rollouts and extracted answers behind them.

    The meter, when given, counts every generate call with its prompt and generated tokens.
    Raises SequenceTooLongError before generating if a prefix does not fit (module docstring).
    """
    if not steps:
        raise ValueError("no steps to estimate")
    prompts = prefix_prompts(question, steps, cfg.template, cfg.step_separator)
    check_prefix_lengths(model, tokenizer, prompts, cfg.max_new_tokens)
    n = cfg.n_rollouts
    # One row per rollout (n=1), so batches fill to batch_size sequences whatever n is.
    rows = [p for p in prompts for _ in range(n)]
    sample_cfg = SampleConfig(
        n=1,
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        template=cfg.template,
    )
    texts, _ = generate_texts(model, tokenizer, rows, sample_cfg, meter=meter)
    flat = [samples[0] for samples in texts]
    rollouts = [flat[i * n : (i + 1) * n] for i in range(len(prompts))]
    answers = [[split_solution(t, cfg.step_separator)[1] for t in group] for group in rollouts]
    values = []
    for group in answers:
        correct = sum(a is not None and answers_equivalent(gold, a) for a in group)
        values.append(StepValue(value=correct / n, n_correct=correct, n_rollouts=n))
    return MCResult(values=values, prompts=prompts, rollouts=rollouts, answers=answers)


def mc_step_values(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    gold: str,
    cfg: MCConfig,
    meter: CostMeter | None = None,
) -> list[StepValue]:
    """One `StepValue` per step (see the module docstring); `mc_rollouts` also returns the texts."""
    return mc_rollouts(model, tokenizer, question, steps, gold, cfg, meter).values
