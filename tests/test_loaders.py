"""Public data sets → `Trajectory`: the real GSM8K files; Math-Shepherd, ProcessBench schemas."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import pytest

from cpmi_lib.core.trajectory import RecordError
from cpmi_lib.data.loaders import (
    load_gsm8k_model_solutions,
    load_gsm8k_problems,
    load_math_shepherd,
    load_processbench,
)
from cpmi_lib.data.rows import (
    DatasetUnavailableError,
    UnknownSplitError,
    load_rows,
    local_split_files,
)

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
JANET = (
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' market "
    "daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' "
    "market?"
)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


# ------------------------------------------------------------------------------------ load_rows


@pytest.mark.timeout(60)
def test_unknown_hub_id_offline_raises_dataset_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # Both libraries read these variables once, at import; patch their copies too so that no
    # request (and no retry loop on an unreachable network) is attempted.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetUnavailableError) as info:
        load_rows("cpmi-made-up-org/no-such-dataset", split="test")
    message = str(info.value)
    assert "cpmi-made-up-org/no-such-dataset" in message
    assert "offline" in message and "id is unknown" in message and "local path" in message
    assert isinstance(info.value, RuntimeError)


def test_missing_local_path_is_not_mistaken_for_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_rows(tmp_path / "nope.jsonl")


def test_unsupported_file_type(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("a\n1\n")
    with pytest.raises(ValueError, match="unsupported file type '.csv'"):
        load_rows(tmp_path / "rows.csv")


def test_local_directory_resolves_splits_like_the_hub() -> None:
    rows = load_rows(GSM8K, split="test")  # test.jsonl, by its name
    assert len(rows) == 1319 and list(rows[0]) == ["question", "answer"]
    assert rows[0]["question"] == JANET


def test_the_suite_uses_its_own_empty_caches() -> None:
    """tests/conftest.py points every Hugging Face cache at a fresh directory of the session."""
    home_cache = Path.home() / ".cache" / "huggingface"
    for cache in (datasets.config.HF_DATASETS_CACHE, huggingface_hub.constants.HF_HUB_CACHE):
        assert Path(cache).name in ("datasets", "hub")
        assert Path(cache).parent.name.startswith("cpmi-test-hf-")
        assert not Path(cache).is_relative_to(home_cache)


# ------------------------------------------------- local copies are read as they are on disk now

CARD = "---\nconfigs:\n- config_name: default\n  data_files:\n{files}---\n"


def snapshot(folder: Path, rows: dict[str, list[dict[str, Any]]]) -> Path:
    """A local snapshot: one JSONL a split and a card naming the splits (as the Hub's have)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        write_jsonl(folder / f"{split}.jsonl", split_rows)
    files = "".join(f"  - split: {s}\n    path: {s}.jsonl\n" for s in rows)
    (folder / "README.md").write_text(CARD.format(files=files))
    return folder


def test_same_folder_name_at_two_paths_loads_each(tmp_path: Path) -> None:
    a = snapshot(tmp_path / "A" / "pb", {"short": [{"id": "first"}]})
    assert load_rows(a, split="short") == [{"id": "first"}]
    b = snapshot(tmp_path / "B" / "pb", {"short": [{"id": "second"}]})
    assert load_rows(b, split="short") == [{"id": "second"}]  # datasets gave "first"
    assert load_rows(a, split="short") == [{"id": "first"}]


def test_copy_regenerated_in_place_loads_the_new_rows(tmp_path: Path) -> None:
    a = snapshot(tmp_path / "A" / "pb", {"short": [{"id": "first"}]})
    file = a / "short.jsonl"
    before = file.stat()
    assert load_rows(a, split="short") == [{"id": "first"}]
    snapshot(a, {"short": [{"id": "third"}]})  # same size, and the same times below
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = file.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert load_rows(a, split="short") == [{"id": "third"}]  # datasets gave "first"
    # A file path, too.
    write_jsonl(file, [{"id": "fifth"}])
    assert load_rows(file) == [{"id": "fifth"}]


def test_local_copies_ignore_a_warm_datasets_cache(tmp_path: Path) -> None:
    """Whatever `datasets`' cache holds for a folder name, the rows on disk are the ones read."""
    first = [PB_OK]
    second = [PB_RIGHT]
    a = snapshot(tmp_path / "A" / "processbench", {"gsm8k": first})
    cached = datasets.load_dataset(str(a), split="gsm8k")  # the cache now holds A's rows
    assert cached.num_rows == 1
    b = snapshot(tmp_path / "B" / "processbench", {"gsm8k": second})
    assert [t.id for t in load_processbench(b, split="gsm8k")] == ["processbench-gsm8k-1"]
    snapshot(a, {"gsm8k": [PB_RIGHT, PB_OK]})
    assert [t.id for t in load_processbench(a, split="gsm8k")] == [
        "processbench-gsm8k-1",
        "processbench-gsm8k-0",
    ]


def test_local_split_files_follow_the_directory_and_write_no_cache(tmp_path: Path) -> None:
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    cached_before = sorted(cache.rglob("*")) if cache.exists() else []
    pb = snapshot(tmp_path / "pb", {"short": [{"id": 1}], "long": [{"id": 2}]})
    assert local_split_files(pb, split="long") == [pb / "long.jsonl"]
    snapshot(pb, {"medium": [{"id": 3}]})  # the card now names another split
    assert local_split_files(pb, split="medium") == [pb / "medium.jsonl"]
    with pytest.raises(ValueError, match="Unknown split 'short'"):
        local_split_files(pb, split="short")
    (pb / "README.md").unlink()  # no card: split-named files, as on the Hub
    (pb / "test.jsonl").write_text('{"id": 4}\n')
    assert local_split_files(pb, split="test") == [pb / "test.jsonl"]
    assert (sorted(cache.rglob("*")) if cache.exists() else []) == cached_before


def test_unknown_split_of_a_local_directory_names_what_there_is(tmp_path: Path) -> None:
    pb = snapshot(tmp_path / "pb", {"gsm8k": [PB_OK], "math": [PB_RIGHT]})
    with pytest.raises(UnknownSplitError) as info:
        load_processbench(pb, split="omnimath")
    assert str(info.value) == (
        f"{pb}: Unknown split 'omnimath' (config 'default'); available splits: gsm8k, math"
    )
    assert isinstance(info.value, ValueError)  # tracks.py catches ValueError
    with pytest.raises(ValueError, match=rf"{pb}: BuilderConfig 'main' not found"):
        load_rows(pb, split="gsm8k", config="main")


# ---------------------------------------------------------------------------------------- GSM8K


def test_gsm8k_problems_real_files() -> None:
    train = load_gsm8k_problems(GSM8K / "train.jsonl")
    test = load_gsm8k_problems(GSM8K / "test.jsonl")
    assert (len(train), len(test)) == (7473, 1319)
    first = test[0]
    assert first.id == "gsm8k-test-0" and train[0].id == "gsm8k-train-0"
    assert first.question == JANET
    assert first.steps == [
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
        "She makes 9 * 2 = $18 every day at the farmer’s market.",
    ]
    assert (first.gold_answer, first.final_answer) == ("18", "18")
    assert (first.step_labels, first.first_error) == ([True, True], -1)
    assert (first.source, first.metadata) == ("gsm8k", {})
    assert test[146].gold_answer == "2125"  # "#### 2,125"
    assert train[345].gold_answer == "1080"  # "#### 1,080"
    raw = [json.loads(line) for line in (GSM8K / "test.jsonl").open()]
    for t, row in zip(test, raw, strict=True):
        assert t.gold_answer == row["answer"].split("####")[-1].strip().replace(",", "")
        assert t.step_labels == [True] * t.n_steps and t.n_steps >= 1
        assert not any("<<" in s or "####" in s for s in t.steps)


def test_gsm8k_keep_calculator_and_limit() -> None:
    kept = load_gsm8k_problems(GSM8K / "test.jsonl", keep_calculator=True, limit=2)
    assert [t.id for t in kept] == ["gsm8k-test-0", "gsm8k-test-1"]
    assert kept[0].steps[0] == "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day."
    # `limit` counts trajectories, not rows: four solutions per row.
    solutions = load_gsm8k_model_solutions(GSM8K / "example_model_solutions.jsonl", limit=6)
    assert [t.id for t in solutions][-3:] == [
        "gsm8k-sol-0-175b_verification",
        "gsm8k-sol-1-6b_finetuning",
        "gsm8k-sol-1-6b_verification",
    ]
    assert len(solutions) == 6


def test_gsm8k_row_without_final_answer(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "gsm.jsonl",
        [
            {"question": "1+1?", "answer": "1+1=2\n#### 2"},
            {"question": "2+2?", "answer": "2+2=4"},
            {"question": "3+3?", "answer": "3+3=6\n####  "},
        ],
    )
    with pytest.raises(RecordError) as info:
        load_gsm8k_problems(path)
    assert (info.value.where, info.value.field) == (f"{path} line 2", "answer")
    errors: list[RecordError] = []
    kept = load_gsm8k_problems(path, skip_invalid=True, errors=errors)
    assert [t.id for t in kept] == ["gsm8k-gsm-0"]  # a local file's stem names its split
    assert [(e.where, e.field) for e in errors] == [
        (f"{path} line 2", "answer"),
        (f"{path} line 3", "answer"),
    ]
    assert "no '#### <final answer>' line" in str(errors[0])
    assert "nothing after '####'" in str(errors[1])


def test_gsm8k_model_solutions_real_file() -> None:
    solutions = load_gsm8k_model_solutions(GSM8K / "example_model_solutions.jsonl")
    assert len(solutions) == 5276
    first_four = solutions[:4]
    assert [t.id for t in first_four] == [
        "gsm8k-sol-0-6b_finetuning",
        "gsm8k-sol-0-6b_verification",
        "gsm8k-sol-0-175b_finetuning",
        "gsm8k-sol-0-175b_verification",
    ]
    assert [t.final_answer for t in first_four] == ["26", "224", "4", "18"]
    assert [t.metadata for t in first_four] == [
        {"model": "6b_finetuning", "is_correct": False},
        {"model": "6b_verification", "is_correct": False},
        {"model": "175b_finetuning", "is_correct": False},
        {"model": "175b_verification", "is_correct": True},
    ]
    assert first_four[3].steps == [
        "Janet eats 3 duck eggs for breakfast and bakes 4 into muffins so 3 + 4 = 7 duck eggs "
        "are used",
        "Each day Janet's ducks lay 16 eggs and she uses 7, 16 - 7 = 9 duck eggs are for sale",
        "She sells her eggs for $2 per egg and has 9 available for sale so 2 * 9 = $18 per day",
    ]
    assert all(t.question == JANET and t.gold_answer == "18" for t in first_four)
    assert all(t.step_labels is None and t.first_error is None for t in solutions)
    assert solutions[146 * 4].gold_answer == "2125"  # "A: 2,125"
    # A truncated solution has no "A:" line: every line is a step and there is no final answer.
    truncated = solutions[5 * 4 + 2]
    assert truncated.id == "gsm8k-sol-5-175b_finetuning" and truncated.final_answer is None
    assert sum(t.final_answer is None for t in solutions) == 11
    # The gold answers are those of the reference solutions, question by question.
    problems = load_gsm8k_problems(GSM8K / "test.jsonl")
    assert [t.gold_answer for t in solutions[::4]] == [p.gold_answer for p in problems]
    assert not any(s.startswith("A:") for t in solutions for s in t.steps)


def test_gsm8k_model_solution_malformed(tmp_path: Path) -> None:
    good = json.loads((GSM8K / "example_model_solutions.jsonl").open().readline())
    bad = json.loads(json.dumps(good))
    bad["6b_verification"]["solution"] = None
    path = write_jsonl(tmp_path / "sol.jsonl", [good, bad])
    with pytest.raises(RecordError, match=r"line 2: field '6b_verification.solution': missing"):
        load_gsm8k_model_solutions(path)
    errors: list[RecordError] = []
    assert len(load_gsm8k_model_solutions(path, skip_invalid=True, errors=errors)) == 4
    assert len(errors) == 1


# -------------------------------------------------------------------------------- Math-Shepherd

SHEPHERD_GSM8K = {
    "input": f"{JANET} Step 1: Janet's ducks lay 16 - 3 - 4 = <<16-3-4=9>>9 eggs. ки\n"
    "Step 2: She makes 9 * 2 = $<<9*2=18>>18. ки\nStep 3: The answer is: 18 ки",
    "label": f"{JANET} Step 1: Janet's ducks lay 16 - 3 - 4 = <<16-3-4=9>>9 eggs. +\n"
    "Step 2: She makes 9 * 2 = $<<9*2=18>>18. +\nStep 3: The answer is: 18 +",
    "task": "GSM8K",
}
SHEPHERD_MATH = {
    "input": "What is $\\frac{1}{2} + \\frac{1}{4}$? Step 1: The common denominator is 4. ки\n"
    "Step 2: So the sum is $\\frac{2}{4} + \\frac{1}{4} = \\frac{2}{4}$. ки\n"
    "Step 3: Which is $\\frac{3}{4}$. The answer is: \\frac{3}{4} ки",
    "label": "What is $\\frac{1}{2} + \\frac{1}{4}$? Step 1: The common denominator is 4. +\n"
    "Step 2: So the sum is $\\frac{2}{4} + \\frac{1}{4} = \\frac{2}{4}$. -\n"
    "Step 3: Which is $\\frac{3}{4}$. The answer is: \\frac{3}{4} +",
    "task": "MATH",
}
SHEPHERD_WRONG = {  # lower-case "step 1:", and a wrong final step
    "input": "How many legs do 3 cats have? step 1: Each cat has 4 legs. ки\n"
    "Step 2: 3 + 4 = 7. The answer is: 7 ки\n",
    "label": "How many legs do 3 cats have? step 1: Each cat has 4 legs. +\n"
    "Step 2: 3 + 4 = 7. The answer is: 7 -\n",
    "task": "GSM8K",
}


def test_math_shepherd_every_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "shepherd.jsonl", [SHEPHERD_GSM8K, SHEPHERD_MATH, SHEPHERD_WRONG])
    gsm, math, wrong = load_math_shepherd(path)
    assert gsm.to_dict() == {
        "id": "math-shepherd-shepherd-0",
        "question": JANET,
        "steps": [
            "Janet's ducks lay 16 - 3 - 4 = <<16-3-4=9>>9 eggs.",
            "She makes 9 * 2 = $<<9*2=18>>18.",
            "The answer is: 18",
        ],
        "gold_answer": "18",
        "final_answer": "18",
        "step_labels": [True, True, True],
        "first_error": -1,
        "source": "math-shepherd",
        "metadata": {"task": "GSM8K"},
    }
    assert math.to_dict() == {
        "id": "math-shepherd-shepherd-1",
        "question": "What is $\\frac{1}{2} + \\frac{1}{4}$?",
        "steps": [
            "The common denominator is 4.",
            "So the sum is $\\frac{2}{4} + \\frac{1}{4} = \\frac{2}{4}$.",
            "Which is $\\frac{3}{4}$. The answer is: \\frac{3}{4}",
        ],
        "gold_answer": "\\frac{3}{4}",
        "final_answer": "\\frac{3}{4}",
        "step_labels": [True, False, True],  # the source's labels, as given
        "first_error": 1,
        "source": "math-shepherd",
        "metadata": {"task": "MATH"},
    }
    assert wrong.question == "How many legs do 3 cats have?"
    assert wrong.steps == ["Each cat has 4 legs.", "3 + 4 = 7. The answer is: 7"]
    assert (wrong.step_labels, wrong.first_error) == ([True, False], 1)
    assert (wrong.final_answer, wrong.gold_answer) == ("7", None)


