"""A corpus of malformed inputs, one bad record each, for every loader of local files.

Each case is a file of valid rows with one bad line put in. Read strictly, the bad line raises a
`RecordError` whose text names the file, the line (1-based, as an editor shows it) and the field,
exactly. Read with ``skip_invalid=True``, exactly that line is skipped and reported, and every
other row loads exactly as it does from the file without the bad line: one record never changes
how its neighbours are read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cpmi_lib.core.trajectory import RecordError, Trajectory, read_trajectories
from cpmi_lib.data.loaders import (
    load_gsm8k_model_solutions,
    load_gsm8k_problems,
    load_math_shepherd,
    load_processbench,
)

Loader = Callable[..., list[Trajectory]]


def dumps(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False)


# --------------------------------------------------------------------------------- valid rows


def pb_row(i: int, **changes: Any) -> dict[str, Any]:
    """A ProcessBench row whose steps include a number-like string, as real solutions do."""
    row = {
        "id": f"gsm8k-{i}",
        "generator": "Qwen2-7B-Instruct",
        "problem": f"What is {i} times 1000000000?",
        "steps": [f"{i} times 1000000000 is", "1000000000", f"So \\boxed{{{i}000000000}}."],
        "final_answer_correct": i % 2 == 0,
        "label": -1 if i % 2 == 0 else 1,
    }
    return {**row, **changes}


def gsm_row(i: int, **changes: Any) -> dict[str, Any]:
    row = {
        "question": f"What is {i} + 2?",
        "answer": f"{i} + 2 = <<{i}+2={i + 2}>>{i + 2}\n#### {i + 2}",
    }
    return {**row, **changes}


def solution_row(i: int, **changes: Any) -> dict[str, Any]:
    entry = {"solution": f"{i} + 2 = {i + 2}\nA: {i + 2}", "is_correct": True}
    row: dict[str, Any] = {"question": f"What is {i} + 2?", "ground_truth": f"{i} + 2\nA: {i + 2}"}
    for key in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
        row[key] = dict(entry)
    return {**row, **changes}


def with_entry(row: dict[str, Any], key: str, **changes: Any) -> dict[str, Any]:
    return {**row, key: {**row[key], **changes}}


def shepherd_row(i: int, **changes: Any) -> dict[str, Any]:
    row = {
        "input": f"What is {i} + 2? Step 1: {i} + 2 = {i + 2}. ки\nStep 2: The answer: {i + 2} ки",
        "label": f"What is {i} + 2? Step 1: {i} + 2 = {i + 2}. +\nStep 2: The answer: {i + 2} +",
        "task": "GSM8K",
    }
    return {**row, **changes}


def trajectory_row(i: int, **changes: Any) -> dict[str, Any]:
    row = {
        "id": f"t{i}",
        "question": f"What is {i} + 2?",
        "steps": [f"{i} + 2 = {i + 2}.", "1000000000"],
        "gold_answer": str(i + 2),
        "final_answer": str(i + 2),
        "step_labels": [True, True],
        "first_error": -1,
        "source": "test",
        "metadata": {"n": i},
    }
    return {**row, **changes}


# ---------------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Source:
    """A loader, the file name it reads and its valid rows (9 of them)."""

    load: Loader
    file_name: str
    row: Callable[..., dict[str, Any]]
    log_text: str = "skipped 1 invalid row(s)"

    def good_lines(self) -> list[bytes]:
        return [dumps(self.row(i)).encode() for i in range(9)]


PB = Source(load_processbench, "gsm8k.jsonl", pb_row)
GSM = Source(load_gsm8k_problems, "test.jsonl", gsm_row)
SOL = Source(load_gsm8k_model_solutions, "example_model_solutions.jsonl", solution_row)
SHEP = Source(load_math_shepherd, "shepherd.jsonl", shepherd_row)
TRAJ = Source(read_trajectories, "t.jsonl", trajectory_row, "skipped 1 invalid record(s)")

TORN = dumps(pb_row(9))[:40]  # a last line cut short inside a string, with no newline
BAD_BYTE = (dumps(pb_row(9))[:30].encode(), b"\xe9", dumps(pb_row(9))[30:].encode())


def case(
    source: Source,
    bad: dict[str, Any] | str | bytes | None,
    field: str,
    problem: str,
    *,
    at: int = 4,
    torn: bool = False,
    id: str,
) -> Any:
    if isinstance(bad, bytes):
        line = bad
    elif isinstance(bad, str):
        line = bad.encode()
    else:
        line = dumps(bad).encode()
    return pytest.param(source, line, at, torn, field, problem, id=id)


#: (source, the bad line, where it goes (0-based), torn, field, problem), each with a readable id.
CORPUS = [
    # ProcessBench: the json builder's one-type-per-column cases first.
    case(PB, pb_row(9, label=1.0), "label", "must be int, got float", id="pb-float-label"),
    case(PB, pb_row(9, label="2"), "label", "must be int, got str", id="pb-string-label"),
    case(PB, pb_row(9, label=True), "label", "must be int, got bool", id="pb-bool-label"),
    case(
        PB,
        '{"id": "gsm8k-9", "problem": "p", "steps": ["s"], "label": NaN}',
        "label",
        "must be int, got float",
        id="pb-nan-label",
    ),
    case(
        PB,
        pb_row(9, steps=["a", 7, "c"]),
        "steps[1]",
        "must be a string, got int",
        id="pb-non-string-step",
    ),
    case(PB, pb_row(9, label=3), "label", "3 is outside -1..2 (3 steps)", id="pb-label-too-big"),
    case(
        PB, pb_row(9, label=-2), "label", "-2 is outside -1..2 (3 steps)", id="pb-label-too-small"
    ),
    case(PB, pb_row(9, steps=[]), "steps", "no steps", id="pb-empty-steps"),
    case(
        PB, pb_row(9, steps="one step"), "steps", "must be list, got str", id="pb-steps-not-a-list"
    ),
    case(
        PB,
        pb_row(9, steps=["a", " \t ", "c"]),
        "steps[1]",
        "empty or whitespace-only step",
        id="pb-whitespace-only-step",
    ),
    case(
        PB,
        {k: v for k, v in pb_row(9).items() if k != "problem"},
        "problem",
        "missing",
        id="pb-missing-problem",
    ),
    case(
        PB,
        pb_row(9, final_answer_correct="yes"),
        "final_answer_correct",
        "must be bool, got str",
        id="pb-string-final-answer-correct",
    ),
    case(PB, pb_row(9, id=["x"]), "id", "must be str or int, got list", id="pb-list-id"),
    case(
        PB,
        '{"id": "gsm8k-9", "problem": ',
        "<json>",
        "not valid JSON (Expecting value)",
        id="pb-unparsable-line",
    ),
    case(
        PB,
        TORN,
        "<json>",
        "not valid JSON (Unterminated string starting at)",
        at=9,
        torn=True,
        id="pb-torn-last-line",
    ),
    case(
        PB,
        dumps(pb_row(9)) + ' {"id": 1}',
        "<json>",
        "not valid JSON (Extra data)",
        id="pb-two-objects-on-one-line",
    ),
    case(PB, "[]", "<record>", "expected a JSON object, got array", id="pb-array-line"),
    case(PB, "null", "<record>", "expected a JSON object, got null", id="pb-null-line"),
    case(PB, '"a row"', "<record>", "expected a JSON object, got string", id="pb-string-line"),
    case(
        PB,
        dumps(pb_row(9))[:-1] + ', "label": -1}',
        "<json>",
        "duplicate key 'label' in one object",
        id="pb-duplicate-key",
    ),
    case(
        PB,
        b"".join(BAD_BYTE),
        "<encoding>",
        "not valid UTF-8 (byte 0xe9 at column 31: invalid continuation byte)",
        id="pb-not-utf8",
    ),
    # GSM8K reference solutions.
    case(
        GSM,
        gsm_row(9, answer="9 + 2 = 11"),
        "answer",
        "no '#### <final answer>' line",
        id="gsm8k-no-final-answer",
    ),
    case(
        GSM,
        gsm_row(9, answer="9 + 2 = 11\n####  "),
        "answer",
        "nothing after '####'",
        id="gsm8k-empty-final-answer",
    ),
    case(GSM, gsm_row(9, answer="#### 11"), "steps", "no steps", id="gsm8k-no-steps"),
    case(
        GSM, gsm_row(9, question=7), "question", "must be str, got int", id="gsm8k-number-question"
    ),
    case(GSM, {"question": "What is 9 + 2?"}, "answer", "missing", id="gsm8k-missing-answer"),
    # GSM8K model solutions: four nested solutions a row.
    case(
        SOL,
        with_entry(solution_row(9), "6b_verification", solution=None),
        "6b_verification.solution",
        "missing",
        id="solutions-nested-solution-missing",
    ),
    case(
        SOL,
        with_entry(solution_row(9), "175b_finetuning", is_correct="true"),
        "175b_finetuning.is_correct",
        "must be bool, got str",
        id="solutions-string-is-correct",
    ),
    case(
        SOL,
        {k: v for k, v in solution_row(9).items() if k != "6b_finetuning"},
        "6b_finetuning",
        "missing",
        id="solutions-model-missing",
    ),
    case(
        SOL,
        solution_row(9, ground_truth="eleven"),
        "ground_truth",
        "no 'A: <final answer>' line",
        id="solutions-no-gold-answer",
    ),
    # Math-Shepherd.
    case(
        SHEP,
        shepherd_row(9, label=shepherd_row(9)["label"].replace("11. +", "11.")),
        "label",
        "is not `input` with its 2 'ки' tags replaced by '+'/'-' (length 59, expected 61)",
        id="shepherd-tag-label-mismatch",
    ),
    case(
        SHEP,
        shepherd_row(9, label=shepherd_row(9)["label"].replace("11. +", "11. ?")),
        "label",
        "expected '+' or '-' at step tag 1, found '?'",
        id="shepherd-not-plus-or-minus",
    ),
    case(
        SHEP,
        shepherd_row(9, label=["+", "+"]),
        "label",
        "must be str, got list",
        id="shepherd-label-list",
    ),
    # Trajectory JSONL (the labeling CLI's input).
    case(
        TRAJ,
        '{"id": "t9", "question": "q", "steps": ["s"], "gold_answer": NaN}',
        "gold_answer",
        "must be a finite number, got nan",
        id="trajectory-nan-gold",
    ),
    case(
        TRAJ,
        '{"id": "t9", "question": "q", "steps": ["s"], "gold_answer": Infinity}',
        "gold_answer",
        "must be a finite number, got inf",
        id="trajectory-infinite-gold",
    ),
    case(
        TRAJ,
        '{"id": "t9", "question": "q", "steps": ["s"], "final_answer": -Infinity}',
        "final_answer",
        "must be a finite number, got -inf",
        id="trajectory-infinite-final",
    ),
    case(
        TRAJ,
        trajectory_row(9, gold_answer=" \n "),
        "gold_answer",
        "empty or whitespace-only",
        id="trajectory-blank-gold",
    ),
    case(
        TRAJ,
        trajectory_row(9, step_labels=[1, 1]),
        "step_labels[0]",
        "must be a boolean, got 1",
        id="trajectory-int-step-label",
    ),
    case(
        TRAJ,
        trajectory_row(9, steps=["ok", 1000000000]),
        "steps[1]",
        "must be a string, got int",
        id="trajectory-non-string-step",
    ),
    case(
        TRAJ,
        b'{"id": "t9", "question": "\xff"}',
        "<encoding>",
        "not valid UTF-8 (byte 0xff at column 27: invalid start byte)",
        id="trajectory-not-utf8",
    ),
    case(
        TRAJ,
        "{not json",
        "<json>",
        "not valid JSON (Expecting property name enclosed in double quotes)",
        id="trajectory-unparsable-line",
    ),
    case(TRAJ, "[]", "<record>", "expected a JSON object, got array", id="trajectory-array-line"),
]


def write(path: Path, lines: list[bytes], *, torn: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + (b"" if torn else b"\n"))
    return path


def without_ids(trajectories: list[Trajectory]) -> list[dict[str, Any]]:
    """Trajectories as dicts, ids blanked: some loaders number rows by position."""
    return [{**t.to_dict(), "id": None} for t in trajectories]


@pytest.mark.parametrize(("source", "bad", "at", "torn", "field", "problem"), CORPUS)
def test_bad_record_is_named_by_file_line_and_field(
    tmp_path: Path, source: Source, bad: bytes, at: int, torn: bool, field: str, problem: str
) -> None:
    good = source.good_lines()
    path = write(tmp_path / "bad" / source.file_name, [*good[:at], bad, *good[at:]], torn=torn)
    with pytest.raises(RecordError) as info:
        source.load(path)
    assert str(info.value) == f"{path} line {at + 1}: field '{field}': {problem}"
    assert (info.value.where, info.value.field) == (f"{path} line {at + 1}", field)


@pytest.mark.parametrize(("source", "bad", "at", "torn", "field", "problem"), CORPUS)
def test_skip_invalid_skips_exactly_the_bad_record(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    source: Source,
    bad: bytes,
    at: int,
    torn: bool,
    field: str,
    problem: str,
) -> None:
    good = source.good_lines()
    path = write(tmp_path / "bad" / source.file_name, [*good[:at], bad, *good[at:]], torn=torn)
    errors: list[RecordError] = []
    with caplog.at_level(logging.WARNING):
        kept = source.load(path, skip_invalid=True, errors=errors)
    assert [(e.where, e.field) for e in errors] == [(f"{path} line {at + 1}", field)]
    assert str(errors[0]) == f"{path} line {at + 1}: field '{field}': {problem}"
    assert source.log_text in caplog.text
    # Every other row loads exactly as it does from the file without the bad line.
    clean = source.load(write(tmp_path / "good" / source.file_name, good))
    assert len(kept) == len(clean) > 0
    assert without_ids(kept) == without_ids(clean)
    if source in (PB, TRAJ):  # ids come from the rows themselves
        assert kept == clean


# ------------------------------------------------------- neighbours are read as they were written


def test_processbench_ten_rows_one_float_label(tmp_path: Path) -> None:
    """The issue's case: one float label used to reject all ten rows, blaming row 0."""
    rows = [pb_row(i) for i in range(10)]
    rows[6]["label"] = 1.0
    path = write(tmp_path / "gsm8k.jsonl", [dumps(r).encode() for r in rows])
    with pytest.raises(RecordError, match=r"gsm8k\.jsonl line 7: field 'label': must be int"):
        load_processbench(path)
    errors: list[RecordError] = []
    kept = load_processbench(path, skip_invalid=True, errors=errors)
    assert len(kept) == 9 and len(errors) == 1
    others = [i for i in range(10) if i != 6]
    assert [t.id for t in kept] == [f"processbench-gsm8k-{i}" for i in others]
    assert [t.first_error for t in kept] == [-1 if i % 2 == 0 else 1 for i in others]


