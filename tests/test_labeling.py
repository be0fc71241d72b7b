"""The labeling command: streamed output, resume after a kill, shards, merge, errors."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpmi_lib.costs import Costs
from cpmi_lib.cpmi import CPMIConfig
from cpmi_lib.labeling import (
    LabelConfig,
    label_file,
    merge_label_files,
    parse_shard,
    read_labels,
    total_costs,
    trajectory_seed,
)
from cpmi_lib.mc import MCConfig
from cpmi_lib.trajectory import RecordError, write_trajectories
from cpmi_lib.world import build_world, corrupt

REPO = Path(__file__).resolve().parents[1]
CPMI = LabelConfig(method="cpmi", cpmi=CPMIConfig(variant="cumulative"), n_negatives=2)
MC = LabelConfig(method="mc", mc=MCConfig(n_rollouts=2, max_new_tokens=24))


@pytest.fixture(scope="module")
def lm(tiny_lm):
    return tiny_lm


@pytest.fixture(scope="module")
def lm_dir(tiny_lm_dir):
    return tiny_lm_dir


@pytest.fixture(scope="module")
def write_input(tiny_world):
    def write(path: Path, n: int, seed: int = 0) -> Path:
        problems = build_world(tiny_world, {"train": n}, seed=seed)["train"]
        rng = random.Random(seed)
        trajs = [
            corrupt(p, rng) or p.gold_trajectory() if i % 2 else p.gold_trajectory()
            for i, p in enumerate(problems)
        ]
        write_trajectories(path, trajs)
        return path

    return write


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
        assert costs.generated_tokens > 0 and costs.generate_calls >= 6
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


def test_kill_9_then_resume_via_the_command_line(lm_dir, lm, tmp_path, write_input):
    model, tok = lm
    inp = write_input(tmp_path / "in.jsonl", 120, seed=1)
    out = tmp_path / "killed.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "cpmi_lib",
        "label",
        "--method",
        "cpmi",
        "--variant",
        "cumulative",
        "--n-negatives",
        "2",
        "--input",
        str(inp),
        "--model",
        str(lm_dir),
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size > 0 and out.read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the labeler finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = out.read_bytes().count(b"\n")
    assert 5 <= n_before < 120
    subprocess.run([*cmd, "--resume"], cwd=REPO, env=env, check=True, capture_output=True)
    resumed = read_labels(out)
    assert [r["index"] for r in resumed] == list(range(120))  # none lost, none duplicated
    reference = tmp_path / "reference.jsonl"
    cfg = LabelConfig(method="cpmi", cpmi=CPMIConfig(variant="cumulative"), n_negatives=2)
    label_file(model, tok, str(lm_dir), inp, reference, cfg, progress=False)
    assert labels_only(resumed) == labels_only(read_labels(reference))
    summary = json.loads(Path(str(out) + ".costs.json").read_text())
    assert Costs.from_dict(summary).items == 120


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