def _with(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**row, **changes}


SHEPHERD_MALFORMED = [
    pytest.param(_with(SHEPHERD_GSM8K, label=None), "label", "missing", id="missing-label"),
    pytest.param(_with(SHEPHERD_GSM8K, input=None), "input", "missing", id="missing-input"),
    pytest.param(
        _with(
            SHEPHERD_GSM8K,
            input=SHEPHERD_GSM8K["input"].replace("Step 2: She makes", "Step 2: ки\nStep 3: She"),
            label=SHEPHERD_GSM8K["label"].replace("Step 2: She makes", "Step 2: +\nStep 3: She"),
        ),
        "input",
        "step 2 is empty",
        id="empty-step",
    ),
    pytest.param(
        _with(SHEPHERD_GSM8K, label=SHEPHERD_GSM8K["label"].replace("18. +", "18.")),
        "label",
        "3 'ки' tags",
        id="tag-missing-in-label",
    ),
    pytest.param(
        _with(SHEPHERD_GSM8K, label=SHEPHERD_GSM8K["label"].replace("eggs. +", "eggs. ?")),
        "label",
        "at step tag 1, found '?'",
        id="not-plus-or-minus",
    ),
    pytest.param(
        _with(SHEPHERD_GSM8K, input="No steps here ки", label="No steps here +"),
        "input",
        "no 'Step 1:'",
        id="no-step-1",
    ),
    pytest.param(
        _with(
            SHEPHERD_GSM8K,
            input="A question ки Step 1: x ки",
            label="A question + Step 1: x +",
        ),
        "input",
        "before 'Step 1:'",
        id="tag-in-question",
    ),
    pytest.param(
        _with(SHEPHERD_GSM8K, input="Q? Step 1: x ки trailing", label="Q? Step 1: x + trailing"),
        "input",
        "text after the last step tag",
        id="text-after-last-tag",
    ),
]


