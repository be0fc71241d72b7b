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
# # Ablations of CPMI
# Step-level AUROC against the reference labels (the exact truth on the embedded track, MC's hard
# labels on the hub track), on the same policy training steps, as one setting
# changes at a time from the base (marginal, mean, K = 4 templates, M = 4 trajectory and
# perturbation negatives): the number of negatives M, the number of templates K, the variant,
# mean vs sum, and where negatives come from.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"
n_trajectories = 300
negatives_grid = [0, 1, 2, 4, 8]
templates_grid = [1, 2, 4]

# %%
from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.plots import ablation_panels, save_figure
from cpmi_lib.report.tables import save_table
from cpmi_lib.studies.ablations import ablation_table

exp = Experiment(experiment_config(preset))
table = ablation_table(exp, negatives_grid, templates_grid, n_trajectories)
save_table(table, "ablations", results_dir)
table

# %%
save_figure(ablation_panels(table), "ablations", figures_dir)
