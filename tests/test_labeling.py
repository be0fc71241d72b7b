"""The labeling command: streamed output, resume after a kill, shards, merge, errors."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cpmi_lib.core.costs import Costs
from cpmi_lib.core.trajectory import RecordError
from cpmi_lib.labeling import cpmi as cpmi_module
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.label_file import LabelConfig, label_file, trajectory_seed
from cpmi_lib.labeling.label_results import merge_label_files, read_labels, total_costs
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.labeling.runs import LabelFileError, dumps_record, parse_shard
from cpmi_lib.lm.identity import loaded_identity

REPO = Path(__file__).resolve().parents[1]
CPMI = LabelConfig(method="cpmi", cpmi=CPMIConfig(variant="cumulative"), n_negatives=2)
MC = LabelConfig(method="mc", mc=MCConfig(n_rollouts=2, max_new_tokens=24, batch_trajectories=3))
#: CPMI scoring blocks of 3 trajectories in shared engine calls (`cpmi_lib.labeling.cpmi_block`).
CPMI_BLOCKS = replace(CPMI, cpmi=replace(CPMI.cpmi, batch_trajectories=3))


@pytest.fixture(scope="module")
def lm(tiny_lm):
    return tiny_lm


@pytest.fixture(scope="module")
def lm_dir(tiny_lm_dir):
    return tiny_lm_dir


def labels_only(records):
    """Records without their measured costs (seconds differ between runs; labels must not)."""
    return [{k: v for k, v in r.items() if k != "costs"} for r in records]


@pytest.mark.parametrize("cfg", [CPMI, MC], ids=["cpmi", "mc"])
def test_label_file_writes_one_record_per_trajectory(lm, tmp_path, write_input, cfg):
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 6)
    costs = label_file(model, tok, "tiny", inp, tmp_path / "out.jsonl", cfg, progress=False)
    records = read_labels(tmp_path / "out.jsonl")
    trajs = [json.loads(line) for line in inp.open()]
    assert [r["id"] for r in records] == [t["id"] for t in trajs]
    assert [r["index"] for r in records] == list(range(6))
    for r, t in zip(records, trajs, strict=True):
        assert len(r["steps"]) == len(t["steps"])
        assert r["config"] == cfg.to_dict() and r["model"] == "tiny" and r["method"] == cfg.method
        if cfg.method == "cpmi":
            assert {"cpmi", "gold_term", "neg_term"} <= set(r["steps"][0])
            assert 1 <= len(r["negatives"]) <= 2
            assert all(n["answer"] != t["gold_answer"] for n in r["negatives"])
        else:
            assert all(0 <= s["value"] <= 1 and s["n_rollouts"] == 2 for s in r["steps"])
    assert costs.items == 6 and costs.steps == sum(len(t["steps"]) for t in trajs)
    assert costs.to_dict() == pytest.approx(total_costs(records).to_dict())
    if cfg.method == "mc":
        assert costs.generated_tokens > 0 and costs.generate_calls == 2  # blocks of 3
    else:
        assert costs.generated_tokens == 0 and costs.forward_tokens > 0


def test_resume_redoes_a_torn_last_line_and_matches_an_uninterrupted_run(lm, tmp_path, write_input):
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 8)
    full = tmp_path / "full.jsonl"
    label_file(model, tok, "tiny", inp, full, CPMI, progress=False)
    lines = full.read_bytes().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # killed mid-write
    with pytest.raises(FileExistsError, match="--resume"):
        label_file(model, tok, "tiny", inp, part, CPMI, progress=False)
    costs = label_file(model, tok, "tiny", inp, part, CPMI, resume=True, progress=False)
    assert labels_only(read_labels(part)) == labels_only(read_labels(full))
    assert costs.items == 8
    # resuming a complete file does nothing; another config is refused
    label_file(model, tok, "tiny", inp, part, CPMI, resume=True, progress=False)
    assert len(read_labels(part)) == 8
    other = LabelConfig(method="cpmi", cpmi=CPMIConfig(variant="marginal"), n_negatives=2)
    with pytest.raises(ValueError, match="another config"):
        label_file(model, tok, "tiny", inp, part, other, resume=True, progress=False)


def _label_cmd(lm_dir, inp: Path, out: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cpmi_lib",
        "label",
        "--input",
        str(inp),
        "--model",
        str(lm_dir),
        "--out",
        str(out),
        *options,
    ]


CPMI_OPTIONS = ("--method", "cpmi", "--variant", "cumulative", "--n-negatives", "2")
MC_OPTIONS = (
    *("--method", "mc", "--n-rollouts", "2", "--max-new-tokens", "24"),
    *("--batch-trajectories", "3"),  # kills land inside blocks, which a resume redoes whole
)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _label_with_kills(cmd: list[str], out: Path, n_total: int, kills: list[int]) -> list[int]:
    """Run `cmd`, kill -9 it at each point of `kills` (k > 0: once k more lines are written;
    k <= 0: after a random delay of up to -k/10 seconds, often before any line), resuming after
    each kill, then finish with --resume. Returns the line counts found after each kill."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(len(kills) + n_total)
    found = []
    log = out.with_name(out.name + ".log")
    for i, k in enumerate(kills):
        before = _lines(out)
        with log.open("w") as err:
            proc = subprocess.Popen(
                cmd if i == 0 else [*cmd, "--resume"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        if k > 0:
            deadline = time.time() + 180
            while time.time() < deadline and proc.poll() is None and _lines(out) < before + k:
                time.sleep(0.003)
        else:
            time.sleep(rng.uniform(0, -k / 10))
        assert proc.poll() is None, f"the labeler ended before its kill: {log.read_text()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found.append(_lines(out))
        assert found[-1] < n_total
    done = subprocess.run([*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return found


def test_kill_9_at_random_points_then_resume_gives_an_uninterrupted_run(
    lm_dir, lm, tmp_path, write_input
):
    """CPMI, MC and two CPMI shards (then merged), each killed at five seeded random points (by
    lines written, or by time: during start-up, the resume checks or the first lines), resumed
    after each kill: the labels equal an uninterrupted run's. The three run side by side."""
    model, tok = lm
    rng = random.Random(9)

    def points(n: int, most: int) -> list[int]:  # lines to wait for; <= 0: a random delay
        return [-30 if rng.random() < 0.3 else rng.randint(1, most) for _ in range(n)]

    cpmi_in = write_input(tmp_path / "in.jsonl", 120, seed=1)
    mc_in = write_input(tmp_path / "mc-in.jsonl", 40, seed=2)
    outs = {name: tmp_path / f"{name}.jsonl" for name in ("cpmi", "mc", "shard0", "shard1")}
    jobs = {
        "cpmi": (_label_cmd(lm_dir, cpmi_in, outs["cpmi"], *CPMI_OPTIONS), 120, points(5, 15)),
        "mc": (_label_cmd(lm_dir, mc_in, outs["mc"], *MC_OPTIONS), 40, points(5, 4)),
        "shard0": (
            _label_cmd(lm_dir, cpmi_in, outs["shard0"], *CPMI_OPTIONS, "--shard", "0/2"),
            60,
            points(3, 10),
        ),
        "shard1": (
            _label_cmd(lm_dir, cpmi_in, outs["shard1"], *CPMI_OPTIONS, "--shard", "1/2"),
            60,
            points(2, 10),
        ),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {
            name: pool.submit(_label_with_kills, cmd, outs[name], n, kills)
            for name, (cmd, n, kills) in jobs.items()
        }
        # the references, uninterrupted, while the labelers run
        reference = {"cpmi": tmp_path / "ref-cpmi.jsonl", "mc": tmp_path / "ref-mc.jsonl"}
        label_file(model, tok, str(lm_dir), cpmi_in, reference["cpmi"], CPMI, progress=False)
        label_file(model, tok, str(lm_dir), mc_in, reference["mc"], MC, progress=False)
        found = {name: f.result() for name, f in futures.items()}
    assert sum(len(f) for f in found.values()) == 15
    for name, n in (("cpmi", 120), ("mc", 40)):
        resumed = read_labels(outs[name])
        assert [r["index"] for r in resumed] == list(range(n)), name  # none lost or duplicated
        assert labels_only(resumed) == labels_only(read_labels(reference[name])), name
        summary = json.loads(Path(str(outs[name]) + ".costs.json").read_text())
        assert Costs.from_dict(summary).items == n
    merged = tmp_path / "merged.jsonl"
    assert merge_label_files([outs["shard1"], outs["shard0"]], merged) == 120
    assert labels_only(read_labels(merged)) == labels_only(read_labels(reference["cpmi"]))


def test_shards_and_merge_equal_a_single_run(lm, tmp_path, write_input):
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 7)
    single = tmp_path / "single.jsonl"
    label_file(model, tok, "tiny", inp, single, CPMI, progress=False)
    shards = []
    for i in range(3):
        path = tmp_path / f"shard{i}.jsonl"
        label_file(model, tok, "tiny", inp, path, CPMI, shard=(i, 3), progress=False)
        assert [r["index"] % 3 for r in read_labels(path)] == [i] * len(read_labels(path))
        shards.append(path)
    merged = tmp_path / "merged.jsonl"
    assert merge_label_files(shards, merged) == 7
    assert labels_only(read_labels(merged)) == labels_only(read_labels(single))
    with pytest.raises(ValueError, match="two shards"):
        merge_label_files([shards[0], shards[0]], tmp_path / "bad.jsonl")


def test_mc_shards_take_whole_blocks_and_merge_to_a_single_run(lm, tmp_path, write_input):
    """MC rolls out blocks of 3 records together: shard i of n takes blocks i, i + n, …, and the
    merged shards, the single run and a run in blocks of 1 all give the same labels."""
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 8)
    single = tmp_path / "single.jsonl"
    label_file(model, tok, "tiny", inp, single, MC, progress=False)
    shards = []
    for i in range(2):
        path = tmp_path / f"shard{i}.jsonl"
        label_file(model, tok, "tiny", inp, path, MC, shard=(i, 2), progress=False)
        shards.append(path)
    assert [r["index"] for r in read_labels(shards[0])] == [0, 1, 2, 6, 7]
    assert [r["index"] for r in read_labels(shards[1])] == [3, 4, 5]
    merged = tmp_path / "merged.jsonl"
    assert merge_label_files(shards, merged) == 8
    assert labels_only(read_labels(merged)) == labels_only(read_labels(single))
    one_by_one = LabelConfig(
        method="mc", mc=MCConfig(**{**MC.mc.to_dict(), "batch_trajectories": 1})
    )
    alone = tmp_path / "alone.jsonl"
    label_file(model, tok, "tiny", inp, alone, one_by_one, progress=False)
    assert [r["steps"] for r in read_labels(alone)] == [r["steps"] for r in read_labels(single)]


def test_cpmi_blocks_score_as_each_trajectory_alone(lm, tmp_path, write_input):
    """CPMI scoring blocks of 3: the shards take whole blocks and merge to the single run; the
    labels equal those of each trajectory alone (its own negatives; scores up to the last bits
    that padding moves); each record carries its share of the costs; a block of 1 keeps the
    identity of the files written before blocks existed."""
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 7)
    single, alone = tmp_path / "single.jsonl", tmp_path / "alone.jsonl"
    label_file(model, tok, "tiny", inp, single, CPMI_BLOCKS, progress=False)
    label_file(model, tok, "tiny", inp, alone, CPMI, progress=False)
    shards = [tmp_path / f"shard{i}.jsonl" for i in range(2)]
    for i, path in enumerate(shards):
        label_file(model, tok, "tiny", inp, path, CPMI_BLOCKS, shard=(i, 2), progress=False)
    assert [r["index"] for r in read_labels(shards[0])] == [0, 1, 2, 6]
    merge_label_files(shards, tmp_path / "merged.jsonl")
    blocked = read_labels(single)
    assert labels_only(read_labels(tmp_path / "merged.jsonl")) == labels_only(blocked)
    fields = ("id", "negatives", "steps")  # their config differs by batch_trajectories
    assert_close(
        [{k: r[k] for k in fields} for r in blocked],
        [{k: r[k] for k in fields} for r in read_labels(alone)],
    )
    assert CPMI_BLOCKS.to_dict()["cpmi"]["batch_trajectories"] == 3
    assert "batch_trajectories" not in CPMI.to_dict()["cpmi"]  # the identity of older files
    for r in blocked:  # each record carries its share of the block's scoring
        costs = Costs.from_dict(r["costs"])
        assert costs.forward_tokens > 0 and costs.flops > 0 and costs.wall_seconds > 0
        assert (costs.items, costs.steps) == (1, len(r["steps"]))


def test_bad_input_names_the_record_and_field(lm, tmp_path):
    model, tok = lm
    inp = tmp_path / "in.jsonl"
    t = {
        "id": "a",
        "question": "Ava has 3 apples. How many apples does Ava have now?",
        "steps": ["Ava has 3 + 0 = 3 apples."],
    }
    inp.write_text(json.dumps(t) + "\n")
    with pytest.raises(RecordError, match="trajectory 'a': field 'gold_answer': missing"):
        label_file(model, tok, "tiny", inp, tmp_path / "o1.jsonl", CPMI, progress=False)
    inp.write_text(
        json.dumps({**t, "gold_answer": "3"}) + "\n" + json.dumps({**t, "gold_answer": "3"})
    )
    with pytest.raises(RecordError, match="field 'id': duplicate id 'a'"):
        label_file(model, tok, "tiny", inp, tmp_path / "o2.jsonl", CPMI, progress=False)
    inp.write_text(json.dumps({**t, "steps": [" "]}) + "\n")
    with pytest.raises(RecordError, match=r"in\.jsonl line 1: field 'steps\[0\]'"):
        label_file(model, tok, "tiny", inp, tmp_path / "o3.jsonl", CPMI, progress=False)


def test_seeds_and_shard_parsing():
    assert trajectory_seed(0, "a") == trajectory_seed(0, "a") != trajectory_seed(1, "a")
    assert trajectory_seed(0, "a") != trajectory_seed(0, "b")
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)


# ------------------------------------------------------------------ run identity, resume, lock

LONG_STEP = "Ava has 3 + 0 = 3 apples. " * 60  # about 540 tokens: past the tiny LM's 512 positions


def _jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_every_line_records_the_run(lm, tmp_path, write_input):
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 4)
    label_file(model, tok, "tiny", inp, tmp_path / "out.jsonl", CPMI, shard=(1, 2), progress=False)
    run = {
        # "tiny" names no model file: the content of the weights and tokenizer in memory
        "model_identity": loaded_identity(model, tok).to_dict(),
        "dtype": "float32",
        "device": "cpu",
        "shard": [1, 2],
        "input": "in.jsonl",
        "input_sha256": hashlib.sha256(inp.read_bytes()).hexdigest(),
        "input_records": 4,
    }
    records = read_labels(tmp_path / "out.jsonl")
    assert [r["index"] for r in records] == [1, 3]
    assert all(r["run"] == run and r["model"] == "tiny" for r in records)


