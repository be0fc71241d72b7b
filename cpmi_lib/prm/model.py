"""Process reward models: a causal LM backbone and a head that scores every step.

Two heads (`PRMConfig.head`). ``value``: the backbone loaded as
``AutoModelForTokenClassification(num_labels=1)`` (transformers gives Llama, GPT-2, Qwen2 and the
default world LM a token classification class, so the LM body is reused and only the one-output
`score` head is new), read at the last token of (step + separator) and fine-tuned whole.
``surprise``: the backbone frozen, a small MLP over per-step token surprise and hidden state
(`cpmi_lib.prm.features`). Inputs, label positions and batches: `cpmi_lib.prm.encoding`.

Training uses `transformers.Trainer` (so multi-GPU, gradient accumulation and mixed precision work
unchanged at paper scale) with binary cross-entropy on float targets in [0, 1] (soft or hard, see
`cpmi_lib.prm.targets`), evaluation and checkpointing each epoch, early stopping on dev loss and
the best checkpoint restored at the end. The saved directory holds the model, its tokenizer and
`prm.json` (config, fitted target transform, learning curve, timings); `load_prm` restores it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file as load_safetensors
from transformers import (
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from cpmi_lib.core.text_format import DEFAULT_TEMPLATE, STEP_SEPARATOR, render_prompt
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.prm.encoding import (  # noqa: F401  (re-exported: the PRM's input format)
    IGNORE_INDEX,
    EncodedTrajectory,
    PRMCollator,
    build_prm_features,
    check_targets,
    encode_for_prm,
    step_spans,
)
from cpmi_lib.prm.features import (
    SURPRISE_FEATURES,
    FeatureCollator,
    StepHead,
    step_features,
)
from cpmi_lib.prm.targets import TARGET_TRANSFORMS, TargetTransform

log = logging.getLogger(__name__)

PRM_FILE = "prm.json"
HEADS = ("value", "surprise")
BACKBONE_DIR = "backbone"  # the surprise head's frozen LM, saved beside the head


# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class PRMConfig:
    """Everything that determines a trained PRM; stored in `prm.json` next to the weights."""

    epochs: float = 3.0
    lr: float = 2e-5
    batch_size: int = 8  # per device
    eval_batch_size: int | None = None  # None: batch_size
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    max_length: int = 1024
    template: str = DEFAULT_TEMPLATE
    separator: str = STEP_SEPARATOR
    #: Weight positive steps by n_negative / n_positive of the (hard-thresholded) training targets.
    pos_weight: bool = False
    patience: int = 2  # evaluations without dev-loss improvement before stopping
    eval_steps: int | None = None  # None: evaluate (and save) once per epoch
    save_total_limit: int = 2
    #: Checkpoints without optimizer state: smaller, but training cannot resume from them, and
    #: DeepSpeed/FSDP refuse it together with load_best_model_at_end.
    save_only_model: bool = False
    keep_checkpoints: bool = False  # keep out_dir/checkpoints after the final model is saved
    bf16: bool = False
    seed: int = 0
    threads: int | None = None  # torch CPU threads while training; None leaves the setting
    target: str = "truth"  # the target transform's name, for the record
    target_params: dict[str, Any] = field(default_factory=dict)
    #: "value": a scalar head at each step's last token, fine-tuned with the whole backbone (the
    #: paper's recipe). "surprise": a small MLP over the frozen backbone's per-step token surprise
    #: and last hidden state (`cpmi_lib.prm.features`), which learns where "value" does not.
    head: str = "value"
    head_hidden: int = 64  # the surprise head's MLP width (0: logistic regression)

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError(f"PRMConfig: epochs, lr and batch_size must be positive: {self}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"PRMConfig: warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.patience < 1:
            raise ValueError(f"PRMConfig: patience must be >= 1, got {self.patience}")
        if self.max_length < 2:
            raise ValueError(f"PRMConfig: max_length must be >= 2, got {self.max_length}")
        render_prompt("x", self.template)  # raises if the template has no {question}
        if self.head not in HEADS:
            raise ValueError(f"PRMConfig.head must be one of {HEADS}, got {self.head!r}")
        if self.head_hidden < 0:
            raise ValueError(f"PRMConfig.head_hidden must be >= 0, got {self.head_hidden}")
        if self.target not in TARGET_TRANSFORMS:
            raise ValueError(
                f"PRMConfig.target must be a target transform name "
                f"({', '.join(TARGET_TRANSFORMS)}), got {self.target!r}; pass the "
                "fitted transform itself as train_prm(..., transform=...) so that its "
                "statistics are stored in prm.json"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PRMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"PRMConfig: unknown field(s) {sorted(unknown)}")
        return cls(**d)


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


def load_prm_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer with a pad token (eos when it has none, as `load_lm` does)."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {path} has no pad and no eos token; set a pad token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(
    path: str | os.PathLike[str], tokenizer: PreTrainedTokenizerBase, seed: int
) -> PreTrainedModel:
    """The causal LM checkpoint as a one-output token classifier; the new head is seeded."""
    set_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.id2label, model.config.label2id = {0: "good_step"}, {"good_step": 0}
    return model


def load_causal_lm(
    path: str | os.PathLike[str], tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    """The backbone as a frozen causal LM in eval mode (the surprise head's feature extractor)."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.requires_grad_(False)
    return model.eval()


def _surprise_rows(lm: PreTrainedModel, rows: list[dict[str, list]]) -> list[dict[str, Any]]:
    """Token-level PRM rows → per-step feature rows ``{"features": [S, D], "labels": [S]}``."""
    spans = [
        step_spans(
            r["input_ids"],
            [i for i, y in enumerate(r["labels"]) if y != IGNORE_INDEX],
            r["n_prompt_tokens"],
        )
        for r in rows
    ]
    features = step_features(lm, spans)
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
    transform: TargetTransform | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train a PRM on (trajectory, per-step targets in [0, 1]) pairs and save it to `out_dir`.

    `transform` is the fitted target transform that produced the targets; its statistics are stored
    in `prm.json` (its name must match `cfg.target`). Deterministic for a seed on the same machine.
    """
    if not train or not dev:
        raise ValueError(
            f"train_prm needs training and dev data (got {len(train)} train, {len(dev)} dev): "
            "dev loss selects the best checkpoint and drives early stopping"
        )
    if transform is not None and transform.name != cfg.target:
        raise ValueError(
            f"transform {transform.name!r} does not match PRMConfig.target={cfg.target!r}"
        )
    out = Path(out_dir)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        # a hub id stays a string: Path would turn "org/name" into an OS path on Windows
        return _train(str(backbone), train, dev, out, cfg, transform, progress)
    finally:
        torch.set_num_threads(threads)  # the thread count is process-wide: give it back


def _train(
    backbone: str,
    train: Sequence[tuple[Trajectory, Sequence[float]]],
    dev: Sequence[tuple[Trajectory, Sequence[float]]],
    out: Path,
    cfg: PRMConfig,
    transform: TargetTransform | None,
    progress: bool,
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
        train_rows = _surprise_rows(frozen_lm, train_rows)
        dev_rows = _surprise_rows(frozen_lm, dev_rows)
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
        "target_transform": transform.to_dict() if transform is not None else None,
        "train_seconds": seconds,
        "result": {
            k: getattr(result, k)
            for k in (f.name for f in fields(result))
            if k not in ("path", "learning_curve", "model")
        },
        "learning_curve": curve,
        "log_history": state.log_history,
    }
    if trainer.args.should_save:
        (out / PRM_FILE).write_text(json.dumps(record, indent=2, default=str))
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


# ------------------------------------------------------------------------------- inference


class ProcessRewardModel:
    """A trained PRM: per-step probabilities that a step is good.

    Trajectories longer than the model's `max_length` are scored on the steps that fit; with
    ``on_truncate="fill"`` (the default) each dropped step gets the last kept step's probability
    (a PRM's step scores are read as "the solution is still right", which cannot recover after a
    step it did not see) and a warning names the trajectory; ``"raise"`` raises instead.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        config: PRMConfig,
        record: dict[str, Any] | None = None,
        *,
        backbone: PreTrainedModel | None = None,
    ) -> None:
        if (config.head == "surprise") != (backbone is not None):
            raise ValueError(
                f"a PRM with head {config.head!r} needs "
                + ("its frozen backbone LM" if config.head == "surprise" else "no backbone")
            )
        self.model = model.eval()
        self.backbone = backbone.eval() if backbone is not None else None
        self.tokenizer = tokenizer
        self.config = config
        self.record = record or {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def target_transform(self) -> TargetTransform | None:
        """The fitted transform the training targets came from (None if none was stored)."""
        d = self.record.get("target_transform")
        return TargetTransform.from_dict(d) if d else None

    @torch.inference_mode()
    def predict(
        self,
        trajectories: Sequence[Trajectory],
        batch_size: int = 32,
        on_truncate: Literal["fill", "raise"] = "fill",
    ) -> list[list[float]]:
        """Per-step probabilities (sigmoid of the head at each step's label position)."""
        if on_truncate not in ("fill", "raise"):
            raise ValueError(f"on_truncate must be 'fill' or 'raise', got {on_truncate!r}")
        cfg = self.config
        encoded = []
        for t in trajectories:
            e = encode_for_prm(
                self.tokenizer,
                t.question,
                t.steps,
                cfg.template,
                cfg.separator,
                cfg.max_length,
                trajectory_id=t.id,
            )
            if e.truncated:
                msg = (
                    f"trajectory {t.id!r}: only {e.n_steps_kept} of {t.n_steps} steps fit in "
                    f"max_length={cfg.max_length}"
                )
                if on_truncate == "raise":
                    raise RecordError(f"trajectory {t.id!r}", "steps", msg)
                log.warning("%s; the rest get the last kept step's probability", msg)
            encoded.append(e)
        kept = (
            self._value_probs(encoded, batch_size)
            if self.backbone is None
            else self._surprise_probs(encoded, batch_size)
        )
        # steps beyond max_length get the last kept step's probability
        return [p + [p[-1]] * (t.n_steps - len(p)) for p, t in zip(kept, trajectories, strict=True)]

    def _value_probs(self, encoded: list[EncodedTrajectory], batch_size: int) -> list[list[float]]:
        collate = PRMCollator(self.tokenizer.pad_token_id)
        out: list[list[float]] = []
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            batch = collate([{"input_ids": e.input_ids} for e in chunk])
            logits = self.model(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
            ).logits.squeeze(-1)
            probs = torch.sigmoid(logits.float()).cpu()
            out += [probs[row, e.label_positions].tolist() for row, e in enumerate(chunk)]
        return out

    def _surprise_probs(
        self, encoded: list[EncodedTrajectory], batch_size: int
    ) -> list[list[float]]:
        assert self.backbone is not None
        spans = [step_spans(e.input_ids, e.label_positions, e.n_prompt_tokens) for e in encoded]
        features = step_features(self.backbone, spans, batch_size)
        out: list[list[float]] = []
        for start in range(0, len(features), batch_size):
            batch = FeatureCollator()(
                [{"features": f} for f in features[start : start + batch_size]]
            )
            logits = self.model(features=batch["features"].to(self.device)).logits.squeeze(-1)
            probs = torch.sigmoid(logits.float()).cpu()
            out += [
                probs[row, : len(f)].tolist()
                for row, f in enumerate(features[start : start + batch_size])
            ]
        return out


def load_prm(
    path: str | os.PathLike[str], device: str | torch.device | None = None
) -> ProcessRewardModel:
    """Load a PRM saved by `train_prm` (on CUDA when available unless `device` says otherwise)."""
    path = Path(path)
    record_path = path / PRM_FILE
    if not record_path.is_file():
        raise FileNotFoundError(f"{path} is not a PRM directory: no {PRM_FILE}")
    record = json.loads(record_path.read_text())
    config = PRMConfig.from_dict(record["config"])
    tokenizer = load_prm_tokenizer(path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if config.head == "surprise":
        backbone = load_causal_lm(path / BACKBONE_DIR, tokenizer).to(device)
        head = StepHead(backbone.config.hidden_size + len(SURPRISE_FEATURES), config.head_hidden)
        head.load_state_dict(load_safetensors(path / "model.safetensors"))
        return ProcessRewardModel(head.to(device), tokenizer, config, record, backbone=backbone)
    model = AutoModelForTokenClassification.from_pretrained(path, dtype=torch.float32)
    model.to(device)
    return ProcessRewardModel(model, tokenizer, config, record)
