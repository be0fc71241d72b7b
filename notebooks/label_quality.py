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
# # Label quality: CPMI vs MC, and each against the reference labels
# On the policy's training steps: how CPMI and MC agree (rank correlations, scatter) and how well
# each separates right from wrong steps (ROC, AUROC with bootstrap CIs), with CPMI's gold-only
# and negative-only terms separately. The reference is the exact step truth on the embedded track;
# on the hub track, where no step truth exists, it is MC's hard label (value > 0), and MC itself is
# not scored.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.plots import cpmi_vs_mc_scatter, roc_curves, save_figure
from cpmi_lib.report.tables import label_quality_table, save_table
from cpmi_lib.studies.label_quality import label_quality, roc_data, step_scores

exp = Experiment(experiment_config(preset))
steps = step_scores(exp, "train")
quality = label_quality(exp)
reference = quality["reference"]

# %%
table = label_quality_table(quality)
save_table(table, "label_quality", results_dir)
table

# %%
curves = roc_data(steps, quality)
if curves:  # none when the reference has one class only
    save_figure(roc_curves(curves), "label_quality_roc", figures_dir)

# %%
save_figure(cpmi_vs_mc_scatter(steps, reference), "label_quality_scatter", figures_dir)