@pytest.fixture()
def started(lm, tmp_path, write_input):
    """An output of 3 of 6 trajectories (shard 0/1), killed while writing the 4th line."""
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 6)
    full = tmp_path / "full.jsonl"
    label_file(model, tok, "tiny", inp, full, CPMI, progress=False)
    lines = full.read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(lines[:3]) + lines[3][:40])
    return inp, out, full


def _bf16(model):
    return copy.deepcopy(model).to(torch.bfloat16)


@pytest.mark.parametrize(
    "change, message",
    [
        ("dtype", r"out\.jsonl line 1: was labeled with dtype float32, this run uses bfloat16"),
        ("model", r"line 1: was labeled with model 'tiny', this run uses 'other'"),
        ("config", r"another config \(config\.cpmi\.variant \"cumulative\", this run uses \"loo"),
        ("seed", r"another config \(config\.seed 0, this run uses 1\)"),
        ("shard", r"line 1: was labeled as shard 0/1, this run is shard 0/2"),
        ("input", r"line 1: was labeled from in\.jsonl with sha256 .*the input was edited since"),
    ],
)
def test_resume_of_another_run_is_refused_and_the_file_left_as_it_was(lm, started, change, message):
    model, tok = lm
    inp, out, _ = started
    kw = {"resume": True, "progress": False}
    cfg, name = CPMI, "tiny"
    if change == "dtype":
        model = _bf16(model)
    elif change == "model":
        name = "other"
    elif change == "config":
        cfg = LabelConfig(method="cpmi", cpmi=CPMIConfig(variant="loo"), n_negatives=2)
    elif change == "seed":
        cfg = replace(CPMI, seed=1)
    elif change == "shard":
        kw["shard"] = (0, 2)
    else:
        inp.write_text(inp.read_text().replace('"question": "', '"question": "Now: ', 1))
    before = out.read_bytes()
    with pytest.raises(LabelFileError, match=message):
        label_file(model, tok, name, inp, out, cfg, **kw)
    assert out.read_bytes() == before  # the torn last line is still there: nothing was cut


