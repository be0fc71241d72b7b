"""Cheap checks first: a record that cannot be labeled is refused before anything costly runs.

Mining numbers is linear in the text (a 10 MB step once took minutes), CPMI refuses a trajectory
too long for the model before mining and verifying negatives, and MC's length check tokenizes
one prefix, not all of them, when everything fits.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from test_cpmi import random_lm
from transformers import LlamaConfig, LlamaForCausalLM

from cpmi_lib.core import numbers
from cpmi_lib.core.numbers import mine_trajectory_numbers
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.data.world import WorldConfig, build_world
from cpmi_lib.data.world_tokenizer import build_world_tokenizer
from cpmi_lib.labeling import cpmi as cpmi_module
from cpmi_lib.labeling.cpmi import (
    VARIANTS,
    CPMIConfig,
    check_fits,
    cpmi_step_scores,
    cpmi_trajectory,
)
from cpmi_lib.labeling.mc import MCConfig, check_prefix_lengths, mc_rollouts, prefix_prompts
from cpmi_lib.lm.logprob import SequenceTooLongError

# ------------------------------------------------------------------------------- mining


def _mine_reference(steps: Sequence[str]) -> list[str]:
    """The former, quadratic `mine_trajectory_numbers`, kept as the definition of its output."""
    results: list[str] = []
    others: list[str] = []
    for step in reversed(steps):
        for match in reversed(list(numbers._NUMBER.finditer(step))):
            before = step[: match.start()].rstrip()
            is_result = before.endswith("=") and not before.endswith(("<=", ">=", "!=", "=="))
            (results if is_result else others).append(numbers._normalize_number(match))
    return list(dict.fromkeys(results + others))


# Pieces of random texts: digits often, then everything that decides what a number is and
# whether it is a result (signs, comparisons, whitespace of several kinds, dollars, separators).
_PIECES = (
    [str(d) for d in range(10)] * 4
    + ["-", "+", "=", "<", ">", "!", " ", "  ", "\t", "\n", "\u00a0", "\u2003"]
    + ["$", "\\$", ",", ".", "a", "x", "Z", "_", "(", ")", "*", "/"]
    + ["==", "<=", ">=", "!=", "= ", "=\n", "1,000", "3.14", "-7"]
)


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 60)))


def test_mining_equals_the_former_implementation_on_random_texts():
    rng = random.Random(0)
    for _ in range(3000):
        steps = [_random_text(rng) for _ in range(rng.randint(0, 4))]
        assert mine_trajectory_numbers(steps) == _mine_reference(steps), steps


@pytest.mark.parametrize(
    "steps",
    [
        ["x = 5", "y == 6", "z <= 7", "w >= 8", "v != 9", "u =\t\n 10", "=11", "12 = 13"],
        ["total = $1,200.50 and \\$ 3", "= -4", "a=-5", "12-7 = 5", "x2 = 3.14.15"],
        ["=", " = ", "", "0 = 0.0 = -0", "1 =\u00a02", "3 =\u20034"],
    ],
)
def test_mining_equals_the_former_implementation_on_edge_cases(steps):
    assert mine_trajectory_numbers(steps) == _mine_reference(steps)


def test_mining_a_two_megabyte_step_is_linear():
    """A regression guard for the quadratic slicing (it took ~20 s), not a benchmark."""
    step = ("x = 12 + 3 = 15, so 7 <= 8 \n" * 80_000)[:2_000_000]
    start = time.perf_counter()
    mined = mine_trajectory_numbers([step])
    assert time.perf_counter() - start < 5.0
    assert mined == ["15", "12", "3", "8", "7"]


# ------------------------------------------------------------------------------- CPMI


@pytest.fixture(scope="module")
def tok():
    return build_world_tokenizer()  # adds BOS, like Llama's


@pytest.fixture(scope="module")
def lm(tok):
    """A tiny randomly initialised Llama over the world tokenizer, 512 positions (test_cpmi's)."""
    return random_lm(LlamaConfig, LlamaForCausalLM, len(tok))


@pytest.fixture(scope="module")
def problem():
    return build_world(WorldConfig(), {"test": 3}, seed=2)["test"][2]


def _positions(limit: int | None) -> Any:
    """A model stand-in that only says how many positions it has (None: it does not say)."""
    return SimpleNamespace(config=SimpleNamespace(max_position_embeddings=limit))


def _no_mining(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("negatives were mined for a trajectory that cannot fit")


def test_a_huge_step_is_refused_before_negatives_are_mined(lm, tok, monkeypatch):
    monkeypatch.setattr(cpmi_module, "negatives_for_trajectory", _no_mining)
    traj = Trajectory(
        id="huge", question="How many?", steps=["1 = 2 = 3 ", "45 = 6" * 35_000], gold_answer="7"
    )
    for variant in VARIANTS:
        cfg = CPMIConfig(variant=variant)
        start = time.perf_counter()
        with pytest.raises(SequenceTooLongError, match="exceeds the model's limit of 512"):
            cpmi_trajectory(lm, tok, traj, cfg, n_negatives=4)
        assert time.perf_counter() - start < 10.0


def test_check_fits_agrees_with_the_full_check_at_the_limit(tok, problem):
    """At one position short of the longest context plus the gold, both refuse alike; with
    that position, the cheap check passes."""
    for variant in VARIANTS:
        cfg = CPMIConfig(variant=variant, templates=("Question: {question}\nAnswer:\n",))
        everything = "Question: " + problem.question + "\nAnswer:\n"
        everything += "".join(s + cfg.step_separator for s in problem.gold_steps)
        if variant == "marginal":
            longest = max(problem.gold_steps, key=len)
            everything = "Question: " + problem.question + "\nAnswer:\n"
            everything += longest + cfg.step_separator
        n_ctx = len(tok(everything, add_special_tokens=True).input_ids)
        target = cfg.answer_format.format(answer=problem.answer)
        n = n_ctx + len(tok(target, add_special_tokens=False).input_ids)
        args = (tok, problem.question, problem.gold_steps, problem.answer)
        check_fits(_positions(n), *args, cfg)
        check_fits(_positions(None), *args, cfg)
        with pytest.raises(SequenceTooLongError) as cheap:
            check_fits(_positions(n - 1), *args, cfg)
        assert re.fullmatch(
            rf"context \({n_ctx} tokens\) \+ answer \(\d+ tokens\) = {n} tokens "
            rf"exceeds the model's limit of {n - 1} positions",
            str(cheap.value),
        )
        with pytest.raises(SequenceTooLongError) as full:
            cpmi_step_scores(_positions(n - 1), *args, [], cfg)
        assert str(full.value) == str(cheap.value)


def test_a_trajectory_that_fits_is_mined_and_scored_as_before(lm, tok, problem, monkeypatch):
    calls = []
    real = cpmi_module.negatives_for_trajectory

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cpmi_module, "negatives_for_trajectory", spy)
    traj = Trajectory(
        id="p", question=problem.question, steps=problem.gold_steps, gold_answer=problem.answer
    )
    cfg = CPMIConfig(variant="cumulative")
    negatives, scores = cpmi_trajectory(lm, tok, traj, cfg, n_negatives=2, sources=("perturb",))
    assert calls == [1] and len(negatives) == 2
    expected = cpmi_step_scores(
        lm, tok, traj.question, traj.steps, problem.answer, [n.answer for n in negatives], cfg
    )
    assert scores == expected


# ------------------------------------------------------------------------------- MC


def _check_prefix_lengths_reference(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int
) -> None:
    """The former MC check: every prefix tokenized, in order."""
    limit = model.config.max_position_embeddings
    for i, prompt in enumerate(prompts):
        n = len(tokenizer(prompt).input_ids)
        if n + max_new_tokens > limit:
            raise SequenceTooLongError(
                f"prefix of step {i + 1} ({n} tokens) + max_new_tokens ({max_new_tokens}) = "
                f"{n + max_new_tokens} tokens exceeds the model's limit of {limit} positions"
            )


class CountingTokenizer:
    """A tokenizer wrapper that counts its calls."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.tokenizer(*args, **kwargs)


class NoGenerateLM(torch.nn.Module):
    """A model stand-in with a position limit that must never be asked to generate."""

    def __init__(self, limit: int):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_position_embeddings=limit)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("generated for a prefix that cannot fit")


def test_mc_names_the_first_step_that_does_not_fit_as_before(tok, problem):
    steps = [problem.gold_steps[0], "1 + 2 = 3. " * 60, *problem.gold_steps[1:]]
    cfg = MCConfig(n_rollouts=2, max_new_tokens=16)
    prompts = prefix_prompts(problem.question, steps, cfg.template, cfg.step_separator)
    first = len(tok(prompts[0]).input_ids)
    model = NoGenerateLM(first + 16 + 20)  # the first prefix fits, the second (long) does not
    with pytest.raises(SequenceTooLongError) as expected:
        _check_prefix_lengths_reference(model, tok, prompts, cfg.max_new_tokens)
    assert "prefix of step 2 " in str(expected.value)
    with pytest.raises(SequenceTooLongError) as got:
        check_prefix_lengths(model, tok, prompts, cfg.max_new_tokens)
    assert str(got.value) == str(expected.value)
    with pytest.raises(SequenceTooLongError) as got:
        mc_rollouts(model, tok, problem.question, steps, problem.answer, cfg)
    assert str(got.value) == str(expected.value)


def test_mc_tokenizes_once_when_everything_fits(tok, problem):
    cfg = MCConfig(max_new_tokens=16)
    prompts = prefix_prompts(problem.question, problem.gold_steps, cfg.template)
    assert len(prompts) > 1
    longest = len(tok(prompts[-1]).input_ids)
    counting = CountingTokenizer(tok)
    check_prefix_lengths(NoGenerateLM(longest + 16), counting, prompts, 16)
    assert counting.calls == 1
    counting = CountingTokenizer(tok)
    check_prefix_lengths(_positions(None), counting, prompts, 16)
    assert counting.calls == 0