def test_processbench_number_like_string_steps_stay_strings(tmp_path: Path) -> None:
    rows = [pb_row(i) for i in range(10)]
    rows[3]["steps"] = ["a", 1000000000, "c"]
    path = write(tmp_path / "gsm8k.jsonl", [dumps(r).encode() for r in rows])
    kept = load_processbench(path, skip_invalid=True)
    assert len(kept) == 9
    assert all(t.steps[1] == "1000000000" and isinstance(t.steps[1], str) for t in kept)


def test_blank_lines_are_ignored_and_lines_keep_their_editor_numbers(tmp_path: Path) -> None:
    rows = [pb_row(0), pb_row(1, label="1"), pb_row(2)]
    path = tmp_path / "gsm8k.jsonl"
    path.write_bytes(b"\n  \n" + b"\r\n".join(dumps(r).encode() for r in rows) + b"\r\n\n")
    with pytest.raises(RecordError, match=r"gsm8k\.jsonl line 4: field 'label'"):
        load_processbench(path)
    kept = load_processbench(path, skip_invalid=True)
    assert [t.id for t in kept] == ["processbench-gsm8k-0", "processbench-gsm8k-2"]


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    traj = tmp_path / "t.jsonl"
    traj.write_bytes(b"\xef\xbb\xbf" + dumps(trajectory_row(0)).encode() + b"\n")
    assert [t.id for t in read_trajectories(traj)] == ["t0"]
    gsm = tmp_path / "test.jsonl"
    gsm.write_bytes(b"\xef\xbb\xbf" + dumps(gsm_row(0)).encode() + b"\n")
    assert [t.gold_answer for t in load_gsm8k_problems(gsm)] == ["2"]
    array = tmp_path / "math.json"
    array.write_bytes(b"\xef\xbb\xbf[" + dumps(pb_row(0)).encode() + b"]")
    assert [t.id for t in load_processbench(array)] == ["processbench-gsm8k-0"]


