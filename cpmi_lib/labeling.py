"""Labeling a file of trajectories with CPMI or MC, streamed, resumable and shardable.

Each output line is one labeled trajectory, appended and flushed as soon as it is done, with its
per-step scores (or values), the negatives used, the config and what it cost. A rerun with
``resume=True`` after a kill at any point (a torn last line included) keeps every complete line,
redoes the rest, and gives the same labels as an uninterrupted run: every trajectory is labeled on
its own, with a seed derived from the run's seed and the trajectory's id, so nothing depends on
what ran before it. ``shard=(i, n)`` labels every n-th trajectory; `merge_label_files` joins shards
back into input order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.costs import CostMeter, Costs
from cpmi_lib.cpmi import CPMIConfig, cpmi_step_scores
from cpmi_lib.lm import count_parameters
from cpmi_lib.logprob import SequenceTooLongError
from cpmi_lib.mc import MCConfig, mc_step_values
from cpmi_lib.negatives import negatives_for_trajectory
from cpmi_lib.trajectory import RecordError, Trajectory, iter_trajectories, summarize

Method = Literal["cpmi", "mc"]


@dataclass(frozen=True)
class LabelConfig:
    """What a labeling run does; stored in every output record and checked on resume."""

    method: Method = "cpmi"
    cpmi: CPMIConfig = field(default_factory=CPMIConfig)
    n_negatives: int = 4
    negative_sources: tuple[str, ...] = ("trajectory", "perturb")
    mc: MCConfig = field(default_factory=MCConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("cpmi", "mc"):
            raise ValueError(f"method must be 'cpmi' or 'mc', got {self.method!r}")

    def to_dict(self) -> dict[str, Any]:
        """The config as stored in JSON (tuples become lists, so stored and fresh compare equal)."""
        d = json.loads(json.dumps(asdict(self)))
        # only the part of the config the method uses
        if self.method == "cpmi":
            del d["mc"]
        else:
            for k in ("cpmi", "n_negatives", "negative_sources"):
                del d[k]
        return d


def trajectory_seed(seed: int, trajectory_id: str) -> int:
    """A seed that depends only on the run's seed and the trajectory, not on its position."""
    digest = hashlib.sha256(f"{seed}:{trajectory_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def label_trajectory(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    traj: Trajectory,
    cfg: LabelConfig,
    meter: CostMeter,
) -> dict[str, Any]:
    """The output record of one trajectory (without its index, model name and costs)."""
    where = f"trajectory {traj.id!r}"
    if traj.gold_answer is None:
        raise RecordError(
            where, "gold_answer", f"missing: {cfg.method.upper()} needs the gold answer"
        )
    seed = trajectory_seed(cfg.seed, traj.id)
    record: dict[str, Any] = {"id": traj.id, "method": cfg.method}
    try:
        if cfg.method == "cpmi":
            negatives = negatives_for_trajectory(
                traj,
                cfg.n_negatives,
                sources=cfg.negative_sources,
                model=model,
                tokenizer=tokenizer,
                seed=seed,
                meter=meter,
            )
            scores = cpmi_step_scores(
                model,
                tokenizer,
                traj.question,
                traj.steps,
                traj.gold_answer,
                [n.answer for n in negatives],
                cfg.cpmi,
                meter=meter,
            )
            record["negatives"] = [asdict(n) for n in negatives]
            record["steps"] = [s.to_dict() for s in scores]
        else:
            mc_cfg = MCConfig(**{**asdict(cfg.mc), "seed": seed})
            values = mc_step_values(
                model, tokenizer, traj.question, traj.steps, traj.gold_answer, mc_cfg, meter=meter
            )
            record["steps"] = [v.to_dict() for v in values]
    except SequenceTooLongError as exc:
        raise RecordError(where, "steps", str(exc)) from None
    return record


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like 'i/n', got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return i, n


