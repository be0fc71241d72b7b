"""Training a PRM: the one recipe that the experiment, the CLI's ``train-prm`` and the studies
share (`train_prm`).

Raw per-step scores (a labeler's CPMI or MC value, or the exact step truth) become targets in
[0, 1] through the target transform named by `PRMConfig.target`, fitted on the training scores
only. Training uses `transformers.Trainer` (so multi-GPU, gradient accumulation and mixed
precision work unchanged at paper scale) with binary cross-entropy on the float targets,
evaluation and checkpointing each epoch, early stopping on dev loss and the best checkpoint
restored at the end. The saved directory is what `cpmi_lib.prm.model.load_prm` reads.

Under a launcher (``torchrun``) Trainer trains with DDP by itself: `PRMConfig.batch_size` is then
per rank (the CLI's ``--batch-size`` is the whole batch and is divided), and rank 0 alone writes
the PRM directory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForTokenClassification,
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.prm.config import PRMConfig
from cpmi_lib.prm.encoding import IGNORE_INDEX, PRMCollator, build_prm_features, step_spans
from cpmi_lib.prm.feature_cache import cached_step_features
from cpmi_lib.prm.features import FeatureCollator, StepHead
from cpmi_lib.prm.model import (
    BACKBONE_DIR,
    PRM_FILE,
    ProcessRewardModel,
    load_causal_lm,
    load_prm_tokenizer,
)
from cpmi_lib.prm.targets import TargetTransform, make_target_transform

# -------------------------------------------------------------------------------------- loss


def compute_pos_weight(targets: Sequence[Sequence[float]], threshold: float = 0.5) -> float:
    """n_negative / n_positive of the training targets, hard-thresholded at `threshold`.

    Soft targets are thresholded too (> 0.5 counts as positive) so the weight means the same for
    every labeler: with it, positive and negative steps contribute equally to the loss in total.
    Computed from the training targets only; dev and test never influence it.
    """
    flat = [y for ys in targets for y in ys]
    n_pos = sum(1 for y in flat if y > threshold)
    n_neg = len(flat) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"pos_weight: the training targets have {n_pos} positive and {n_neg} negative steps "
            f"(threshold {threshold}); a class weight needs both. Train without pos_weight."
        )
    return n_neg / n_pos


def prm_bce_loss(
    logits: torch.Tensor, labels: torch.Tensor, pos_weight: float | None = None
) -> torch.Tensor:
    """Mean binary cross-entropy with logits over labeled positions (labels != -100)."""
    logits = logits.squeeze(-1).float()
    mask = labels != IGNORE_INDEX
    if not bool(mask.any()):
        return logits.sum() * 0.0  # keeps the graph (and DDP) intact for a batch with no labels
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits[mask], labels[mask].float(), pos_weight=weight)


class PRMTrainer(Trainer):
    """`Trainer` whose loss is BCE on float step targets at the label positions.

    Each micro-batch's loss is the mean over its labeled steps, so `num_items_in_batch` is not used
    and `loss_is_scaled_for_ga = False` lets `training_step` divide by the accumulation steps. This
    is correct under DataParallel, DDP and gradient accumulation alike (micro-batches weigh the
    same, not their steps).
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, pos_weight: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pos_weight = pos_weight

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        inputs = dict(inputs)
        labels = inputs.pop("labels")  # not given to the model: its own loss is cross-entropy
        outputs = model(**inputs)
        loss = prm_bce_loss(outputs.logits, labels, self.pos_weight)
        return (loss, outputs) if return_outputs else loss


# ---------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """Where the PRM was saved and how its training went."""

    path: Path
    train_seconds: float
    best_eval_loss: float | None
    best_checkpoint_step: int | None
    global_steps: int
    epochs_completed: float
    stopped_early: bool
    n_train: int
    n_dev: int
    n_train_steps: int  # labeled steps trained on (after truncation)
    n_truncated: dict[str, int]
    pos_weight: float | None
    learning_curve: list[dict[str, float]]
    #: The trained PRM in memory (the best checkpoint), to evaluate without reloading.
    model: ProcessRewardModel | None = field(default=None, repr=False, compare=False)


