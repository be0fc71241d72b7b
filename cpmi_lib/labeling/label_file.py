"""Labeling a file of trajectories with CPMI or MC, streamed, resumable and shardable.

Each output line is one JSON object, appended and flushed as soon as its trajectory is done:

- a labeled trajectory: ``{"index", "id", "method", ("negatives",) "steps", "model", "config",
  "run", "costs"}`` with its per-step scores (or values), the negatives used and what it cost;
- a skipped one (only with ``skip_invalid``): ``{"index", "id", "skipped": {"line", "field",
  "problem"}, "model", "config", "run"}``. `read_labels` leaves these out unless asked
  (``skipped=True``); they make coverage provable and keep indices fixed.

``index`` is the record's ordinal in the input (0-based, blank lines not counted, invalid records
counted), so it never shifts when a record is skipped. ``run`` is the run's identity (with
``model`` and ``config``): ``dtype`` and ``device`` of the model, ``shard`` ``[i, n]``, and the
input's file name, sha256 of its bytes and number of records. Every line carries it, so no part
of a file can lose it. Guarantees:

- Determinism: every trajectory is labeled on its own, with a seed derived from the run's seed
  and the trajectory's id, so nothing depends on what ran before it or on sharding.
- Resume (``resume=True``): after a kill at any point (a torn last line included) a rerun keeps
  every complete line, redoes the rest, and gives the same labels as an uninterrupted run. It is
  refused, file untouched, unless every complete line is a label record of this very run (same
  model name and content, config, dtype, device, shard and input bytes; the message names the
  line and the field that differs; an edited input must go to a new file), no index or id is
  there twice, and a torn
  last line starts like a record; only then is a torn last line cut off. ``resume=True`` on a
  missing file starts it. Without ``resume`` an existing output is refused.
- Lock: the output is held under an exclusive, non-blocking ``flock`` while it is written; a
  second writer is refused at once. The kernel drops the lock when a process dies, so a killed
  run can be resumed straight away.
- Validation: an invalid input record (`cpmi_lib.core.trajectory`'s checks, a duplicate id, a
  missing gold answer; read by `label_input`) and a record that fails while labeling (too long
  for the model's positions: for CPMI a context plus answer, for MC every prefix plus
  ``max_new_tokens``, checked before generating; a non-finite score) is a `RecordError` naming
  the input file, line and field. Without ``skip_invalid`` the run stops on it (input errors
  before anything is labeled); with it the record alone is skipped, written as a skipped line,
  counted and reported. A resumed run treats skipped lines as done (they fail again the same way).
- No NaN: configs refuse non-finite weights and temperatures, a non-finite score is a
  `RecordError`, and lines are written with ``allow_nan=False``.
- Outputs: only files this run made, or its own label file on resume (`outputs`).
- Shards: ``shard=(i, n)`` labels the records whose index is i mod n (none: an empty, complete
  shard file); `merge_label_files`
  (in `label_results`) joins the n shards of one run back into input order, refusing torn or
  foreign lines (file and line named), a shard being written, a missing, incomplete or doubled
  shard, and shards of another run or input (see `cpmi_lib.labeling.runs`).

This module labels; `label_input` reads and checks the input and an output being resumed,
`runs` holds the run identity, the lock and the line checks, and `label_results` reads a label
file back and merges shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.core.costs import CostMeter, Costs
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.labeling.cpmi import CPMIConfig, cpmi_trajectory
from cpmi_lib.labeling.label_input import InputItem, check_existing, plan_run
from cpmi_lib.labeling.label_results import describe_skip
from cpmi_lib.labeling.mc import MCConfig, mc_step_values
from cpmi_lib.labeling.negatives import NEGATIVE_SOURCES
from cpmi_lib.labeling.runs import RunIdentity, dumps_record, locked_output
from cpmi_lib.lm.identity import ModelIdentity, ModelIdentityError, loaded_identity
from cpmi_lib.lm.identity import model_identity as file_identity
from cpmi_lib.lm.load import count_parameters
from cpmi_lib.lm.logprob import SequenceTooLongError

log = logging.getLogger(__name__)

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
    #: CPMI's negatives never include the trajectory's own final answer (the ``cpmi_noself``
    #: ablation, `cpmi_lib.labeling.negatives`). Stored in the run's identity only when on, so
    #: the label files written before it existed keep theirs.
    exclude_own_answer: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("cpmi", "mc"):
            raise ValueError(f"method must be 'cpmi' or 'mc', got {self.method!r}")
        if isinstance(self.n_negatives, bool) or not isinstance(self.n_negatives, int):
            raise ValueError(f"n_negatives must be an integer, got {self.n_negatives!r}")
        if self.n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {self.n_negatives}")
        if isinstance(self.negative_sources, str) or not self.negative_sources:
            raise ValueError("negative_sources must be a non-empty sequence of source names")
        object.__setattr__(self, "negative_sources", tuple(self.negative_sources))
        unknown = [s for s in self.negative_sources if s not in NEGATIVE_SOURCES]
        if unknown:
            raise ValueError(
                f"unknown negative source {unknown[0]!r}; known: {', '.join(NEGATIVE_SOURCES)}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.exclude_own_answer, bool):
            got = self.exclude_own_answer
            raise ValueError(f"exclude_own_answer must be a boolean, got {got!r}")
        if self.exclude_own_answer and self.method != "cpmi":
            raise ValueError("exclude_own_answer selects CPMI's negatives: method must be 'cpmi'")

    def to_dict(self) -> dict[str, Any]:
        """The config as stored in JSON (tuples become lists, so stored and fresh compare equal)."""
        d = json.loads(json.dumps(asdict(self)))
        if not self.exclude_own_answer:  # off: the identity of files written before the option
            del d["exclude_own_answer"]
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


def _first_nonfinite(value: Any, where: str) -> str | None:
    """The path (e.g. ``steps[2].cpmi``) of the first NaN or infinity inside `value`."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items: Any = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((p for k, v in items if (p := _first_nonfinite(v, k)) is not None), None)


