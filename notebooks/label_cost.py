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
# # Labeling cost: CPMI vs MC on the same trajectories
# Both labelers labeled the same policy trajectories with the same LM on the same machine (the
# training labels of the PRM experiment). The paper reports CPMI needing less labeling time and
# fewer generated tokens than MC; its numbers are declared with the claims
# (`cpmi_lib/report/claims.py`) and set next to ours in `label_cost_vs_paper`.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
from cpmi_lib.core.costs import Costs
from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.labeling.label_results import read_labels, total_costs
from cpmi_lib.report.tables import label_cost_table, label_cost_vs_paper, save_table

exp = Experiment(experiment_config(preset))
costs: dict[str, Costs] = {
    m: total_costs(read_labels(exp.labels(m, "train"))) for m in ("cpmi", "mc")
}

# %%
table = label_cost_table(costs)
save_table(table, "label_cost", results_dir)
vs_paper = label_cost_vs_paper(table)
save_table(vs_paper, "label_cost_vs_paper", results_dir)
print(f"{costs['cpmi'].steps} steps labeled by each method")
display(table, vs_paper)  # noqa: F821
