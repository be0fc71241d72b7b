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
# # PRMs from CPMI, MC and exact labels
# Three PRMs on the same backbone (the default LM) and the same policy trajectories; only the
# labels differ. Targets: CPMI `zsig`, MC soft values, exact truth. Dev-loss early stopping.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd

from cpmi_lib.plots import LABELER_COLORS, save_figure
from cpmi_lib.presets import experiment_config
from cpmi_lib.prm_experiment import PRM_LABELS, Experiment
from cpmi_lib.tables import save_table

exp = Experiment(experiment_config(preset))
records = {name: json.loads((exp.train(name) / "prm.json").read_text()) for name in PRM_LABELS}

# %%
fig, ax = plt.subplots(figsize=(6, 4))
rows = []
for name, rec in records.items():
    curve = pd.DataFrame(rec["learning_curve"])
    ax.plot(
        curve["epoch"],
        curve["train_loss"],
        ls="--",
        color=LABELER_COLORS[name],
        label=f"{name}: train",
    )
    ax.plot(
        curve["epoch"],
        curve["eval_loss"],
        marker="o",
        color=LABELER_COLORS[name],
        label=f"{name}: dev",
    )
    rows.append(
        {
            "PRM": name,
            "target": rec["config"]["target"],
            "epochs": curve["epoch"].max(),
            "best dev loss": curve["eval_loss"].min(),
            "seconds": rec.get("train_seconds"),
        }
    )
ax.set_xlabel("epoch")
ax.set_ylabel("binary cross-entropy (per labeled step)")
ax.legend(fontsize=8)
save_figure(fig, "train_prm_learning_curves", figures_dir)
table = pd.DataFrame(rows)
save_table(table, "train_prm", results_dir)
table
