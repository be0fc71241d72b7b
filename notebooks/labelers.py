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
# # When do CPMI labels work? The labeler's capability as an axis
# CPMI assumes a labeler whose belief in the final answer follows a partial solution. Labelers
# along the axis differ in *answer anticipation*: the policy LM (complete solutions only), the
# policy trained further without anticipation (control), with anticipation, and anticipation on a
# longer-trained LM. Each labels the same policy samples; MC's rollouts use the same labeler. The
# CPMI setting (variant, M) and the best labeler are chosen on dev samples, reported on train.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"
skill_problems = 100
select_trajectories = 300
quality_trajectories = 300

# %%
import pandas as pd

from cpmi_lib.experiment.presets import experiment_config, labeler_axis
from cpmi_lib.report.headline import record_headline
from cpmi_lib.report.plots import (
    anticipation_curves,
    budget_figure,
    labeler_axis_figure,
    save_figure,
)
from cpmi_lib.report.tables import save_table
from cpmi_lib.studies import labeler_axis as axis
from cpmi_lib.studies.instrument import majority_bon

cfg = experiment_config(preset)
sizes = axis.AxisSizes(skill_problems, select_trajectories, quality_trajectories)
embedded = cfg.hub is None  # the axis needs the exact step truth of the embedded world
labelers = labeler_axis(preset) if embedded else ()
results = {x.name: axis.measure_labeler(cfg, x, sizes) for x in labelers}

# %%
if results:
    summary = axis.summary_table(results)
    save_table(summary, "labeler_axis", results_dir)
    save_table(axis.quality_table(results), "labeler_axis_quality", results_dir)
    save_figure(labeler_axis_figure(summary), "labeler_axis", figures_dir)
    save_figure(anticipation_curves(axis.skill_curves(results)), "anticipation_skill", figures_dir)
    record_headline(results_dir, axis.headline_entries(results))
    print("best labeler (chosen on dev):", axis.best_labeler(results))
    display(summary.drop(columns=["about"]))  # noqa: F821

# %% [markdown]
# ## PRMs from the best labeler
# The same PRM recipe on the best labeler's CPMI labels (its dev-chosen setting) and MC labels of
# the base set, and on its CPMI labels of as many trajectories as it labels in the seconds its
# own MC took; today's labeler as configured next to it, the truth PRM as reference.

# %%
if results:
    exps = axis.labeler_prms(cfg, labelers, results)
    prms = axis.prm_table(exps)
    tests = axis.prm_tests(exps)
    save_table(prms, "labeler_prms", results_dir)
    save_table(pd.DataFrame(list(tests.values())), "labeler_prms_mcnemar", results_dir)
    majority = majority_bon(next(iter(exps.values())))
    save_figure(budget_figure(prms, f"bon{max(cfg.bon_ns)}", majority), "labeler_prms", figures_dir)
    record_headline(results_dir, axis.prm_headline(exps, tests))
    display(prms)  # noqa: F821