@pytest.mark.parametrize(("bad", "field", "problem"), SHEPHERD_MALFORMED)
def test_math_shepherd_malformed_row(
    tmp_path: Path, bad: dict[str, Any], field: str, problem: str
) -> None:
    path = write_jsonl(tmp_path / "shepherd.jsonl", [SHEPHERD_GSM8K, bad])
    with pytest.raises(RecordError) as info:
        load_math_shepherd(path)
    assert (info.value.where, info.value.field) == (f"{path} line 2", field)
    assert problem in info.value.problem
    assert f"{path} line 2: field '{field}'" in str(info.value)


def test_math_shepherd_skip_invalid_reports(tmp_path: Path) -> None:
    bad_rows = [p.values[0] for p in SHEPHERD_MALFORMED]
    path = write_jsonl(tmp_path / "shepherd.jsonl", [SHEPHERD_GSM8K, *bad_rows, SHEPHERD_MATH])
    errors: list[RecordError] = []
    kept = load_math_shepherd(path, skip_invalid=True, errors=errors)
    last = len(bad_rows) + 1
    assert [t.id for t in kept] == ["math-shepherd-shepherd-0", f"math-shepherd-shepherd-{last}"]
    assert [(e.where, e.field) for e in errors] == [
        (f"{path} line {i + 2}", p.values[1]) for i, p in enumerate(SHEPHERD_MALFORMED)
    ]