def test_gold_answer_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", [dumps(trajectory_row(0, gold_answer=" 2\n")).encode()])
    (t,) = read_trajectories(path)
    assert t.gold_answer == "2"
    assert Trajectory(id="x", question="q", steps=["s"], gold_answer="\t7 ").gold_answer == "7"


# --------------------------------------------------------------------------- JSON array files


def array_text(rows: list[Any]) -> str:
    """One element a line, from line 2 on."""
    return "[\n" + ",\n".join(dumps(r) for r in rows) + "\n]\n"


def test_json_array_element_is_named_by_the_line_it_starts_on(tmp_path: Path) -> None:
    rows = [pb_row(0), pb_row(1), pb_row(2, label=1.0), pb_row(3)]
    path = tmp_path / "math.json"
    path.write_text(array_text(rows), "utf-8")
    with pytest.raises(RecordError) as info:
        load_processbench(path)
    assert str(info.value) == f"{path} line 4: field 'label': must be int, got float"
    errors: list[RecordError] = []
    kept = load_processbench(path, skip_invalid=True, errors=errors)
    assert [t.id for t in kept] == [
        "processbench-gsm8k-0",
        "processbench-gsm8k-1",
        "processbench-gsm8k-3",
    ]
    assert [e.where for e in errors] == [f"{path} line 4"]
    # Pretty-printed: an element is named by the line of its opening brace.
    path.write_text(json.dumps([pb_row(0), pb_row(1, steps=[])], indent=2), "utf-8")
    text = path.read_text("utf-8")
    second = text[: text.index('"gsm8k-1"')].rindex("{")
    with pytest.raises(
        RecordError,
        match=rf"line {text[:second].count(chr(10)) + 1}: "
        r"field 'steps': no steps",
    ):
        load_processbench(path)


