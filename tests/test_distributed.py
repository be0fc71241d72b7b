"""Scaling out: `label`, `sample` and `train-prm` under torchrun, two processes on CPU (gloo).

Each launched run is compared with a single process's output: the label fields of the merged
file (costs differ), the sampled trajectories byte for byte, the PRM's ProcessBench-style F1.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_labeling import labels_only

from cpmi_lib.cli import main
from cpmi_lib.core.launch import launch_env
from cpmi_lib.core.trajectory import write_trajectories
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_data import WorldSpec, build_world_files
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.label_file import label_file
from cpmi_lib.labeling.label_records import LabelConfig
from cpmi_lib.labeling.label_results import read_labels
from cpmi_lib.labeling.mc import MCConfig

REPO = Path(__file__).resolve().parents[1]
CPMI_OPTIONS = ("--method", "cpmi", "--variant", "cumulative", "--n-negatives", "2")
CPMI = LabelConfig(method="cpmi", cpmi=CPMIConfig(variant="cumulative"), n_negatives=2)
MC_OPTIONS = (
    *("--method", "mc", "--n-rollouts", "2", "--max-new-tokens", "16"),
    *("--batch-trajectories", "2"),  # rank 0 takes blocks 0 and 2, rank 1 blocks 1 and 3
)
MC = LabelConfig(method="mc", mc=MCConfig(n_rollouts=2, max_new_tokens=16, batch_trajectories=2))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2, port: int | None = None) -> list[str]:
    return [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)),
        *("--master_port", str(port or free_port()), "-m", "cpmi_lib", *args),
    ]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cpmi_run(tiny_lm, tiny_lm_dir, write_input, tmp_path_factory):
    """A CPMI input and its single-process labels (label fields only)."""
    d = tmp_path_factory.mktemp("cpmi")
    inp = write_input(d / "in.jsonl", 7, seed=3)
    ref = d / "single.jsonl"
    label_file(*tiny_lm, str(tiny_lm_dir), inp, ref, CPMI, progress=False)
    return inp, labels_only(read_labels(ref))


def label_cmd(lm_dir, inp: Path, out: Path, *options: str) -> tuple[str, ...]:
    return ("label", "--input", str(inp), "--model", str(lm_dir), "--out", str(out), *options)


def test_launch_env_reads_the_launcher_variables():
    assert not launch_env({}).distributed
    launch = launch_env(
        {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    )
    assert launch.shard == (3, 8) and launch.local_rank == 1 and launch.distributed
    with pytest.raises(ValueError, match="RANK=8"):
        launch_env({"RANK": "8", "WORLD_SIZE": "8"})


def test_label_cpmi_and_mc_under_torchrun_equal_a_single_run(
    tiny_lm, tiny_lm_dir, cpmi_run, write_input, tmp_path
):
    """Each rank writes OUT.shard-r-of-2 (shard r/2, MC in whole blocks), rank 0 merges into
    OUT: the labels of one process; an explicit --shard under the launcher is refused."""
    inp, reference = cpmi_run
    out = tmp_path / "cpmi.jsonl"
    done = run(torchrun(*label_cmd(tiny_lm_dir, inp, out, *CPMI_OPTIONS)))
    assert done.returncode == 0, done.stderr
    assert labels_only(read_labels(out)) == reference
    assert json.loads(Path(f"{out}.costs.json").read_text())["items"] == 7
    for r in range(2):
        shard = read_labels(tmp_path / f"cpmi.jsonl.shard-{r}-of-2")
        assert [x["index"] for x in shard] == list(range(r, 7, 2))
        assert {tuple(x["run"]["shard"]) for x in shard} == {(r, 2)}

    mc_in = write_input(tmp_path / "mc-in.jsonl", 7, seed=4)
    mc_ref = tmp_path / "mc-single.jsonl"
    label_file(*tiny_lm, str(tiny_lm_dir), mc_in, mc_ref, MC, progress=False)
    mc_out = tmp_path / "mc.jsonl"
    done = run(torchrun(*label_cmd(tiny_lm_dir, mc_in, mc_out, *MC_OPTIONS)))
    assert done.returncode == 0, done.stderr
    assert labels_only(read_labels(mc_out)) == labels_only(read_labels(mc_ref))
    shard0 = read_labels(tmp_path / "mc.jsonl.shard-0-of-2")
    assert [x["index"] for x in shard0] == [0, 1, 4, 5]

    refused = run(
        torchrun(
            *label_cmd(tiny_lm_dir, inp, tmp_path / "x.jsonl", *CPMI_OPTIONS, "--shard", "0/2")
        )
    )
    assert refused.returncode != 0 and "--shard 0/2: under a launcher" in refused.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_label_under_accelerate_launch_equals_a_single_run(tiny_lm_dir, cpmi_run, tmp_path):
    """`accelerate launch` starts the same workers (two CPU processes here): the same labels."""
    inp, reference = cpmi_run
    out = tmp_path / "cpmi.jsonl"
    launcher = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu")
    options = ("--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no")
    port = ("--dynamo_backend", "no", "--main_process_port", str(free_port()))
    cmd = [*launcher, *options, *port, "-m", "cpmi_lib", *label_cmd(tiny_lm_dir, inp, out)]
    done = run([*cmd, *CPMI_OPTIONS])
    assert done.returncode == 0, done.stderr
    assert labels_only(read_labels(out)) == reference
    assert (tmp_path / "cpmi.jsonl.shard-1-of-2").is_file()


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker of `rank` that the launcher process `launcher` started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_killed_rank_fails_the_job_and_resume_completes_it(
    tiny_lm, tiny_lm_dir, write_input, tmp_path
):
    """Rank 1 killed partway: the job exits non-zero, nothing is merged; a rank that fails (rank
    1 without --resume) fails the job with its error on one line, rank 0 stopping after its
    shard; --resume (twice: once more after the
    merge) then gives a single run's labels."""
    inp = write_input(tmp_path / "in.jsonl", 16, seed=5)
    ref = tmp_path / "single.jsonl"
    label_file(*tiny_lm, str(tiny_lm_dir), inp, ref, CPMI, progress=False)
    out = tmp_path / "out.jsonl"
    shard1 = tmp_path / "out.jsonl.shard-1-of-2"
    cmd = torchrun(*label_cmd(tiny_lm_dir, inp, out, *CPMI_OPTIONS))
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and _lines(shard1) < 3:
        time.sleep(0.01)
    pid = _rank_pid(proc.pid, 1)
    assert proc.poll() is None and pid is not None, "the job ended before the kill"
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not out.exists(), "nothing is merged after a failed rank"
    assert 3 <= _lines(shard1) < 8

    # a rank that fails: rank 1's shard exists and --resume is missing; rank 0 labels, then stops
    (tmp_path / "out.jsonl.shard-0-of-2").unlink()
    failed = run(torchrun(*label_cmd(tiny_lm_dir, inp, out, *CPMI_OPTIONS)))
    assert failed.returncode != 0 and not out.exists()
    assert "out.jsonl.shard-1-of-2 exists: pass --resume" in failed.stderr
    assert "rank(s) 1 failed" in failed.stderr
    assert len(read_labels(tmp_path / "out.jsonl.shard-0-of-2")) == 8

    for _ in range(2):  # the second resume re-merges a complete run into its own merged file
        done = run([*cmd, "--resume"])
        assert done.returncode == 0, done.stderr
        assert labels_only(read_labels(out)) == labels_only(read_labels(ref))


