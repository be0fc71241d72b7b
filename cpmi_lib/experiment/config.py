"""The PRM experiment's settings: sizes, models, labelers and PRMs, and the keys that name its
cached stages (`cpmi_lib.experiment.stages` runs them)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cpmi_lib.core.text_format import PROMPT_TEMPLATES
from cpmi_lib.data.natural_benchmark import NaturalBenchmarkConfig
from cpmi_lib.data.world_data import WorldSpec
from cpmi_lib.experiment.hub_spec import HubSpec
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.label_file import LabelConfig
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.labeling.runs import LABEL_FORMAT
from cpmi_lib.lm.default_lm import ContinuedLMConfig, LMTrainConfig
from cpmi_lib.prm.config import PRMConfig

#: The PRMs and the labels each learns from: (labeler, target transform). The truth PRM needs
#: exact step labels, so only the embedded track trains it.
PRM_LABELS: dict[str, tuple[str, str]] = {
    "cpmi": ("cpmi", "zsig"),
    "mc": ("mc", "mc_soft"),
    "truth": ("truth", "truth"),
    # the floor: a labeler that knows only (step index, number of steps), fit on train truth
    "position": ("position", "mc_soft"),
    # control: every step gets its trajectory's final-answer correctness (1.0 or 0.0), free
    # once the answers are graded; the 0/1 values are MC-like values, hence MC's soft target
    "outcome": ("outcome", "mc_soft"),
    # ablation: CPMI whose negatives never include the trajectory's own final answer
    # (perturbations of the gold only, `LabelConfig.exclude_own_answer`); CPMI's target
    "cpmi_noself": ("cpmi_noself", "zsig"),
}
#: The label sources that need no labeling LM: written once per sample set, whoever labels.
FREE_SOURCES = ("position", "outcome")
#: Label sources that need the exact step truth (embedded track only).
NEEDS_TRUTH = ("truth", "position")
#: Training-set sizes a PRM name can carry: ``source`` (the base set), ``source@budget`` (the
#: budget-matched set, `cpmi_lib.studies.instrument`) or ``source@<n>`` (its first n trajectories).
BASE, BUDGET = "base", "budget"


def parse_prm_name(name: str) -> tuple[str, str | int]:
    """``"truth@1200"`` → ("truth", 1200); ``"cpmi@budget"`` → ("cpmi", "budget");
    ``"mc"`` → ("mc", "base")."""
    source, _, size = name.partition("@")
    if source not in PRM_LABELS:
        raise ValueError(
            f"unknown PRM label source {source!r} in {name!r}; known: {list(PRM_LABELS)}"
        )
    if not size:
        return source, BASE
    if size == BUDGET:
        return source, BUDGET
    if size.isdigit() and int(size) > 0:
        return source, int(size)
    raise ValueError(f"PRM name {name!r}: the size after '@' must be 'budget' or a positive count")


@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes and settings of the PRM experiment (defaults: the embedded track, ~15 min on CPU).

    `hub` switches to the hub track; `world` and `lm` then matter only for hub sources named
    ``"embedded"``.
    """

    #: 10,000 train problems: the budget-matched CPMI set draws from beyond the base set's 600.
    world: WorldSpec = field(
        default_factory=lambda: WorldSpec(sizes={"train": 10_000, "dev": 600, "test": 1000})
    )
    #: The policy LM: it samples the trajectories (embedded track).
    lm: LMTrainConfig = field(default_factory=LMTrainConfig)
    #: The embedded track's PRM backbone: the policy LM trained further (None: the policy LM).
    prm_lm: ContinuedLMConfig | None = field(default_factory=ContinuedLMConfig)
    #: The labeling LM of the embedded track, for CPMI and MC's rollouts alike (None: the policy
    #: LM). It must descend from `lm` (same world and tokenizer); `cpmi_lib.studies.labeler_skill`.
    labeler: ContinuedLMConfig | None = None
    hub: HubSpec | None = None
    train_problems: int = 600
    dev_problems: int = 150
    samples_per_problem: int = 2
    sample_temperature: float = 0.7
    sample_max_new_tokens: int = 160
    cpmi: CPMIConfig = field(default_factory=lambda: CPMIConfig(templates=PROMPT_TEMPLATES))
    n_negatives: int = 4
    mc: MCConfig = field(default_factory=lambda: MCConfig(n_rollouts=8, max_new_tokens=160))
    prm: PRMConfig = field(
        default_factory=lambda: PRMConfig(
            head="surprise", epochs=10, lr=1e-3, batch_size=32, threads=2, patience=3
        )
    )
    #: 600 test problems: a 5-point Best-of-16 difference between two PRMs is then detectable
    #: (issue 21); 200 until then. Best-of-N settings are not in `sample_key` (see there).
    bon_problems: int = 600
    #: Dev problems of the Best-of-N pool on which each PRM's aggregation is chosen.
    bon_dev_problems: int = 150
    bon_pool: int = 16
    bon_ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    #: Learning curve of the truth PRM: these training-set sizes (trajectories) and the
    #: budget-matched set's.
    curve_sizes: tuple[int, ...] = (150, 300, 1200, 4800)
    seed: int = 0
    #: The natural-error benchmark's sizes (`cpmi_lib.experiment.natural`). In no key: its
    #: files are named by their own (`natural_key`); in `to_dict` only when not the default.
    natural: NaturalBenchmarkConfig = field(default_factory=NaturalBenchmarkConfig)

    def __post_init__(self) -> None:
        if self.prm_lm is not None and self.prm_lm.parent != self.lm:
            raise ValueError("ExperimentConfig.prm_lm must continue `lm` (prm_lm.parent == lm)")
        if self.labeler is not None and self.labeler.root != self.lm:
            raise ValueError(
                "ExperimentConfig.labeler must descend from `lm` (labeler.root == lm): the "
                "labeler reads the policy's world and tokens"
            )
        if self.labeler is not None and self.hub is not None:
            raise ValueError(
                "ExperimentConfig.labeler is the embedded track's; on the hub "
                "track name the labeling LM in HubSpec.labeler"
            )

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON; the LM configs as their own `to_dict` (a field added with a
        neutral default leaves cached keys alone), and no `labeler` entry when it is the policy."""
        d = asdict(self)
        d["cpmi"] = self.cpmi.to_dict()
        d["prm_lm"] = self.prm_lm and self.prm_lm.to_dict()
        if self.labeler is None:
            del d["labeler"]
        else:
            d["labeler"] = self.labeler.to_dict()
        if self.natural == NaturalBenchmarkConfig():
            del d["natural"]
        return json.loads(json.dumps(d))

    def key(self) -> str:
        d = self.to_dict()
        d.pop("natural", None)
        return _hash(d)

    def sample_key(self) -> str:
        """What the policy's samples depend on: neither the PRM's settings nor the labeler's, nor
        the Best-of-N settings. The Best-of-N pools live in the same folder under names of their
        own settings (`Experiment.bon_pool`); the Best-of-N settings are hashed here at the
        values they had when they left this key (`SAMPLE_KEY_BON`), so the folders of every
        preset with those values (the default and its seeds) kept their names."""
        d = self.to_dict()
        for name in ("prm", "prm_lm", "curve_sizes", "natural", *LABEL_SETTINGS):
            d.pop(name, None)
        return _hash(d | SAMPLE_KEY_BON)

    def label_key(self) -> str:
        """What the CPMI and MC labels depend on beyond the samples: the labeling LM and the
        labeling settings (and the label file format, which a resumed run must match)."""
        d = self.to_dict()
        return _hash({name: d.get(name) for name in LABEL_SETTINGS} | {"format": LABEL_FORMAT})


#: The settings of the labels (`ExperimentConfig.label_key`), as opposed to the samples'.
LABEL_SETTINGS = ("labeler", "cpmi", "n_negatives", "mc")
#: The Best-of-N settings as `sample_key` hashes them, whatever the config says: the default's
#: when they were taken out of that key (issue 21). The samples never depended on them.
SAMPLE_KEY_BON: dict[str, Any] = {
    "bon_problems": 200,
    "bon_dev_problems": 150,
    "bon_pool": 16,
    "bon_ns": [1, 2, 4, 8, 16],
}


def label_run(cfg: ExperimentConfig, labeler: str, cpmi: CPMIConfig, mc: MCConfig) -> LabelConfig:
    """The labeling run of a source that needs the labeling LM (`cpmi` and `mc` as the model
    reads them): ``cpmi``, ``mc``, or ``cpmi_noself``, CPMI with the gold's perturbations alone
    as negatives and never the trajectory's own final answer (`cpmi_lib.labeling.negatives`)."""
    if labeler not in ("cpmi", "mc", "cpmi_noself"):
        raise ValueError(
            f"unknown labeler {labeler!r}: 'cpmi', 'cpmi_noself', 'mc' (or the free sources "
            f"{FREE_SOURCES})"
        )
    noself = {"negative_sources": ("perturb",), "exclude_own_answer": True}
    return LabelConfig(
        method="mc" if labeler == "mc" else "cpmi",
        cpmi=cpmi,
        n_negatives=cfg.n_negatives,
        mc=mc,
        seed=cfg.seed,
        **(noself if labeler == "cpmi_noself" else {}),  # type: ignore[arg-type]
    )


