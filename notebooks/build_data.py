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
# # Build the data
# The track's models and data: on the embedded track the arithmetic world (problem splits and the
# ProcessBench-style benchmark) and the default LM; on the hub track GSM8K problems, ProcessBench
# and a hub LM. Then the policy's sampled solutions that the labelers label and the PRMs learn
# from. "every step right" is known exactly on the embedded track only.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.tables import save_table
from cpmi_lib.studies.data_stats import data_table

exp = Experiment(experiment_config(preset))
exp.track.describe()

# %%
data = data_table(exp)
save_table(data, "data", results_dir)
data
