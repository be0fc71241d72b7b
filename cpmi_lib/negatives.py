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
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.answers import answers_equivalent
from cpmi_lib.costs import CostMeter
from cpmi_lib.sampling import SampleConfig, generate_texts
from cpmi_lib.text_format import DEFAULT_TEMPLATE, render_prompt, split_solution
from cpmi_lib.trajectory import RecordError, Trajectory

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
) -> list[Negative]:
    """Up to `m` distinct wrong answers to `question`, never equivalent to `gold`.

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
            kept.append(Negative(candidate, source))  # type: ignore[arg-type]
            if len(kept) == m:
                return kept
    return kept


def negatives_for_trajectory(traj: Trajectory, m: int, **kw: Any) -> list[Negative]:
    """`hard_negatives` for a trajectory's question, steps and gold answer (which CPMI needs)."""
    if traj.gold_answer is None:
        raise RecordError(
            where=f"trajectory {traj.id!r}",
            field_name="gold_answer",
            problem="missing: CPMI needs the gold answer",
        )
    return hard_negatives(traj.question, traj.steps, traj.gold_answer, m, **kw)


def _same(a: str, b: str) -> bool:
    """Equivalence both ways: math-verify's `verify` is not symmetric."""
    return answers_equivalent(a, b) or answers_equivalent(b, a)


# ------------------------------------------------------------------------------- trajectory

# A number: optional minus (not after a word character, so "12-7" gives 7), optional "$" or
# "\$", digits with or without thousands separators, optional decimals; not inside a longer
# token ("x2", "3.14.15").
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>-)?(?:\\?\$\s?)?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?![\d])"
)


def mine_trajectory_numbers(steps: Sequence[str]) -> list[str]:
    """The numbers in `steps`, normalized and deduplicated: results first, most recent first."""
    results: list[str] = []
    others: list[str] = []
    for step in reversed(steps):
        for match in reversed(list(_NUMBER.finditer(step))):
            before = step[: match.start()].rstrip()
            is_result = before.endswith("=") and not before.endswith(("<=", ">=", "!=", "=="))
            (results if is_result else others).append(_normalize_number(match))
    return list(dict.fromkeys(results + others))


def _normalize_number(match: re.Match[str]) -> str:
    text = (match["sign"] or "") + match["int"].replace(",", "") + (match["frac"] or "")
    return _decimal_str(Fraction(Decimal(text)))


# ------------------------------------------------------------------------------- perturb

_INT = re.compile(r"-?\d+")
_DEC = re.compile(r"-?(?:\d+\.\d+|\.\d+)")
_SLASH = re.compile(r"(?P<a>-?\d+)\s*/\s*(?P<b>\d+)")
_LATEX_FRAC = re.compile(
    r"(?P<sign>-)?\s*\\(?P<cmd>[dt]?frac)\s*\{\s*(?P<a>-?\d+)\s*\}\s*\{\s*(?P<b>\d+)\s*\}"
)
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


@dataclass(frozen=True)
class _Gold:
    """A numeric gold: its value, how it is written, and a fraction's numerator/denominator."""

    value: Fraction
    kind: Literal["int", "decimal", "fraction"]
    a: int = 0
    b: int = 1
    style: str = "/"  # "/" or a LaTeX command name ("frac", "dfrac", "tfrac")


def _parse_gold(gold: str) -> _Gold | None:
    """The gold as a number, or None when it is not a plain number."""
    text = gold.strip().replace("\\$", "").replace("$", "").replace("{,}", ",").strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if _INT.fullmatch(text):
        return _Gold(Fraction(int(text)), "int")
    if _DEC.fullmatch(text):
        return _Gold(Fraction(Decimal(text)), "decimal")
    match = _SLASH.fullmatch(text)
    style = "/"
    if match is None:
        match = _LATEX_FRAC.fullmatch(text)
        if match is None:
            return None
        style = match["cmd"]
    a, b = int(match["a"]), int(match["b"])
    if style != "/" and match["sign"]:
        a = -a
    if b == 0:
        return None
    return _Gold(Fraction(a, b), "fraction", a, b, style)


def perturbations(gold: str, seed: int = 0) -> list[str]:
    """Near misses of a numeric gold, distinct from it and from each other, in a seeded order.

    The canonical list (+1, −1, +2, −2, +10, −10, ×0.9, ×1.1, digit swaps, b/a, (a+1)/b, sign
    flip) is deduplicated by value and shuffled with ``random.Random(seed)``. An integer gold
    gives integers (products rounded half away from zero), a decimal gold decimals and a fraction
    gold fractions written like the gold (``a/b`` or ``\\frac{a}{b}``), integers when whole.
    """
    parsed = _parse_gold(gold)
    if parsed is None:
        return []
    g = parsed.value
    values = [g + d for d in (1, -1, 2, -2, 10, -10)]
    for factor in (Fraction(9, 10), Fraction(11, 10)):
        product = g * factor
        values.append(Fraction(_round_half_away(product)) if parsed.kind == "int" else product)
    if parsed.kind == "int":
        values += [Fraction(s) for s in _digit_swaps(int(g))]
    if parsed.kind == "fraction":
        if parsed.a != 0:
            values.append(Fraction(parsed.b, parsed.a))
        values.append(Fraction(parsed.a + 1, parsed.b))
    if g != 0:
        values.append(-g)
    distinct = [v for v in dict.fromkeys(values) if v != g]
    random.Random(seed).shuffle(distinct)
    return [_render(v, parsed) for v in distinct]


def _round_half_away(x: Fraction) -> int:
    n = (abs(x.numerator) * 2 + x.denominator) // (2 * x.denominator)
    return n if x >= 0 else -n


def _digit_swaps(n: int) -> list[int]:
    """Every integer made by swapping two different adjacent digits of n (no leading zero)."""
    digits = str(abs(n))
    out = []
    for i in range(len(digits) - 1):
        if digits[i] != digits[i + 1]:
            swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
            if swapped[0] != "0":
                out.append(int(swapped) * (-1 if n < 0 else 1))
    return out


def _render(value: Fraction, gold: _Gold) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    if gold.kind != "fraction":
        return _decimal_str(value)
    num, den = abs(value.numerator), value.denominator
    sign = "-" if value < 0 else ""
    if gold.style == "/":
        return f"{sign}{num}/{den}"
    return f"{sign}\\{gold.style}{{{num}}}{{{den}}}"


def _decimal_str(value: Fraction) -> str:
    """A terminating decimal without exponent or trailing zeros (``Fraction(9, 20)`` → ``0.45``)."""
    d = Decimal(value.numerator) / Decimal(value.denominator)
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "0") else text


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
