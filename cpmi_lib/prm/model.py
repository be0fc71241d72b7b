"""A trained process reward model: per-step probabilities that a step is good, and `load_prm`.

Two heads (`PRMConfig.head`). ``value``: the backbone loaded as
``AutoModelForTokenClassification(num_labels=1)`` (transformers gives Llama, GPT-2, Qwen2 and the
default world LM a token classification class, so the LM body is reused and only the one-output
`score` head is new), read at the last token of (step + separator) and fine-tuned whole.
``surprise``: the backbone frozen, a small MLP over per-step token surprise and hidden state
(`cpmi_lib.prm.features`). Inputs, label positions and batches: `cpmi_lib.prm.encoding`; the
recipe: `cpmi_lib.prm.config`; training: `cpmi_lib.prm.train`.

A saved PRM directory holds the model, its tokenizer and `prm.json` (config, fitted target
transform, learning curve, timings); the surprise head also keeps its frozen LM in `backbone/`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file as load_safetensors
from transformers import (
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.prm.config import PRMConfig
from cpmi_lib.prm.encoding import EncodedTrajectory, PRMCollator, encode_for_prm, step_spans
from cpmi_lib.prm.feature_cache import cached_step_features
from cpmi_lib.prm.features import SURPRISE_FEATURES, FeatureCollator, StepHead
from cpmi_lib.prm.targets import TargetTransform

log = logging.getLogger(__name__)

PRM_FILE = "prm.json"
BACKBONE_DIR = "backbone"  # the surprise head's frozen LM, saved beside the head


def load_prm_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer with a pad token (eos when it has none, as `load_lm` does)."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {path} has no pad and no eos token; set a pad token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    path: str | os.PathLike[str], tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    """The backbone as a frozen causal LM in eval mode (the surprise head's feature extractor)."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.requires_grad_(False)
    return model.eval()


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
        feature_cache: str | os.PathLike[str] | None = None,
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
        #: Where the surprise head's backbone features are cached (`cached_step_features`);
        #: None computes them every time.
        self.feature_cache = feature_cache

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
        features = cached_step_features(self.backbone, spans, batch_size, self.feature_cache)
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
    path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    feature_cache: str | os.PathLike[str] | None = None,
) -> ProcessRewardModel:
    """Load a PRM saved by `train_prm` (on CUDA when available unless `device` says otherwise);
    a surprise head reads its backbone features through `feature_cache` when one is given."""
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
        head = head.to(device)
        return ProcessRewardModel(
            head, tokenizer, config, record, backbone=backbone, feature_cache=feature_cache
        )
    model = AutoModelForTokenClassification.from_pretrained(path, dtype=torch.float32)
    model.to(device)
    return ProcessRewardModel(model, tokenizer, config, record)
