"""The arithmetic world on disk: problem splits, gold trajectories and the benchmark, as JSONL.

Layout of a world directory (every file readable by `datasets.load_dataset("json", ...)`):
``problems-{split}.jsonl`` (problems with their gold chains), ``gold-{split}.jsonl`` (gold
solutions as trajectories), ``benchmark-{split}.jsonl`` (ProcessBench-style items with exact
`first_error`, subsets in `metadata.subset`), ``processbench/{split}-{subset}.jsonl`` (the same
items in the `Qwen/ProcessBench` schema) and ``world.json`` (the config, sizes and seed behind it).
`export_hub_schemas` adds ``hub/``: the world as local copies of the hub data sets the paper track
reads (GSM8K and ProcessBench), so that track's code runs offline.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.records import RecordError, read_jsonl
from cpmi_lib.core.trajectory import Trajectory, read_trajectories, write_trajectories
from cpmi_lib.data.world import Problem, WorldConfig, build_world
from cpmi_lib.data.world_benchmark import make_benchmark, subsets_by_length, to_processbench_rows


@dataclass(frozen=True)
class WorldSpec:
    """What a world directory holds: difficulty, split sizes, benchmark size and the seed."""

    world: WorldConfig = field(default_factory=WorldConfig)
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 2000, "dev": 600, "test": 1000})
    benchmark_splits: tuple[str, ...] = ("dev", "test")
    benchmark_per_subset: int = 100
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def write_problems(path: str | os.PathLike[str], problems: list[Problem]) -> None:
    write_atomically(path, "".join(json.dumps(p.to_dict()) + "\n" for p in problems))


def read_problems(path: str | os.PathLike[str]) -> list[Problem]:
    """The world problems of a ``problems-*.jsonl`` file; a malformed line raises `RecordError`
    naming the file, the line and the field."""
    problems = []
    for record in read_jsonl(path):
        row = record.value()
        try:
            problems.append(Problem.from_dict(row))
        except KeyError as exc:
            raise RecordError(record.where, str(exc.args[0]), "missing") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise RecordError(record.where, "<record>", f"not a world problem ({exc})") from None
    return problems


def build_world_files(spec: WorldSpec, out_dir: str | os.PathLike[str]) -> Path:
    """Generate the world of `spec` into `out_dir` (skipped when it is already complete there)."""
    out = Path(out_dir)
    marker = out / "world.json"
    if marker.exists() and json.loads(marker.read_text()).get("key") == spec.key():
        return out
    splits = build_world(spec.world, spec.sizes, seed=spec.seed)
    subsets = subsets_by_length(spec.world)
    for split, problems in splits.items():
        write_problems(out / f"problems-{split}.jsonl", problems)
        write_trajectories(out / f"gold-{split}.jsonl", [p.gold_trajectory() for p in problems])
        if split in spec.benchmark_splits:
            bench = make_benchmark(problems, spec.benchmark_per_subset, subsets, seed=spec.seed)
            write_trajectories(
                out / f"benchmark-{split}.jsonl", [t for items in bench.values() for t in items]
            )
            for subset, items in bench.items():
                rows = to_processbench_rows(items)
                path = out / "processbench" / f"{split}-{subset}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    marker.write_text(
        json.dumps({"key": spec.key(), "spec": spec.to_dict(), "subsets": subsets}, indent=2)
    )
    return out


def load_benchmark(world_dir: str | os.PathLike[str], split: str) -> dict[str, list[Trajectory]]:
    """The benchmark items of a split, grouped by subset."""
    out: dict[str, list[Trajectory]] = {}
    for t in read_trajectories(Path(world_dir) / f"benchmark-{split}.jsonl"):
        out.setdefault(t.metadata["subset"], []).append(t)
    return out


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomically(path, "".join(json.dumps(r) + "\n" for r in rows))


def dataset_card(splits: list[str]) -> str:
    """A dataset card whose YAML maps split names to files, as the hub snapshots' cards do."""
    files = "".join(f"  - split: {s}\n    path: {s}.jsonl\n" for s in splits)
    return f"---\nconfigs:\n- config_name: default\n  data_files:\n{files}---\n"


def export_hub_schemas(world_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the world as local copies of the paper track's hub data sets, once.

    ``hub/gsm8k/{train,test}.jsonl`` hold the gold solutions in the `openai/gsm8k` schema
    (``question``, ``answer`` = steps, one a line, then ``#### <answer>``); train holds the world's
    train and dev problems. ``hub/processbench/`` holds every benchmark item, one file a subset, in
    the `Qwen/ProcessBench` schema with a card naming the subsets as splits.
    """
    world = Path(world_dir)
    out = {"gsm8k": world / "hub" / "gsm8k", "processbench": world / "hub" / "processbench"}
    marker = world / "hub" / "done"
    if marker.exists():
        return out
    sizes = json.loads((world / "world.json").read_text())["spec"]["sizes"]
    for name, splits in (("train", ("train", "dev")), ("test", ("test",))):
        gold = [
            t for s in splits if s in sizes for t in read_trajectories(world / f"gold-{s}.jsonl")
        ]
        rows = [
            {"question": t.question, "answer": "\n".join(t.steps) + f"\n#### {t.gold_answer}"}
            for t in gold
        ]
        _write_jsonl(out["gsm8k"] / f"{name}.jsonl", rows)
    by_subset: dict[str, list[Trajectory]] = {}
    for split in ("dev", "test"):
        if (world / f"benchmark-{split}.jsonl").exists():
            for subset, items in load_benchmark(world, split).items():
                by_subset.setdefault(subset, []).extend(items)
    for subset, items in by_subset.items():
        _write_jsonl(out["processbench"] / f"{subset}.jsonl", to_processbench_rows(items))
    (out["processbench"] / "README.md").write_text(dataset_card(sorted(by_subset)))
    marker.write_text("")
    return out
