"""The trajectory record: validation errors, JSONL round trips, the stepwise layout, `datasets`."""

from __future__ import annotations

import json
import logging

import datasets
import pytest

from cpmi_lib.core.trajectory import (
    RecordError,
    Trajectory,
    first_error_from_labels,
    iter_trajectories,
    labels_from_first_error,
    read_trajectories,
    summarize,
    trajectories_from_rows,
    write_trajectories,
)


def make(**overrides):
    record = {
        "id": "t1",
        "question": "Ava has 3 apples. She buys 4 more apples. How many apples does Ava have now?",
        "steps": ["Ava has 3 + 4 = 7 apples."],
        "gold_answer": "7",
        "final_answer": "7",
        "step_labels": [True],
        "first_error": -1,
        "source": "test",
        "metadata": {"split": "test", "n_steps": 1},
    }
    record.update(overrides)
    return record


def test_round_trip_jsonl_and_datasets(tmp_path):
    trajs = [
        Trajectory.from_dict(make()),
        Trajectory.from_dict(
            make(
                id="t2",
                steps=["a", "b"],
                step_labels=[True, False],
                first_error=1,
                final_answer="8",
            )
        ),
        Trajectory.from_dict(
            make(
                id="t3",
                gold_answer=None,
                step_labels=None,
                first_error=None,
                metadata={"split": "dev", "n_steps": 3},
            )
        ),
    ]
    path = tmp_path / "t.jsonl"
    assert write_trajectories(path, trajs) == 3
    assert read_trajectories(path) == trajs
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds.num_rows == 3
    assert ds[1]["steps"] == ["a", "b"] and ds[1]["first_error"] == 1
    assert trajectories_from_rows(ds, where=str(path)) == trajs


def test_stepwise_layout_is_lossless():
    t = Trajectory.from_dict(make(steps=["x", "y"], step_labels=[True, False], first_error=1))
    row = t.to_stepwise()
    assert row["prompt"] == t.question
    assert row["completions"] == ["x", "y"]
    assert row["labels"] == [True, False]
    assert "question" not in row and "steps" not in row
    assert Trajectory.from_stepwise(row) == t
    # and through json, as a trainer's data file would store it
    assert Trajectory.from_stepwise(json.loads(json.dumps(row))) == t


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"question": None}, "question", "missing"),
        ({"question": "   "}, "question", "non-empty"),
        ({"steps": []}, "steps", "no steps"),
        ({"steps": ["ok", "  \n"], "step_labels": None}, "steps[1]", "whitespace-only"),
        ({"steps": ["ok", 3], "step_labels": None}, "steps[1]", "must be a string"),
        ({"steps": "one step"}, "steps", "list of strings"),
        ({"step_labels": [True, False]}, "step_labels", "2 labels for 1 steps"),
        ({"step_labels": ["yes"]}, "step_labels[0]", "boolean"),
        ({"first_error": 3}, "first_error", "outside -1..0"),
        ({"first_error": True}, "first_error", "integer"),
        ({"metadata": [1]}, "metadata", "object"),
        ({"id": None}, "id", "missing"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"gold_answer": float("nan")}, "gold_answer", "must be a finite number, got nan"),
        ({"gold_answer": float("-inf")}, "gold_answer", "must be a finite number, got -inf"),
        ({"final_answer": float("inf")}, "final_answer", "must be a finite number, got inf"),
        ({"gold_answer": " \t"}, "gold_answer", "empty or whitespace-only"),
        ({"gold_answer": True}, "gold_answer", "must be a string"),
    ],
)
def test_malformed_record_names_where_and_field(overrides, field, problem):
    with pytest.raises(RecordError) as exc:
        Trajectory.from_dict(make(**overrides), where="data.jsonl line 7")
    assert exc.value.field == field
    assert problem in exc.value.problem
    assert "data.jsonl line 7" in str(exc.value) and f"'{field}'" in str(exc.value)


