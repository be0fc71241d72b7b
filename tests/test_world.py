"""The arithmetic world: exact step truth, consistent corruptions, disjoint splits, determinism."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from cpmi_lib.core.trajectory import read_trajectories
from cpmi_lib.data.loaders import load_processbench
from cpmi_lib.data.world import SPLITS, STEP_RE, Problem, WorldConfig, apply, build_world, split_of
from cpmi_lib.data.world_benchmark import make_benchmark, subsets_by_length, to_processbench_rows
from cpmi_lib.data.world_data import WorldSpec, build_world_files, load_benchmark, read_problems
from cpmi_lib.data.world_errors import ERROR_KINDS, corrupt
from cpmi_lib.data.world_grading import grade_steps, graded_trajectory

CFG = WorldConfig()


@pytest.fixture(scope="module")
def world():
    return build_world(CFG, {"train": 300, "dev": 100, "test": 100}, seed=3)


def parse(step: str) -> tuple[int, str, int, int]:
    m = STEP_RE.match(step)
    assert m, step
    return int(m["a"]), m["op"], int(m["b"]), int(m["c"])


def test_gold_chain_is_arithmetic_and_uses_story_numbers(world):
    for p in world["train"]:
        assert CFG.min_steps <= p.n_steps <= CFG.max_steps
        prev = None
        for step, comp in zip(p.gold_steps, p.computations, strict=True):
            a, op, b, c = parse(step)
            assert (a, op, b, c) == (comp.a, comp.op, comp.b, comp.c)
            assert apply(op, a, b) == c and c > 0
            assert prev is None or a == prev  # each step continues from the last result
            assert b in p.story_numbers and re.search(rf"\b{b}\b", p.question)
            prev = c
        assert p.answer == str(prev)
        assert p.question.endswith("?") and p.name in p.question and p.obj in p.question


def test_default_world_averages_at_least_three_steps_and_uses_all_operations():
    problems = build_world(CFG, {"train": 2000}, seed=0)["train"]
    assert sum(p.n_steps for p in problems) / len(problems) >= 3
    ops = Counter(c.op for p in problems for c in p.computations)
    assert set(ops) == {"+", "-", "*", "/"} and min(ops.values()) > 0.1 * sum(ops.values())
    assert all(c.c <= CFG.max_value for p in problems for c in p.computations)


def test_splits_are_disjoint_and_follow_the_question_hash(world):
    questions = {s: {p.question for p in ps} for s, ps in world.items()}
    assert questions["train"].isdisjoint(questions["dev"])
    assert questions["train"].isdisjoint(questions["test"])
    assert questions["dev"].isdisjoint(questions["test"])
    for split, problems in world.items():
        assert len(problems) == len({p.question for p in problems})  # distinct within a split
        assert all(p.split == split == split_of(p.question) for p in problems)
    # another seed and other sizes never move a question to another split
    other = build_world(CFG, {"lm": 500, "test": 50}, seed=99)
    assert all(split_of(p.question) == s for s, ps in other.items() for p in ps)
    assert not {p.question for p in other["lm"]} & set().union(*questions.values())


def test_deterministic_by_seed():
    a = build_world(CFG, {"train": 50, "test": 20}, seed=7)
    b = build_world(CFG, {"train": 50, "test": 20}, seed=7)
    c = build_world(CFG, {"train": 50, "test": 20}, seed=8)
    assert a == b
    assert [p.question for p in a["train"]] != [p.question for p in c["train"]]


def test_unknown_split_and_bad_config_are_rejected():
    with pytest.raises(ValueError, match="unknown split"):
        build_world(CFG, {"validation": 3})
    with pytest.raises(ValueError, match="min_steps"):
        WorldConfig(min_steps=4, max_steps=2)
    with pytest.raises(ValueError, match="ops"):
        WorldConfig(ops=("^",))  # type: ignore[arg-type]
    assert SPLITS == ("lm", "train", "dev", "test")


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_corruption_has_exact_first_error_and_continues_consistently(world, kind):
    rng = random.Random(0)
    made = 0
    for p in world["train"]:
        t = corrupt(p, rng, kinds=[kind])
        if t is None:
            continue
        made += 1
        k = t.first_error
        assert t.metadata["error_kind"] == kind
        assert t.final_answer != p.answer and t.gold_answer == p.answer
        assert t.step_labels == [i < k for i in range(t.n_steps)]
        assert t.steps[:k] == p.gold_steps[:k]  # right up to the error
        assert t.steps[k] != p.gold_steps[k]
        chain = [parse(s) for s in t.steps]
        for (_, _, _, c), nxt in zip(chain, chain[1:] + [None], strict=True):
            if nxt is not None:
                assert nxt[0] == c  # later steps continue from the (wrong) value
        for i, (a, op, b, c) in enumerate(chain):
            if kind == "slip" and i == k:
                assert apply(op, a, b) != c
            else:
                assert apply(op, a, b) == c  # every other step is arithmetically right
        if kind == "skip":
            assert t.n_steps == p.n_steps - 1
        else:
            assert t.n_steps == p.n_steps
        if kind == "operand":
            assert chain[k][2] != p.computations[k].b and chain[k][2] in p.story_numbers
        if kind == "operation":
            assert chain[k][1] != p.computations[k].op
        grade = grade_steps(p, t.steps, t.final_answer)
        assert (grade.step_labels, grade.first_error, grade.final_correct) == (
            t.step_labels,
            k,
            False,
        )
    assert made > 0.5 * len(world["train"])


def test_corruption_at_a_given_position(world):
    rng = random.Random(1)
    p = next(p for p in world["train"] if p.n_steps >= 4)
    for k in range(p.n_steps):
        t = corrupt(p, rng, kinds=["slip"], position=k)
        assert t is not None and t.first_error == k


def test_grading_of_arbitrary_solutions(world):
    p: Problem = world["test"][0]
    gold = grade_steps(p, p.gold_steps, p.answer)
    assert gold.step_labels == [True] * p.n_steps and gold.first_error == -1 and gold.final_correct
    # stopped early: every step is right, the error is in the answer line
    early = grade_steps(p, p.gold_steps[:-1], p.computations[-2].c.__str__())
    assert early.step_labels == [True] * (p.n_steps - 1) and early.first_error is None
    # an unparseable step is wrong and so is everything after it
    bad = grade_steps(p, [p.gold_steps[0], "I think it is 5.", *p.gold_steps[2:]], p.answer)
    assert bad.first_error == 1 and bad.step_labels == [True] + [False] * (p.n_steps - 1)
    # extra steps after a complete chain are wrong
    extra = grade_steps(p, [*p.gold_steps, p.gold_steps[-1]], p.answer)
    assert extra.first_error == p.n_steps
    t = graded_trajectory(p, p.gold_steps, p.answer, "x", sample=0)
    assert t.first_error == -1 and t.metadata["final_correct"] and t.metadata["sample"] == 0


def test_benchmark_is_half_correct_half_erroneous_per_subset(world):
    subsets = subsets_by_length(CFG)
    assert subsets == {"short": (3, 3), "medium": (4, 4), "long": (5, 6)}
    bench = make_benchmark(world["train"], 20, subsets, seed=0)
    assert set(bench) == set(subsets)
    for name, items in bench.items():
        lo, hi = subsets[name]
        assert len(items) == 20
        assert sum(t.first_error == -1 for t in items) == 10
        assert all(lo <= t.metadata["n_steps"] <= hi for t in items)
        assert len({t.metadata["problem_id"] for t in items}) == 20  # independent items
        kinds = Counter(t.metadata.get("error_kind") for t in items if t.first_error != -1)
        assert len(kinds) >= 2
    rows = to_processbench_rows(bench["short"])
    assert set(rows[0]) == {"id", "generator", "problem", "steps", "final_answer_correct", "label"}
    assert [r["label"] for r in rows] == [t.first_error for t in bench["short"]]
    with pytest.raises(ValueError, match="only"):
        make_benchmark(world["dev"], 200, subsets)


def test_world_files_round_trip(tmp_path):
    spec = WorldSpec(sizes={"train": 40, "dev": 60, "test": 60}, benchmark_per_subset=6, seed=1)
    out = build_world_files(spec, tmp_path / "w")
    test = read_problems(out / "problems-test.jsonl")
    assert test == build_world(spec.world, spec.sizes, seed=1)["test"]
    gold = read_trajectories(out / "gold-test.jsonl")
    assert [t.steps for t in gold] == [p.gold_steps for p in test]
    bench = load_benchmark(out, "test")
    assert sorted(bench) == ["long", "medium", "short"] and all(len(v) == 6 for v in bench.values())
    pb = [json.loads(line) for line in (out / "processbench" / "test-short.jsonl").open()]
    assert [r["label"] for r in pb] == [t.first_error for t in bench["short"]]
    # the paper-scale ProcessBench loader reads the export back with the same truth
    loaded = load_processbench(str(out / "processbench" / "test-short.jsonl"))
    assert [(t.steps, t.first_error, t.step_labels) for t in loaded] == [
        (t.steps, t.first_error, t.step_labels) for t in bench["short"]
    ]
    stamp = (out / "world.json").stat().st_mtime_ns
    build_world_files(spec, out)  # complete already: not rebuilt
    assert (out / "world.json").stat().st_mtime_ns == stamp


def test_read_problems_names_file_line_and_field(tmp_path, tiny_world):
    from cpmi_lib.core.records import RecordError
    from cpmi_lib.data.world_data import read_problems, write_problems

    problems = build_world(tiny_world, {"train": 3}, seed=0)["train"]
    path = tmp_path / "problems-train.jsonl"
    write_problems(path, problems)
    assert [p.id for p in read_problems(path)] == [p.id for p in problems]
    lines = path.read_text().splitlines(keepends=True)
    row = json.loads(lines[1])
    del row["question"]
    path.write_text(lines[0] + json.dumps(row) + "\n" + lines[2])
    with pytest.raises(RecordError, match=r"train\.jsonl line 2: field .question.: missing"):
        read_problems(path)
    path.write_text(lines[0] + "[1, 2]\n")
    with pytest.raises(RecordError, match=r"line 2: field '<record>': not a world problem"):
        read_problems(path)
