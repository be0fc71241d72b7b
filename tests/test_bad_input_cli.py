"""`python -m cpmi_lib label` and `merge` on malformed arguments, inputs and output files.

Each case pins the exact behaviour: the one line on stderr (naming the option, or the file, line
and field), the exit code (2: a bad argument, found before the model loads; 1: a bad record or a
refused resume or merge), and what happens to the output (absent, untouched, or exactly which
records were skipped, the others labeled as on a clean input). The commands run in-process.
"""

from __future__ import annotations

import fcntl
import json
import random
from pathlib import Path

import pytest
import torch

from cpmi_lib import cli
from cpmi_lib.cli import label as label_command
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.label_file import LabelConfig, label_file
from cpmi_lib.labeling.label_results import read_labels
from cpmi_lib.labeling.mc import MCConfig

PROG = "python -m cpmi_lib label"
CPMI_OPTIONS = ["--method", "cpmi", "--variant", "cumulative", "--n-negatives", "2"]
CPMI = LabelConfig(method="cpmi", cpmi=CPMIConfig(variant="cumulative"), n_negatives=2)
MC_OPTIONS = ["--method", "mc", "--n-rollouts", "2", "--max-new-tokens", "24"]
MC = LabelConfig(method="mc", mc=MCConfig(n_rollouts=2, max_new_tokens=24))
LONG_STEP = "Ava has 3 + 0 = 3 apples. " * 60  # about 540 tokens: past the tiny LM's 512


@pytest.fixture(scope="module")
def trajs(tiny_world) -> list[dict]:
    problems = build_world(tiny_world, {"train": 6}, seed=3)["train"]
    rng = random.Random(3)
    return [
        (corrupt(p, rng) or p.gold_trajectory() if i % 2 else p.gold_trajectory()).to_dict()
        for i, p in enumerate(problems)
    ]


def _jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.fixture()
def inp(tmp_path, trajs) -> Path:
    return _jsonl(tmp_path / "in.jsonl", trajs)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m cpmi_lib ARGV``, in-process."""
    try:
        cli.main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if the command loads a model."""

    def load(*a, **kw):
        raise AssertionError("the model was loaded before the argument error was found")

    monkeypatch.setattr(label_command, "load_model", load)


def label_args(inp: Path, out: Path, *extra, model="tiny") -> list:
    return ["label", *CPMI_OPTIONS, "--input", inp, "--model", model, "--out", out, *extra]


NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--templates", "99"], "--templates must be between 1 and 4, got 99"),
        (["--templates", "0"], "--templates must be between 1 and 4, got 0"),
        (["--templates", "-1"], "--templates must be between 1 and 4, got -1"),
        (["--templates", "two"], "argument --templates: invalid int value: 'two'"),
        (["--chat", "--templates", "4"], "--templates must be between 1 and 3, got 4"),
        (["--shard", "2/2"], "--shard: shard '2/2': need 0 <= i < n"),
        (["--shard=-1/2"], "--shard: shard '-1/2': need 0 <= i < n"),
        (["--shard", "1-2"], "--shard: shard must look like 'i/n', got '1-2'"),
        (
            ["--negative-sources", "trajectory,bogus"],
            "--negative-sources: unknown source 'bogus' (known: trajectory, perturb, lm)",
        ),
        (
            ["--negative-sources", ""],
            "--negative-sources: unknown source '' (known: trajectory, perturb, lm)",
        ),
        (
            ["--negative-sources", "perturb,perturb"],
            "--negative-sources: a source is given twice in 'perturb,perturb'",
        ),
        (["--n-negatives", "0"], "--n-negatives must be >= 1, got 0"),
        (["--n-rollouts", "0"], "--n-rollouts must be >= 1, got 0"),
        (["--max-new-tokens", "-5"], "--max-new-tokens must be >= 1, got -5"),
        (["--neg-weight", "nan"], "--neg-weight must be a finite number, got nan"),
        (["--neg-weight=-inf"], "--neg-weight must be a finite number, got -inf"),
        (["--temperature", "inf"], "--temperature must be a finite number, got inf"),
        (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
        (["--dtype", "float33"], "--dtype: unknown dtype 'float33' (e.g. float32, bfloat16, auto)"),
        (["--device", "gpu:0"], "--device: unknown device 'gpu:0' (e.g. cpu, cuda, cuda:1)"),
        pytest.param(
            ["--device", "cuda"],
            "--device cuda: CUDA is not available on this machine",
            marks=pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA"),
        ),
        (
            ["--method", "pcmi"],
            "argument --method: invalid choice: 'pcmi' (choose from 'cpmi', 'mc')",
        ),
        (
            ["--method", "mc", "--exclude-own-answer"],
            "exclude_own_answer selects CPMI's negatives: method must be 'cpmi'",
        ),
    ],
)
def test_bad_options_are_one_line_exit_2_before_the_model_loads(
    inp, tmp_path, capsys, no_model, extra, message
):
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(label_args(inp, out, *extra), capsys)
    assert (code, stdout, err) == (2, "", f"{PROG}: error: {message}\n")
    assert not out.exists()


