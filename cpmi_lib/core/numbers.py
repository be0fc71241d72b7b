"""Numbers in solution text: mined from steps, and near misses of a numeric gold answer.

Shared by CPMI's hard negatives (`cpmi_lib.labeling.negatives`) and by the benchmark builders
that corrupt one result of a solution (`cpmi_lib.data.gsm8k_benchmark`), so both read and write
numbers the same way.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

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
    normalized: dict[str, str] = {}  # by spelling: a long step repeats its numbers many times
    for step in reversed(steps):
        for match in reversed(list(_NUMBER.finditer(step))):
            is_result = _follows_equals(step, match.start())
            key = match[0]
            if key not in normalized:
                normalized[key] = _normalize_number(match)
            (results if is_result else others).append(normalized[key])
    return list(dict.fromkeys(results + others))


def _follows_equals(text: str, index: int) -> bool:
    """Whether `text[:index]`, trailing whitespace dropped, ends with "=" but not "<=", ">=",
    "!=" or "==". Scans back over the whitespace only, instead of copying the prefix, so mining
    stays linear in the text's length (a megabyte-long step took minutes)."""
    j = index
    while j > 0 and text[j - 1].isspace():  # the characters `str.rstrip()` drops
        j -= 1
    return j > 0 and text[j - 1] == "=" and (j < 2 or text[j - 2] not in "<>!=")


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