@pytest.mark.parametrize(
    "bad, where, problem",
    [
        ("{}", "line 4", r"not a label record \(no 'index' field\)"),
        ("null", "line 4", r"not a label record \(a JSON null, not an object\)"),
        ("[]", "line 4", r"not a label record \(a JSON array, not an object\)"),
        ("", "line 4", r"not a label record \(a blank line\)"),
        ("trajectory", "line 4", r"not a label record \(no 'index' field\)"),
        (
            "copy of line 2",
            "lines 2 and 4",
            r"index 1 is there twice; this file is not one clean run",
        ),
        ("NaN", "line 4", r"not a label record \(not valid JSON: non-finite number NaN\)"),
        (
            '{"id": "torn',
            "line 4",
            r"not a label record \(its last line has no newline and does not",
        ),
    ],
)
def test_resume_refuses_a_file_that_is_not_one_clean_run(lm, started, bad, where, problem):
    model, tok = lm
    inp, out, _ = started
    lines = out.read_bytes().splitlines(keepends=True)[:3]
    extra = {
        "trajectory": inp.read_bytes().splitlines(keepends=True)[0],
        "copy of line 2": lines[1],
        '{"id": "torn': b'{"id": "torn',
    }.get(bad, bad.encode() + b"\n")
    out.write_bytes(b"".join(lines) + extra)
    before = out.read_bytes()
    with pytest.raises(LabelFileError, match=rf"out\.jsonl {where}: {problem}"):
        label_file(model, tok, "tiny", inp, out, CPMI, resume=True, progress=False)
    assert out.read_bytes() == before


