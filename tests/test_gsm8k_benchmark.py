"""A ProcessBench-schema benchmark made from GSM8K's reference solutions (`gsm8k_benchmark`):
the first wrong step of every corrupted copy is exactly the step whose marked result changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpmi_lib.data.gsm8k_benchmark import processbench_rows, write_processbench_file
from cpmi_lib.data.loaders import load_processbench

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
ROWS = [
    {
        "question": "Ava has 3 bags of 4 apples and eats 2. How many are left?",
        "answer": "She has 3 * 4 = <<3*4=12>>12 apples.\n"
        "After eating she has 12 - 2 = <<12-2=10>>10 apples.\n#### 10",
    },
    {"question": "No marks here?", "answer": "It is just 5.\n#### 5"},  # cannot be corrupted
    {"question": "Broken row", "answer": "no final answer line"},  # invalid: skipped, counted
]


def _gsm8k(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_hand_case_gold_and_one_corrupted_copy(tmp_path):
    errors: list = []
    rows = processbench_rows(_gsm8k(tmp_path), 5, seed=3, errors=errors)
    assert len(errors) == 1 and errors[0].field == "answer"
    gold, bad = rows  # the unmarked problem gives no rows
    assert gold["label"] == -1 and gold["final_answer_correct"] is True
    assert gold["steps"] == [
        "She has 3 * 4 = 12 apples.",
        "After eating she has 12 - 2 = 10 apples. The answer is: 10",
    ]
    k = bad["label"]
    assert k in (0, 1) and bad["id"].endswith(f"-err{k}")
    assert bad["steps"][:k] == gold["steps"][:k] and bad["steps"][k] != gold["steps"][k]
    assert bad["steps"][k + 1 :] == gold["steps"][k + 1 :] or k == 1
    # the corrupted last result is also the stated answer; an early one leaves it right
    assert bad["final_answer_correct"] is (k == 0)


def test_real_file_reads_back_as_processbench_with_exact_first_errors(tmp_path):
    source = GSM8K / "train.jsonl"
    if not source.is_file():
        pytest.skip(f"{source} not found (../shared/data beside the checkout)")
    out = write_processbench_file(source, tmp_path / "gsm8k.jsonl", 30, seed=0)
    items = load_processbench(out, split="gsm8k")
    assert len(items) == 60
    by_id = {t.id: t for t in items}
    for t in items:
        if t.first_error == -1:
            continue
        gold = by_id[t.id.rsplit("-err", 1)[0] + "-gold"]
        k = t.first_error
        assert t.steps[:k] == gold.steps[:k] and t.steps[k] != gold.steps[k]
        assert "<<" not in "".join(t.steps)
    assert all(t.final_answer is not None for t in items)
    again = write_processbench_file(source, tmp_path / "again.jsonl", 30, seed=0)
    assert again.read_bytes() == out.read_bytes()  # seeded: the same file
    other = write_processbench_file(source, tmp_path / "other.jsonl", 30, seed=1)
    assert other.read_bytes() != out.read_bytes()
