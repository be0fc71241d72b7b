"""Presets of the experiment grid: one typed `Preset` record per run, in one registry `PRESETS`.

A preset holds everything a run of the grid (`python -m cpmi_lib grid --preset NAME`) needs: the
experiment (`ExperimentConfig`, whose keys name the cached stages), the notebooks in the order
they run with their own parameters, the folder its results/ and figures/ go to, its seed, and the
sizes of its labeler axis. Every notebook also gets the common parameters ``preset``,
``results_dir`` and ``figures_dir``; notebooks read their preset back through `experiment_config`
and `labeler_axis`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cpmi_lib.core.paths import REPO
from cpmi_lib.core.text_format import CHAT_INSTRUCTIONS, PROMPT_TEMPLATES
from cpmi_lib.data.natural_benchmark import NaturalBenchmarkConfig
from cpmi_lib.data.world import WorldConfig
from cpmi_lib.data.world_data import WorldSpec
from cpmi_lib.experiment.config import ExperimentConfig, Labeler, default_axis
from cpmi_lib.experiment.hub_spec import GSM8K_REFERENCE, SHARED_GSM8K, SMOLLM2, HubSpec
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.lm.default_lm import ContinuedLMConfig, LMTrainConfig
from cpmi_lib.prm.config import PRMConfig

#: The paper's PRM training data (GSM8K and MATH questions, automatically labelled solutions).
MATH_SHEPHERD = "peiyi9979/Math-Shepherd"
#: What the grid passes to every notebook besides its own parameters.
COMMON_PARAMETERS = ("preset", "results_dir", "figures_dir")


@dataclass(frozen=True)
class NotebookRun:
    """One notebook of a grid (`notebooks/<name>.py`) and the parameters it runs with, besides
    `COMMON_PARAMETERS`. The parameters are read-only: presets share their runs."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


@dataclass(frozen=True)
class Preset:
    """A run of the grid: what it measures (`config`), which notebooks in which order, where
    its results/ and figures/ go (`root`), and how big its labeler axis's LMs are."""

    name: str
    about: str
    config: ExperimentConfig
    #: In dependency order: data first, then what reads it.
    notebooks: tuple[NotebookRun, ...]
    #: Holds results/ and figures/: the default run's are the committed ones, the smoke runs are
    #: scratch, and a paper run gets a folder of its own.
    root: Path
    #: The seed of everything trained or sampled (`seeded`); the `seeds` check reads it here.
    seed: int = 0
    #: Training steps and problems of the labeler axis's LMs; None: `default_axis`'s own.
    axis_steps: int | None = None
    axis_problems: int | None = None

    def __post_init__(self) -> None:
        if self.config.seed != self.seed:
            raise ValueError(
                f"preset {self.name!r}: seed {self.seed} but config.seed is {self.config.seed} "
                "(build it with `seeded`)"
            )
        names = [run.name for run in self.notebooks]
        if len(set(names)) != len(names):
            raise ValueError(f"preset {self.name!r} runs a notebook twice: {names}")

    @property
    def labelers(self) -> tuple[Labeler, ...]:
        """The labelers of the capability axis (`cpmi_lib.studies.labeler_axis`; embedded track
        only). Built on demand: they are LM configs derived from this preset's."""
        sizes = {"steps": self.axis_steps, "problems": self.axis_problems}
        cfg = self.config
        return default_axis(cfg.lm, cfg.prm_lm, **{k: v for k, v in sizes.items() if v is not None})

    def notebook(self, name: str) -> NotebookRun:
        """The run of notebook `name`; a ValueError names the preset's notebooks."""
        for run in self.notebooks:
            if run.name == name:
                return run
        raise ValueError(
            f"preset {self.name!r} has no notebook {name!r}; known: "
            f"{[run.name for run in self.notebooks]}"
        )


def with_params(runs: tuple[NotebookRun, ...], **params: dict[str, Any]) -> tuple[NotebookRun, ...]:
    """`runs` in the same order, with the named notebooks' parameters replaced."""
    unknown = set(params) - {run.name for run in runs}
    if unknown:
        raise ValueError(f"no such notebook(s): {sorted(unknown)}")
    return tuple(NotebookRun(r.name, params.get(r.name, r.params)) for r in runs)