def test_bad_paths_are_one_line_exit_2_and_touch_nothing(inp, tmp_path, capsys, no_model):
    def refused(args, message):
        code, stdout, err = run(args, capsys)
        assert (code, stdout, err) == (2, "", f"{PROG}: error: {message}\n")

    before = inp.read_bytes()
    refused(
        label_args(inp, tmp_path),
        f"--out {tmp_path} is a directory; give a file path (e.g. {tmp_path}/labels.jsonl)",
    )
    for extra in ([], ["--resume"]):
        refused(
            label_args(inp, inp, *extra),
            f"--out {inp} is the --input file; write the labels to a new file",
        )
    link = tmp_path / "link.jsonl"
    link.symlink_to(inp)
    refused(
        label_args(inp, link, "--resume"),
        f"--out {link} is the --input file; write the labels to a new file",
    )
    assert inp.read_bytes() == before
    missing = tmp_path / "nope.jsonl"
    refused(label_args(missing, tmp_path / "o.jsonl"), f"--input {missing}: no such file")
    refused(label_args(tmp_path, tmp_path / "o.jsonl"), f"--input {tmp_path}: not a file")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused(
        label_args(inp, a_file / "sub" / "o.jsonl"),
        f"--out {a_file}/sub/o.jsonl: {a_file} is not a directory",
    )
    existing = tmp_path / "existing.jsonl"
    existing.write_text("anything\n")
    refused(
        label_args(inp, existing),
        f"--out {existing} exists: pass --resume to complete it, or choose a new --out",
    )
    assert existing.read_text() == "anything\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "existing.jsonl",
        "file",
        "in.jsonl",
        "link.jsonl",
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "line 1: not a label record (no 'index' field)"),  # the input's own lines
        ("{}\n", "line 1: not a label record (no 'index' field)"),
        ("null\n", "line 1: not a label record (a JSON null, not an object)"),
        ("[]\n", "line 1: not a label record (a JSON array, not an object)"),
        ('{"index": 0}\n', "line 1: not a label record (no 'id' field)"),
        (
            "not json",
            "line 1: not a label record (its last line has no newline and does not "
            "start like a label record)",
        ),
    ],
)
def test_resume_of_a_file_that_is_not_a_label_file_is_refused_untouched(
    inp, tmp_path, capsys, no_model, content, message
):
    out = tmp_path / "out.jsonl"
    out.write_bytes(inp.read_bytes()[:-1] if content is None else content.encode())
    before = out.read_bytes()
    code, stdout, err = run(label_args(inp, out, "--resume"), capsys)
    assert (code, stdout, err) == (2, "", f"{PROG}: error: {out} {message}\n")
    assert out.read_bytes() == before


