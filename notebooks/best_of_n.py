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
# # Best-of-N
# One pool of sampled solutions per test problem, scored by each PRM; every curve and every N
# uses the same samples, so comparisons are paired (exact McNemar tests below).

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
import pandas as pd

from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.plots import best_of_n_curves, save_figure
from cpmi_lib.report.tables import mcnemar_table, save_table

exp = Experiment(experiment_config(preset))
curves = {name: exp.best_of_n(name) for name in exp.prm_names}

# %%
for name, df in curves.items():
    save_figure(
        best_of_n_curves(df, f"PRM trained on {name} labels"), f"best_of_n_{name}", figures_dir
    )
table = pd.concat([df.drop(columns="correct").assign(PRM=name) for name, df in curves.items()])
save_table(table, "best_of_n", results_dir)

# %%
mcnemar = mcnemar_table(curves, exp.cfg.bon_ns, "prm:min")
save_table(mcnemar, "best_of_n_mcnemar", results_dir)
mcnemar