def seeded(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    """`cfg` with another seed for the world LM, the PRM backbone LM, the policy's samples,
    the labels' randomness and the PRMs; the world (problems, benchmark) stays the same."""
    lm = replace(cfg.lm, seed=seed)
    prm_lm = cfg.prm_lm and replace(cfg.prm_lm, parent=lm, seed=seed + 1000)
    return replace(cfg, lm=lm, prm_lm=prm_lm, prm=replace(cfg.prm, seed=seed), seed=seed)


# ------------------------------------------------------------------------------ the experiments

_SMOKE_WORLD = WorldConfig(
    min_steps=2,
    max_steps=4,
    start_range=(2, 20),
    add_range=(2, 20),
    mul_range=(2, 3),
    div_range=(2, 3),
    max_value=200,
    distractors=(0, 1),
)


def _smoke() -> ExperimentConfig:
    lm = LMTrainConfig(
        world=_SMOKE_WORLD,
        n_train_problems=2000,
        hidden_size=64,
        intermediate_size=128,
        num_layers=1,
        num_heads=2,
        train_steps=150,
        batch_size=32,
        warmup_steps=20,
    )
    return ExperimentConfig(
        world=WorldSpec(
            world=_SMOKE_WORLD,
            sizes={"train": 60, "dev": 90, "test": 90},
            benchmark_per_subset=10,
        ),
        lm=lm,
        prm_lm=ContinuedLMConfig(parent=lm, n_train_problems=500, train_steps=30, warmup_steps=5),
        train_problems=30,
        dev_problems=10,
        samples_per_problem=2,
        cpmi=CPMIConfig(templates=PROMPT_TEMPLATES),
        n_negatives=2,
        mc=MCConfig(n_rollouts=2, max_new_tokens=60),
        prm=PRMConfig(head="surprise", epochs=2, lr=1e-3, batch_size=16, threads=2),
        bon_problems=10,
        bon_dev_problems=10,
        curve_sizes=(20, 40),
        bon_pool=4,
        bon_ns=(1, 2, 4),
        natural=NaturalBenchmarkConfig(test_items=20, dev_items=10, samples_per_problem=4),
    )


def _paper() -> ExperimentConfig:
    return ExperimentConfig(
        hub=HubSpec(prm_data=MATH_SHEPHERD),
        train_problems=2000,  # x 4: 8,000 Math-Shepherd solutions (dev: 800)
        dev_problems=200,
        samples_per_problem=4,
        sample_max_new_tokens=512,
        cpmi=CPMIConfig(templates=PROMPT_TEMPLATES),
        n_negatives=4,
        mc=MCConfig(n_rollouts=8, max_new_tokens=512),
        prm_lm=None,  # the hub track's PRM backbone is HubSpec.prm_backbone
        # the paper's recipe: the whole backbone fine-tuned with a value head
        prm=PRMConfig(epochs=2, lr=2e-5, batch_size=8, bf16=True, patience=2, head="value"),
        bon_problems=500,
        bon_pool=64,
        bon_ns=(1, 4, 16, 64),
    )


def _paper_mini(paper: ExperimentConfig) -> ExperimentConfig:
    assert paper.hub is not None
    return replace(
        paper,
        hub=replace(paper.hub, processbench_subsets=("gsm8k", "math")),
        train_problems=40,  # x 4: 160 Math-Shepherd solutions, about 1,000 steps
        dev_problems=10,
        prm=replace(paper.prm, epochs=1),
        bon_problems=60,
        bon_dev_problems=30,
        bon_pool=16,
        bon_ns=(1, 4, 16),
    )


def _real_smoke() -> ExperimentConfig:
    """SmolLM2 on a handful of real GSM8K problems, every prompt through its chat template.

    Sized to the CI budget (about 2.5 minutes on 2 cores, measured; README § Real text):
    solutions are cut at 96 new tokens, so most state no answer yet; MC's rollouts at 32.
    """
    instruction = CHAT_INSTRUCTIONS[0]  # asks for one step per line and "The answer is: <n>"
    hub = HubSpec.offline(
        SMOLLM2,
        SHARED_GSM8K,
        GSM8K_REFERENCE,
        ("gsm8k",),
        benchmark_problems=8,
        prompt=instruction,
        chat=True,
    )
    return ExperimentConfig(
        hub=hub,
        prm_lm=None,  # the hub track's PRM backbone is HubSpec.prm_backbone
        train_problems=2,
        dev_problems=1,
        samples_per_problem=2,
        sample_max_new_tokens=96,
        cpmi=CPMIConfig(templates=(instruction,)),
        n_negatives=1,
        mc=MCConfig(n_rollouts=2, max_new_tokens=32, template=instruction),
        prm=PRMConfig(
            head="surprise", epochs=2, lr=1e-3, batch_size=4, threads=2, template=instruction
        ),
        bon_problems=2,
        bon_dev_problems=1,
        bon_pool=2,
        bon_ns=(1, 2),
    )


# ------------------------------------------------------------------------------ the notebooks

#: The default grid, in dependency order.
DEFAULT_NOTEBOOKS = (
    NotebookRun("build_data"),
    NotebookRun(
        "explore_single_problem",
        {"problem_index": 0, "variant": "cumulative", "labelers": ["policy", "anticipate"]},
    ),
    NotebookRun("label_cost"),
    NotebookRun("label_quality"),
    NotebookRun("train_prm"),
    NotebookRun("processbench"),
    NotebookRun("best_of_n"),
    NotebookRun("instrument"),
    NotebookRun(
        "labelers", {"skill_problems": 100, "select_trajectories": 300, "quality_trajectories": 300}
    ),
    # the labeler axis's sizes again: its measurements are cached, so they are read, not redone
    NotebookRun(
        "decisive", {"skill_problems": 100, "select_trajectories": 300, "quality_trajectories": 300}
    ),
    NotebookRun(
        "ablations",
        {"n_trajectories": 300, "negatives_grid": [0, 1, 2, 4, 8], "templates_grid": [1, 2, 4]},
    ),
    # real GSM8K text and SmolLM2, the same on every track (`cpmi_lib.studies.real_verifier`)
    # sized to run in about 6-7 minutes here (2.5 s a problem at K = 1, M = 1)
    NotebookRun("real_gsm8k_verifier", {"problems": 150, "templates": 1, "n_negatives": 1}),
)
SMOKE_NOTEBOOKS = with_params(
    DEFAULT_NOTEBOOKS,
    labelers={"skill_problems": 8, "select_trajectories": 12, "quality_trajectories": 12},
    decisive={"skill_problems": 8, "select_trajectories": 12, "quality_trajectories": 12},
    ablations={"n_trajectories": 12, "negatives_grid": [0, 2], "templates_grid": [1, 2]},
    real_gsm8k_verifier={"problems": 2, "templates": 1, "n_negatives": 1},
)
#: The hub track has no labeler axis (it needs the exact step truth): the policy labels alone.
_POLICY_ONLY = {"explore_single_problem": {"problem_index": 0, "variant": "cumulative"}}

# ------------------------------------------------------------------------------ the registry

_SMOKE_CONFIG, _PAPER_CONFIG = _smoke(), _paper()
_SMOKE_AXIS = {"axis_steps": 10, "axis_problems": 300}  # the smoke world's LMs are tiny
#: The `seeds` check (`cpmi_lib.seeds`): the default experiment with other seeds of everything
#: trained or sampled; seed 0 is the default itself.
_SEEDS = (1, 2)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "smoke",
            "the embedded track at tiny sizes, minutes on 2 CPU cores (CI runs it)",
            _SMOKE_CONFIG,
            SMOKE_NOTEBOOKS,
            REPO / ".cache" / "smoke",
            **_SMOKE_AXIS,
        ),
        Preset(
            "default",
            "the embedded track (`make reproduce`); its results are the committed ones",
            ExperimentConfig(),
            DEFAULT_NOTEBOOKS,
            REPO,
        ),
        Preset(
            "paper-smoke",
            "the paper track's code path (hub loaders, schemas, no exact step truth) on the "
            "smoke world and LM written out in the hub schemas: offline, CPU, minutes (CI)",
            replace(_SMOKE_CONFIG, hub=HubSpec.embedded(("short", "medium", "long"))),
            with_params(SMOKE_NOTEBOOKS, **_POLICY_ONLY),
            REPO / ".cache" / "paper-smoke",
            **_SMOKE_AXIS,
        ),
        Preset(
            "real-smoke",
            "the paper track's code path on real things: SmolLM2-135M-Instruct (policy, labeler "
            "and PRM backbone, chat prompts), real GSM8K problems from ../shared/data/gsm8k and "
            "a ProcessBench-schema benchmark from GSM8K's reference solutions; CPU, ~3 min (CI)",
            _real_smoke(),
            with_params(SMOKE_NOTEBOOKS, **_POLICY_ONLY),
            REPO / ".cache" / "real-smoke",
        ),
        Preset(
            "paper",
            "the hub track at paper scale, for a GPU with hub access: Qwen2.5-Math-1.5B-Instruct "
            "as policy, labeler and PRM backbone, PRMs trained on Math-Shepherd's solutions "
            "(label quality against its +/- labels), GSM8K problems for Best-of-N, ProcessBench",
            _PAPER_CONFIG,
            with_params(DEFAULT_NOTEBOOKS, **_POLICY_ONLY),
            REPO / "paper",
        ),
        Preset(
            "paper-mini",
            "the paper at about one GPU hour (`workload`: an estimate, not a measurement): "
            "CPMI's and MC's labels against Math-Shepherd's and their cost; small-sample PRMs",
            _paper_mini(_PAPER_CONFIG),
            with_params(DEFAULT_NOTEBOOKS, **_POLICY_ONLY),
            REPO / "paper-mini",
        ),
        *(
            Preset(
                f"default-seed{k}",
                f"the default with seed {k} for everything trained or sampled (`seeds` check)",
                seeded(ExperimentConfig(), k),
                DEFAULT_NOTEBOOKS,
                REPO / ".cache" / "seeds" / f"default-seed{k}",
                seed=k,
            )
            for k in _SEEDS
        ),
    )
}
PRESET_NAMES = tuple(PRESETS)
#: The presets of the `seeds` check: the default's reruns with another seed.
SEED_PRESETS = tuple(name for name, p in PRESETS.items() if p.seed)
#: Each preset's `root`, for callers that look roots up by name (`PRESETS` is the source).
RESULT_ROOTS: dict[str, Path] = {name: p.root for name, p in PRESETS.items()}


def preset(name: str) -> Preset:
    """The preset `name`; a ValueError lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {PRESET_NAMES}") from None


def experiment_config(name: str) -> ExperimentConfig:
    """The experiment of a preset (notebooks call this with their `preset` parameter)."""
    return preset(name).config


def labeler_axis(name: str) -> tuple[Labeler, ...]:
    """The labelers of a preset's capability axis (`Preset.labelers`)."""
    return preset(name).labelers