def test_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(make(id="a")),
        "{not json",
        json.dumps(make(id="c", steps=[""])),
        "",
        json.dumps(make(id="d")),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"bad\.jsonl line 2: field '<json>': not valid JSON"):
        read_trajectories(path)
    errors: list[RecordError] = []
    kept = read_trajectories(path, skip_invalid=True, errors=errors)
    assert [t.id for t in kept] == ["a", "d"]
    assert [(e.where.rsplit(" ", 1)[-1], e.field) for e in errors] == [
        ("2", "<json>"),
        ("3", "steps[0]"),
    ]
    assert summarize(errors) == (
        "1 × <json>: not valid JSON (Expecting property name enclosed in double quotes); "
        "1 × steps: empty or whitespace-only step"
    )


def test_skip_invalid_reports_in_the_log(tmp_path, caplog):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(make(steps=[])) + "\n" + json.dumps(make(id="ok")) + "\n")
    with caplog.at_level(logging.WARNING):
        kept = read_trajectories(path, skip_invalid=True)
    assert [t.id for t in kept] == ["ok"]
    assert "skipped 1 invalid record(s): 1 × steps: no steps" in caplog.text


def test_iter_is_lazy_and_stops_at_the_first_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(make(id="a")) + "\n" + json.dumps(make(id="b", question="")) + "\n")
    it = iter_trajectories(path)
    assert next(it).id == "a"
    with pytest.raises(RecordError, match="line 2: field 'question'"):
        next(it)


def test_lines_are_decoded_one_by_one(tmp_path):
    """A byte-order mark at the start is ignored; a line that is not UTF-8 is an error of its own
    and the lines around it are read as written."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + json.dumps(make(id="a")).encode()
        + b'\n{"id": "b\xff"}\n'
        + json.dumps(make(id="c", question="Caf\u00e9?"), ensure_ascii=False).encode()
    )
    with pytest.raises(RecordError) as info:
        read_trajectories(path)
    assert str(info.value) == (
        f"{path} line 2: field '<encoding>': not valid UTF-8 (byte 0xff at column 10: "
        "invalid start byte)"
    )
    errors: list[RecordError] = []
    kept = read_trajectories(path, skip_invalid=True, errors=errors)
    assert [t.id for t in kept] == ["a", "c"] and kept[1].question == "Caf\u00e9?"
    assert [(e.where, e.field) for e in errors] == [(f"{path} line 2", "<encoding>")]


def test_gold_answers_are_judged_as_written(tmp_path):
    """JSON NaN/Infinity are not answers; surrounding whitespace would change an answer's
    log-probability, so it is stripped."""
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps(make(id="a", gold_answer=" 7\n"))
        + "\n"
        + '{"id": "b", "question": "q", "steps": ["s"], "gold_answer": NaN}\n'
        + '{"id": "c", "question": "q", "steps": ["s"], "gold_answer": 7, "final_answer": 7.5}\n'
    )
    errors: list[RecordError] = []
    kept = read_trajectories(path, skip_invalid=True, errors=errors)
    assert [(t.id, t.gold_answer, t.final_answer) for t in kept] == [
        ("a", "7", "7"),
        ("c", "7", "7.5"),
    ]
    assert [str(e) for e in errors] == [
        f"{path} line 2: field 'gold_answer': must be a finite number, got nan"
    ]


def test_rows_errors_name_the_row():
    with pytest.raises(RecordError, match=r"hub:x row 1: field 'steps'"):
        trajectories_from_rows([make(), make(steps=[])], where="hub:x")


def test_integer_ids_and_numeric_answers_are_normalised():
    t = Trajectory.from_dict(make(id=12, gold_answer=7, final_answer=7.5))
    assert (t.id, t.gold_answer, t.final_answer) == ("12", "7", "7.5")
    direct = Trajectory(id=12, question="q", steps=["s"], gold_answer=" 7 ", final_answer=7)
    assert (direct.id, direct.gold_answer, direct.final_answer) == ("12", "7", "7")


def test_labels_and_first_error_convert_both_ways():
    assert labels_from_first_error(4, -1) == [True] * 4
    assert labels_from_first_error(4, 2) == [True, True, False, False]
    assert labels_from_first_error(3, 0) == [False] * 3
    for n in range(1, 5):
        for fe in range(-1, n):
            assert first_error_from_labels(labels_from_first_error(n, fe)) == fe