def test_sample_under_torchrun_equals_a_single_run(tiny_world, tiny_lm_dir, tmp_path):
    """Rank r generates the batches b with b % 2 == r (8 prompts a batch at --n 4), rank 0
    writes them: byte for byte the file of one process."""
    world = build_world_files(
        WorldSpec(
            world=tiny_world,
            sizes={"train": 20, "dev": 60, "test": 60},
            benchmark_per_subset=6,
            seed=2,
        ),
        tmp_path / "world",
    )
    args = [
        "sample",
        "--model",
        str(tiny_lm_dir),
        "--problems",
        str(world / "problems-train.jsonl"),
    ]
    args += ["--samples-per-problem", "4", "--max-new-tokens", "48", "--seed", "3"]
    main([*args, "--out", str(tmp_path / "single.jsonl")])
    done = run(torchrun(*args, "--out", str(tmp_path / "two.jsonl")))
    assert done.returncode == 0, done.stderr
    single = (tmp_path / "single.jsonl").read_bytes()
    assert single.count(b"\n") > 40  # three batches (8, 8, 4 problems), most samples kept
    assert (tmp_path / "two.jsonl").read_bytes() == single


def test_two_nodes_on_one_machine_equal_a_single_run(tiny_lm_dir, cpmi_run, tmp_path):
    """Two launcher invocations, one process each, static rendezvous (--nnodes 2 --node_rank)."""
    inp, reference = cpmi_run
    out = tmp_path / "two-nodes.jsonl"
    port = str(free_port())
    nodes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"),
                *("--node_rank", str(rank), "--nproc_per_node", "1"),
                *("--master_addr", "127.0.0.1", "--master_port", port),
                *("-m", "cpmi_lib", *label_cmd(tiny_lm_dir, inp, out, *CPMI_OPTIONS)),
            ],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    errors = [p.communicate(timeout=300)[1] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], errors
    assert labels_only(read_labels(out)) == reference


