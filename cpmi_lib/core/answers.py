"""Final answers: find the one a solution states, and decide whether two answers are the same.

Extraction is a few regular expressions over the answer conventions of the data sets we read
(GSM8K's ``#### x``, its model solutions' ``A: x``, Math-Shepherd's ``The answer is: x`` and the
``\\boxed{x}`` of MATH-style generators). Equivalence is delegated to math-verify, which knows far
more about numbers and LaTeX than a hand-written normalizer would.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from math_verify import parse, verify

# Answer statements, strongest convention first; within one pattern the LAST occurrence wins (a
# solution may restate or correct itself). `.` stops at the end of the line, so an answer is the
# rest of the line that states it. The lookaheads let matches overlap, so that in "the answer is 3,
# no, the answer is 4" the second statement is found too.
_STATEMENTS = (
    re.compile(r"(?=####[ \t]*(.*))"),
    re.compile(r"^(?=[ \t]*A:[ \t]*(.*))", re.MULTILINE),
    re.compile(r"(?=\bthe (?:final )?answer is\b[ \t]*:?[ \t]*(.*))", re.IGNORECASE),
)
_BOXED = re.compile(r"\\boxed\s*\{")


def extract_final_answer(text: str) -> str | None:
    """The final answer stated in `text`, or None when it states none.

    Precedence: ``#### x``, then ``A: x`` at the start of a line, then ``The answer is[:] x``
    (case-insensitive, "final" allowed), then ``\\boxed{x}`` anywhere; the last occurrence of the
    first convention present wins. The answer is stripped of surrounding whitespace and one
    trailing period, and a ``\\boxed{...}`` around it is unwrapped; its text is otherwise kept as
    written (``$1,000`` stays ``$1,000``; `answers_equivalent` normalizes such forms).
    """
    for pattern in _STATEMENTS:
        answers = [a for m in pattern.finditer(text) if (a := _clean(m.group(1)))]
        if answers:
            return answers[-1]
    boxed = [a for content in _boxed_contents(text) if (a := _clean(content))]
    return boxed[-1] if boxed else None


def _clean(answer: str) -> str:
    answer = answer.strip()
    boxed = _boxed_contents(answer)
    if boxed:
        answer = boxed[-1].strip()
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    return answer


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` with balanced braces (nesting allowed), in order."""
    contents = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    contents.append(text[start:i])
                    break
    return contents


def answers_equivalent(gold: str, candidate: str | None) -> bool:
    """Whether `candidate` states the same answer as `gold`, by math-verify (gold first).

    ``verify`` is not symmetric (an assignment like ``x = 5`` in the candidate is matched against a
    gold ``5``, not the other way round), so the gold must come first. Timeouts are disabled in
    both calls because math-verify implements them with ``signal.alarm``, which raises off the main
    thread; callers that need a time limit must impose it themselves. None or an empty candidate is
    never equivalent.
    """
    if candidate is None or not candidate.strip():
        return False
    return bool(verify(_parsed(gold), _parsed(candidate), timeout_seconds=None))


@lru_cache(maxsize=16384)
def _parsed(answer: str) -> list[Any]:
    """math-verify's parse of an answer string (cached: a gold answer is compared many times)."""
    return parse(_as_math_verify_input(answer), parsing_timeout=None)


_WORD = re.compile(r"[A-Za-z]{2,}")


def _as_math_verify_input(answer: str) -> str:
    """Prepare an answer for math-verify, whose extractors expect LaTeX inside ``$...$``.

    - ``\\$`` and a lone ``$`` are currency signs, not math delimiters, so they are removed
      (``$1,000`` → ``1,000``; math-verify itself reads ``1,000`` as 1000).
    - An answer already delimited (``$...$``, ``\\(...\\)``, ``\\[...\\]``) is passed as is.
    - An answer with words (``18 dollars``) is passed as plain text, where math-verify's expression
      extractor finds the number; wrapped in ``$...$`` the words would become symbols.
    - Anything else (``18``, ``-3.5``, ``3/4``, ``\\frac{3}{4}``, ``1, 2, 3``) is wrapped in
      ``$...$`` so that it is read as one LaTeX expression.
    """
    text = answer.strip().replace("\\$", "")
    if text.count("$") == 1:
        text = text.replace("$", "")
    text = text.strip()
    if "$" in text or "\\(" in text or "\\[" in text or _WORD.search(_without_commands(text)):
        return text
    return f"${text}$"


def _without_commands(text: str) -> str:
    """The text less its LaTeX commands, so that ``\\frac`` does not count as a word."""
    return re.sub(r"\\[A-Za-z]+", " ", text)