def learning_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Train and eval loss per evaluation point from `trainer.state.log_history`, by step."""
    rows: dict[int, dict[str, float]] = {}
    for entry in log_history:
        if "step" not in entry or ("loss" not in entry and "eval_loss" not in entry):
            continue
        row = rows.setdefault(int(entry["step"]), {"step": int(entry["step"])})
        row["epoch"] = float(entry.get("epoch", math.nan))
        if "loss" in entry:
            row["train_loss"] = float(entry["loss"])
        if "eval_loss" in entry:
            row["eval_loss"] = float(entry["eval_loss"])
    return [rows[s] for s in sorted(rows)]


def load_backbone(
    path: str | os.PathLike[str], tokenizer: PreTrainedTokenizerBase, seed: int
) -> PreTrainedModel:
    """The causal LM checkpoint as a one-output token classifier; the new head is seeded."""
    set_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.id2label, model.config.label2id = {0: "good_step"}, {"good_step": 0}
    return model


def _surprise_rows(
    lm: PreTrainedModel, rows: list[dict[str, list]], cache: str | os.PathLike[str] | None
) -> list[dict[str, Any]]:
    """Token-level PRM rows → per-step feature rows ``{"features": [S, D], "labels": [S]}``."""
    spans = [
        step_spans(
            r["input_ids"],
            [i for i, y in enumerate(r["labels"]) if y != IGNORE_INDEX],
            r["n_prompt_tokens"],
        )
        for r in rows
    ]
    features = cached_step_features(lm, spans, cache_dir=cache)
    return [
        {"features": f, "labels": [y for y in r["labels"] if y != IGNORE_INDEX]}
        for f, r in zip(features, rows, strict=True)
    ]


def train_prm(
    backbone: str | os.PathLike[str],
    train: Sequence[tuple[Trajectory, Sequence[float]]],
    dev: Sequence[tuple[Trajectory, Sequence[float]]],
    out_dir: str | os.PathLike[str],
    cfg: PRMConfig,
    *,
    progress: bool = False,
    feature_cache: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a PRM on (trajectory, raw per-step scores) pairs and save it to `out_dir`.

    The scores become targets through ``make_target_transform(cfg.target, **cfg.target_params)``,
    fitted on the TRAINING scores only and applied to train and dev alike; the fitted transform is
    stored in `prm.json` (and `cfg.target_params` completed with its parameters), so a loaded PRM
    knows what its targets meant. Deterministic for a seed on the same machine. A surprise head
    reads its frozen backbone's features through `feature_cache` when one is given
    (`cached_step_features`: the same features, computed once).
    """
    if not train or not dev:
        raise ValueError(
            f"train_prm needs training and dev data (got {len(train)} train, {len(dev)} dev): "
            "dev loss selects the best checkpoint and drives early stopping"
        )
    transform = make_target_transform(cfg.target, **cfg.target_params)
    transform.fit([s for _, s in train])
    cfg = replace(cfg, target_params=transform.params())
    train = [(t, transform.transform(s)) for t, s in train]
    dev = [(t, transform.transform(s)) for t, s in dev]
    out = Path(out_dir)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        # a hub id stays a string: Path would turn "org/name" into an OS path on Windows
        return _train(str(backbone), train, dev, out, cfg, transform, progress, feature_cache)
    finally:
        torch.set_num_threads(threads)  # the thread count is process-wide: give it back