def test_the_input_as_output_is_refused_untouched(lm, tmp_path, write_input):
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 3)
    inp.write_bytes(inp.read_bytes()[:-1])  # no newline after the last record: looks torn
    link = tmp_path / "link.jsonl"
    link.symlink_to(inp)
    before = inp.read_bytes()
    for out in (inp, link):
        with pytest.raises(LabelFileError, match="is the input file.*; write the labels to a new"):
            label_file(model, tok, "tiny", inp, out, CPMI, resume=True, progress=False)
    assert inp.read_bytes() == before


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(lm, started):
    model, tok = lm
    inp, out, full = started
    before = out.read_bytes()
    with out.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(LabelFileError, match=r"out\.jsonl is being written by another"):
            label_file(model, tok, "tiny", inp, out, CPMI, resume=True, progress=False)
        assert out.read_bytes() == before
        with pytest.raises(LabelFileError, match="being written by another process"):
            merge_label_files([out], out.with_name("merged.jsonl"))
    label_file(model, tok, "tiny", inp, out, CPMI, resume=True, progress=False)  # lock released
    assert labels_only(read_labels(out)) == labels_only(read_labels(full))


# ------------------------------------------------------------------------- skipped records


def _bad_input(path: Path, write_input) -> tuple[Path, Path]:
    """An input with 5 good trajectories and 4 bad records between them, and the same input
    without the bad records."""
    good = [json.loads(x) for x in write_input(path, 5).read_text().splitlines()]
    clean = _jsonl(path.with_name("clean.jsonl"), good)
    bad = [
        {**good[0], "id": "no-gold", "gold_answer": None},  # line 2: fails while labeling
        "{not json",  # line 4
        {**good[1], "id": "long", "steps": [LONG_STEP], "step_labels": None, "first_error": None},
        good[2],  # line 8: a duplicate id
    ]
    records = [good[0], bad[0], good[1], bad[1], bad[2], good[2], good[3], bad[3], good[4]]
    return _jsonl(path, records), clean


