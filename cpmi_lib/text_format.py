"""The text format shared by the LM, the labelers and the PRM: prompt, steps and the answer line.

One place defines how a question becomes a prompt and how steps and a final answer become the
text an LM reads or writes, so that training, sampling, CPMI and MC all agree token for token.
"""

from __future__ import annotations

from cpmi_lib.answers import extract_final_answer

#: Prompt templates of the embedded track, each containing "{question}". The default LM is trained
#: on all of them (so CPMI can average over K of them in distribution); the first is the default.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "Question: {question}\nAnswer:\n",
    "Problem: {question}\nSolution:\n",
    "{question}\nLet's think step by step.\n",
    "Read the problem and solve it.\n{question}\n",
)
DEFAULT_TEMPLATE = PROMPT_TEMPLATES[0]
#: The text whose log-probability CPMI measures, and the solution's closing line.
ANSWER_FORMAT = "The answer is: {answer}"
#: Written after every step, so a context ends at a step boundary.
STEP_SEPARATOR = "\n"


def render_prompt(question: str, template: str = DEFAULT_TEMPLATE) -> str:
    if "{question}" not in template:
        raise ValueError(f"prompt template {template!r} has no '{{question}}' placeholder")
    return template.format(question=question)


def render_solution(
    steps: list[str],
    answer: str | None,
    *,
    separator: str = STEP_SEPARATOR,
    answer_format: str = ANSWER_FORMAT,
) -> str:
    """Steps, each followed by the separator, then the answer line (if an answer is given)."""
    text = "".join(step + separator for step in steps)
    if answer is not None:
        text += answer_format.format(answer=answer)
    return text


def split_solution(text: str, separator: str = STEP_SEPARATOR) -> tuple[list[str], str | None]:
    """Split a generated solution into its steps and final answer (None when there is none).

    Lines are steps; the first line that states a final answer ends the solution. Blank lines are
    dropped.
    """
    steps: list[str] = []
    for line in text.split(separator):
        if not line.strip():
            continue
        answer = extract_final_answer(line)
        if answer is not None:
            return steps, answer
        steps.append(line.strip())
    return steps, None