def label_trajectory(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    traj: Trajectory,
    cfg: LabelConfig,
    meter: CostMeter,
    *,
    where: str | None = None,
) -> dict[str, Any]:
    """The output record of one trajectory (without its index, identity and costs).

    Raises RecordError naming `where` (default: the trajectory's id) and the field for a missing
    gold answer, a sequence longer than the model's positions and a non-finite score.
    """
    where = where or f"trajectory {traj.id!r}"
    if traj.gold_answer is None:
        raise RecordError(
            where, "gold_answer", f"missing: {cfg.method.upper()} needs the gold answer"
        )
    seed = trajectory_seed(cfg.seed, traj.id)
    record: dict[str, Any] = {"id": traj.id, "method": cfg.method}
    try:
        if cfg.method == "cpmi":
            negatives, scores = cpmi_trajectory(
                model,
                tokenizer,
                traj,
                cfg.cpmi,
                cfg.n_negatives,
                sources=cfg.negative_sources,
                seed=seed,
                meter=meter,
                exclude_own_answer=cfg.exclude_own_answer,
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
    except FloatingPointError as exc:
        raise RecordError(where, "steps", f"non-finite score: {exc}") from None
    bad = _first_nonfinite(record, "")
    if bad is not None:
        raise RecordError(where, bad, "non-finite score from the model; check its dtype")
    return record


def check_resumable(
    input_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    cfg: LabelConfig,
    model_name: str,
    *,
    shard: tuple[int, int] = (0, 1),
    skip_invalid: bool = False,
    model_identity: ModelIdentity | None = None,
    model_content: bool = True,
) -> None:
    """What `label_file` checks before it labels, short of the model's dtype and device: usable
    before loading the model (with its `model_identity` from its files; with `model_content`
    False, all but that). Raises RecordError or LabelFileError; never touches the output."""
    input_path, out = Path(input_path), Path(out_path)
    items, identity = plan_run(
        input_path,
        out,
        cfg.method,
        cfg.to_dict(),
        model_name,
        shard,
        skip_invalid,
        model_identity=None if model_identity is None else model_identity.to_dict(),
    )
    if out.is_file():
        check_existing(
            out, out.read_bytes(), identity, items, input_path, model_content=model_content
        )


def _skip_line(it: InputItem, exc: RecordError, identity: RunIdentity) -> dict[str, Any]:
    return {
        "index": it.index,
        "id": it.id,
        "skipped": {"line": it.line, "field": exc.field, "problem": exc.problem},
        **identity.stamp(),
    }


def _identity_of(
    model_name: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> ModelIdentity:
    """The content identity of the files `model_name` names, or of the loaded model when the
    name is no model path or cached hub id (a caller's own label for a model in memory)."""
    try:
        return file_identity(model_name)
    except ModelIdentityError:
        return loaded_identity(model, tokenizer)


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
    skipped: list[dict[str, Any]] | None = None,
    stop_when: Callable[[Costs], bool] | None = None,
    model_identity: ModelIdentity | None = None,
) -> Costs:
    """Label every trajectory of `input_path` (of this shard) into `out_path`; return the costs of
    the whole file (earlier, resumed runs included). See the module docstring for what is checked.

    `stop_when`, when given, is asked before each trajectory with the costs of the file so far
    (resumed lines included); once it says True the run stops there, in input order, leaving the
    rest unlabeled (a later run resumes it). `cpmi_lib.studies.budget` labels until the measured
    seconds reach a budget this way.

    `skipped`, when given, receives every skipped record of the file (this run's and earlier ones)
    as ``{"index", "id", "line", "field", "problem"}``.

    `model_identity` is the content of the model's files (`cpmi_lib.lm.identity.model_identity`,
    as the command line and the experiments pass it); without it, that of `model_name`'s files
    when it names a model, else that of the loaded weights and tokenizer (`loaded_identity`).
    Every line carries it, and a resume under another is refused.
    """
    input_path, out = Path(input_path), Path(out_path)
    param = next(model.parameters())
    if model_identity is None:
        model_identity = _identity_of(model_name, model, tokenizer)
    mine, identity = plan_run(
        input_path,
        out,
        cfg.method,
        cfg.to_dict(),
        model_name,
        shard,
        skip_invalid,
        dtype=str(param.dtype).removeprefix("torch."),
        device=str(param.device),
        model_identity=model_identity.to_dict(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    total = Costs()
    skips: list[dict[str, Any]] = []
    with locked_output(out, resume=resume) as (f, _created):
        done: dict[int, dict[str, Any]] = {}
        data = f.read()
        if data:
            done, good_bytes = check_existing(out, data, identity, mine, input_path)
            f.truncate(good_bytes)  # a torn last line; it is redone
        f.seek(0, os.SEEK_END)
        for record in done.values():
            if "skipped" in record:
                skips.append({"index": record["index"], "id": record["id"], **record["skipped"]})
            else:
                total = total + Costs.from_dict(record["costs"])
        todo = [it for it in mine if it.index not in done]
        n_params = count_parameters(model)
        bar = tqdm(todo, desc=f"{cfg.method} labels", unit="traj", disable=not progress)
        for it in bar:
            if stop_when is not None and stop_when(total):
                break
            line: dict[str, Any]
            if it.error is not None:  # only here with skip_invalid
                line = _skip_line(it, it.error, identity)
            else:
                meter = CostMeter(n_params, param.device)
                traj = it.traj
                assert traj is not None
                try:
                    with meter:
                        record = label_trajectory(
                            model, tokenizer, traj, cfg, meter, where=it.where
                        )
                        meter.add_items(1, traj.n_steps)
                except RecordError as exc:
                    if not skip_invalid:
                        raise
                    line = _skip_line(it, exc, identity)
                else:
                    line = {
                        "index": it.index,
                        **record,
                        **identity.stamp(),
                        "costs": meter.costs.to_dict(),
                    }
                    total = total + meter.costs
            try:
                f.write(dumps_record(line))
                f.flush()
            except OSError as exc:  # disk full, a file-size limit: name the file; resumable
                raise OSError(exc.errno, exc.strerror, str(out)) from None
            if "skipped" in line:
                skips.append({"index": it.index, "id": it.id, **line["skipped"]})
            bar.set_postfix(steps_per_s=f"{total.steps / max(total.wall_seconds, 1e-9):.1f}")
    if skips:
        skips.sort(key=lambda s: s["index"])
        log.warning(
            "%s: %d record(s) skipped (skip_invalid): %s",
            input_path,
            len(skips),
            "; ".join(describe_skip(s) for s in skips[:5]) + ("; …" if len(skips) > 5 else ""),
        )
    if skipped is not None:
        skipped.extend(skips)
    return total
