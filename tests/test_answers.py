"""Final-answer extraction and equivalence, case by case and against GSM8K's correctness flags."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cpmi_lib.core.answers import answers_equivalent, extract_final_answer

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


# ------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Janet sells 9 eggs.\nShe makes $18.\n#### 18", "18"),
        ("#### 1,000", "1,000"),
        ("step\nA: 18\n", "18"),
        ("step\n  A: 18.\n", "18"),
        ("Publisher A: 5000 cents", None),  # "A:" only counts at the start of a line
        ("Step 3: The answer is: 18", "18"),
        ("the answer is 18.", "18"),
        ("THE ANSWER IS:   -3.5 ", "-3.5"),
        ("The final answer is 7", "7"),
        ("The answer is $\\boxed{5}$.", "5"),
        ("so $x = \\boxed{\\frac{3}{4}}$", "\\frac{3}{4}"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
        ("A: $1,000", "$1,000"),  # kept as written; equivalence normalizes it
        ("no answer stated here", None),
        ("\\boxed{unbalanced", None),
        ("#### ", None),
    ],
)
def test_extracts_each_format(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A: 3\nA: 4", "4"),  # the last occurrence wins
        ("The answer is 3. No wait, the answer is 4.", "4"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("A: 3\n#### 4\nA: 5", "4"),  # #### beats A: wherever it stands
        ("The answer is 3\nA: 4", "4"),  # A: beats "The answer is"
        ("\\boxed{3}\nThe answer is 4", "4"),  # "The answer is" beats \boxed
    ],
)
def test_extraction_precedence_and_last_occurrence(text: str, expected: str) -> None:
    assert extract_final_answer(text) == expected


# ------------------------------------------------------------------------------------ equivalence

EQUIVALENCE_CASES = [
    ("18", "18", True),
    ("18", "18.0", True),
    ("1/2", "0.5", True),
    ("\\frac{1}{2}", "0.5", True),
    ("3/4", "\\frac{3}{4}", True),
    ("0.75", "3/4", True),
    ("-3", "-3.0", True),
    ("-5", "-$5", True),
    ("1000", "$1,000", True),
    ("1000000", "1,000,000", True),
    ("18", "$18$", True),
    ("18", "18 dollars", True),
    ("\\frac{1}{2}", "\\dfrac12", True),
    ("18", "19", False),
    ("-3", "3", False),
    ("3/4", "4/3", False),
    ("1000", "100", False),
]


@pytest.mark.parametrize(("gold", "candidate", "expected"), EQUIVALENCE_CASES)
def test_equivalence(gold: str, candidate: str, expected: bool) -> None:
    assert answers_equivalent(gold, candidate) is expected


@pytest.mark.parametrize("candidate", [None, "", "   "])
def test_missing_candidate_is_never_equivalent(candidate: str | None) -> None:
    assert answers_equivalent("18", candidate) is False


def test_equivalence_in_worker_threads_matches_main_thread() -> None:
    # Strings not seen above, so the worker threads really parse instead of hitting the cache.
    pairs = [(f"{n}", f"{n}.0" if n % 3 else f"{n + 1}") for n in range(7001, 7061)]
    pairs += [(f"\\frac{{{n}}}{{4}}", f"{n / 4}") for n in range(7101, 7121)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda p: answers_equivalent(*p), pairs))
    on_main = [answers_equivalent(gold, candidate) for gold, candidate in pairs]
    assert threaded == on_main
    assert sum(on_main) == 40 + 20  # and the answers are right, not merely consistent


# --------------------------------------------------------------------------- GSM8K agreement check


def test_reproduces_gsm8k_correctness_flags() -> None:
    """Extraction + equivalence must agree with the published `is_correct` of every solution."""
    rows = [json.loads(line) for line in (GSM8K / "example_model_solutions.jsonl").open()]
    tests = [json.loads(line) for line in (GSM8K / "test.jsonl").open()]
    assert len(rows) == len(tests) == 1319
    disagreements = []
    for i, (row, test) in enumerate(zip(rows, tests, strict=True)):
        gold = extract_final_answer(row["ground_truth"])
        assert gold is not None and gold == extract_final_answer(test["answer"]), i
        for key in SOLUTION_KEYS:
            predicted = extract_final_answer(row[key]["solution"])
            agrees = answers_equivalent(gold, predicted) == row[key]["is_correct"]
            if not agrees:
                disagreements.append((i, key, gold, predicted, row[key]["is_correct"]))
    n = len(rows) * len(SOLUTION_KEYS)
    rate = 1 - len(disagreements) / n
    print(f"GSM8K agreement: {rate:.4%} of {n} solutions; {len(disagreements)} disagree")
    for case in disagreements[:10]:
        i, key, gold, predicted, flag = case
        print(f"  row {i} {key}: gold {gold!r}, extracted {predicted!r}, is_correct {flag}")
    assert n == 5276
    assert rate >= 0.995
