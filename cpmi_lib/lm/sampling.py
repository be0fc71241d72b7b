"""Drawing solutions from any loaded causal LM, as trajectories with their answers checked.

Used to build the policy's trajectories (what the labelers label), Best-of-N pools and the default
LM's accuracy. Generation is batched with left padding and seeded per batch (engine "generate") or
per prompt (engine "rows", the rollout engine), so a result does not depend on what was generated
before it — nor on which process generates it: a `part` (i, n)
generates only the batches b with b % n == i, each exactly as one process would, so n ranks of a
launched job together give a single process's samples (`prompt_part`, `sampled_groups`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.text_format import DEFAULT_TEMPLATE, render_prompt, split_solution
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.data.world import Problem
from cpmi_lib.data.world_grading import graded_trajectory
from cpmi_lib.lm.fast_generate import replays_generate, sample_like_generate
from cpmi_lib.lm.rollouts import left_padded, sample_continuations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleConfig:
    n: int = 1
    temperature: float = 0.7  # 0 means greedy decoding
    max_new_tokens: int = 256
    batch_size: int = 32
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    #: "generate": Hugging Face `generate`'s samples, one random stream per batch (what the
    #: committed results were sampled with; replayed token for token without computing finished
    #: rows where `fast_generate.replays_generate` holds, else `generate` itself). "rows": the
    #: rollout engine (`cpmi_lib.lm.rollouts`), each prompt encoded once and a random stream per
    #: prompt (`prompt_seed`), so a solution does not depend on its batch; faster, but other
    #: samples than "generate" for the same seed.
    engine: str = "generate"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


ENGINES = ("generate", "rows")


def prompt_seed(seed: int, index: int) -> int:
    """The random stream of prompt `index` (0-based) sampled with `seed` by the "rows" engine."""
    digest = hashlib.sha256(f"sample:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@torch.no_grad()
def generate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    cfg: SampleConfig,
    progress: bool = False,
    meter: CostMeter | None = None,
    part: tuple[int, int] = (0, 1),
    replay: bool | None = None,
) -> tuple[list[list[str]], int]:
    """`cfg.n` completions per prompt, and the number of tokens generated in all.

    Batch b is seeded with `cfg.seed + b`; a batch holds whole prompts (all n samples of each).
    The meter counts `generate`'s work, each prompt once per returned sequence, however the
    tokens were computed (`generate_batch`), so counts do not change with the implementation. With
    `part` (i, n) only the batches b with b % n == i are generated: the completions are those of
    the prompts `prompt_part` lists, in order. `replay` is `generate_batch`'s (engine
    "generate"; False runs `generate` itself, for benchmarks and checks).
    """
    if cfg.n < 1:
        raise ValueError(f"n must be >= 1, got {cfg.n}")
    greedy = cfg.temperature == 0
    if greedy and cfg.n > 1:
        raise ValueError("greedy decoding (temperature 0) gives one solution per prompt; use n=1")
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    per_batch = _per_batch(cfg)
    outputs: list[list[str]] = []
    generated = 0
    device = next(model.parameters()).device
    replay = replays_generate(model) if replay is None else replay  # once, not per batch
    batches = [
        (b, start)
        for b, start in enumerate(range(0, len(prompts), per_batch))
        if b % part[1] == part[0]
    ]
    for b, start in tqdm(batches, desc="sampling", disable=not progress):
        if cfg.engine == "rows":
            texts_of, n_new = _rows_batch(model, tokenizer, prompts, start, per_batch, cfg, meter)
            outputs += texts_of
            generated += n_new
            continue
        encoded = [tokenizer(p).input_ids for p in prompts[start : start + per_batch]]
        input_ids, attention = left_padded(encoded, pad_id)
        torch.manual_seed(cfg.seed + b)
        new = generate_batch(
            model,
            input_ids.to(device),
            attention.to(device),
            cfg,
            pad_id,
            tokenizer.eos_token_id,
            replay,
        ).cpu()
        n_new = int(generated_lengths(new, tokenizer.eos_token_id).sum())
        generated += n_new
        if meter is not None:
            meter.add_generate(sum(len(ids) for ids in encoded) * cfg.n, n_new)
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for i in range(len(encoded)):
            outputs.append(texts[i * cfg.n : (i + 1) * cfg.n])
    return outputs, generated


def generate_batch(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: SampleConfig,
    pad_id: int,
    eos_id: int | None,
    replay: bool | None = None,
) -> torch.Tensor:
    """The new tokens `generate` gives one left-padded batch (`cfg.n` rows a prompt), drawn from
    the global random stream. `replay` (default: `replays_generate`) computes them with
    `sample_like_generate`, which leaves finished rows out and gives the same tokens; False
    calls `generate` itself."""
    greedy = cfg.temperature == 0
    if replays_generate(model) if replay is None else replay:
        return sample_like_generate(
            model,
            input_ids,
            attention_mask,
            n=cfg.n,
            temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            pad_id=pad_id,
            eos_id=eos_id,
        )
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=not greedy,
        temperature=None if greedy else cfg.temperature,
        top_k=None if greedy else 0,
        top_p=None,
        num_return_sequences=cfg.n,
        max_new_tokens=cfg.max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
    )
    return out[:, input_ids.shape[1] :]


def _rows_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    start: int,
    per_batch: int,
    cfg: SampleConfig,
    meter: CostMeter | None,
) -> tuple[list[list[str]], int]:
    """One batch through the rollout engine: its completions per prompt, tokens generated."""
    batch = prompts[start : start + per_batch]
    out = sample_continuations(
        model,
        tokenizer,
        batch,
        cfg.n,
        seeds=[prompt_seed(cfg.seed, start + i) for i in range(len(batch))],
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
        meter=meter,
    )
    return out.texts, sum(out.new_tokens)


def _per_batch(cfg: SampleConfig) -> int:
    return max(1, cfg.batch_size // cfg.n)


def prompt_part(n_prompts: int, cfg: SampleConfig, part: tuple[int, int]) -> list[int]:
    """The prompt indices that part (i, n) generates: those of the batches b with b % n == i."""
    per_batch = _per_batch(cfg)
    return [j for j in range(n_prompts) if (j // per_batch) % part[1] == part[0]]


def generated_lengths(new_tokens: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """Tokens each row really generated: up to and including its first EOS (padding after it)."""
    width = new_tokens.shape[1]
    if eos_id is None:
        return torch.full((new_tokens.shape[0],), width)
    is_eos = new_tokens == eos_id
    first = is_eos.int().argmax(dim=1)
    return torch.where(is_eos.any(dim=1), first + 1, torch.full_like(first, width))


def sample_solutions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem | Trajectory],
    cfg: SampleConfig,
    progress: bool = True,
    meter: CostMeter | None = None,
) -> list[Trajectory]:
    """`cfg.n` solutions per problem as trajectories, final answers checked against the gold.

    For arithmetic-world problems the steps are graded exactly (`step_labels`, `first_error`);
    for other problems only the final answer is checked (`metadata["final_correct"]`). A sample
    with no step at all cannot be a trajectory: it is counted and logged, never silently lost.
    """
    groups = sampled_groups(model, tokenizer, problems, cfg, progress=progress, meter=meter)
    return [t for _, trajectories in groups for t in trajectories]


def sampled_groups(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem | Trajectory],
    cfg: SampleConfig,
    progress: bool = True,
    meter: CostMeter | None = None,
    part: tuple[int, int] = (0, 1),
) -> list[tuple[int, list[Trajectory]]]:
    """`sample_solutions` of part (i, n) of the batches (see `generate_texts`): (problem index,
    its trajectories) of each of its problems, in order. The groups of all n parts, sorted by
    index, are those of one process."""
    prompts = [render_prompt(p.question, cfg.template) for p in problems]
    texts, _ = generate_texts(
        model, tokenizer, prompts, cfg, progress=progress, meter=meter, part=part
    )
    out: list[tuple[int, list[Trajectory]]] = []
    empty = 0
    for k, samples in zip(prompt_part(len(problems), cfg, part), texts, strict=True):
        problem, group = problems[k], []
        out.append((k, group))
        for j, text in enumerate(samples):
            steps, final = split_solution(text)
            if not steps:
                empty += 1
                continue
            tid = f"{problem.id}-sample-{j}"
            meta = {"sample": j, "temperature": cfg.temperature, "seed": cfg.seed}
            if isinstance(problem, Problem):
                group.append(graded_trajectory(problem, steps, final, tid, **meta))
            else:
                gold = problem.gold_answer
                group.append(
                    Trajectory(
                        id=tid,
                        question=problem.question,
                        steps=steps,
                        gold_answer=gold,
                        final_answer=final,
                        source=problem.source,
                        metadata={
                            **meta,
                            "problem_id": problem.id,
                            "final_correct": gold is not None and answers_equivalent(gold, final),
                        },
                    )
                )
    if empty:
        log.warning(
            "%d of %d samples had no step and were not kept as trajectories",
            empty,
            sum(len(s) for s in texts),
        )
    return out


#: The least share of samples with a parsable step before an experiment refuses its samples.
MIN_PARSED_SHARE = 0.5
#: Kept samples from which "none states an answer" is taken as a broken prompt or token budget,
#: not chance: a weak LM at a tight budget leaves most solutions unfinished (SmolLM2-135M in
#: `real-smoke`, whose parse reports count them), so a handful without one proves nothing.
MIN_KEPT_FOR_ANSWER_CHECK = 6


@dataclass(frozen=True)
class ParseReport:
    """How many sampled solutions could be read as trajectories, and why the others could not."""

    samples: int  # solutions sampled
    kept: int  # with at least one step (trajectories)
    no_step: int  # dropped: no line before the answer line (or no line at all)
    no_answer: int  # kept, but no line states a final answer (graded wrong)

    @classmethod
    def of(
        cls, n_problems: int, per_problem: int, trajectories: Sequence[Trajectory]
    ) -> ParseReport:
        samples = n_problems * per_problem
        no_answer = sum(t.final_answer is None for t in trajectories)
        return cls(samples, len(trajectories), samples - len(trajectories), no_answer)

    def refusals(self) -> list[str]:
        """Why these samples cannot feed an experiment (empty: they can)."""
        out = []
        if self.kept < MIN_PARSED_SHARE * self.samples:
            out.append(
                f"{self.no_step} of {self.samples} samples have no parsable step (a step is a "
                f"non-blank line before the answer line; fewer than {MIN_PARSED_SHARE:.0%} kept)"
            )
        if self.kept >= MIN_KEPT_FOR_ANSWER_CHECK and self.no_answer == self.kept:
            out.append(
                f"none of the {self.kept} kept samples states a final answer (none says 'The "
                "answer is: ...', '#### ...', 'A: ...' or \\boxed{...}); raise "
                "max_new_tokens or check the prompt"
            )
        return out