def _hash(d: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------ GPU-time estimate

#: Seconds one decode step of a batch takes in Hugging Face `generate` (eager attention, bf16, a
#: 1.5B model, up to 64 sequences, one H100-class GPU). ASSUMED, not measured: this machine has
#: no GPU. Replace it with a measured value before planning on the estimate.
ASSUMED_DECODE_STEP_S = 0.03
#: Steps of an average training solution (Math-Shepherd's and a 1.5B policy's are about 4-8).
ASSUMED_MEAN_STEPS = 6
#: Sequences per decode batch the estimate assumes, for sampling and MC rollouts alike (MC
#: rolls out blocks of trajectories together, so its calls fill up too).
SAMPLE_BATCH = 64


def workload(
    cfg: ExperimentConfig,
    mean_steps: float = ASSUMED_MEAN_STEPS,
    decode_step_s: float = ASSUMED_DECODE_STEP_S,
) -> dict[str, float]:
    """What an experiment generates, counted from its settings, and the decode time that
    takes under the assumptions above: every generation is assumed to run to its token limit
    (an upper bound), teacher-forced passes (CPMI, PRM training and scoring) are left out (they
    are a small share at these sizes). An estimate to size a preset, never a measurement."""
    spp = cfg.samples_per_problem
    trajectories = (cfg.train_problems + cfg.dev_problems) * spp
    policy = 0 if cfg.hub is not None and cfg.hub.prm_data else trajectories
    bon = (cfg.bon_problems + cfg.bon_dev_problems) * cfg.bon_pool
    sample_calls = math.ceil(policy / SAMPLE_BATCH) + math.ceil(bon / SAMPLE_BATCH)
    rows_per_trajectory = mean_steps * cfg.mc.n_rollouts
    mc_calls = math.ceil(trajectories * rows_per_trajectory / SAMPLE_BATCH)
    sample_s = sample_calls * cfg.sample_max_new_tokens * decode_step_s
    mc_s = mc_calls * cfg.mc.max_new_tokens * decode_step_s
    return {
        "labelled_trajectories": trajectories,
        "policy_samples": policy + bon,
        "mc_rollouts": trajectories * rows_per_trajectory,
        "generated_tokens_max": (policy + bon) * cfg.sample_max_new_tokens
        + trajectories * rows_per_trajectory * cfg.mc.max_new_tokens,
        "sampling_hours": sample_s / 3600,
        "mc_hours": mc_s / 3600,
        "estimated_gpu_hours": (sample_s + mc_s) / 3600,
    }


# ------------------------------------------------------------- the labeler axis's LMs


@dataclass(frozen=True)
class Labeler:
    """A labeling LM on the axis: None is the policy LM itself."""

    name: str
    lm: ContinuedLMConfig | None
    about: str


#: The experiment's own labeling LM (`ExperimentConfig.labeler` None: the policy LM on the
#: embedded track, `HubSpec.labeler` or the policy on the hub).
CONFIGURED = Labeler("policy", None, "the policy LM: complete gold solutions only")


def default_axis(
    lm: LMTrainConfig,
    prm_lm: ContinuedLMConfig | None,
    *,
    steps: int = 300,
    problems: int = 20_000,
    anticipation: float = 0.3,
) -> tuple[Labeler, ...]:
    """The four labelers of the module docstring. ``continued`` and ``anticipate`` share seed,
    problems and batch order, so they differ only in the anticipation examples.

    Seeds: ``continued`` (and ``anticipate``) take 2, ``anticipate_long`` 3, each moved up to the
    next integer not already taken by an ancestor of its LM or by an earlier labeler of the
    axis (`ContinuedLMConfig` refuses an ancestor's seed: it would replay its training
    problems). The default's seeds (policy 0, PRM backbone 1) leave 2 and 3 as they were; a
    policy of seed 2 (preset ``default-seed2``) gives 3 and 4."""
    common = {"n_train_problems": problems, "train_steps": steps, "warmup_steps": 30}
    longer_parent = prm_lm or ContinuedLMConfig(parent=lm)
    control_seed = _free_seed(2, _lineage_seeds(lm))
    long_seed = _free_seed(3, _lineage_seeds(longer_parent) | {control_seed})
    control = ContinuedLMConfig(parent=lm, seed=control_seed, **common)  # type: ignore[arg-type]
    return (
        CONFIGURED,
        Labeler("continued", control, f"policy + {steps} steps, no anticipation (control)"),
        Labeler(
            "anticipate",
            replace(control, anticipation=anticipation),
            f"policy + {steps} steps, anticipation p = {anticipation}",
        ),
        Labeler(
            "anticipate_long",
            ContinuedLMConfig(
                parent=longer_parent,
                seed=long_seed,
                anticipation=anticipation,
                **common,  # type: ignore[arg-type]
            ),
            f"policy + {longer_parent.train_steps} + {steps} steps, anticipation p = "
            f"{anticipation}",
        ),
    )


def _lineage_seeds(lm: LMTrainConfig | ContinuedLMConfig) -> set[int]:
    """The seeds of `lm` and of every LM it continues."""
    seeds = set()
    node: Any = lm
    while node is not None:
        seeds.add(node.seed)
        node = getattr(node, "parent", None)
    return seeds


def _free_seed(preferred: int, taken: set[int]) -> int:
    """`preferred`, or the next integer above it that is not `taken`."""
    seed = preferred
    while seed in taken:
        seed += 1
    return seed