# --------------------------------------------------------------------------------- ProcessBench


PB_OK = {
    "id": "gsm8k-0",
    "generator": "Qwen2-7B-Instruct",
    "problem": "Sue has 3 apples and buys 2 more. How many apples does she have?",
    "steps": ["Sue starts with 3 apples.", "3 + 2 = 6.", "So she has \\boxed{6} apples."],
    "final_answer_correct": False,
    "label": 1,
}
PB_RIGHT = {
    "id": "gsm8k-1",
    "generator": "Meta-Llama-3-70B-Instruct",
    "problem": "What is half of 3?",
    "steps": ["Half of 3 is $\\frac{3}{2}$.", "The final answer is $\\boxed{\\frac{3}{2}}$."],
    "final_answer_correct": True,
    "label": -1,
}


def test_processbench_every_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [PB_OK, PB_RIGHT])
    wrong, right = load_processbench(path)
    assert wrong.to_dict() == {
        "id": "processbench-gsm8k-0",
        "question": PB_OK["problem"],
        "steps": PB_OK["steps"],
        "gold_answer": None,
        "final_answer": "6",
        "step_labels": [True, False, False],
        "first_error": 1,
        "source": "processbench",
        "metadata": {
            "subset": "gsm8k",
            "generator": "Qwen2-7B-Instruct",
            "final_answer_correct": False,
        },
    }
    assert right.id == "processbench-gsm8k-1" and right.final_answer == "\\frac{3}{2}"
    assert (right.step_labels, right.first_error) == ([True, True], -1)
    assert right.metadata["final_answer_correct"] is True


