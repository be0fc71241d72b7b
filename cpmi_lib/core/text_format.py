"""The text format shared by the LM, the labelers and the PRM: prompt, steps and the answer line.

One place defines how a question becomes a prompt and how steps and a final answer become the
text an LM reads or writes, so that training, sampling, CPMI and MC all agree token for token.
"""

from __future__ import annotations

from cpmi_lib.core.answers import extract_final_answer

#: Prompt templates of the embedded track, each containing "{question}". The default LM is trained
#: on all of them (so CPMI can average over K of them in distribution); the first is the default.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "Question: {question}\nAnswer:\n",
    "Problem: {question}\nSolution:\n",
    "{question}\nLet's think step by step.\n",
    "Read the problem and solve it.\n{question}\n",
)
DEFAULT_TEMPLATE = PROMPT_TEMPLATES[0]
#: User messages for chat LMs (`chat_prompt_template`), one per template (K); the first is the
#: default. They ask for the format the steps and the answer line are read in.
CHAT_INSTRUCTIONS: tuple[str, ...] = (
    "Solve this math problem step by step, one step per line, and end with "
    "'The answer is: <number>'.\n\n{question}",
    "{question}\n\nLet's think step by step.",
    "Answer the question. Show each step of the calculation on its own line.\n\n{question}",
)
#: The text whose log-probability CPMI measures, and the solution's closing line.
ANSWER_FORMAT = "The answer is: {answer}"
#: Written after every step, so a context ends at a step boundary.
STEP_SEPARATOR = "\n"


def render_prompt(question: str, template: str = DEFAULT_TEMPLATE) -> str:
    if "{question}" not in template:
        raise ValueError(f"prompt template {template!r} has no '{{question}}' placeholder")
    return template.format(question=question)


#: Stands for the question while a chat template is rendered (no template contains it).
_QUESTION_SLOT = "\x00question\x00"


def chat_prompt_template(tokenizer: object, instruction: str) -> str:
    """A prompt template (with ``{question}``) for a chat LM: `instruction` (which holds
    ``{question}``) as the user's message, rendered by the tokenizer's chat template, with the
    assistant's turn opened so that the solution follows directly.

    Braces of the rendered chat text are escaped, so ``template.format(question=q)`` fills in the
    question and nothing else; the result works wherever a plain template does (sampling, CPMI,
    MC). A tokenizer without a chat template is an error, not a silent plain prompt.
    """
    if "{question}" not in instruction:
        raise ValueError(f"instruction {instruction!r} has no '{{question}}' placeholder")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{type(tokenizer).__name__} has no chat template")
    message = instruction.replace("{question}", _QUESTION_SLOT)
    text = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )
    if text.count(_QUESTION_SLOT) != 1:
        raise ValueError("the chat template did not keep the question exactly once")
    escaped = text.replace("{", "{{").replace("}", "}}")
    return escaped.replace(_QUESTION_SLOT, "{question}")


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
