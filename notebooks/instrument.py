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
# # The instrument: equal budget, data needed, position controls, headline numbers
# MC's labeling time on the base set is the budget; CPMI labels as many trajectories as fit in it.
# PRMs from MC, CPMI (base and budget set) and exact truth (both sizes) are scored alike: F1 with
# τ from dev, Best-of-N with the aggregation chosen on the dev pool, exact McNemar tests. The
# truth PRM's learning curve shows how much data a PRM needs; AUROC within step position shows
# what each score knows beyond where a step is. The numbers go to `results/headline.json`.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
import pandas as pd

from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.headline import record_headline
from cpmi_lib.report.plots import budget_figure, data_curve, save_figure, within_position_bars
from cpmi_lib.report.tables import save_table
from cpmi_lib.studies import instrument
from cpmi_lib.studies.budget import save_budget_plan

exp = Experiment(experiment_config(preset))
n = max(exp.cfg.bon_ns)
bon = f"bon{n}"
plan = save_budget_plan(exp, results_dir)
majority = instrument.majority_bon(exp)
plan

# %%
budget = instrument.budget_comparison(exp)
save_table(budget, "budget_comparison", results_dir)
tests = instrument.budget_tests(exp)
save_table(pd.DataFrame([{"pair": k} | v for k, v in tests.items()]), "budget_mcnemar", results_dir)
save_figure(budget_figure(budget, bon, majority), "budget_quality_vs_seconds", figures_dir)
budget

# %%
if exp.track.step_truth:
    curve = instrument.learning_curve(exp)
    save_table(curve, "truth_prm_data_curve", results_dir)
    save_figure(data_curve(curve, bon, majority), "truth_prm_data_curve", figures_dir)
    within = instrument.label_quality_within_position(exp)
    save_table(within, "auroc_within_position", results_dir)
    save_figure(within_position_bars(within), "auroc_within_position", figures_dir)
    record_headline(results_dir, instrument.headline_entries(exp, budget, tests, within))
    display(curve, within.drop(columns="per_position"))  # noqa: F821
