"""Presets of the experiment grid: what every notebook is run with.

``smoke`` (tiny sizes, minutes on 2 CPU cores, used by CI) and ``default`` (the embedded track).
Every notebook gets the common parameters ``preset``, ``results_dir`` and ``figures_dir`` plus its
own.
"""

from __future__ import annotations

from typing import Any

from cpmi_lib.cpmi import CPMIConfig
from cpmi_lib.default_lm import LMTrainConfig
from cpmi_lib.mc import MCConfig
from cpmi_lib.prm import PRMConfig
from cpmi_lib.prm_experiment import ExperimentConfig
from cpmi_lib.text_format import PROMPT_TEMPLATES
from cpmi_lib.world import WorldConfig
from cpmi_lib.world_data import WorldSpec

PRESET_NAMES = ("smoke", "default")
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


def experiment_config(preset: str) -> ExperimentConfig:
    """The embedded-track experiment of a preset."""
    if preset == "default":
        return ExperimentConfig()
    if preset == "smoke":
        return ExperimentConfig(
            world=WorldSpec(
                world=_SMOKE_WORLD,
                sizes={"train": 40, "dev": 90, "test": 90},
                benchmark_per_subset=10,
            ),
            lm=LMTrainConfig(
                world=_SMOKE_WORLD,
                n_train_problems=2000,
                hidden_size=64,
                intermediate_size=128,
                num_layers=1,
                num_heads=2,
                train_steps=150,
                batch_size=32,
                warmup_steps=20,
            ),
            train_problems=30,
            dev_problems=10,
            samples_per_problem=2,
            cpmi=CPMIConfig(templates=PROMPT_TEMPLATES),
            n_negatives=2,
            mc=MCConfig(n_rollouts=2, max_new_tokens=60),
            prm=PRMConfig(epochs=1, lr=1e-3, batch_size=16, threads=2),
            bon_problems=10,
            bon_pool=4,
            bon_ns=(1, 2, 4),
        )
    raise ValueError(f"unknown preset {preset!r}; known: {PRESET_NAMES}")


_DEFAULT_NOTEBOOKS: dict[str, dict[str, Any]] = {
    "build_data": {},
    "explore_single_problem": {"problem_index": 0, "variant": "cumulative"},
    "label_cost": {},
    "label_quality": {},
    "train_prm": {},
    "processbench": {},
    "best_of_n": {},
    "ablations": {
        "n_trajectories": 300,
        "negatives_grid": [0, 1, 2, 4, 8],
        "templates_grid": [1, 2, 4],
    },
}

#: Notebook-specific parameters of each preset (in dependency order of the notebooks).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": _DEFAULT_NOTEBOOKS,
    "smoke": {
        **_DEFAULT_NOTEBOOKS,
        "ablations": {"n_trajectories": 12, "negatives_grid": [0, 2], "templates_grid": [1, 2]},
    },
}