def _prm_data(tiny_world, d: Path) -> tuple[list[str], list[str]]:
    problems = build_world(tiny_world, {"train": 60, "dev": 20}, seed=4)
    rng = random.Random(0)
    for split, items in problems.items():
        trajs = [
            p.gold_trajectory() if i % 2 else corrupt(p, rng) or p.gold_trajectory()
            for i, p in enumerate(items)
        ]
        write_trajectories(d / f"{split}.jsonl", trajs)
    world = build_world_files(
        WorldSpec(
            world=tiny_world, sizes={"train": 10, "dev": 60, "test": 60}, benchmark_per_subset=6,
            seed=2,
        ),
        d / "world",
    )  # fmt: skip
    pb = world / "processbench"
    return [str(pb / "dev-short.jsonl"), str(pb / "dev-long.jsonl")], [
        str(pb / "test-short.jsonl"),
        str(pb / "test-long.jsonl"),
    ]


#: Largest ProcessBench-style F1 gap allowed between the one- and two-process PRM. DDP sees the
#: same effective batch but other batch members (each rank shuffles its half of the data), so
#: the two models are two seeds of one recipe; on 12 test trajectories a single changed verdict
#: moves F1 by up to ~0.1, so the bound is loose: it catches a broken model (F1 near 0, a
#: doubled batch with half the steps), not small differences.
F1_TOLERANCE = 0.25


def test_train_prm_under_torchrun_saves_one_model_close_to_a_single_run(
    tiny_world, tiny_lm_dir, tmp_path, capsys
):
    dev, test = _prm_data(tiny_world, tmp_path)
    args = ["train-prm", "--trajectories", str(tmp_path / "train.jsonl")]
    args += ["--dev-trajectories", str(tmp_path / "dev.jsonl"), "--target", "truth"]
    args += ["--backbone", str(tiny_lm_dir), "--epochs", "1", "--batch-size", "8"]
    main([*args, "--out", str(tmp_path / "prm1")])
    refused = run(torchrun(*args[:-1], "7", "--out", str(tmp_path / "bad")))
    assert refused.returncode != 0 and "--batch-size 7: must be a multiple" in refused.stderr
    done = run(torchrun(*args, "--out", str(tmp_path / "prm2")))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("PRM saved to") == 1  # rank 0 alone reports (and saves)
    record = json.loads((tmp_path / "prm2" / "prm.json").read_text())
    assert record["config"]["batch_size"] == 4  # 8 trajectories a step: 4 on each rank
    single = json.loads((tmp_path / "prm1" / "prm.json").read_text())
    assert record["result"]["global_steps"] == single["result"]["global_steps"]  # same batch
    assert not (tmp_path / "prm2" / "checkpoints").exists()
    f1 = {}
    for name in ("prm1", "prm2"):
        out = tmp_path / f"{name}.json"
        main(["evaluate", "--prm", str(tmp_path / name), "--dev", *dev, "--test", *test]
             + ["--out", str(out)])  # fmt: skip
        f1[name] = json.loads(out.read_text())["test"]["headline_f1"]
    print(f"F1 one process {f1['prm1']:.3f}, two processes {f1['prm2']:.3f}")
    assert f1["prm1"] > 0 and f1["prm2"] > 0
    assert abs(f1["prm1"] - f1["prm2"]) <= F1_TOLERANCE, f1
