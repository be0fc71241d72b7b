"""The replayed `generate` (`cpmi_lib.lm.fast_generate`) against Hugging Face `generate` itself:
the same tokens, bit for bit, and the same random stream left behind, for a Llama, a GPT-2
(learned positions) and SmolLM2 (a real 30-layer model), with and without padding, greedy and
sampled, with rows that finish early and rows cut at the token limit."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from cpmi_lib.core.text_format import render_prompt
from cpmi_lib.data.world import build_world
from cpmi_lib.lm.fast_generate import replays_generate
from cpmi_lib.lm.rollouts import left_padded
from cpmi_lib.lm.sampling import SampleConfig, generate_batch, generate_texts
from tests.test_rollouts import gpt2


@pytest.fixture(scope="module")
def prompts(tiny_world):
    problems = build_world(tiny_world, {"test": 10}, seed=3)["test"]
    return [render_prompt(p.question) for p in problems]


def both_ways(model, tok, prompts, cfg: SampleConfig, seed: int = 11):
    """(tokens, random state after) of `generate` and of the replay, from the same seed."""
    ids, mask = left_padded([tok(p).input_ids for p in prompts], tok.pad_token_id)
    out = {}
    for replay in (False, True):
        torch.manual_seed(seed)
        new = generate_batch(model, ids, mask, cfg, tok.pad_token_id, tok.eos_token_id, replay)
        out[replay] = (new, torch.get_rng_state())
    return out[False], out[True]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize(("temperature", "n"), [(0.0, 1), (0.7, 3), (1.5, 2)])
def test_the_replay_gives_generates_tokens(tiny_lm, prompts, arch, temperature, n):
    model, tok = tiny_lm
    if arch == "gpt2":
        model = gpt2(tok)
    cfg = SampleConfig(n=n, temperature=temperature, max_new_tokens=30)
    (want, want_rng), (got, got_rng) = both_ways(model, tok, prompts, cfg)
    assert got.dtype == want.dtype and torch.equal(got, want)
    assert torch.equal(got_rng, want_rng)  # as many draws as `generate` made


def test_the_case_exercises_early_ends_and_the_limit(tiny_lm, prompts):
    """The trained tiny LM ends most rows early (finished rows leave the batch) and runs the
    others to the limit, so the test above covers both."""
    model, tok = tiny_lm
    (want, _), (got, _) = both_ways(model, tok, prompts, SampleConfig(n=3, max_new_tokens=30))
    ended = (want == tok.eos_token_id).any(dim=1)
    assert torch.equal(got, want)
    assert int(ended.sum()) * 4 >= want.shape[0]  # enough for finished rows to leave the batch
    assert int(ended.sum()) < want.shape[0] and want.shape[1] == 30  # some reach the limit


def test_unpadded_batches_replay_too(tiny_lm, prompts):
    """Prompts of one length: `generate` drops the all-ones mask, and so does the replay."""
    model, tok = tiny_lm
    one = [prompts[0]] * 4
    (want, _), (got, _) = both_ways(model, tok, one, SampleConfig(n=2, max_new_tokens=20))
    assert torch.equal(got, want)


def test_smollm2_replays_generate(smollm2_dir):
    from cpmi_lib.lm.load import load_lm

    model, tok = load_lm(smollm2_dir)
    if not replays_generate(model):
        pytest.skip("SmolLM2's generation config adds logits processors; generate is used")
    questions = ["What is 12 + 30?", "Name a colour."]
    cfg = SampleConfig(n=2, temperature=0.7, max_new_tokens=12)
    (want, want_rng), (got, got_rng) = both_ways(model, tok, questions, cfg)
    assert torch.equal(got, want) and torch.equal(got_rng, want_rng)


def test_generation_configs_that_add_processors_go_through_generate(tiny_lm):
    model, _ = tiny_lm
    assert replays_generate(model)
    original = model.generation_config
    try:
        for extra in ({"repetition_penalty": 1.1}, {"top_k": 20}, {"min_new_tokens": 3}):
            model.generation_config = GenerationConfig(**{**original.to_diff_dict(), **extra})
            assert not replays_generate(model), extra
    finally:
        model.generation_config = original


def test_models_off_the_cpu_go_through_generate(tiny_lm, monkeypatch):
    """The replay is held to `generate` on the CPU only (a GPU's kernels may depend on the
    batch's shape), so a model on another device is not replayed."""
    model, _ = tiny_lm
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("meta")))
    assert not replays_generate(model)


def test_generate_texts_is_unchanged_by_the_replay(tiny_lm, prompts, monkeypatch):
    """Texts, token counts and batches through `generate_texts` as `generate` gives them."""
    model, tok = tiny_lm
    cfg = SampleConfig(n=2, temperature=1.0, max_new_tokens=30, batch_size=6, seed=4)
    fast = generate_texts(model, tok, prompts, cfg)
    monkeypatch.setattr("cpmi_lib.lm.sampling.replays_generate", lambda model: False)
    assert generate_texts(model, tok, prompts, cfg) == fast
