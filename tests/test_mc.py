"""MC step values: exact values from scripted rollouts, the prefixes rolled out, and a real LM.

Scripted models stand in for an LM inside the real rollout engine (prefix encoding, cache
copies, row selection, decoding, cost metering all run), so the values they force are known
exactly. A miniature world LM trained for a few seconds covers real sampling: seeding, blocks of
trajectories, the slow reference and the meter.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import DynamicCache

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.text_format import render_prompt, split_solution
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_tokenizer import build_world_tokenizer
from cpmi_lib.labeling.mc import (
    MCConfig,
    MCResult,
    MCTask,
    StepValue,
    mc_block,
    mc_rollouts,
    mc_step_values,
    prefix_prompts,
    prefix_seed,
)
from cpmi_lib.lm.logprob import SequenceTooLongError
from cpmi_lib.lm.rollouts import reference_continuations


@pytest.fixture(scope="module")
def problem(tiny_world):
    """A three-step world problem (gold answer 1)."""
    return next(p for p in build_world(tiny_world, {"test": 8}, seed=0)["test"] if p.n_steps == 3)


@pytest.fixture(scope="module")
def tok():
    return build_world_tokenizer()


class ScriptedLM(torch.nn.Module):
    """A causal-LM stand-in for the rollout engine: every row writes a scripted completion, then
    EOS, whatever its random draws.

    ``choose(prompt_ids) -> k`` picks the script ``scripts[k]`` from the row's prompt (default:
    the first). The row's history lives in a real `DynamicCache` (token ids as keys, 1 for a
    prompt token, 0 for a generated one, -1 for padding as values), so the engine's cache copies
    and row selection keep rows straight exactly as with a transformer. It records each call's
    rows and the prompt tokens it was given.
    """

    def __init__(self, tokenizer, scripts: list[str], choose=None):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the engine reads the device from it
        self.scripts = [
            tokenizer(s, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            for s in scripts
        ]
        self.vocab = tokenizer.vocab_size + 8
        self.choose = choose or (lambda prompt_ids: 0)
        self.prefill_rows: list[int] = []
        self.prompt_tokens = 0

    def forward(self, input_ids, attention_mask, cache=None, **_):
        kind = attention_mask[:, -input_ids.shape[1] :].float()  # 1 for real tokens, 0 padding
        if cache is None:
            cache = DynamicCache()
            self.prefill_rows.append(input_ids.shape[0])
            self.prompt_tokens += int(attention_mask.sum())
            kind = kind * 2 - 1  # a prompt token 1, padding -1
        else:
            kind = kind * 0  # generated
        ids = input_ids.float()[:, None, :, None]
        cache.update(ids, kind[:, None, :, None], 0)
        history, kinds = cache.layers[0].keys[:, 0, :, 0], cache.layers[0].values[:, 0, :, 0]
        logits = torch.full((input_ids.shape[0], 1, self.vocab), -1e9)
        for r in range(input_ids.shape[0]):
            prompt = history[r][kinds[r] == 1].long().tolist()
            script = self.scripts[self.choose(prompt)]
            written = int((kinds[r] == 0).sum())
            logits[r, 0, script[min(written, len(script) - 1)]] = 0.0
        return SimpleNamespace(logits=logits, cache=cache)


def _run_scripted(tok, problem, scripts, n=4):
    model = ScriptedLM(tok, scripts)
    meter = CostMeter()
    cfg = MCConfig(n_rollouts=n, max_new_tokens=64)
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
    # one engine call; each of the 3 prefixes is encoded once, then copied to its 4 rows
    assert model.prefill_rows == [3]
    assert meter.costs.generate_calls == 1
    n_answer = len(tok(right, add_special_tokens=False).input_ids) + 1  # + EOS
    assert meter.costs.generated_tokens == 12 * n_answer
    prompt_tokens = sum(len(tok(p).input_ids) for p in result.prompts)
    assert meter.costs.forward_tokens == prompt_tokens == model.prompt_tokens
    assert (result.prompt_tokens, result.generated_tokens) == (prompt_tokens, 12 * n_answer)


def test_forced_wrong_answers_give_value_zero(tok, problem):
    wrong = f"The answer is: {int(problem.answer) + 1}"
    values = _run_scripted(tok, problem, [wrong])[0].values
    assert values == [StepValue(0.0, 0, 4)] * 3
    assert not any(v.hard for v in values)


def test_the_first_answer_line_counts(tok, problem):
    # a correct rollout may write steps before its answer line; the first answer line counts
    right = f"{problem.gold_steps[-1]}\nThe answer is: {problem.answer}"
    wrong = f"The answer is: {int(problem.answer) + 1}\nThe answer is: {problem.answer}"
    assert _run_scripted(tok, problem, [right])[0].values == [StepValue(1.0, 4, 4)] * 3
    result = _run_scripted(tok, problem, [wrong])[0]
    assert result.values == [StepValue(0.0, 0, 4)] * 3
    assert result.answers[0] == [str(int(problem.answer) + 1)] * 4


def test_rollouts_without_an_answer_line_are_wrong(tok, problem):
    result = _run_scripted(tok, problem, [problem.gold_steps[-1], ""])[0]
    assert result.values == [StepValue(0.0, 0, 4)] * 3
    assert result.answers == [[None] * 4] * 3


def test_prefix_prompts_and_their_rollouts(tok, problem):
    """Prefix i is rolled out from template + s_1..s_i, each followed by the separator, and its
    rollouts are scored against it (here right only once the prefix holds two steps or more)."""
    template, sep = "Q: {question}\nSolution:\n", " ;; "
    steps = problem.gold_steps
    two_steps = len(tok(prefix_prompts(problem.question, steps, template, sep)[1]).input_ids)
    right, wrong = f"The answer is: {problem.answer}", f"The answer is: {int(problem.answer) + 1}"
    model = ScriptedLM(tok, [wrong, right], choose=lambda ids: int(len(ids) >= two_steps))
    cfg = MCConfig(
        n_rollouts=3,
        temperature=0.9,
        max_new_tokens=17,
        seed=5,
        template=template,
        step_separator=sep,
    )
    result = mc_rollouts(model, tok, problem.question, steps, problem.answer, cfg)
    expected = [
        render_prompt(problem.question, template) + "".join(s + sep for s in steps[:i])
        for i in range(1, len(steps) + 1)
    ]
    assert result.prompts == expected == prefix_prompts(problem.question, steps, template, sep)
    assert expected[-1].endswith(steps[-1] + sep)
    assert model.prefill_rows == [3]  # one call, each prefix encoded once
    assert [v.value for v in result.values] == [0.0, 1.0, 1.0]
    assert result.rollouts == [[wrong] * 3, [right] * 3, [right] * 3]
    values = mc_step_values(model, tok, problem.question, steps, problem.answer, cfg)
    assert values == result.values


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_rollouts": 0},
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"temperature": math.inf},
        {"temperature": math.nan},
        {"batch_trajectories": 0},
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
    assert model.prefill_rows == []  # nothing was generated


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


def test_real_lm_rollouts_are_seeded_and_metered(tiny_lm, problem):
    model, tok = tiny_lm
    steps, gold = problem.gold_steps, problem.answer
    cfg = MCConfig(n_rollouts=4, temperature=1.0, max_new_tokens=40, seed=0)
    meter = CostMeter()
    a = mc_rollouts(model, tok, problem.question, steps, gold, cfg, meter)
    b = mc_rollouts(model, tok, problem.question, steps, gold, cfg)
    c = mc_rollouts(
        model, tok, problem.question, steps, gold, MCConfig(**{**cfg.to_dict(), "seed": 1})
    )
    assert isinstance(a, MCResult) and a == b
    assert a.rollouts != c.rollouts
    assert meter.costs.generate_calls == 1
    assert meter.costs.forward_tokens == sum(len(tok(p).input_ids) for p in a.prompts)
    assert meter.costs.generated_tokens == a.generated_tokens > 0
    assert [len(r) for r in a.rollouts] == [4, 4, 4] and any(t for r in a.rollouts for t in r)
    for v, texts, answers in zip(a.values, a.rollouts, a.answers, strict=True):
        assert answers == [split_solution(t)[1] for t in texts]
        n_correct = sum(x is not None and answers_equivalent(gold, x) for x in answers)
        assert v == StepValue(n_correct / 4, n_correct, 4)
        assert 0.0 <= v.value <= 1.0 and v.hard == (n_correct > 0)


def test_a_block_gives_each_trajectory_its_values_alone(tiny_lm, tiny_world):
    """Trajectories rolled out together get the values each gets alone (with its own seed), and
    every rollout equals the slow reference (no cache, one row at a time)."""
    model, tok = tiny_lm
    problems = build_world(tiny_world, {"test": 6}, seed=3)["test"][:3]
    cfg = MCConfig(n_rollouts=3, temperature=1.0, max_new_tokens=30)
    tasks = [
        MCTask(p.question, p.gold_steps, p.answer, seed=10 + k) for k, p in enumerate(problems)
    ]
    together = mc_block(model, tok, tasks, cfg)
    for task, result in zip(tasks, together, strict=True):
        alone = mc_rollouts(
            model,
            tok,
            task.question,
            task.steps,
            task.gold,
            MCConfig(**{**cfg.to_dict(), "seed": task.seed}),
        )
        assert alone.values == result.values and alone.rollouts == result.rollouts
        reference = reference_continuations(
            model,
            tok,
            result.prompts,
            3,
            seeds=[prefix_seed(task.seed, i) for i in range(len(task.steps))],
            temperature=1.0,
            max_new_tokens=30,
        )
        assert reference == result.rollouts