@pytest.fixture(scope="module")
def model_name(tiny_lm_dir) -> str:
    return str(tiny_lm_dir)


def test_resume_of_another_run_is_refused_untouched(
    tiny_lm, model_name, inp, tmp_path, capsys, trajs
):
    """Shard, input content and duplicates are found before the model loads; dtype after."""
    model, tok = tiny_lm
    out = tmp_path / "out.jsonl"
    label_file(model, tok, model_name, inp, out, CPMI, shard=(0, 2), progress=False)
    lines = out.read_bytes().splitlines(keepends=True)

    def refused(content: bytes, extra, message, given_input=inp):
        out.write_bytes(content)
        code, stdout, err = run(
            label_args(given_input, out, "--resume", *extra, model=model_name), capsys
        )
        assert code == 2 and stdout == ""
        assert err.splitlines()[-1] == f"{PROG}: error: {out} {message}"
        assert "Traceback" not in err
        assert out.read_bytes() == content

    torn = b"".join(lines[:2]) + lines[2][:25]
    refused(
        torn,
        ["--shard", "1/2"],
        "line 1: was labeled as shard 0/2, this run is shard 1/2; "
        "resume with the same options or write a new file",
    )
    refused(
        torn,
        ["--shard", "0/2", "--seed", "3"],
        "line 1: was labeled with another config "
        "(config.seed 0, this run uses 3); resume with the same options or write a new file",
    )
    refused(
        lines[0] + lines[1] + lines[0],
        ["--shard", "0/2"],
        "lines 1 and 3: index 0 is there "
        "twice; this file is not one clean run: label into a new file",
    )
    other_id = lines[1].replace(b'"index": 2', b'"index": 4')
    refused(
        lines[0] + other_id,
        ["--shard", "0/2"],
        "line 2: index 4 is "
        f"{trajs[2]['id']!r} here but {trajs[4]['id']!r} in {inp}; label into a new file",
    )
    bf16 = lines[1].replace(b'"dtype": "float32"', b'"dtype": "bfloat16"')
    refused(
        lines[0] + bf16,
        ["--shard", "0/2"],
        "line 2: was labeled with dtype bfloat16, this "
        "run uses float32; resume with the same options or write a new file",
    )
    edited = tmp_path / "edited.jsonl"
    _jsonl(edited, [{**trajs[0], "question": "Now: " + trajs[0]["question"]}, *trajs[1:]])
    edited.rename(inp)
    message = "the input was edited since this file was started: label it into a new file"
    out.write_bytes(torn)
    code, _, err = run(label_args(inp, out, "--resume", "--shard", "0/2", model=model_name), capsys)
    assert (
        code == 2
        and err.endswith(f"; {message}\n")
        and "line 1: was labeled from in.jsonl with sha256" in err
    )
    assert out.read_bytes() == torn


def test_a_second_writer_is_refused(tiny_lm, model_name, inp, tmp_path, capsys):
    model, tok = tiny_lm
    out = tmp_path / "out.jsonl"
    label_file(model, tok, model_name, inp, out, CPMI, shard=(0, 2), progress=False)
    before = out.read_bytes()
    with out.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # as a labeler still running would
        code, stdout, err = run(
            label_args(inp, out, "--resume", "--shard", "0/2", model=model_name), capsys
        )
    assert code == 2 and stdout == ""
    assert err.splitlines()[-1] == (
        f"{PROG}: error: {out} is being written by another process (it holds the file's lock); "
        "wait for it to finish or write to another file"
    )
    assert out.read_bytes() == before


def test_a_missing_gold_answer_stops_before_the_model_loads(inp, tmp_path, capsys, no_model, trajs):
    _jsonl(inp, [trajs[0], trajs[1], {**trajs[2], "gold_answer": None}])
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(label_args(inp, out), capsys)
    assert (code, stdout) == (1, "")
    assert err == (
        f"{PROG}: error: {inp} line 3, trajectory {trajs[2]['id']!r}: field "
        "'gold_answer': missing: CPMI needs the gold answer\n"
    )
    assert not out.exists()


