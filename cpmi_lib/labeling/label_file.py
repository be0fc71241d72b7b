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

- Determinism: every trajectory is labeled with a seed derived from the run's seed and the
  trajectory's id, so nothing depends on what ran before it or on sharding. CPMI labels each
  trajectory on its own; MC rolls out a *block* of ``mc.batch_trajectories`` consecutive records
  in one engine call (`cpmi_lib.labeling.mc`), whose padding can move a logit's last bits, so
  blocks are fixed by input index, a shard takes whole blocks, and a resume recomputes a block
  that was cut short whole (writing only its missing records).
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
- Shards: ``shard=(i, n)`` labels the blocks whose number (index // block) is i mod n: the
  records whose index is i mod n for CPMI (none: an empty, complete shard file); `merge_label_files`
  (in `label_results`) joins the n shards of one run back into input order, refusing torn or
  foreign lines (file and line named), a shard being written, a missing, incomplete or doubled
  shard, and shards of another run or input (see `cpmi_lib.labeling.runs`).

This module labels; `label_input` reads and checks the input and an output being resumed,
`runs` holds the run identity, the lock and the line checks, and `label_results` reads a label
file back and merges shards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cpmi_lib.core.costs import Costs
from cpmi_lib.core.trajectory import RecordError
from cpmi_lib.labeling.label_input import InputItem, check_existing, plan_run
from cpmi_lib.labeling.label_records import (
    LabelConfig,
    label_block,
    label_trajectory,
    trajectory_seed,
)
from cpmi_lib.labeling.label_results import describe_skip
from cpmi_lib.labeling.runs import RunIdentity, dumps_record, locked_output, shard_block
from cpmi_lib.lm.identity import ModelIdentity, ModelIdentityError, loaded_identity
from cpmi_lib.lm.identity import model_identity as file_identity
from cpmi_lib.lm.load import count_parameters

log = logging.getLogger(__name__)

#: `LabelConfig`, `label_trajectory` and `trajectory_seed` live in `label_records`; they are
#: imported from here too, where labeling a file starts.
__all__ = ["LabelConfig", "check_resumable", "label_file", "label_trajectory", "trajectory_seed"]

Method = Literal["cpmi", "mc"]


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


def _blocks(
    mine: list[InputItem], block: int, done: dict[int, dict[str, Any]]
) -> list[list[InputItem]]:
    """This shard's items in blocks of `block` consecutive input indices, keeping only blocks
    with something left to do (whole: a block's members share one engine call)."""
    groups: dict[int, list[InputItem]] = {}
    for it in mine:
        groups.setdefault(it.index // block, []).append(it)
    return [g for g in groups.values() if any(it.index not in done for it in g)]


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
        with tqdm(
            total=len(todo), desc=f"{cfg.method} labels", unit="traj", disable=not progress
        ) as bar:
            for block in _blocks(mine, shard_block(cfg.to_dict()), done):
                if stop_when is not None and stop_when(total):
                    break
                outcomes = label_block(model, tokenizer, block, cfg, n_params)
                for it in block:
                    if it.index in done:  # recomputed only so that the block is what it was
                        continue
                    outcome = outcomes[it.index]
                    if isinstance(outcome, RecordError):
                        if not skip_invalid:
                            raise outcome
                        line = _skip_line(it, outcome, identity)
                        skips.append({"index": it.index, "id": it.id, **line["skipped"]})
                    else:
                        record, costs = outcome
                        line = {
                            "index": it.index,
                            **record,
                            **identity.stamp(),
                            "costs": costs.to_dict(),
                        }
                        total = total + costs
                    try:
                        f.write(dumps_record(line))
                        f.flush()
                    except OSError as exc:  # disk full, a file-size limit: name the file; resumable
                        raise OSError(exc.errno, exc.strerror, str(out)) from None
                    bar.update(1)
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
