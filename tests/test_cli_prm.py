"""The generic `train-prm` and `evaluate` commands on ProcessBench-schema files of a tiny world."""

from __future__ import annotations

import json
import random

from cpmi_lib.cli import main
from cpmi_lib.core.trajectory import write_trajectories
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_data import WorldSpec, build_world_files
from cpmi_lib.data.world_errors import corrupt


def test_train_prm_then_evaluate(tiny_world, tiny_lm_dir, tmp_path, capsys):
    problems = build_world(tiny_world, {"train": 60, "dev": 20}, seed=4)
    rng = random.Random(0)
    for split, items in problems.items():
        trajs = [
            p.gold_trajectory() if i % 2 else corrupt(p, rng) or p.gold_trajectory()
            for i, p in enumerate(items)
        ]
        write_trajectories(tmp_path / f"{split}.jsonl", trajs)
    main(
        [
            "train-prm",
            "--trajectories",
            str(tmp_path / "train.jsonl"),
            "--dev-trajectories",
            str(tmp_path / "dev.jsonl"),
            "--target",
            "truth",
            "--backbone",
            str(tiny_lm_dir),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "prm"),
        ]
    )
    assert (tmp_path / "prm" / "prm.json").exists()
    world = build_world_files(
        WorldSpec(
            world=tiny_world,
            sizes={"train": 10, "dev": 60, "test": 60},
            benchmark_per_subset=6,
            seed=2,
        ),
        tmp_path / "world",
    )
    pb = world / "processbench"
    main(
        [
            "evaluate",
            "--prm",
            str(tmp_path / "prm"),
            "--dev",
            str(pb / "dev-short.jsonl"),
            str(pb / "dev-long.jsonl"),
            "--test",
            str(pb / "test-short.jsonl"),
            str(pb / "test-long.jsonl"),
            "--out",
            str(tmp_path / "f1.json"),
        ]
    )
    result = json.loads((tmp_path / "f1.json").read_text())
    assert set(result["test"]["subsets"]) == {"test-short", "test-long"}
    assert 0 < result["threshold_from_dev"] < 1
    assert result["config"]["target"] == "truth" and result["costs"]["wall_seconds"] > 0
    assert "chosen on dev" in capsys.readouterr().out
