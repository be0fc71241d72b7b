"""Prompt and solution text: rendering and splitting are inverse to each other."""

from __future__ import annotations

import pytest

from cpmi_lib.core.text_format import render_prompt, render_solution, split_solution


def test_render_and_split_are_inverse():
    steps = ["Ava has 3 + 4 = 7 apples.", "Ava has 7 * 2 = 14 apples."]
    text = render_solution(steps, "14")
    assert text == "Ava has 3 + 4 = 7 apples.\nAva has 7 * 2 = 14 apples.\nThe answer is: 14"
    assert split_solution(text) == (steps, "14")


def test_split_stops_at_the_first_answer_line_and_drops_blank_lines():
    assert split_solution("a\n\nb\nThe answer is: 3\nc\nThe answer is: 4") == (["a", "b"], "3")
    assert split_solution("a\nb") == (["a", "b"], None)
    assert split_solution("The answer is: 5") == ([], "5")
    assert split_solution("x = 2\nA: 2") == (["x = 2"], "2")


def test_prompt_needs_a_question_placeholder():
    assert render_prompt("Why?") == "Question: Why?\nAnswer:\n"
    assert render_prompt("Why?", "Q: {question}\n") == "Q: Why?\n"
    with pytest.raises(ValueError, match="placeholder"):
        render_prompt("Why?", "no placeholder")
