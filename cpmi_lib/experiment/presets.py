"""Presets of the experiment grid: what every notebook is run with.

- ``smoke``: the embedded track at tiny sizes, minutes on 2 CPU cores (CI runs it).
- ``default``: the embedded track (`make reproduce`; README § Time for the measured range).
- ``paper``: the hub track at paper scale, for a GPU with hub access: Qwen2.5-Math-1.5B-Instruct
  as policy, labeler and PRM backbone, PRMs trained on Math-Shepherd's solutions (as the paper
  does; label quality against its '+'/'-' labels), GSM8K problems for Best-of-N, ProcessBench.
- ``paper-mini``: the same at about one GPU hour (`experiment_config.workload`: an estimate
  under stated assumptions, not a measurement): enough steps to compare CPMI's and MC's labels
  with Math-Shepherd's and their cost on a GPU; its PRM numbers are small-sample.
- ``paper-smoke``: the paper track's code path (hub loaders, schemas, no exact step truth) on the
  smoke world and LM written out in the hub schemas: offline, CPU, minutes (CI runs it).
- ``real-smoke``: the paper track's code path on real things: SmolLM2-135M-Instruct (policy,
  labeler and PRM backbone, chat prompts, its BPE tokenizer), real GSM8K problems from
  ``../shared/data/gsm8k`` and a ProcessBench-schema benchmark made from GSM8K's reference
  solutions; a handful of problems, offline, CPU, about 3 minutes (CI runs it).

Every notebook gets the common parameters ``preset``, ``results_dir`` and ``figures_dir`` plus its
own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cpmi_lib.core.paths import REPO
from cpmi_lib.core.text_format import CHAT_INSTRUCTIONS, PROMPT_TEMPLATES
from cpmi_lib.data.world import WorldConfig
from cpmi_lib.data.world_data import WorldSpec
from cpmi_lib.experiment.config import ExperimentConfig, Labeler, default_axis
from cpmi_lib.experiment.tracks import GSM8K_REFERENCE, SHARED_GSM8K, SMOLLM2, HubSpec
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.lm.default_lm import ContinuedLMConfig, LMTrainConfig
from cpmi_lib.prm.model import PRMConfig

#: The `seeds` check (`cpmi_lib.seeds`): the default experiment with other seeds of everything
#: trained or sampled; seed 0 is the default itself.
SEED_PRESETS = ("default-seed1", "default-seed2")
PRESET_NAMES = (
    "smoke",
    "default",
    "paper-smoke",
    "real-smoke",
    "paper",
    "paper-mini",
    *SEED_PRESETS,
)
#: The paper's PRM training data (GSM8K and MATH questions, automatically labelled solutions).
MATH_SHEPHERD = "peiyi9979/Math-Shepherd"
#: Where each preset's results/ and figures/ go by default: the default run's are the committed
#: ones, the smoke runs are scratch, and a paper run gets a folder of its own.
RESULT_ROOTS: dict[str, Path] = {
    "default": REPO,
    "smoke": REPO / ".cache" / "smoke",
    "paper-smoke": REPO / ".cache" / "paper-smoke",
    "real-smoke": REPO / ".cache" / "real-smoke",
    "paper": REPO / "paper",
    "paper-mini": REPO / "paper-mini",
    **{name: REPO / ".cache" / "seeds" / name for name in SEED_PRESETS},
}
COMMON_PARAMETERS = ("preset", "results_dir", "figures_dir")

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


def seeded(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    """`cfg` with another seed for the world LM, the PRM backbone LM, the policy's samples,
    the labels' randomness and the PRMs; the world (problems, benchmark) stays the same."""
    lm = replace(cfg.lm, seed=seed)
    prm_lm = cfg.prm_lm and replace(cfg.prm_lm, parent=lm, seed=seed + 1000)
    return replace(cfg, lm=lm, prm_lm=prm_lm, prm=replace(cfg.prm, seed=seed), seed=seed)


def experiment_config(preset: str) -> ExperimentConfig:
    """The experiment of a preset."""
    if preset == "default":
        return ExperimentConfig()
    if preset in SEED_PRESETS:
        return seeded(ExperimentConfig(), int(preset.rsplit("seed", 1)[1]))
    if preset == "paper":
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
    if preset == "paper-mini":
        paper = experiment_config("paper")
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
    if preset == "paper-smoke":
        return replace(
            experiment_config("smoke"), hub=HubSpec.embedded(("short", "medium", "long"))
        )
    if preset == "real-smoke":
        return _real_smoke()
    if preset == "smoke":
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
            prm_lm=ContinuedLMConfig(
                parent=lm, n_train_problems=500, train_steps=30, warmup_steps=5
            ),
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
        )
    raise ValueError(f"unknown preset {preset!r}; known: {PRESET_NAMES}")


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


def labeler_axis(preset: str) -> tuple[Labeler, ...]:
    """The labelers of a preset's capability axis (`cpmi_lib.studies.labeler_skill`; embedded track
    only)."""
    cfg = experiment_config(preset)
    if preset in ("smoke", "paper-smoke"):
        return default_axis(cfg.lm, cfg.prm_lm, steps=10, problems=300)
    return default_axis(cfg.lm, cfg.prm_lm)


_DEFAULT_NOTEBOOKS: dict[str, dict[str, Any]] = {
    "build_data": {},
    "explore_single_problem": {
        "problem_index": 0,
        "variant": "cumulative",
        "labelers": ["policy", "anticipate"],
    },
    "label_cost": {},
    "label_quality": {},
    "train_prm": {},
    "processbench": {},
    "best_of_n": {},
    "instrument": {},
    "labelers": {
        "skill_problems": 100,
        "select_trajectories": 300,
        "quality_trajectories": 300,
    },
    "ablations": {
        "n_trajectories": 300,
        "negatives_grid": [0, 1, 2, 4, 8],
        "templates_grid": [1, 2, 4],
    },
    # real GSM8K text and SmolLM2, the same on every track (`cpmi_lib.studies.real_verifier`)
    # sized to run in about 6-7 minutes here (2.5 s a problem at K = 1, M = 1)
    "real_gsm8k_verifier": {"problems": 150, "templates": 1, "n_negatives": 1},
}

#: Notebook-specific parameters of each preset (in dependency order of the notebooks).
_SMOKE_NOTEBOOKS: dict[str, dict[str, Any]] = {
    **_DEFAULT_NOTEBOOKS,
    "labelers": {
        "skill_problems": 8,
        "select_trajectories": 12,
        "quality_trajectories": 12,
    },
    "ablations": {"n_trajectories": 12, "negatives_grid": [0, 2], "templates_grid": [1, 2]},
    "real_gsm8k_verifier": {"problems": 2, "templates": 1, "n_negatives": 1},
}
#: The hub track has no labeler axis (it needs the exact step truth): the policy labels alone.
_POLICY_ONLY = {"explore_single_problem": {"problem_index": 0, "variant": "cumulative"}}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": _DEFAULT_NOTEBOOKS,
    "smoke": _SMOKE_NOTEBOOKS,
    "paper-smoke": _SMOKE_NOTEBOOKS | _POLICY_ONLY,
    "real-smoke": _SMOKE_NOTEBOOKS | _POLICY_ONLY,
    "paper": _DEFAULT_NOTEBOOKS | _POLICY_ONLY,
    "paper-mini": _DEFAULT_NOTEBOOKS | _POLICY_ONLY,
    **{name: _DEFAULT_NOTEBOOKS for name in SEED_PRESETS},
}
