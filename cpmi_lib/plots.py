"""Figures of the suite, with one look: labelled axes, CIs as bands or bars, and one colour per
labeler in every figure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

#: One colour per labeler (and per PRM trained on its labels), in every figure.
LABELER_COLORS = {
    "cpmi": "#1b9e77",
    "mc": "#d95f02",
    "truth": "#7570b3",
    "majority": "#666666",
    "random": "#bbbbbb",
    "pass@n": "#000000",
}

sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def save_figure(fig: plt.Figure, name: str, figures_dir: str | os.PathLike[str]) -> Path:
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def lp_along_steps(
    lp_gold: Sequence[float],
    lp_negatives: Sequence[Sequence[float]],
    negative_labels: Sequence[str],
    first_error: int | None,
) -> plt.Figure:
    """LP(gold) and LP(each negative) after the prompt (x = 0) and after each step i (x = i)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = list(range(len(lp_gold)))
    ax.plot(x, lp_gold, marker="o", color=LABELER_COLORS["cpmi"], lw=2.5, label="gold answer")
    for label, lps in zip(negative_labels, lp_negatives, strict=True):
        ax.plot(x, lps, marker=".", ls="--", label=f"negative {label}")
    if first_error is not None and first_error >= 0:
        ax.axvline(first_error + 1, color="red", ls=":", label="true first error")
    ax.set_xticks(x)
    ax.set_xlabel("context: prompt (0), then after step i")
    ax.set_ylabel("log p('The answer is: …') (nats/token)")
    ax.legend(fontsize=8, loc="best")
    return fig


def roc_curves(curves: dict[str, tuple[Sequence[float], Sequence[float], float]]) -> plt.Figure:
    """ROC curves of step scores against the exact truth; `curves[name] = (fpr, tpr, auroc)`."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})", color=LABELER_COLORS.get(name))
    ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1)
    ax.set_xlabel("false positive rate (wrong steps scored as right)")
    ax.set_ylabel("true positive rate (right steps scored as right)")
    ax.legend(loc="lower right")
    return fig


def best_of_n_curves(df: pd.DataFrame, title: str) -> plt.Figure:
    """Accuracy vs N per method, with bootstrap CI bands; `df` from `best_of_n_curves`."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, g in df.groupby("method", sort=False):
        g = g.sort_values("n")
        base = method.split(":")[0]
        color = LABELER_COLORS.get(method, LABELER_COLORS.get(base))
        ax.plot(g["n"], g["accuracy"], marker="o", label=method, color=color)
        ax.fill_between(g["n"], g["ci_low"], g["ci_high"], alpha=0.12, color=color)
    ax.set_xscale("log", base=2)
    ns = sorted(df["n"].unique())
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("N (solutions sampled per problem)")
    ax.set_ylabel("final-answer accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return fig
