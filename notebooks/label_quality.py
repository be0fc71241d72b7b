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
import matplotlib.pyplot as plt
import pandas as pd

from cpmi_lib.plots import LABELER_COLORS, roc_curves, save_figure
from cpmi_lib.presets import experiment_config
from cpmi_lib.prm_experiment import Experiment
from cpmi_lib.stats import roc_curve_points
from cpmi_lib.tables import save_table

exp = Experiment(experiment_config(preset))
steps = exp.step_scores("train")
quality = exp.label_quality()
reference = quality["reference"]

# %%
names = {
    "cpmi": "CPMI",
    "gold_term": "CPMI gold term",
    "neg_term": "CPMI −negative term",
    "mc": "MC value",
}
table = pd.DataFrame(
    [
        {
            "score": label,
            "AUROC": quality[f"auroc_{key}"]["auroc"],
            "CI low": (quality[f"auroc_{key}"]["ci"] or [None, None])[0],
            "CI high": (quality[f"auroc_{key}"]["ci"] or [None, None])[1],
            "against": reference,
        }
        for key, label in names.items()
    ]
)
corr = quality["cpmi_vs_mc"]
table = pd.concat(
    [
        table,
        pd.DataFrame(
            [
                {"score": "Spearman ρ (CPMI, MC)", "AUROC": corr["spearman_rho"]},
                {"score": "Kendall τ (CPMI, MC)", "AUROC": corr["kendall_tau"]},
            ]
        ),
    ],
    ignore_index=True,
)
save_table(table, "label_quality", results_dir)
table

# %%
scored = [k for k in ("cpmi", "mc") if quality[f"auroc_{k}"]["auroc"] is not None]
if steps["reference"].nunique() == 2:
    curves = {}
    for key in scored:
        fpr, tpr = roc_curve_points(steps[key], steps["reference"])
        curves[key] = (fpr, tpr, quality[f"auroc_{key}"]["auroc"])
    save_figure(roc_curves(curves), "label_quality_roc", figures_dir)

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for ok, group in steps.groupby("reference"):
    ax.scatter(
        group["cpmi"],
        group["mc"] + (ok - 0.5) * 0.02,
        s=6,
        alpha=0.4,
        color=LABELER_COLORS["truth"] if ok else "#e7298a",
        label=f"right step ({reference})" if ok else f"wrong step ({reference})",
    )
ax.set_xlabel("CPMI score (nats/token)")
ax.set_ylabel("MC value (share of rollouts reaching the gold)")
ax.legend()
save_figure(fig, "label_quality_scatter", figures_dir)
