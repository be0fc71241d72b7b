"""The hub track's sources, as one typed record: `HubSpec` (model and data set ids, or local paths
in the same schemas, and how hub data is split into train, dev and test).

A hub source named ``"embedded"`` is the embedded world or LM written out in the hub schemas: the
``paper-smoke`` preset uses it to run the paper track's code offline, on CPU, in minutes. Three
more names stand for real things this machine has offline (the ``real-smoke`` preset): ``"smollm2"``
(SmolLM2-135M-Instruct, `lm.ensure_smollm2`), ``"shared-gsm8k"`` (the real GSM8K files,
`loaders.GSM8K_DIR`) and ``"gsm8k-reference"`` (a ProcessBench-schema file made from GSM8K's
reference solutions with one marked result corrupted, `cpmi_lib.data.gsm8k_benchmark`).
`tracks.HubTrack` resolves these names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

#: A hub source that stands for the embedded world (data) or default LM (models).
EMBEDDED = "embedded"
#: Real sources this machine has offline: a model, the GSM8K files, a benchmark made from them.
SMOLLM2, SHARED_GSM8K, GSM8K_REFERENCE = "smollm2", "shared-gsm8k", "gsm8k-reference"


@dataclass(frozen=True)
class HubSpec:
    """The hub track: model and data set ids (or local paths in the same schemas, or
    ``"embedded"``).

    Policy problems for the PRM's training and dev data both come from `train_split` of
    `problems`, told apart by a stable hash of the question (`dev_fraction` of them are dev);
    Best-of-N uses `test_split`. ProcessBench has no dev split, so a stable hash of each item's
    problem text puts `processbench_dev_fraction` of every subset's problems aside for choosing τ;
    F1 is reported on the rest. Hashing the problem, not the item id, keeps all solutions of one
    problem on the same side.
    """

    model: str = "Qwen/Qwen2.5-Math-1.5B-Instruct"  # the policy (and, by default, the labeler)
    prm_backbone: str = "Qwen/Qwen2.5-Math-1.5B-Instruct"
    #: The labeling LM (CPMI and MC's rollouts); None: `model`, as in the paper.
    labeler: str | None = None
    device: str = "cuda"
    dtype: str | None = "bfloat16"
    problems: str = "openai/gsm8k"
    problems_config: str | None = "main"
    train_split: str = "train"
    test_split: str = "test"
    dev_fraction: float = 0.1
    processbench: str = "Qwen/ProcessBench"
    processbench_subsets: tuple[str, ...] = ("gsm8k", "math", "olympiadbench", "omnimath")
    processbench_dev_fraction: float = 0.3
    #: The policy's prompt template (holding ``{question}``); None: `text_format.DEFAULT_TEMPLATE`.
    prompt: str | None = None
    #: Every template of the experiment (the policy's prompt, CPMI's, MC's, the PRM's) is a chat
    #: instruction, rendered through its model's chat template once that model is loaded
    #: (`text_format.chat_prompt_template`).
    chat: bool = False
    #: Problems of the ``"gsm8k-reference"`` benchmark (two items each: gold and corrupted).
    benchmark_problems: int = 100
    #: The PRMs' training (and dev) trajectories. None: the policy's samples of `problems`.
    #: Else a Math-Shepherd source (hub id, or a local file or folder in its schema), as in the
    #: paper: its solutions with gold answers attached, split by question (`dev_fraction`), and
    #: its '+'/'-' step labels the reference that label quality is measured against
    #: (`cpmi_lib.data.math_shepherd`).
    prm_data: str | None = None

    def __post_init__(self) -> None:
        for name in ("dev_fraction", "processbench_dev_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"HubSpec.{name} must be in (0, 1), got {value}")
        if not self.processbench_subsets:
            raise ValueError("HubSpec.processbench_subsets is empty")
        for name in ("model", "prm_backbone", "problems", "processbench"):
            if not getattr(self, name):
                raise ValueError(f"HubSpec.{name} is empty")
        if self.labeler == "":
            raise ValueError("HubSpec.labeler is empty (None: the policy model)")
        if self.prompt is not None and "{question}" not in self.prompt:
            raise ValueError(f"HubSpec.prompt {self.prompt!r} has no '{{question}}' placeholder")
        if self.processbench == GSM8K_REFERENCE and self.processbench_subsets != ("gsm8k",):
            raise ValueError(
                f"HubSpec: the {GSM8K_REFERENCE!r} benchmark has one subset, ('gsm8k',); got "
                f"{self.processbench_subsets}"
            )
        if self.prm_data == "":
            raise ValueError("HubSpec.prm_data is empty (None: the policy's samples)")
        if self.benchmark_problems < 1:
            raise ValueError(f"HubSpec.benchmark_problems must be >= 1: {self.benchmark_problems}")

    @classmethod
    def offline(
        cls,
        model: str,
        problems: str,
        processbench: str,
        subsets: tuple[str, ...],
        **settings: Any,
    ) -> HubSpec:
        """The hub track on CPU in float32 from sources this machine has: `model` is the policy,
        labeler and PRM backbone; `problems` and `processbench` are local (no config)."""
        return cls(
            model=model,
            prm_backbone=model,
            device="cpu",
            dtype=None,
            problems=problems,
            problems_config=None,
            processbench=processbench,
            processbench_subsets=subsets,
            **settings,
        )

    @classmethod
    def embedded(cls, subsets: tuple[str, ...], dev_fraction: float = 0.25) -> HubSpec:
        """Every source the embedded world or LM written out in the hub schemas, on CPU: the
        paper track's code path, offline. `subsets` are the world benchmark's."""
        return cls.offline(EMBEDDED, EMBEDDED, EMBEDDED, subsets, dev_fraction=dev_fraction)

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON, less the later fields at their neutral values (cached keys of
        the specs that came before them stay the same)."""
        d = json.loads(json.dumps(asdict(self)))
        for name, neutral in _NEUTRAL.items():
            if d[name] == neutral:
                del d[name]
        if self.processbench != GSM8K_REFERENCE:
            del d["benchmark_problems"]
        return d


#: HubSpec fields added after caches existed, and the values that mean "as before".
_NEUTRAL: dict[str, Any] = {"prompt": None, "chat": False, "prm_data": None}
