"""`label` and `merge` write only files they made, keep one model per file, label or refuse any
text alone, merge every split, read records (not lines) in every format, and report what the OS
refuses in one line (issue 22's audit, one test per class of defect).

Each case pins the exit code, the one line on stderr and what happens to every file involved.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_bad_input_cli import CPMI_OPTIONS, MC_OPTIONS, PROG, _jsonl, run

from cpmi_lib.data.world import build_world
from cpmi_lib.labeling.label_results import read_labels
from cpmi_lib.lm.load import load_lm

MERGE = "python -m cpmi_lib merge"
STRIP = ("index", "run", "costs")


@pytest.fixture(scope="module")
def trajs(tiny_world) -> list[dict]:
    return [
        p.gold_trajectory().to_dict() for p in build_world(tiny_world, {"train": 5}, 4)["train"]
    ]


@pytest.fixture()
def inp(tmp_path, trajs) -> Path:
    return _jsonl(tmp_path / "policy.jsonl", trajs)


@pytest.fixture()
def model_dir(tiny_lm_dir, tmp_path) -> Path:
    """A private copy of the tiny LM (tests re-train it in place)."""
    return Path(shutil.copytree(tiny_lm_dir, tmp_path / "lm"))


def label(inp, out, model, *extra, options=CPMI_OPTIONS) -> list:
    return ["label", *options, "--input", inp, "--model", model, "--out", out, *extra]


def labels_only(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in STRIP} for r in read_labels(path)]


def retrain(model_dir: Path) -> None:
    """Other weights behind the same path: the directory re-trained (here: perturbed) in place."""
    model, tok = load_lm(model_dir)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(model_dir)


# ------------------------------------------------------------------- a command writes only its own


def test_merge_never_overwrites_the_trajectories_it_came_from(inp, model_dir, tmp_path, capsys):
    s0, s1 = tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"
    for i, s in enumerate((s0, s1)):
        assert run(label(inp, s, model_dir, "--shard", f"{i}/2"), capsys)[0] == 0
    before = inp.read_bytes()
    code, stdout, err = run(["merge", "--out", inp, s0, s1], capsys)
    assert (code, stdout) == (2, "")
    assert err == (
        f"{MERGE}: error: {inp} exists and is not a label file ({inp} line 1: not a label "
        "record (no 'index' field)); merge into a new file\n"
    )
    assert inp.read_bytes() == before and not Path(f"{inp}.costs.json").exists()
    # a label file of this same run may be merged over (a merge repeated); another run's may not
    out = tmp_path / "merged.jsonl"
    assert run(["merge", "--out", out, s0, s1], capsys)[0] == 0
    assert run(["merge", "--out", out, s1, s0], capsys)[0] == 0
    other = tmp_path / "other.jsonl"
    assert run(label(inp, other, model_dir, "--seed", "5"), capsys)[0] == 0
    before = other.read_bytes()
    code, _, err = run(["merge", "--out", other, s0, s1], capsys)
    assert code == 2 and err.startswith(f"{MERGE}: error: {other} exists and holds the labels of")
    assert "another config (config.seed 5, this merge uses 0)" in err
    assert other.read_bytes() == before


def test_merge_refuses_an_output_a_running_label_holds(inp, model_dir, tmp_path, capsys):
    s0, s1, out = (tmp_path / f"{n}.jsonl" for n in ("s0", "s1", "out"))
    for i, s in enumerate((s0, s1)):
        run(label(inp, s, model_dir, "--shard", f"{i}/2"), capsys)
    out.write_bytes(s0.read_bytes()[:100])  # a label run, still writing
    with out.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        code, stdout, err = run(["merge", "--out", out, s0, s1], capsys)
    assert (code, stdout) == (2, "")
    assert err == (
        f"{MERGE}: error: {out} is being written by another process (it holds the file's lock); "
        "wait for it to finish or write to another file\n"
    )
    assert out.read_bytes() == s0.read_bytes()[:100]


def test_sidecar_names_never_touch_an_input(inp, model_dir, tmp_path, capsys, trajs):
    # label --input X.costs.json --out X would write its cost summary over its input
    costs_named = _jsonl(tmp_path / "x.jsonl.costs.json", trajs)
    before = costs_named.read_bytes()
    out = tmp_path / "x.jsonl"
    code, stdout, err = run(label(costs_named, out, model_dir), capsys)
    assert (code, stdout) == (2, "")
    assert err == (
        f"{PROG}: error: {out}: its cost summary {costs_named} is the input file; choose another "
        "output name\n"
    )
    assert costs_named.read_bytes() == before and not out.exists()
    # a shard named OUT.tmp is a shard like any other (merge's temporary has a fresh name)...
    merged = tmp_path / "m.jsonl"
    s0, s1 = tmp_path / "m.jsonl.tmp", tmp_path / "s1.jsonl"
    run(label(inp, s0, model_dir, "--shard", "0/2"), capsys)
    run(label(inp, s1, model_dir, "--shard", "1/2"), capsys)
    shard0 = s0.read_bytes()
    assert run(["merge", "--out", merged, s0, s1], capsys)[0] == 0
    assert s0.read_bytes() == shard0 and len(read_labels(merged)) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".merging")]
    # ...but one named OUT.costs.json would be overwritten by the summary: refused
    s1.rename(tmp_path / "n.jsonl.costs.json")
    s1 = tmp_path / "n.jsonl.costs.json"
    code, _, err = run(["merge", "--out", tmp_path / "n.jsonl", s0, s1], capsys)
    assert code == 2 and err.endswith(
        f"{tmp_path / 'n.jsonl'}: its cost summary {s1} is also a shard file; choose another "
        "output name\n"
    )
    assert not (tmp_path / "n.jsonl").exists()


def test_a_cost_summary_path_holding_something_else_is_refused(inp, model_dir, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    notes = Path(f"{out}.costs.json")
    notes.write_text("my notes\n")
    code, stdout, err = run(label(inp, out, model_dir), capsys)
    assert (code, stdout) == (2, "")
    assert err == (
        f"{PROG}: error: {notes} exists and is not a cost summary (this command writes the costs "
        f"of {out} there); move it or choose another output name\n"
    )
    assert notes.read_text() == "my notes\n" and not out.exists()
    notes.unlink()  # a summary written by label itself is rewritten on resume
    assert run(label(inp, out, model_dir), capsys)[0] == 0
    assert run(label(inp, out, model_dir, "--resume"), capsys)[0] == 0


# -------------------------------------------------------------------- one label file, one model


def test_resume_under_other_weights_behind_the_same_path_is_refused(
    inp, model_dir, tmp_path, capsys
):
    out = tmp_path / "out.jsonl"
    link = tmp_path / "model-link"
    link.symlink_to(model_dir)
    assert run(label(inp, out, link, "--shard", "0/2"), capsys)[0] == 0
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(lines[0])  # interrupted after its first record
    before = out.read_bytes()
    other = Path(shutil.copytree(model_dir, tmp_path / "lm2"))
    retrain(other)
    link.unlink()
    link.symlink_to(other)  # the same --model string, other weights
    code, stdout, err = run(label(inp, out, link, "--shard", "0/2", "--resume"), capsys)
    assert (code, stdout) == (2, "")
    line = err.splitlines()[-1]
    assert line.startswith(f"{PROG}: error: {out} line 1: was labeled with model {link} of content")
    assert "weights sha256:" in line and "another model's weights" in line
    assert out.read_bytes() == before
    # shards of two contents do not merge either
    s1 = tmp_path / "s1.jsonl"
    assert run(label(inp, s1, link, "--shard", "1/2"), capsys)[0] == 0
    link.unlink()
    link.symlink_to(model_dir)
    assert run(label(inp, out, link, "--shard", "0/2", "--resume"), capsys)[0] == 0
    code, _, err = run(["merge", "--out", tmp_path / "m.jsonl", out, s1], capsys)
    assert code == 1 and "another model's weights: different runs do not merge" in err
    # a model re-trained in place is refused the same way
    out.write_bytes(before)
    retrain(model_dir)
    code, _, err = run(label(inp, out, link, "--shard", "0/2", "--resume"), capsys)
    assert code == 2 and "another model's weights" in err


# ------------------------------------------------------------- any text is labeled or refused alone


@pytest.mark.parametrize("options", [CPMI_OPTIONS, MC_OPTIONS], ids=["cpmi", "mc"])
def test_a_lone_surrogate_is_one_records_error(inp, model_dir, tmp_path, capsys, trajs, options):
    broken = json.dumps({**trajs[1], "steps": ["broken \\ud800 surrogate"]})
    broken = broken.replace("\\\\ud800", "\\ud800")  # the JSON escape itself, as LM output has it
    inp.write_text("".join(json.dumps(t) + "\n" for t in trajs[:1]) + broken + "\n")
    with inp.open("a") as f:
        f.write(json.dumps(trajs[2]) + "\n")
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(label(inp, out, model_dir, options=options), capsys)
    assert (code, stdout) == (1, "")
    assert err == (
        f"{PROG}: error: {inp} line 2: field 'steps[0]': not encodable text: a lone surrogate "
        "'\\ud800' at character 8 (half of a character; is the text truncated?)\n"
    )
    assert not out.exists()
    code, stdout, _ = run(label(inp, out, model_dir, "--skip-invalid", options=options), capsys)
    assert code == 0 and "labeled 2 trajectories" in stdout and "skipped 1 invalid" in stdout
    assert [r["index"] for r in read_labels(out)] == [0, 2]
    assert (
        run(label(inp, out, model_dir, "--skip-invalid", "--resume", options=options), capsys)[0]
        == 0
    )


# ----------------------------------------------------------------------- every split merges


def test_more_shards_than_records_write_empty_shards_that_merge(inp, model_dir, tmp_path, capsys):
    whole = tmp_path / "whole.jsonl"
    assert run(label(inp, whole, model_dir), capsys)[0] == 0
    shards = [tmp_path / f"s{i}.jsonl" for i in range(8)]  # 5 records: shards 5-7 are empty
    for i, s in enumerate(shards):
        code, stdout, _ = run(label(inp, s, model_dir, "--shard", f"{i}/8"), capsys)
        assert code == 0
        assert ("selects no record" in stdout) == (i >= 5)
    assert [s.stat().st_size == 0 for s in shards] == [False] * 5 + [True] * 3
    merged = tmp_path / "merged.jsonl"
    code, stdout, _ = run(["merge", "--out", merged, *reversed(shards)], capsys)
    assert code == 0 and stdout.startswith(f"merged 5 labeled trajectories into {merged}")
    assert labels_only(merged) == labels_only(whole)
    # an empty file stands in only for a shard that has nothing to label
    code, _, err = run(["merge", "--out", tmp_path / "m2.jsonl", *shards[:4], *shards[5:]], capsys)
    assert code == 1 and err.endswith(
        "missing shard(s) 4/8 of policy.jsonl (4 of 8 given, and 3 empty file(s), which stand "
        "only for shards with no record)\n"
    )
    extra = tmp_path / "extra.jsonl"
    extra.touch()
    code, _, err = run(["merge", "--out", tmp_path / "m3.jsonl", *shards, extra], capsys)
    assert code == 1 and "4 empty file(s) given but only 3 shard(s)" in err


# --------------------------------------------------------- records, not lines, in every format


def test_skip_invalid_counts_records_in_a_json_array_and_parquet(
    model_dir, tmp_path, capsys, trajs
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [trajs[0], {**trajs[1], "gold_answer": None}, trajs[2]]
    array = tmp_path / "policy.jsonl"  # a pretty-printed array, whatever its name says
    array.write_text(json.dumps(rows, indent=2))
    table = tmp_path / "policy.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table)
    second = 2 + len(json.dumps(rows[0], indent=2).splitlines())  # the line record 1 starts on
    # a Parquet row has no line: its index is its row
    for source, where in ((array, f"line {second} (index 1"), (table, "index 1 (id")):
        out = tmp_path / f"out-{source.suffix[1:]}.jsonl"
        code, stdout, err = run(label(source, out, model_dir, "--skip-invalid"), capsys)
        assert code == 0, err
        assert "labeled 2 trajectories" in stdout and "skipped 1 invalid record(s)" in stdout
        assert f"skipped: {source} {where}" in err and "field 'gold_answer'" in err
        assert [r["index"] for r in read_labels(out, skipped=True)] == [0, 1, 2]
    # a syntax error inside an array hides the records after it: never skipped, always an error
    array.write_text(json.dumps(rows, indent=2)[:-30])
    code, _, err = run(label(array, tmp_path / "o.jsonl", model_dir, "--skip-invalid"), capsys)
    assert code == 1 and "the rest of the array cannot be read" in err


# -------------------------------------------------------------------- OS errors in one line


def _limited_to(size: int):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


def test_a_file_size_limit_is_one_line_and_the_run_resumes(inp, model_dir, tmp_path, capsys):
    whole = tmp_path / "whole.jsonl"
    run(label(inp, whole, model_dir), capsys)
    lines = whole.read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "cpmi_lib", *map(str, label(inp, out, model_dir))]
    limit = len(lines[0]) + len(lines[1]) + 40  # the third line is cut by the OS
    done = subprocess.run(
        args, capture_output=True, text=True, preexec_fn=_limited_to(limit), cwd=Path.cwd()
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == f"{PROG}: error: {out}: File too large"
    data = out.read_bytes()  # two whole lines, then what the OS let through of the third
    assert data.count(b"\n") == 2 and len(data) <= limit
    assert data.split(b"\n")[2].startswith(b'{"index": 2')
    code, _, _ = run(label(inp, out, model_dir, "--resume"), capsys)
    assert code == 0 and labels_only(out) == labels_only(whole)


def test_what_the_os_refuses_and_bad_models_are_one_line(
    inp, model_dir, tmp_path, capsys, monkeypatch
):
    missing = tmp_path / "no-such-model"
    code, stdout, err = run(label(inp, tmp_path / "a.jsonl", missing), capsys)
    assert (code, stdout) == (1, "")
    assert err == (f"{PROG}: error: Cannot identify model {missing}: no such file or directory\n")
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    code, _, err = run(label(inp, tmp_path / "a.jsonl", empty), capsys)
    assert code == 1 and err.startswith(f"{PROG}: error: Cannot identify model {empty}: ")
    assert len(err.splitlines()) == 1 and "no weight files" in err
    # a directory the OS will not write into (as root chmod cannot show it: the refusal is faked
    # where the output is opened, as a read-only file system would refuse it)
    real_open = os.open

    def refuse(path, flags, *a, **kw):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", refuse)
    out = tmp_path / "ro" / "out.jsonl"
    code, stdout, err = run(label(inp, out, model_dir), capsys)
    assert (code, stdout) == (1, "")
    assert err.splitlines()[-1] == f"{PROG}: error: {out}: Read-only file system"
    assert "Traceback" not in err
