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
# # The decisive comparison: natural errors, the free controls, paired tests and power
# Every label source's PRM (same recipe, same steps) on a benchmark of the policy's and its
# neighbours' *sampled* mistakes, next to the synthetic benchmark; outcome labels (free) and CPMI
# without the trajectory's own answer as controls; paired bootstraps of F1, exact McNemar on
# Best-of-N with the smallest difference each test could see; AUROC within wrong answers.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"
skill_problems = 100
select_trajectories = 300
quality_trajectories = 300

# %%

from cpmi_lib.experiment.presets import experiment_config, labeler_axis
from cpmi_lib.report.decisive_plots import decisive_bars
from cpmi_lib.report.headline import record_headline
from cpmi_lib.report.plots import save_figure
from cpmi_lib.report.tables import save_table
from cpmi_lib.studies import decisive
from cpmi_lib.studies import labeler_axis as axis

cfg = experiment_config(preset)
embedded = cfg.hub is None  # the axis, the exact truth and the natural benchmark: embedded only
labelers = labeler_axis(preset) if embedded else ()
sizes = axis.AxisSizes(skill_problems, select_trajectories, quality_trajectories)
results = {x.name: axis.measure_labeler(cfg, x, sizes) for x in labelers}
if embedded:
    sources = decisive.decisive_sources(cfg, labelers, results)
    natural = decisive.natural_scorable(sources["truth"].exp)
    print(natural)

# %%
if embedded:
    table = decisive.benchmark_table(sources, natural["benchmarks"])
    paired = decisive.paired_f1_tests(sources, natural["benchmarks"][0], seed=cfg.seed)
    bon = decisive.bon_tests(sources)
    chosen = decisive.labeler_experiments(cfg, labelers, results)
    wrong = decisive.wrong_answer_table(sources, chosen, quality_trajectories)
    save_table(table, "decisive", results_dir)
    save_table(paired, "decisive_paired", results_dir)
    save_table(bon, "decisive_bon", results_dir)
    save_table(wrong, "auroc_within_wrong_answers", results_dir)
    save_figure(decisive_bars(table), "decisive", figures_dir)
    on_natural = paired if natural["scorable"] else None
    best = axis.best_labeler(results)
    record_headline(results_dir, decisive.headline_entries(table, on_natural, bon, wrong, best))
    display(table, paired, bon, wrong)  # noqa: F821
