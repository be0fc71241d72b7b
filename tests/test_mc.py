"""MC step values: exact values from scripted rollouts, the prefixes rolled out, and a real LM.

Scripted models stand in for an LM inside the real `generate_texts` (batching, padding, decoding,
cost metering all run), so the values they force are known exactly. A miniature world LM trained
for a few seconds covers real sampling: seeding, batching and the meter.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.text_format import render_prompt, split_solution
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_tokenizer import build_world_tokenizer
from cpmi_lib.labeling import mc
from cpmi_lib.labeling.mc import (
    MCConfig,
    MCResult,
    StepValue,
    mc_rollouts,
    mc_step_values,
    prefix_prompts,
)
from cpmi_lib.lm.logprob import SequenceTooLongError
from cpmi_lib.lm.sampling import SampleConfig


@pytest.fixture(scope="module")
def problem(tiny_world):
    """A three-step world problem (gold answer 1)."""
    return next(p for p in build_world(tiny_world, {"test": 8}, seed=0)["test"] if p.n_steps == 3)


@pytest.fixture(scope="module")
def tok():
    return build_world_tokenizer()


class ScriptedLM(torch.nn.Module):
    """A causal-LM stand-in whose generate writes scripted completions, cycling over all rows.

    Row r of all generate calls together writes ``scripts[r % len(scripts)]`` then EOS, padded
    after EOS the way transformers pads finished rows. It records each call's number of rows.
    """

    def __init__(self, tokenizer, scripts: list[str]):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # generate_texts reads the device from it
        self.scripts = [
            tokenizer(s, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            for s in scripts
        ]
        self.rows = 0
        self.call_rows: list[int] = []

    def generate(self, input_ids, num_return_sequences, max_new_tokens, pad_token_id, **_):
        prompts = input_ids.repeat_interleave(num_return_sequences, dim=0)
        new = []
        for _ in range(prompts.shape[0]):
            new.append(self.scripts[self.rows % len(self.scripts)][:max_new_tokens])
            self.rows += 1
        out = torch.full((len(new), max(map(len, new))), pad_token_id, dtype=torch.long)
        for r, ids in enumerate(new):
            out[r, : len(ids)] = torch.tensor(ids)
        self.call_rows.append(len(new))
        return torch.cat([prompts, out], dim=1)


def _run_scripted(tok, problem, scripts, n=4, batch_size=5):
    model = ScriptedLM(tok, scripts)
    meter = CostMeter()
    cfg = MCConfig(n_rollouts=n, batch_size=batch_size, max_new_tokens=64)
    result = mc_rollouts(
        model, tok, problem.question, problem.gold_steps, problem.answer, cfg, meter
    )
    return result, model, meter


def test_forced_right_answers_give_value_one(tok, problem):
    right = f"The answer is: {problem.answer}"
    result, model, meter = _run_scripted(tok, problem, [right])
    assert [v.value for v in result.values] == [1.0, 1.0, 1.0]
    assert all(v.hard and v.n_correct == 4 and v.n_rollouts == 4 for v in result.values)
    assert result.rollouts == [[right] * 4] * 3
    assert result.answers == [[problem.answer] * 4] * 3
    # 3 prefixes × 4 rollouts in calls of at most 5 sequences: ceil(12 / 5) = 3 calls
    assert model.call_rows == [5, 5, 2]
    assert meter.costs.generate_calls == 3
    n_answer = len(tok(right, add_special_tokens=False).input_ids) + 1  # + EOS
    assert meter.costs.generated_tokens == 12 * n_answer
    prompt_tokens = sum(len(tok(p).input_ids) for p in result.prompts) * 4
    assert meter.costs.forward_tokens == prompt_tokens


def test_forced_wrong_answers_give_value_zero(tok, problem):
    wrong = f"The answer is: {int(problem.answer) + 1}"
    values = _run_scripted(tok, problem, [wrong])[0].values
    assert values == [StepValue(0.0, 0, 4)] * 3
    assert not any(v.hard for v in values)


def test_alternating_rollouts_give_one_half(tok, problem):
    # a correct rollout may write steps before its answer line; the first answer line counts
    right = f"{problem.gold_steps[-1]}\nThe answer is: {problem.answer}"
    wrong = f"The answer is: {int(problem.answer) + 1}\nThe answer is: {problem.answer}"
    result = _run_scripted(tok, problem, [right, wrong])[0]
    assert result.values == [StepValue(0.5, 2, 4)] * 3
    assert all(v.hard for v in result.values)
    assert result.answers[0] == [problem.answer, str(int(problem.answer) + 1)] * 2


def test_rollouts_without_an_answer_line_are_wrong(tok, problem):
    result = _run_scripted(tok, problem, [problem.gold_steps[-1], ""])[0]
    assert result.values == [StepValue(0.0, 0, 4)] * 3
    assert result.answers == [[None] * 4] * 3


def test_prefix_prompts_and_sampling_config(problem, monkeypatch):
    """Prefix i is rolled out from template + s_1..s_i, each followed by the separator."""
    template, sep = "Q: {question}\nSolution:\n", " ;; "
    calls: list[tuple[list[str], SampleConfig]] = []

    def fake_generate_texts(model, tokenizer, prompts, cfg, progress=False, meter=None):
        calls.append((list(prompts), cfg))
        # right only once the prefix holds two steps or more: checks rollouts map to prefixes
        texts = [
            [f"The answer is: {problem.answer if p.count(sep) >= 2 else 'none'}"] * cfg.n
            for p in prompts
        ]
        return texts, 0

    monkeypatch.setattr(mc, "generate_texts", fake_generate_texts)
    steps = problem.gold_steps
    cfg = MCConfig(
        n_rollouts=3,
        temperature=0.9,
        max_new_tokens=17,
        seed=5,
        template=template,
        step_separator=sep,
        batch_size=7,
    )
    result = mc_rollouts(None, None, problem.question, steps, problem.answer, cfg)
    expected = [
        render_prompt(problem.question, template) + "".join(s + sep for s in steps[:i])
        for i in range(1, len(steps) + 1)
    ]
    assert result.prompts == expected == prefix_prompts(problem.question, steps, template, sep)
    assert expected[-1].endswith(steps[-1] + sep)
    ((prompts, sample_cfg),) = calls  # one call: generate_texts batches by itself
    assert prompts == [p for p in expected for _ in range(3)]
    assert sample_cfg == SampleConfig(
        n=1, temperature=0.9, max_new_tokens=17, batch_size=7, seed=5, template=template
    )
    assert [v.value for v in result.values] == [0.0, 1.0, 1.0]
    values = mc_step_values(None, None, problem.question, steps, problem.answer, cfg)
    assert values == result.values


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_rollouts": 0},
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"temperature": math.inf},
        {"temperature": math.nan},
        {"batch_size": 0},
        {"max_new_tokens": 0},
        {"template": "no placeholder"},
    ],
)
def test_invalid_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        MCConfig(**kwargs)


def test_prefixes_past_the_models_positions_are_refused_before_generating(tok, problem):
    """Every prefix plus max_new_tokens must fit the model's positions; the limit itself fits."""
    right = f"The answer is: {problem.answer}"
    cfg = MCConfig(n_rollouts=2, max_new_tokens=64)
    prompts = prefix_prompts(problem.question, problem.gold_steps, cfg.template)
    longest = len(tok(prompts[-1]).input_ids)
    model = ScriptedLM(tok, [right])
    model.config = SimpleNamespace(max_position_embeddings=longest + 64)
    result = mc_rollouts(model, tok, problem.question, problem.gold_steps, problem.answer, cfg)
    assert [v.value for v in result.values] == [1.0, 1.0, 1.0]
    model = ScriptedLM(tok, [right])
    model.config = SimpleNamespace(max_position_embeddings=longest + 63)
    with pytest.raises(
        SequenceTooLongError,
        match=rf"^prefix of step 3 \({longest} tokens\) \+ max_new_tokens \(64\) = "
        rf"{longest + 64} tokens exceeds the model's limit of {longest + 63} positions$",
    ):
        mc_rollouts(model, tok, problem.question, problem.gold_steps, problem.answer, cfg)
    assert model.call_rows == []  # nothing was generated


