"""The rollout engine against slow, obvious references: the sampling kernel against a loop over
the CDF, the engine (shared prompt encoding, room-made cache, dropped rows, blocks) against
decoding each row alone without a cache, for a Llama and a GPT-2 (learned positions)."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.text_format import render_prompt
from cpmi_lib.data.world import build_world
from cpmi_lib.lm import rollouts
from cpmi_lib.lm.rollouts import (
    pick_tokens,
    reference_continuations,
    row_uniforms,
    sample_continuations,
)


def slow_pick(logits: torch.Tensor, u: float, temperature: float) -> int:
    """The first token whose cumulative probability reaches u (greedy: the largest logit)."""
    if temperature == 0:
        return int(max(range(len(logits)), key=lambda i: float(logits[i])))
    probs = torch.softmax(logits.float() / temperature, dim=-1).double().tolist()
    total = 0.0
    for i, p in enumerate(probs):
        total += p
        if u <= total:
            return i
    return max(i for i, p in enumerate(probs) if p > 0)


@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.5])
def test_pick_tokens_matches_a_loop_over_the_cdf(temperature):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn((64, 11), generator=gen) * 3
    logits[5, 7:] = -torch.inf  # tokens that cannot be drawn
    u = torch.rand(64, generator=gen, dtype=torch.float64)
    u[5] = 1.0 - 1e-17  # past the rounded end of the CDF: the last possible token
    got = pick_tokens(logits, u, temperature).tolist()
    assert got == [slow_pick(logits[i], float(u[i]), temperature) for i in range(64)]
    assert got[5] <= 6


def test_row_uniforms_are_a_stream_per_seed():
    a, b = row_uniforms(3, 4, 10), row_uniforms(3, 4, 10)
    assert torch.equal(a, b) and a.dtype == torch.float64 and a.shape == (4, 10)
    assert not torch.equal(a, row_uniforms(4, 4, 10))


@pytest.fixture(scope="module")
def prompts(tiny_world):
    problems = build_world(tiny_world, {"test": 8}, seed=5)["test"]
    return [render_prompt(p.question) for p in problems[:4]]


def gpt2(tok) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=512, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_engine_equals_decoding_each_row_alone(tiny_lm, prompts, arch, temperature):
    model, tok = tiny_lm
    if arch == "gpt2":
        model = gpt2(tok)
    kw = {"temperature": temperature, "max_new_tokens": 25}
    n = 1 if temperature == 0 else 3
    fast = sample_continuations(model, tok, prompts, n, seeds=[7, 8, 9, 10], **kw)
    slow = reference_continuations(model, tok, prompts, n, seeds=[7, 8, 9, 10], **kw)
    assert fast.texts == slow
    assert [len(t) for t in fast.texts] == [n] * 4
    if temperature:
        assert len({t for group in fast.texts for t in group}) > 1  # it really samples


def test_a_prompts_rows_do_not_depend_on_its_batch(tiny_lm, prompts, monkeypatch):
    """Alone or with others, whenever finished rows leave: the same texts for the same seed."""
    model, tok = tiny_lm
    kw = {"temperature": 1.0, "max_new_tokens": 30}
    together = sample_continuations(model, tok, prompts, 4, seeds=[1, 2, 3, 4], **kw).texts
    for keep_finished in (1, 2, 1000):  # leave at once, at half the batch, never
        monkeypatch.setattr(rollouts, "COMPACT_AT", keep_finished)
        alone = sample_continuations(model, tok, prompts[2:3], 4, seeds=[3], **kw).texts
        assert alone == together[2:3]
    other = sample_continuations(model, tok, prompts[2:3], 4, seeds=[99], **kw).texts
    assert other != together[2:3]


def test_the_meter_counts_each_prompt_once_and_each_row_to_its_eos(tiny_lm, prompts):
    model, tok = tiny_lm
    meter = CostMeter(1000)
    out = sample_continuations(
        model, tok, prompts, 3, seeds=[0, 1, 2, 3], temperature=1.0, max_new_tokens=40,
        meter=meter,
    )  # fmt: skip
    assert out.prompt_tokens == [len(tok(p).input_ids) for p in prompts]
    lengths = []
    for group in out.texts:
        for text in group:
            ids = tok(text, add_special_tokens=False).input_ids
            lengths.append(min(len(ids) + 1, 40))  # + EOS unless cut at the limit
    assert sum(out.new_tokens) == sum(lengths)
    costs = meter.costs
    assert costs.forward_tokens == sum(out.prompt_tokens)
    assert costs.generated_tokens == sum(out.new_tokens)
    assert costs.generate_calls == 1


def test_bad_arguments_are_refused(tiny_lm, prompts):
    model, tok = tiny_lm
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        sample_continuations(
            model, tok, prompts[:2], 1, seeds=[0], temperature=1.0, max_new_tokens=5
        )
    with pytest.raises(ValueError, match=">= 1"):
        sample_continuations(model, tok, prompts, 0, seeds=[0] * 4, temperature=1, max_new_tokens=5)
    empty = sample_continuations(model, tok, [], 2, seeds=[], temperature=1.0, max_new_tokens=5)
    assert empty.texts == [] and empty.new_tokens == []


def test_the_room_made_cache_refuses_to_run_past_its_room():
    keys = torch.zeros((2, 1, 3, 4))
    layer = rollouts._RoomyLayer(keys, keys.clone(), room=2)
    k, _ = layer.update(torch.ones((2, 1, 2, 4)), torch.ones((2, 1, 2, 4)))
    assert k.shape == (2, 1, 5, 4) and layer.get_seq_length() == 5 and float(k[:, :, 3:].min()) == 1
    layer.batch_select_indices(torch.tensor([1]))
    assert layer.keys.shape == (1, 1, 5, 4)
    with pytest.raises(RuntimeError, match="room for 5 tokens, 6 asked"):
        layer.update(torch.ones((1, 1, 1, 4)), torch.ones((1, 1, 1, 4)))


def test_policy_sampling_through_the_engine(tiny_lm, tiny_world):
    """Engine "rows" of `sample_solutions`: problem j's solutions are the reference's rows for
    `prompt_seed(seed, j)`, whatever the batch size or part of a launched job."""
    from cpmi_lib.lm.sampling import SampleConfig, generate_texts, prompt_part, prompt_seed

    model, tok = tiny_lm
    problems = build_world(tiny_world, {"test": 5}, seed=6)["test"]
    prompts = [render_prompt(p.question) for p in problems]
    cfg = SampleConfig(n=3, temperature=1.0, max_new_tokens=20, batch_size=6, seed=4, engine="rows")
    texts, generated = generate_texts(model, tok, prompts, cfg)
    want = reference_continuations(
        model, tok, prompts, 3, seeds=[prompt_seed(4, j) for j in range(5)], temperature=1.0,
        max_new_tokens=20,
    )  # fmt: skip
    assert texts == want and generated > 0
    wide, _ = generate_texts(model, tok, prompts, SampleConfig(**{**vars(cfg), "batch_size": 15}))
    assert wide == texts
    parts = {}
    for i in range(2):
        part_texts = generate_texts(model, tok, prompts, cfg, part=(i, 2))[0]
        parts |= dict(zip(prompt_part(5, cfg, (i, 2)), part_texts, strict=True))
    assert [parts[j] for j in range(5)] == texts
    with pytest.raises(ValueError, match="engine"):
        SampleConfig(engine="vllm")