@pytest.mark.parametrize("method", ["cpmi", "mc"])
def test_a_record_too_long_stops_the_run_naming_its_line_then_skip_invalid_skips_it(
    tiny_lm, model_name, inp, tmp_path, capsys, trajs, method
):
    options, cfg = (CPMI_OPTIONS, CPMI) if method == "cpmi" else (MC_OPTIONS, MC)
    long = {**trajs[1], "steps": [LONG_STEP], "step_labels": None, "first_error": None}
    _jsonl(inp, [trajs[0], long, trajs[2]])
    out = tmp_path / "out.jsonl"
    args = ["label", *options, "--input", inp, "--model", model_name, "--out", out]
    code, stdout, err = run(args, capsys)
    assert (code, stdout) == (1, "")
    what = "context" if method == "cpmi" else "prefix of step 1"
    last = err.splitlines()[-1]
    assert last.startswith(
        f"{PROG}: error: {inp} line 2, trajectory {trajs[1]['id']!r}: field 'steps': {what} ("
    )
    assert last.endswith("exceeds the model's limit of 512 positions") and "Traceback" not in err
    assert [r["index"] for r in read_labels(out)] == [0]
    code, stdout, err = run([*args, "--resume", "--skip-invalid"], capsys)
    assert code == 0 and "skipped 1 invalid record(s)" in stdout
    assert f"skipped: {inp} line 2 (index 1, id {trajs[1]['id']!r}): field 'steps': {what}" in err
    assert [r["index"] for r in read_labels(out, skipped=True)] == [0, 1, 2]
    assert [r["index"] for r in read_labels(out)] == [0, 2]
    model, tok = tiny_lm  # the other records are labeled as on a clean input
    clean = _jsonl(tmp_path / "clean.jsonl", [trajs[0], trajs[2]])
    label_file(model, tok, model_name, clean, tmp_path / "ref.jsonl", cfg, progress=False)
    strip = ("index", "run", "costs")
    assert [{k: v for k, v in r.items() if k not in strip} for r in read_labels(out)] == [
        {k: v for k, v in r.items() if k not in strip} for r in read_labels(tmp_path / "ref.jsonl")
    ]


def test_skip_invalid_skips_every_kind_of_bad_record_and_reports_each(
    tiny_lm, model_name, inp, tmp_path, capsys, trajs
):
    records = [
        trajs[0],
        {**trajs[1], "gold_answer": None},  # line 2
        "{broken",  # line 3
        "",  # blank: not a record
        {**trajs[2], "steps": ["fine", "  "]},  # line 5
        trajs[3],
        [1, 2],  # line 7
        {**trajs[4], "gold_answer": float("nan")},  # line 8: NaN literal
        trajs[3],  # line 9: duplicate id
        trajs[5],
    ]
    inp.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(label_args(inp, out, "--skip-invalid", model=model_name), capsys)
    assert code == 0
    assert stdout.startswith("labeled 3 trajectories (") and "skipped 6 invalid record(s)" in stdout
    skipped = [line for line in err.splitlines() if line.startswith("skipped: ")]
    assert [s.split(": field ")[0] for s in skipped] == [
        f"skipped: {inp} line 2 (index 1, id {trajs[1]['id']!r})",
        f"skipped: {inp} line 3 (index 2, id None)",
        f"skipped: {inp} line 5 (index 3, id {trajs[2]['id']!r})",
        f"skipped: {inp} line 7 (index 5, id None)",
        f"skipped: {inp} line 8 (index 6, id {trajs[4]['id']!r})",
        f"skipped: {inp} line 9 (index 7, id {trajs[3]['id']!r})",
    ]
    assert skipped[5].endswith(f"field 'id': duplicate id {trajs[3]['id']!r} (first at line 6)")
    every = read_labels(out, skipped=True)
    assert [r["index"] for r in every] == list(range(9))
    assert [r["index"] for r in read_labels(out)] == [0, 4, 8]
    model, tok = tiny_lm
    clean = _jsonl(tmp_path / "clean.jsonl", [trajs[0], trajs[3], trajs[5]])
    label_file(model, tok, model_name, clean, tmp_path / "ref.jsonl", CPMI, progress=False)
    strip = ("index", "run", "costs")
    assert [{k: v for k, v in r.items() if k not in strip} for r in read_labels(out)] == [
        {k: v for k, v in r.items() if k not in strip} for r in read_labels(tmp_path / "ref.jsonl")
    ]
    assert b"NaN" not in out.read_bytes()