def test_no_steps_is_refused(problem):
    with pytest.raises(ValueError, match="no steps"):
        mc_step_values(None, None, problem.question, [], problem.answer, MCConfig())


def test_hard_label_is_any_correct_rollout():
    assert StepValue(0.125, 1, 8).hard and not StepValue(0.0, 0, 8).hard
    assert StepValue(0.5, 1, 2).to_dict() == {
        "value": 0.5,
        "n_correct": 1,
        "n_rollouts": 2,
        "hard": True,
    }


def test_real_lm_rollouts_are_seeded_batched_and_metered(tiny_lm, problem):
    model, tok = tiny_lm
    steps, gold = problem.gold_steps, problem.answer
    cfg = MCConfig(n_rollouts=4, temperature=1.0, max_new_tokens=40, batch_size=6, seed=0)
    meter = CostMeter()
    a = mc_rollouts(model, tok, problem.question, steps, gold, cfg, meter)
    b = mc_rollouts(model, tok, problem.question, steps, gold, cfg)
    c = mc_rollouts(
        model, tok, problem.question, steps, gold, MCConfig(**{**cfg.to_dict(), "seed": 1})
    )
    assert isinstance(a, MCResult) and a == b
    assert a.rollouts != c.rollouts
    # 3 prefixes × 4 rollouts, 6 sequences a call (a whole-prompt batching would need 3 calls)
    assert meter.costs.generate_calls == math.ceil(3 * 4 / 6) == 2
    assert meter.costs.forward_tokens == 4 * sum(len(tok(p).input_ids) for p in a.prompts)
    assert meter.costs.generated_tokens > 0
    assert [len(r) for r in a.rollouts] == [4, 4, 4] and any(t for r in a.rollouts for t in r)
    for v, texts, answers in zip(a.values, a.rollouts, a.answers, strict=True):
        assert answers == [split_solution(t)[1] for t in texts]
        n_correct = sum(x is not None and answers_equivalent(gold, x) for x in answers)
        assert v == StepValue(n_correct / 4, n_correct, 4)
        assert 0.0 <= v.value <= 1.0 and v.hard == (n_correct > 0)
