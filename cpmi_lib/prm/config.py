"""`PRMConfig`: everything that determines a trained PRM, kept beside its trainer
(`cpmi_lib.prm.train`) and stored in ``prm.json`` next to the weights (`cpmi_lib.prm.model`).

Its own module so that experiment configs and presets can name a PRM recipe without importing
transformers' training machinery.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cpmi_lib.core.text_format import DEFAULT_TEMPLATE, STEP_SEPARATOR, render_prompt
from cpmi_lib.prm.targets import TARGET_TRANSFORMS

HEADS = ("value", "surprise")


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
    #: The target transform (`cpmi_lib.prm.targets`) that turns raw step scores into targets;
    #: `train_prm` fits it on the training scores and stores its statistics in prm.json.
    target: str = "truth"
    target_params: dict[str, Any] = field(default_factory=dict)  # the transform's parameters
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
                f"({', '.join(TARGET_TRANSFORMS)}), got {self.target!r}; its parameters go in "
                "PRMConfig.target_params"
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
