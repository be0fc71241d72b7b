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
import pandas as pd

from cpmi_lib.plots import f1_bars, save_figure
from cpmi_lib.presets import experiment_config
from cpmi_lib.prm_experiment import Experiment
from cpmi_lib.tables import save_table

exp = Experiment(experiment_config(preset))
results = {name: exp.processbench(name) for name in exp.prm_names}

# %%
rows = []
for name, r in results.items():
    test = r["test"]
    for subset, m in test["subsets"].items():
        rows.append(
            {
                "PRM": name,
                "subset": subset,
                "F1": m["f1"],
                "acc_error": m["acc_error"],
                "acc_correct": m["acc_correct"],
                "F1 CI low": m["f1_ci"][0],
                "F1 CI high": m["f1_ci"][1],
                "tau (dev)": r["threshold_from_dev"],
            }
        )
    rows.append(
        {
            "PRM": name,
            "subset": "mean (headline)",
            "F1": test["headline_f1"],
            "F1 CI low": test["headline_ci"][0],
            "F1 CI high": test["headline_ci"][1],
            "tau (dev)": r["threshold_from_dev"],
        }
    )
    rows.append(
        {
            "PRM": name,
            "subset": "mean, oracle tau (upper bound)",
            "F1": r["test_oracle"]["headline_f1"],
            "tau (dev)": r["test_oracle"]["threshold"],
        }
    )
table = pd.DataFrame(rows)
save_table(table, "processbench", results_dir)
table

# %%
fig = f1_bars(table[~table["subset"].str.contains("oracle")])
save_figure(fig, "processbench_f1", figures_dir)