def test_json_array_syntax_error_is_not_skipped(tmp_path: Path) -> None:
    """After a syntax error the array's later elements cannot be found: skipping it would drop
    them silently, so it is raised even with skip_invalid."""
    path = tmp_path / "math.json"
    path.write_text(array_text([pb_row(0)])[:-3] + ',\n{"id": 1,, }\n]\n', "utf-8")
    for skip in (False, True):
        with pytest.raises(RecordError) as info:
            load_processbench(path, skip_invalid=skip)
        assert str(info.value) == (
            f"{path} line 3: field '<json>': not valid JSON (Expecting property name enclosed "
            "in double quotes); the rest of the array cannot be read"
        )


def test_json_file_of_lines_is_read_as_json_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "math.json", [dumps(pb_row(0)).encode(), b"{oops"])
    with pytest.raises(RecordError, match=r"math\.json line 2: field '<json>'"):
        load_processbench(path)
    assert len(load_processbench(path, skip_invalid=True)) == 1


def test_parquet_rows_are_named_by_index(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "math.parquet"
    rows = [pb_row(0), pb_row(1, label=None), pb_row(2)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(RecordError) as info:
        load_processbench(path)
    assert str(info.value) == f"{path} row 1: field 'label': missing"
    kept = load_processbench(path, skip_invalid=True)
    assert [t.id for t in kept] == ["processbench-gsm8k-0", "processbench-gsm8k-2"]
    assert kept[0].steps[1] == "1000000000"


def test_read_jsonl_parses_the_bytes_it_is_given(tmp_path):
    """A caller that hashes a file's bytes parses exactly those bytes, not a later edit."""
    from cpmi_lib.core.records import read_jsonl

    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "old"}\n\n{"id": 2}\n')
    data = path.read_bytes()
    path.write_bytes(b'{"id": "edited"}\n')
    records = list(read_jsonl(path, data))
    assert [r.value() for r in records] == [{"id": "old"}, {"id": 2}]
    assert [r.where for r in records] == [f"{path} line 1", f"{path} line 3"]
    assert [r.value() for r in read_jsonl(path)] == [{"id": "edited"}]