def _completed(out: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Complete records of an output file, and the byte length of its complete lines.

    A last line that was torn by a kill (no newline, or not valid JSON) is not complete.
    """
    done: dict[str, dict[str, Any]] = {}
    good_bytes = 0
    with out.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                break
            done[record["id"]] = record
            good_bytes += len(raw)
    return done, good_bytes


def _selected(
    path: Path, shard: tuple[int, int], skip_invalid: bool, errors: list[RecordError]
) -> Iterator[tuple[int, Trajectory]]:
    seen: set[str] = set()
    i, n = shard
    for index, traj in enumerate(iter_trajectories(path, skip_invalid=skip_invalid, errors=errors)):
        if traj.id in seen:
            raise RecordError(f"{path} trajectory {index}", "id", f"duplicate id {traj.id!r}")
        seen.add(traj.id)
        if index % n == i:
            yield index, traj


def label_file(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_name: str,
    input_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    cfg: LabelConfig,
    *,
    resume: bool = False,
    shard: tuple[int, int] = (0, 1),
    skip_invalid: bool = False,
    progress: bool = True,
) -> Costs:
    """Label every trajectory of `input_path` (of this shard) into `out_path`; return the costs of
    the whole file (earlier, resumed runs included)."""
    input_path, out = Path(input_path), Path(out_path)
    config = cfg.to_dict()
    done: dict[str, dict[str, Any]] = {}
    if out.exists():
        if not resume:
            raise FileExistsError(f"{out} exists: pass resume=True (--resume) to complete it")
        done, good_bytes = _completed(out)
        with out.open("r+b") as f:
            f.truncate(good_bytes)  # drop a torn last line; it is redone
        for record in done.values():
            if record["config"] != config or record["model"] != model_name:
                raise ValueError(
                    f"{out}: record {record['id']!r} was labeled with another config or model; "
                    "resume with the same options or write to a new file"
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    errors: list[RecordError] = []
    todo = [
        (i, t) for i, t in _selected(input_path, shard, skip_invalid, errors) if t.id not in done
    ]
    total = Costs()
    for record in done.values():
        total = total + Costs.from_dict(record["costs"])
    n_params = count_parameters(model)
    device = next(model.parameters()).device
    bar = tqdm(todo, desc=f"{cfg.method} labels", unit="traj", disable=not progress)
    with out.open("a", encoding="utf-8") as f:
        for index, traj in bar:
            meter = CostMeter(n_params, device)
            with meter:
                record = label_trajectory(model, tokenizer, traj, cfg, meter)
                meter.add_items(1, traj.n_steps)
            record = {
                "index": index,
                **record,
                "model": model_name,
                "config": config,
                "costs": meter.costs.to_dict(),
            }
            f.write(json.dumps(record) + "\n")
            f.flush()
            total = total + meter.costs
            bar.set_postfix(steps_per_s=f"{total.steps / max(total.wall_seconds, 1e-9):.1f}")
    if errors:
        tqdm.write(f"skipped {len(errors)} invalid record(s): {summarize(errors)}")
    return total


def read_labels(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def merge_label_files(
    shard_paths: list[str | os.PathLike[str]], out_path: str | os.PathLike[str]
) -> int:
    """Join shard outputs into one file in input order; refuse duplicates and mixed configs."""
    records: dict[int, dict[str, Any]] = {}
    configs = set()
    for p in shard_paths:
        for r in read_labels(p):
            if r["index"] in records:
                raise ValueError(
                    f"{p}: trajectory {r['id']!r} (index {r['index']}) is in two shards"
                )
            records[r["index"]] = r
            configs.add(json.dumps([r["config"], r["model"]], sort_keys=True))
    if len(configs) > 1:
        raise ValueError("shards were labeled with different configs or models; refusing to merge")
    out = Path(out_path)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for index in sorted(records):
            f.write(json.dumps(records[index]) + "\n")
    tmp.replace(out)
    return len(records)


def total_costs(records: list[dict[str, Any]]) -> Costs:
    total = Costs()
    for r in records:
        total = total + Costs.from_dict(r["costs"])
    return total
