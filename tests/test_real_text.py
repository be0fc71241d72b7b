"""Real text through a real BPE tokenizer: SmolLM2-135M-Instruct on GSM8K's own solutions.

Until now every engine test ran on the world LM's word-level vocabulary, where a number is one
token per digit and a context always ends at a word. Here: contexts that end mid-word, numbers
split across BPE tokens, the answer line tokenized on its own (the contract of `cpmi_requests`),
chat-template prompts, and the labeling CLI on a real-text file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cpmi_lib import cli
from cpmi_lib.core.text_format import (
    ANSWER_FORMAT,
    CHAT_INSTRUCTIONS,
    chat_prompt_template,
    render_prompt,
)
from cpmi_lib.core.trajectory import write_trajectories
from cpmi_lib.data.loaders import load_gsm8k_model_solutions
from cpmi_lib.labeling.cpmi import CPMIConfig, cpmi_requests, cpmi_step_scores
from cpmi_lib.labeling.label_results import read_labels
from cpmi_lib.lm.logprob import ScoreRequest, packed_logprobs, reference_logprobs

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
SOLUTIONS = GSM8K / "example_model_solutions.jsonl"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def solutions():
    if not SOLUTIONS.is_file():
        pytest.skip(f"{SOLUTIONS} not found (../shared/data beside the checkout)")
    return load_gsm8k_model_solutions(SOLUTIONS, limit=8)


# ------------------------------------------------------------------------------ chat template


class _BracedChat:
    """A tokenizer stand-in whose chat template writes braces around the user's message."""

    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "<sys>{json: 1}</sys><user>" + messages[0]["content"] + "</user><bot>"


def test_chat_prompt_template_escapes_braces_and_keeps_one_question_slot():
    template = chat_prompt_template(_BracedChat(), "Solve: {question}")
    expected = "<sys>{json: 1}</sys><user>Solve: 2 + {x}?</user><bot>"
    assert render_prompt("2 + {x}?", template) == expected


def test_chat_prompt_template_refuses_what_it_cannot_render():
    with pytest.raises(ValueError, match="placeholder"):
        chat_prompt_template(_BracedChat(), "no slot")

    class _Plain:
        chat_template = None

    with pytest.raises(ValueError, match="no chat template"):
        chat_prompt_template(_Plain(), "{question}")


def test_smollm2_chat_template_opens_the_assistant_turn(smollm2):
    _, tokenizer = smollm2
    template = chat_prompt_template(tokenizer, CHAT_INSTRUCTIONS[0])
    prompt = render_prompt("What is 2 + 3?", template)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\n" in prompt and "What is 2 + 3?" in prompt
    ids = tokenizer(prompt).input_ids
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(im_start) == 3  # system, user, assistant: special tokens, not spelled out


# ------------------------------------------------------------------------------ BPE and CPMI


def test_bpe_splits_numbers_and_the_answer_line_is_tokenized_on_its_own(smollm2):
    _, tokenizer = smollm2
    assert len(tokenizer("1250", add_special_tokens=False).input_ids) > 1  # digits split
    step = "She makes 9 * 2 = $18 every day."
    requests, _ = cpmi_requests(tokenizer, "Q?", [step], ["1250", "18"], CPMIConfig("cumulative"))
    targets = [
        tuple(tokenizer(ANSWER_FORMAT.format(answer=a), add_special_tokens=False).input_ids)
        for a in ("1250", "18")
    ]
    # contexts c_0, c_1, each with both answers; every piece tokenized on its own
    assert [r.target for r in requests] == targets * 2
    contexts = [render_prompt("Q?"), render_prompt("Q?") + step + "\n"]
    assert [r.context for r in requests[::2]] == [tuple(tokenizer(c).input_ids) for c in contexts]


def _assert_same(model, requests):
    packed = packed_logprobs(model, requests, max_batch_tokens=2048, max_row_tokens=512)
    reference = reference_logprobs(model, requests)
    assert len(packed) == len(reference) == len(requests)
    for p, r, req in zip(packed, reference, requests, strict=True):
        assert p.shape == (len(req.target),)
        torch.testing.assert_close(p, r, rtol=0, atol=2e-4)


def test_packed_equals_reference_on_real_gsm8k_text(smollm2, solutions):
    model, tokenizer = smollm2
    template = chat_prompt_template(tokenizer, CHAT_INSTRUCTIONS[0])
    requests = []
    for traj in solutions[:4]:
        answers = [traj.gold_answer, str(int(traj.gold_answer) + 1)]
        for variant in ("cumulative", "marginal"):
            cfg = CPMIConfig(variant, templates=(template,))
            requests += cpmi_requests(tokenizer, traj.question, traj.steps, answers, cfg)[0]
    assert len({r.context for r in requests}) > 10
    _assert_same(model, requests)


def test_packed_equals_reference_on_contexts_that_end_mid_word_and_mid_number(smollm2, solutions):
    model, tokenizer = smollm2
    text = solutions[0].question + "\n" + "\n".join(solutions[0].steps)
    ids = tokenizer(text).input_ids
    cuts = [5, len(ids) // 3, len(ids) // 2, len(ids) - 3]
    pieces = [tokenizer.decode(ids[:c]) for c in cuts]
    assert any(p[-1].isalnum() for p in pieces)  # some cut falls inside a word or number
    number = tuple(tokenizer(" 1234", add_special_tokens=False).input_ids)
    requests = [ScoreRequest(tuple(ids[:c]), tuple(ids[c : c + 6])) for c in cuts]
    requests += [ScoreRequest(tuple(ids[:c]), number) for c in cuts]
    _assert_same(model, requests)


def test_cpmi_scores_of_real_text_are_finite_and_engine_independent(smollm2, solutions):
    model, tokenizer = smollm2
    traj = solutions[2]
    template = chat_prompt_template(tokenizer, CHAT_INSTRUCTIONS[0])
    scores = {
        engine: cpmi_step_scores(
            model,
            tokenizer,
            traj.question,
            traj.steps,
            traj.gold_answer,
            ["7", "13"],
            CPMIConfig("cumulative", templates=(template,), engine=engine),
        )
        for engine in ("packed", "reference")
    }
    for p, r in zip(scores["packed"], scores["reference"], strict=True):
        assert p.cpmi == pytest.approx(r.cpmi, abs=5e-4)
        assert all(torch.isfinite(torch.tensor([p.cpmi, p.gold_term, p.neg_term])))


# ------------------------------------------------------------------------------------- CLI


def test_the_labeling_cli_labels_a_real_text_file(smollm2_dir, solutions, tmp_path, capsys):
    inp = tmp_path / "gsm8k-solutions.jsonl"
    write_trajectories(inp, solutions[:2])
    out = tmp_path / "cpmi.jsonl"
    argv = ["label", "--method", "cpmi", "--input", inp, "--model", smollm2_dir, "--out", out]
    options = ["--variant", "cumulative", "--n-negatives", "2", "--chat", "--templates", "2"]
    cli.main([str(a) for a in [*argv, *options]])
    records = read_labels(out)
    assert [r["id"] for r in records] == [t.id for t in solutions[:2]]
    for record, traj in zip(records, solutions, strict=False):
        assert len(record["steps"]) == traj.n_steps and len(record["negatives"]) == 2
        assert all(isinstance(s["cpmi"], float) for s in record["steps"])
    first = json.loads(out.read_text().splitlines()[0])
    assert first["model"] == str(smollm2_dir)
    templates = first["config"]["cpmi"]["templates"]
    assert len(templates) == 2 and all("<|im_start|>assistant" in t for t in templates)
    assert "labeled 2 trajectories" in capsys.readouterr().out
