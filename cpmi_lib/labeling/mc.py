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

The rollouts come from `cpmi_lib.lm.rollouts.sample_continuations`: each prefix is encoded
once, its N rows draw from their own random stream, seeded from the trajectory's seed and the
step (`prefix_seed`), and finished rows leave the batch. A *block* of trajectories
(``batch_trajectories`` consecutive records of a file, `mc_block`) shares one call, so the
per-token overhead of a small LM is paid once for all its rows. A trajectory's values depend only
on it, its seed and the model, except that the batch's padding width can move the last bits of a
logit; blocks are fixed by input position, and shards and resumes keep them whole
(`cpmi_lib.labeling.label_file`), so a rerun, a shard and a resume recompute each block exactly
as it was.
"""

from __future__ import annotations

import hashlib
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
from cpmi_lib.lm.rollouts import sample_continuations


@dataclass(frozen=True)
class MCConfig:
    """How MC values are estimated; invalid settings raise ValueError when the config is made."""

    n_rollouts: int = 8
    temperature: float = 0.7  # must be > 0: MC needs sampling (greedy rollouts would all agree)
    max_new_tokens: int = 256
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    step_separator: str = STEP_SEPARATOR
    batch_trajectories: int = 4  # trajectories whose rollouts share one engine call (best of
    # 1, 4, 8, 16 in `make bench` on training problems)

    def __post_init__(self) -> None:
        if self.n_rollouts < 1:
            raise ValueError(f"n_rollouts must be >= 1, got {self.n_rollouts}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(
                f"temperature must be finite and > 0 (MC needs sampling), got {self.temperature}"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_trajectories < 1:
            raise ValueError(f"batch_trajectories must be >= 1, got {self.batch_trajectories}")
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
    prompt_tokens: int = 0  # tokens of the S prefixes, each encoded once
    generated_tokens: int = 0  # tokens of all S·N rollouts, EOS included


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


def prefix_seed(seed: int, step: int) -> int:
    """The seed of the rollouts of prefix `step` (0-based) of a trajectory labeled with `seed`."""
    digest = hashlib.sha256(f"mc:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class MCTask:
    """One trajectory to estimate: its question, steps, gold answer and seed."""

    question: str
    steps: Sequence[str]
    gold: str
    seed: int


def mc_block(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[MCTask],
    cfg: MCConfig,
    meter: CostMeter | None = None,
) -> list[MCResult]:
    """MC values of every step of every task, all rollouts in one engine call (``cfg.seed`` is
    unused: each task brings its own). Raises SequenceTooLongError, naming the step, before
    anything is generated if a prefix of some task does not fit (check tasks one by one with
    `check_prefix_lengths` first to keep the others)."""
    if any(not t.steps for t in tasks):
        raise ValueError("no steps to estimate")
    prompts = [prefix_prompts(t.question, t.steps, cfg.template, cfg.step_separator) for t in tasks]
    for p in prompts:
        check_prefix_lengths(model, tokenizer, p, cfg.max_new_tokens)
    n = cfg.n_rollouts
    sampled = sample_continuations(
        model,
        tokenizer,
        [p for group in prompts for p in group],
        n,
        seeds=[prefix_seed(t.seed, i) for t in tasks for i in range(len(t.steps))],
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
        meter=meter,
    )
    results, start = [], 0
    for task, group in zip(tasks, prompts, strict=True):
        span = slice(start, start + len(group))
        start += len(group)
        rollouts = sampled.texts[span]
        answers = [[split_solution(t, cfg.step_separator)[1] for t in rows] for rows in rollouts]
        values = []
        for row in answers:
            correct = sum(a is not None and answers_equivalent(task.gold, a) for a in row)
            values.append(StepValue(value=correct / n, n_correct=correct, n_rollouts=n))
        results.append(
            MCResult(
                values,
                group,
                rollouts,
                answers,
                prompt_tokens=sum(sampled.prompt_tokens[span]),
                generated_tokens=sum(sampled.new_tokens[span]),
            )
        )
    return results


def mc_rollouts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    gold: str,
    cfg: MCConfig,
    meter: CostMeter | None = None,
) -> MCResult:
    """MC values of every step of one trajectory (seeded with ``cfg.seed``), with the prompts,
    rollouts and extracted answers behind them: `mc_block` of this trajectory alone.

    The meter, when given, counts the engine call with its prompt and generated tokens.
    Raises SequenceTooLongError before generating if a prefix does not fit (module docstring).
    """
    if not steps:
        raise ValueError("no steps to estimate")
    (result,) = mc_block(model, tokenizer, [MCTask(question, steps, gold, cfg.seed)], cfg, meter)
    return result


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