def test_processbench_from_parquet(tmp_path: Path) -> None:
    path = tmp_path / "math.parquet"
    datasets.Dataset.from_list([PB_RIGHT]).to_parquet(str(path))
    (right,) = load_processbench(path)
    assert right.metadata["subset"] == "math" and right.steps == PB_RIGHT["steps"]


PB_MALFORMED = [
    pytest.param(_with(PB_OK, problem=None), "problem", "missing", id="missing-problem"),
    pytest.param(_with(PB_OK, label=None), "label", "missing", id="missing-label"),
    pytest.param(_with(PB_OK, steps=["a", "  ", "c"]), "steps[1]", "empty", id="empty-step"),
    pytest.param(_with(PB_OK, steps=[]), "steps", "no steps", id="no-steps"),
    pytest.param(_with(PB_OK, label=3), "label", "3 is outside -1..2", id="label-too-big"),
    pytest.param(_with(PB_OK, label=-2), "label", "-2 is outside -1..2", id="label-too-small"),
]


@pytest.mark.parametrize(("bad", "field", "problem"), PB_MALFORMED)
def test_processbench_malformed_row(
    tmp_path: Path, bad: dict[str, Any], field: str, problem: str
) -> None:
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [PB_RIGHT, bad])
    with pytest.raises(RecordError) as info:
        load_processbench(path)
    assert (info.value.where, info.value.field) == (f"{path} line 2", field)
    assert problem in info.value.problem


def test_processbench_skip_invalid_reports(tmp_path: Path) -> None:
    bad_rows = [p.values[0] for p in PB_MALFORMED]
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [*bad_rows, PB_OK])
    errors: list[RecordError] = []
    kept = load_processbench(path, skip_invalid=True, errors=errors)
    assert [t.id for t in kept] == ["processbench-gsm8k-0"]
    assert [(e.where, e.field) for e in errors] == [
        (f"{path} line {i + 1}", p.values[1]) for i, p in enumerate(PB_MALFORMED)
    ]
