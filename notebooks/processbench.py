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
# # ProcessBench-style first-error F1
# Per subset, the harmonic mean of exact first-error accuracy on erroneous trajectories and
# accuracy on all-correct ones; the headline is the unweighted mean over subsets. τ is chosen on
# the dev benchmark; the oracle-τ number is tuned on the test benchmark and is only an upper bound.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.plots import f1_bars, save_figure
from cpmi_lib.report.tables import processbench_table, save_table

exp = Experiment(experiment_config(preset))
results = {name: exp.processbench(name) for name in exp.prm_names}

# %%
table = processbench_table(results)
save_table(table, "processbench", results_dir)
table

# %%
fig = f1_bars(table[~table["subset"].str.contains("oracle")])
save_figure(fig, "processbench_f1", figures_dir)