def test_resume_of_a_missing_file_starts_it(tiny_lm, model_name, inp, tmp_path, capsys):
    out = tmp_path / "new" / "out.jsonl"  # missing parents are made
    code, stdout, _ = run(label_args(inp, out, "--resume", model=model_name), capsys)
    assert code == 0 and stdout.startswith("labeled 6 trajectories (")
    assert [r["index"] for r in read_labels(out)] == list(range(6))


# ------------------------------------------------------------------------------------- merge

MERGE = "python -m cpmi_lib merge"


@pytest.fixture()
def shard_files(tiny_lm, model_name, inp, tmp_path) -> dict[str, Path]:
    model, tok = tiny_lm
    made = {}
    for i, n in ((0, 2), (1, 2), (1, 4)):
        made[f"{i}/{n}"] = tmp_path / f"s{i}of{n}.jsonl"
        label_file(
            model, tok, model_name, inp, made[f"{i}/{n}"], CPMI, shard=(i, n), progress=False
        )
    return made


def test_merge_errors(shard_files, tmp_path, capsys, inp):
    s0, s1 = shard_files["0/2"], shard_files["1/2"]
    out = tmp_path / "merged.jsonl"

    def refused(args, code, message):
        got, stdout, err = run(["merge", "--out", *args], capsys)
        assert (got, stdout, err) == (code, "", f"{MERGE}: error: {message}\n")
        assert not out.exists()

    refused([out], 2, "the following arguments are required: shards")
    refused([out, s0, s0], 2, f"shard file {s0} is given twice")
    refused([s1, s0, s1], 2, f"--out {s1} is the shard file {s1}; write the merged file anew")
    refused(
        [out, s0, tmp_path / "gone.jsonl"], 2, f"shard file {tmp_path / 'gone.jsonl'}: no such file"
    )
    refused(
        [tmp_path, s0, s1],
        2,
        f"--out {tmp_path} is a directory; give a file path (e.g. {tmp_path}/labels.jsonl)",
    )
    refused([out, s0], 1, "missing shard(s) 1/2 of in.jsonl (1 of 2 given)")
    refused(
        [out, s0, shard_files["1/4"]],
        1,
        f"{shard_files['1/4']} is shard 1/4 but {s0} is "
        "shard 0/2: shards of different splits do not merge",
    )
    lines = s1.read_bytes().splitlines(keepends=True)
    s1.write_bytes(lines[0] + lines[1][:33])
    refused(
        [out, s0, s1],
        1,
        f"{s1} line 2: torn last line (the run was interrupted); finish "
        "this shard with --resume before merging",
    )
    s1.write_bytes(lines[0] + b"null\n" + b"".join(lines[1:]))
    refused([out, s0, s1], 1, f"{s1} line 2: not a label record (a JSON null, not an object)")
    s1.write_bytes(b"".join(lines))
    code, stdout, _ = run(["merge", "--out", out, s1, s0], capsys)
    assert code == 0 and stdout.startswith(f"merged 6 labeled trajectories into {out}")
    assert [r["index"] for r in read_labels(out)] == list(range(6))
