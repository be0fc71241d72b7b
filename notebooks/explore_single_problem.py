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
# problem id (that problem's first wrong sample), or any question, steps and gold answer, and the
# labelers to compare (`presets.labeler_axis`: the policy LM, or LMs trained to anticipate the
# answer). The table shows each step's gold term and CPMI from each labeler; the plots show
# LP(gold) and LP(negatives) along the steps, one panel per labeler, with the true first error
# marked when it is known (exactly, on the embedded track).

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"
problem_index = 0
problem_id = None  # e.g. "world-train-000000" or "gsm8k-train-7"; overrides problem_index
variant = "cumulative"
labelers = ["policy"]  # side by side: names of `presets.labeler_axis(preset)` (embedded track)
question = None  # set question, steps and gold to explore your own problem
steps = None
gold = None
n_negatives = 4

# %%
from cpmi_lib.experiment.config import CONFIGURED
from cpmi_lib.experiment.presets import experiment_config, labeler_axis
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.labeling.negatives import hard_negatives
from cpmi_lib.report.plots import lp_along_steps_by_labeler, save_figure
from cpmi_lib.report.tables import save_table
from cpmi_lib.studies.explore import example, truly_right
from cpmi_lib.studies.labeler_axis import explore_problem

exp = Experiment(experiment_config(preset))
axis = {x.name: x for x in labeler_axis(preset)} if exp.track.step_truth else {}
first_error = None
if question is None:
    t = example(exp, problem_index, problem_id)
    question, steps, gold, first_error = t.question, t.steps, t.gold_answer, t.first_error
negatives = [n.answer for n in hard_negatives(question, steps, gold, n_negatives)]
print(question, "\nnegatives:", negatives)

# %%
chosen = [axis[name] for name in labelers] if axis else [CONFIGURED]  # hub: as configured
table, curves = explore_problem(exp.cfg, chosen, question, steps, gold, negatives, variant)
table["truly right"] = truly_right(first_error, len(steps))
save_table(table, "explore_single_problem", results_dir)
table.style.background_gradient(subset=[c for c in table if c.startswith("CPMI")], cmap="RdYlGn")

# %%
fig = lp_along_steps_by_labeler(curves, negatives, first_error)
save_figure(fig, "explore_single_problem", figures_dir)
