"""Hard negatives for CPMI: plausible but wrong final answers to contrast with the gold.

CPMI rewards a step that raises the gold answer's probability *relative to* wrong answers, so the
wrong answers should be ones a solver could plausibly reach. Three sources, consulted in the
order the caller lists them (a later source only when the earlier ones have not supplied ``m``):

- ``trajectory``: numbers the trajectory itself computed. Results (numbers right after ``=``)
  come first, then every other number; within each group the most recent one first (the last
  step first, and within a step the rightmost number first), because a solver's latest values are
  the likeliest wrong final answers. Integers and decimals are read, with thousands separators and
  ``$`` signs dropped and leading/trailing zeros normalized (``$1,250.50`` → ``1250.5``).
- ``perturb``: near misses of the gold (±1, ±2, ±10, ×0.9, ×1.1, adjacent-digit swaps, the
  reciprocal and ``(a+1)/b`` of a fraction, the sign flip). They are shuffled with
  ``random.Random(seed)`` so that a run does not always contrast with "gold + 1" first, while a
  seed fixes the choice. A gold that is not a plain number (integer, decimal, ``a/b`` or
  ``\\frac{a}{b}``, optionally with ``$`` and thousands separators) contributes nothing.
- ``lm``: final answers the labeling LM itself writes when sampled on the question, most
  frequent first: the wrong answers the model actually believes in.

Every negative is checked against the gold with `answers_equivalent` in both directions (it is
not symmetric), and against the negatives already kept, so "18" and "18.0" never both appear.

``exclude`` lists answers that are never negatives either (checked the same way). The CPMI
ablation ``cpmi_noself`` (`negatives_for_trajectory(..., exclude_own_answer=True)` with the
``perturb`` source alone) excludes the trajectory's own final answer: with the ``trajectory``
source a wrong trajectory's own answer is usually its first negative, so CPMI may carry the
outcome; a near miss of the gold can be the own answer too (an off-by-one), hence the exclusion
on top of the source. The trajectory's other numbers are left out with the source, since on a
wrong trajectory they are the ones its wrong answer was computed from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.numbers import mine_trajectory_numbers, perturbations
from cpmi_lib.core.text_format import DEFAULT_TEMPLATE, render_prompt, split_solution
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.lm.sampling import SampleConfig, generate_texts

Source = Literal["trajectory", "perturb", "lm"]
NEGATIVE_SOURCES: tuple[Source, ...] = ("trajectory", "perturb", "lm")
#: Token budget of one sampled solution for the ``lm`` source (SampleConfig's default).
LM_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class Negative:
    """A wrong answer and the source that proposed it."""

    answer: str
    source: Source


def hard_negatives(
    question: str,
    steps: Sequence[str],
    gold: str,
    m: int,
    *,
    sources: Sequence[str] = ("trajectory", "perturb"),
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
    lm_samples: int = 8,
    lm_max_new_tokens: int = LM_MAX_NEW_TOKENS,
    template: str = DEFAULT_TEMPLATE,
    meter: CostMeter | None = None,
    exclude: Sequence[str] = (),
) -> list[Negative]:
    """Up to `m` distinct wrong answers to `question`, never equivalent to `gold` nor to any
    answer of `exclude`.

    Sources are drawn in the order given, each in its own priority order (see the module
    docstring); fewer than `m` come back when the sources run out. The ``lm`` source needs
    `model` and `tokenizer` and samples `lm_samples` solutions of at most `lm_max_new_tokens`
    tokens (counted on `meter`); it is only run when the sources before it fall short of `m`.
    The result is a function of the inputs and `seed`.
    """
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    if isinstance(sources, str):
        raise ValueError(f"sources must be a sequence of source names, not the string {sources!r}")
    if isinstance(exclude, str):
        raise ValueError(f"exclude must be a sequence of answers, not the string {exclude!r}")
    unknown = [s for s in sources if s not in NEGATIVE_SOURCES]
    if unknown:
        raise ValueError(f"unknown negative source(s) {unknown}; known: {list(NEGATIVE_SOURCES)}")
    if "lm" in sources:
        missing = [name for name, v in (("model", model), ("tokenizer", tokenizer)) if v is None]
        if missing:
            raise ValueError(f"the 'lm' negative source needs {' and '.join(missing)}")
    if m == 0:
        return []

    kept: list[Negative] = []
    seen: set[str] = set()
    for source in sources:
        if source == "trajectory":
            candidates: Iterator[str] = iter(mine_trajectory_numbers(steps))
        elif source == "perturb":
            candidates = iter(perturbations(gold, seed))
        else:
            assert model is not None and tokenizer is not None
            candidates = _lm_answers(
                question,
                gold,
                model,
                tokenizer,
                seed,
                lm_samples,
                lm_max_new_tokens,
                template,
                meter,
            )
        for candidate in candidates:
            candidate = candidate.strip()
            if not candidate or candidate in seen:
                continue
            seen.add(candidate)
            if _same(gold, candidate) or any(_same(n.answer, candidate) for n in kept):
                continue
            if any(_same(x, candidate) for x in exclude):
                continue
            kept.append(Negative(candidate, source))  # type: ignore[arg-type]
            if len(kept) == m:
                return kept
    return kept


def negatives_for_trajectory(
    traj: Trajectory, m: int, *, exclude_own_answer: bool = False, **kw: Any
) -> list[Negative]:
    """`hard_negatives` for a trajectory's question, steps and gold answer (which CPMI needs);
    with `exclude_own_answer`, never the trajectory's own final answer (when it states one)."""
    if traj.gold_answer is None:
        raise RecordError(
            where=f"trajectory {traj.id!r}",
            field_name="gold_answer",
            problem="missing: CPMI needs the gold answer",
        )
    if exclude_own_answer and traj.final_answer is not None and traj.final_answer.strip():
        kw["exclude"] = (*kw.get("exclude", ()), traj.final_answer.strip())
    return hard_negatives(traj.question, traj.steps, traj.gold_answer, m, **kw)


def _same(a: str, b: str) -> bool:
    """Equivalence both ways: math-verify's `verify` is not symmetric."""
    return answers_equivalent(a, b) or answers_equivalent(b, a)


# ------------------------------------------------------------------------------- lm


def _lm_answers(
    question: str,
    gold: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    n: int,
    max_new_tokens: int,
    template: str,
    meter: CostMeter | None,
) -> Iterator[str]:
    """Wrong final answers of `n` sampled solutions, most frequent first (ties: first seen).

    Answers are grouped under equivalence (the first spelling seen stands for its group), so
    "18" and "18.0" count together. A generator: nothing is sampled unless it is consumed.
    """
    cfg = SampleConfig(
        n=n, temperature=1.0, seed=seed, max_new_tokens=max_new_tokens, template=template
    )
    texts, _ = generate_texts(
        model, tokenizer, [render_prompt(question, template)], cfg, meter=meter
    )
    counts: dict[str, int] = {}
    for text in texts[0]:
        _, answer = split_solution(text)
        if answer is None or _same(gold, answer):
            continue
        group = next((a for a in counts if _same(a, answer)), answer)
        counts[group] = counts.get(group, 0) + 1
    # dicts keep insertion order and sorted() is stable, so ties stay in order of first appearance
    yield from sorted(counts, key=lambda a: -counts[a])