def assert_close(got, want, where: str = "", tol: float = 1e-5) -> None:
    """Equal structures whose floats agree within `tol` (labels up to float rounding)."""
    if isinstance(want, float):
        assert got == pytest.approx(want, abs=tol), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            assert_close(got[k], want[k], f"{where}.{k}", tol)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]", tol)
    else:
        assert got == want, where


@pytest.mark.parametrize("cfg", [CPMI, CPMI_BLOCKS, MC], ids=["cpmi", "cpmi-blocks", "mc"])
def test_skip_invalid_skips_bad_records_alone(lm, tmp_path, write_input, cfg):
    model, tok = lm
    inp, clean = _bad_input(tmp_path / "in.jsonl", write_input)
    out, ref = tmp_path / "out.jsonl", tmp_path / "ref.jsonl"
    skipped: list = []
    label_file(
        model, tok, "tiny", inp, out, cfg, skip_invalid=True, progress=False, skipped=skipped
    )
    label_file(model, tok, "tiny", clean, ref, cfg, progress=False)
    assert [(s["index"], s["line"], s["field"]) for s in skipped] == [
        (1, 2, "gold_answer"),
        (3, 4, "<json>"),
        (4, 5, "steps"),
        (7, 8, "id"),
    ]
    assert "exceeds the model's limit of 512 positions" in skipped[2]["problem"]
    assert skipped[3]["problem"] == f"duplicate id {skipped[3]['id']!r} (first at line 6)"
    labeled = read_labels(out)
    assert [r["index"] for r in labeled] == [0, 2, 5, 6, 8]
    strip = ("index", "run", "costs")  # the other records' labels are unchanged
    got = [{k: v for k, v in r.items() if k not in strip} for r in labeled]
    want = [{k: v for k, v in r.items() if k not in strip} for r in read_labels(ref)]
    if cfg.cpmi.batch_trajectories > 1:  # a block without the bad record packs its calls
        assert_close(got, want)  # otherwise: scores move in their last bits
    else:
        assert got == want
    every = read_labels(out, skipped=True)
    assert [r["index"] for r in every] == list(range(9))  # coverage is provable
    assert every[1]["skipped"] == {
        "line": 2,
        "field": "gold_answer",
        "problem": f"missing: {cfg.method.upper()} needs the gold answer",
    }
    assert every[1]["id"] == "no-gold" and every[3]["id"] is None
    assert b"NaN" not in out.read_bytes()
    before = out.read_bytes()  # a resume of the complete file changes nothing
    again: list = []
    label_file(model, tok, "tiny", inp, out, cfg, resume=True, skip_invalid=True, skipped=again)
    assert out.read_bytes() == before and again == skipped
    # fixing a bad line edits the input: its labels belong in a new file, not appended here
    original = inp.read_bytes()
    fixed = json.dumps({**json.loads(clean.read_text().splitlines()[0]), "id": "fixed"})
    inp.write_text(inp.read_text().replace("{not json", fixed))
    with pytest.raises(LabelFileError, match="the input was edited since this file was started"):
        label_file(model, tok, "tiny", inp, out, cfg, resume=True, skip_invalid=True)
    assert out.read_bytes() == before
    inp.write_bytes(original)
    # shards of a run with skipped records merge into the same file
    for i in range(2):
        label_file(
            model, tok, "tiny", inp, tmp_path / f"s{i}.jsonl", cfg, shard=(i, 2), skip_invalid=True
        )
    merged = tmp_path / "merged.jsonl"
    assert merge_label_files([tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"], merged) == 9
    assert labels_only(read_labels(merged, skipped=True)) == labels_only(every)


@pytest.mark.parametrize("cfg", [CPMI, MC], ids=["cpmi", "mc"])
def test_without_skip_invalid_a_record_too_long_stops_the_run_naming_it(
    lm, tmp_path, write_input, cfg
):
    model, tok = lm
    good = [json.loads(x) for x in write_input(tmp_path / "g.jsonl", 3).read_text().splitlines()]
    long = {**good[1], "steps": [LONG_STEP], "step_labels": None, "first_error": None}
    inp = _jsonl(tmp_path / "in.jsonl", [good[0], long, good[2]])
    out = tmp_path / "out.jsonl"
    what = "context" if cfg.method == "cpmi" else r"prefix of step 1 \(\d+ tokens\) \+ max_new"
    with pytest.raises(
        RecordError,
        match=rf"in\.jsonl line 2, trajectory '{good[1]['id']}': field 'steps': {what}.* exceeds "
        "the model's limit of 512 positions",
    ):
        label_file(model, tok, "tiny", inp, out, cfg, progress=False)
    assert [r["index"] for r in read_labels(out)] == [0]  # what was done before it is kept
    with pytest.raises(RecordError, match="line 2"):  # a resume stops on it again
        label_file(model, tok, "tiny", inp, out, cfg, resume=True, progress=False)
    label_file(model, tok, "tiny", inp, out, cfg, resume=True, skip_invalid=True, progress=False)
    assert [r["index"] for r in read_labels(out)] == [0, 2]
    assert [r["index"] for r in read_labels(out, skipped=True)] == [0, 1, 2]
    # an input error stops the run before anything is labeled, and leaves no output behind
    inp2 = _jsonl(tmp_path / "in2.jsonl", [good[0], {**good[1], "gold_answer": None}])
    with pytest.raises(RecordError, match=r"in2\.jsonl line 2, trajectory .*: field 'gold_ans"):
        label_file(model, tok, "tiny", inp2, tmp_path / "o2.jsonl", cfg, progress=False)
    assert not (tmp_path / "o2.jsonl").exists()


def test_a_non_finite_score_is_a_record_error_and_never_written(
    lm, tmp_path, write_input, monkeypatch
):
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 4)
    second = json.loads(inp.read_text().splitlines()[1])["id"]
    real = cpmi_module.cpmi_step_scores  # what `label_trajectory` scores with

    def scores(model, tok, question, steps, *args, **kw):
        out = real(model, tok, question, steps, *args, **kw)
        if steps == second_steps:
            out[1] = replace(out[1], cpmi=float("nan"))
        return out

    second_steps = json.loads(inp.read_text().splitlines()[1])["steps"]
    monkeypatch.setattr(cpmi_module, "cpmi_step_scores", scores)
    out = tmp_path / "out.jsonl"
    with pytest.raises(
        RecordError,
        match=rf"line 2, trajectory '{second}': field 'steps\[1\]\.cpmi': non-finite score",
    ):
        label_file(model, tok, "tiny", inp, out, CPMI, progress=False)
    label_file(model, tok, "tiny", inp, out, CPMI, resume=True, skip_invalid=True, progress=False)
    assert [r["index"] for r in read_labels(out)] == [0, 2, 3]
    assert read_labels(out, skipped=True)[1]["skipped"]["field"] == "steps[1].cpmi"
    assert b"NaN" not in out.read_bytes() and b"Infinity" not in out.read_bytes()
    with pytest.raises(ValueError):
        dumps_record({"x": float("inf")})


def test_configs_refuse_values_that_would_give_non_finite_labels():
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="neg_weight must be finite"):
            CPMIConfig(neg_weight=bad)
        with pytest.raises(ValueError, match="temperature must be finite and > 0"):
            MCConfig(temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        MCConfig(temperature=0)
    with pytest.raises(ValueError, match="n_negatives must be >= 1"):
        LabelConfig(n_negatives=0)
    with pytest.raises(ValueError, match="unknown negative source 'bogus'"):
        LabelConfig(negative_sources=("trajectory", "bogus"))


# ---------------------------------------------------------------------------------- merge


@pytest.fixture()
def shards(lm, tmp_path, write_input):
    """Shards 0/2 and 1/2 of a 7-trajectory input, 0/3 of it, and 1/2 of another input."""
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 7)
    other = write_input(tmp_path / "other.jsonl", 7, seed=5)
    made = {}
    for name, path, shard in (
        ("0/2", inp, (0, 2)),
        ("1/2", inp, (1, 2)),
        ("0/3", inp, (0, 3)),
        ("other 1/2", other, (1, 2)),
    ):
        made[name] = tmp_path / f"{name.replace('/', 'of').replace(' ', '-')}.jsonl"
        label_file(model, tok, "tiny", path, made[name], CPMI, shard=shard, progress=False)
    return made


