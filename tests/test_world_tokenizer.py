"""The world tokenizer: lossless, one token per digit, BOS added, context/answer split-invariant."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from cpmi_lib.core.text_format import (
    ANSWER_FORMAT,
    PROMPT_TEMPLATES,
    render_prompt,
    render_solution,
)
from cpmi_lib.data.world import WorldConfig, build_world
from cpmi_lib.data.world_tokenizer import build_world_tokenizer, pieces


@pytest.fixture(scope="module")
def tok():
    return build_world_tokenizer()


@pytest.fixture(scope="module")
def problems():
    return build_world(WorldConfig(min_steps=2, max_steps=8), {"train": 300}, seed=5)["train"]


def test_every_world_text_is_covered_and_decodes_exactly(tok, problems):
    for i, p in enumerate(problems):
        template = PROMPT_TEMPLATES[i % len(PROMPT_TEMPLATES)]
        text = render_prompt(p.question, template) + render_solution(p.gold_steps, p.answer)
        ids = tok(text).input_ids
        assert ids[0] == tok.bos_token_id
        assert tok.unk_token_id not in ids, tok.convert_ids_to_tokens(ids)
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_numbers_are_one_token_per_digit(tok):
    assert tok.convert_ids_to_tokens(
        tok("Ava has 120 + 7 = 127 apples.", add_special_tokens=False).input_ids
    ) == [
        "Ava",
        " has",
        " 1",
        "2",
        "0",
        " +",
        " 7",
        " =",
        " 1",
        "2",
        "7",
        " apples",
        ".",
    ]
    assert pieces("x\n12") == ["x", "\n", "1", "2"]


def test_context_and_answer_tokenize_the_same_apart_as_together(tok, problems):
    for p in problems[:50]:
        for i in range(p.n_steps + 1):
            context = render_prompt(p.question) + render_solution(p.gold_steps[:i], None)
            answer = ANSWER_FORMAT.format(answer=p.answer)
            together = tok(context + answer).input_ids
            apart = tok(context).input_ids + tok(answer, add_special_tokens=False).input_ids
            assert together == apart


def test_unknown_words_map_to_unk_and_save_reload(tok, tmp_path):
    assert tok.convert_ids_to_tokens(tok("Zebra", add_special_tokens=False).input_ids) == ["<unk>"]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Question: Mia has 12 pens.\nAnswer:\n"
    assert again(text).input_ids == tok(text).input_ids
    assert (again.pad_token, again.eos_token, again.bos_token) == ("<pad>", "</s>", "<s>")
