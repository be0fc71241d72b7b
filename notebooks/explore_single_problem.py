# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # CPMI on one problem, step by step
# Give a problem by index (the index-th policy training sample with a wrong final answer), by
# problem id (that problem's first wrong sample), or any question, steps and gold answer. The
# table shows each step's gold term, negative term and CPMI; the plot shows LP(gold) and
# LP(negatives) along the steps, with the true first error marked when it is known (exactly, on
# the embedded track).

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"
problem_index = 0
problem_id = None  # e.g. "world-train-000000" or "gsm8k-train-7"; overrides problem_index
variant = "cumulative"
question = None  # set question, steps and gold to explore your own problem
steps = None
gold = None
n_negatives = 4

# %%
from cpmi_lib.cpmi import CPMIConfig, context_logprobs, cpmi_step_scores
from cpmi_lib.negatives import hard_negatives
from cpmi_lib.plots import lp_along_steps, save_figure
from cpmi_lib.presets import experiment_config
from cpmi_lib.prm_experiment import Experiment
from cpmi_lib.tables import save_table
from cpmi_lib.text_format import PROMPT_TEMPLATES

exp = Experiment(experiment_config(preset))
model, tokenizer = exp.lm()
first_error = None
if question is None:
    t = exp.example(problem_index, problem_id)
    question, steps, gold, first_error = t.question, t.steps, t.gold_answer, t.first_error
print(question)

# %%
negatives = hard_negatives(question, steps, gold, n_negatives)
cfg = CPMIConfig(variant=variant, templates=PROMPT_TEMPLATES)
scores = cpmi_step_scores(
    model, tokenizer, question, steps, gold, [n.answer for n in negatives], cfg
)
# LP of every answer after the prompt and after each prefix of steps (cumulative contexts)
lp, _ = context_logprobs(
    model,
    tokenizer,
    question,
    steps,
    [gold] + [n.answer for n in negatives],
    CPMIConfig(variant="cumulative", templates=PROMPT_TEMPLATES),
)

# %%
import pandas as pd

table = pd.DataFrame(
    {
        "step": steps,
        "gold term": [s.gold_term for s in scores],
        "negative term": [s.neg_term for s in scores],
        "CPMI": [s.cpmi for s in scores],
        "truly right": [
            None if first_error is None else (first_error == -1 or i < first_error)
            for i in range(len(steps))
        ],
    }
)
save_table(table, "explore_single_problem", results_dir)
print("negatives:", [(n.answer, n.source) for n in negatives])
table.style.background_gradient(subset=["CPMI"], cmap="RdYlGn")

# %%
fig = lp_along_steps(
    lp[:, 0].tolist(), lp[:, 1:].T.tolist(), [n.answer for n in negatives], first_error
)
save_figure(fig, "explore_single_problem", figures_dir)
