"""Test-wide settings and shared fixtures.

The suite never reaches a model or data hub from its tests. Tests that need a real LM share one
miniature world LM, trained once per session in a few seconds with the default LM's own recipe.
"""

import os

# Set before transformers/datasets/huggingface_hub are imported: they read these at import time.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from cpmi_lib.default_lm import LMTrainConfig, ensure_default_lm  # noqa: E402
from cpmi_lib.lm import load_lm  # noqa: E402
from cpmi_lib.world import WorldConfig  # noqa: E402


@pytest.fixture(scope="session")
def tiny_world() -> WorldConfig:
    """A small world: 2-3 steps, one-digit operands, no distractors."""
    return WorldConfig(
        min_steps=2,
        max_steps=3,
        start_range=(2, 9),
        add_range=(2, 9),
        mul_range=(2, 3),
        div_range=(2, 3),
        max_value=99,
        distractors=(0, 0),
    )


@pytest.fixture(scope="session")
def tiny_lm_config(tiny_world) -> LMTrainConfig:
    """The default LM recipe, miniature: enough steps that it writes steps and answer lines.

    One thread: on two shared, busy cores, two threads slow tiny matmuls down a hundredfold.
    """
    return LMTrainConfig(
        world=tiny_world,
        n_train_problems=500,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        train_steps=300,
        batch_size=16,
        warmup_steps=5,
        lr=3e-3,
        threads=1,
    )


@pytest.fixture(scope="session")
def tiny_lm_cache(tmp_path_factory, tiny_lm_config):
    cache = tmp_path_factory.mktemp("lm-cache")
    ensure_default_lm(tiny_lm_config, cache=cache, progress=False)
    return cache


@pytest.fixture(scope="session")
def tiny_lm_dir(tiny_lm_cache, tiny_lm_config):
    return ensure_default_lm(tiny_lm_config, cache=tiny_lm_cache, progress=False)


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir):
    """(model, tokenizer) of the miniature world LM."""
    return load_lm(tiny_lm_dir)