def _train(
    backbone: str,
    train: Sequence[tuple[Trajectory, Sequence[float]]],
    dev: Sequence[tuple[Trajectory, Sequence[float]]],
    out: Path,
    cfg: PRMConfig,
    transform: TargetTransform,
    progress: bool,
    feature_cache: str | os.PathLike[str] | None,
) -> TrainResult:
    tokenizer = load_prm_tokenizer(backbone)
    enc = (cfg.template, cfg.separator, cfg.max_length)
    train_rows, n_trunc_train = build_prm_features(tokenizer, train, *enc, split="train")
    dev_rows, n_trunc_dev = build_prm_features(tokenizer, dev, *enc, split="dev")
    train_targets = [[y for y in r["labels"] if y != IGNORE_INDEX] for r in train_rows]
    pos_weight = compute_pos_weight(train_targets) if cfg.pos_weight else None
    frozen_lm: PreTrainedModel | None = None
    model: torch.nn.Module
    collator: Any
    if cfg.head == "surprise":
        frozen_lm = load_causal_lm(backbone, tokenizer)
        train_rows = _surprise_rows(frozen_lm, train_rows, feature_cache)
        dev_rows = _surprise_rows(frozen_lm, dev_rows, feature_cache)
        set_seed(cfg.seed)
        model = StepHead(train_rows[0]["features"].shape[1], cfg.head_hidden)
        model.fit_scaler([r["features"] for r in train_rows])
        collator = FeatureCollator(float(IGNORE_INDEX))
    else:
        model = load_backbone(backbone, tokenizer, cfg.seed)
        collator = PRMCollator(tokenizer.pad_token_id)

    strategy = "epoch" if cfg.eval_steps is None else "steps"
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the training steps in 5.x
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy=strategy,
        save_strategy=strategy,
        logging_strategy=strategy,
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps,
        logging_steps=cfg.eval_steps or 500,
        save_total_limit=cfg.save_total_limit,
        save_only_model=cfg.save_only_model,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        prediction_loss_only=True,
        label_names=["labels"],
        remove_unused_columns=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    trainer = PRMTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=train_rows,
        eval_dataset=dev_rows,
        processing_class=tokenizer,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)],
        pos_weight=pos_weight,
    )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # the learning curve is kept in prm.json
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start

    state = trainer.state
    curve = learning_curve(state.log_history)
    result = TrainResult(
        path=out,
        train_seconds=seconds,
        best_eval_loss=state.best_metric,
        best_checkpoint_step=_step_of(state.best_model_checkpoint),
        global_steps=state.global_step,
        epochs_completed=float(state.epoch or 0.0),
        stopped_early=state.global_step < state.max_steps,
        n_train=len(train_rows),
        n_dev=len(dev_rows),
        n_train_steps=sum(len(t) for t in train_targets),
        n_truncated={"train": n_trunc_train, "dev": n_trunc_dev},
        pos_weight=pos_weight,
        learning_curve=curve,
    )
    trainer.save_model(str(out))  # the best checkpoint (restored at the end) + tokenizer
    if frozen_lm is not None and trainer.args.should_save:
        frozen_lm.save_pretrained(out / BACKBONE_DIR)  # the PRM directory is self-contained
    record = {
        "config": cfg.to_dict(),
        "backbone": str(backbone),
        "target_transform": transform.to_dict(),
        "train_seconds": seconds,
        "result": {
            k: getattr(result, k)
            for k in (f.name for f in fields(result))
            if k not in ("path", "learning_curve", "model")
        },
        "learning_curve": curve,
        "log_history": state.log_history,
    }
    # under DDP every rank has restored the best checkpoint before rank 0 may delete it
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:  # under DDP: rank 0 alone writes, as save_model does
        write_atomically(out / PRM_FILE, json.dumps(record, indent=2, default=str))
        if not cfg.keep_checkpoints:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    result.model = ProcessRewardModel(trainer.model, tokenizer, cfg, record, backbone=frozen_lm)
    return result


def _step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    try:
        return int(Path(checkpoint).name.rsplit("-", 1)[-1])
    except ValueError:
        return None