def test_merge_refuses_anything_but_all_shards_of_one_run(shards, tmp_path):
    s0, s1 = shards["0/2"], shards["1/2"]
    out = tmp_path / "merged.jsonl"

    def refused(paths, match):
        with pytest.raises(LabelFileError, match=match):
            merge_label_files(paths, out)
        assert not out.exists()

    refused([s0], r"missing shard\(s\) 1/2 of in\.jsonl \(1 of 2 given\)")
    refused([s0, shards["0/3"]], r"0of3\.jsonl is shard 0/3 but .*0of2\.jsonl is shard 0/2")
    refused([s0, s0], r"are both shard 0/2: their trajectories would be in two shards")
    refused([s0, shards["other 1/2"]], r"other-1of2\.jsonl was labeled from other\.jsonl .*inputs")
    lines = s1.read_bytes().splitlines(keepends=True)
    s1.write_bytes(b"".join(lines[:-1]))
    refused([s0, s1], r"1of2\.jsonl: shard 1/2 is incomplete: 1 of its 3 trajectories are miss")
    s1.write_bytes(b"".join(lines[:-1]) + lines[-1][:30])
    refused([s0, s1], r"1of2\.jsonl line 3: torn last line \(the run was interrupted\)")
    s1.write_bytes(lines[0] + b"{}\n" + b"".join(lines[1:]))
    refused([s0, s1], r"1of2\.jsonl line 2: not a label record \(no 'index' field\)")
    s1.write_bytes(lines[0] + lines[0].replace(b'"dtype": "float32"', b'"dtype": "bfloat16"'))
    refused([s0, s1], r"1of2\.jsonl line 2: was labeled with dtype bfloat16, line 1 uses float32")
    s1.write_bytes(b"".join(lines))
    with pytest.raises(LabelFileError, match="also a shard file"):
        merge_label_files([s0, s1], s1)
    assert merge_label_files([s1, s0], out) == 7
    assert [r["index"] for r in read_labels(out)] == list(range(7))
    assert all(r["run"]["shard"] == [0, 1] for r in read_labels(out))
    assert merge_label_files([out], tmp_path / "again.jsonl") == 7  # a merged file is one run
