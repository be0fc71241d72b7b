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
    "position": "#e7298a",
    "majority": "#666666",
    "random": "#bbbbbb",
    "pass@n": "#000000",
}

sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def save_figure(fig: plt.Figure, name: str, figures_dir: str | os.PathLike[str]) -> Path:
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def lp_along_steps(
    lp_gold: Sequence[float],
    lp_negatives: Sequence[Sequence[float]],
    negative_labels: Sequence[str],
    first_error: int | None,
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Figure:
    """LP(gold) and LP(each negative) after the prompt (x = 0) and after each step i (x = i)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    x = list(range(len(lp_gold)))
    ax.plot(x, lp_gold, marker="o", color=LABELER_COLORS["cpmi"], lw=2.5, label="gold answer")
    for label, lps in zip(negative_labels, lp_negatives, strict=True):
        ax.plot(x, lps, marker=".", ls="--", label=f"negative {label}")
    if first_error is not None and first_error >= 0:
        ax.axvline(first_error + 1, color="red", ls=":", label="true first error")
    ax.set_xticks(x)
    ax.set_xlabel("context: prompt (0), then after step i")
    ax.set_ylabel("log p('The answer is: …') (nats/token)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    return fig


def lp_along_steps_by_labeler(
    curves: dict[str, tuple[Sequence[float], Sequence[Sequence[float]]]],
    negative_labels: Sequence[str],
    first_error: int | None,
) -> plt.Figure:
    """`lp_along_steps` for each labeler (name → (LP gold, LP of each negative)), side by side on
    a shared y axis."""
    fig, axes = plt.subplots(
        1, len(curves), figsize=(6 * len(curves), 4), sharey=True, squeeze=False
    )
    for ax, (name, (gold, negatives)) in zip(axes[0], curves.items(), strict=True):
        lp_along_steps(gold, negatives, negative_labels, first_error, ax=ax, title=name)
    return fig


def roc_curves(curves: dict[str, tuple[Sequence[float], Sequence[float], float]]) -> plt.Figure:
    """ROC curves of step scores against reference labels; `curves[name] = (fpr, tpr, auroc)`."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})", color=LABELER_COLORS.get(name))
    ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1)
    ax.set_xlabel("false positive rate (wrong steps scored as right)")
    ax.set_ylabel("true positive rate (right steps scored as right)")
    ax.legend(loc="lower right")
    return fig


def cpmi_vs_mc_scatter(steps: pd.DataFrame, reference: str) -> plt.Figure:
    """CPMI against MC value per step (`studies.label_quality.step_scores`), coloured by the
    reference label; right and wrong steps are nudged apart vertically so that MC's ties stay
    visible."""
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


def _ci_errors(values: pd.Series, low: pd.Series, high: pd.Series) -> list[pd.Series]:
    """Asymmetric error bars from a CI (matplotlib wants distances, never negative)."""
    return [(values - low).clip(lower=0), (high - values).clip(lower=0)]


def f1_bars(table: pd.DataFrame) -> plt.Figure:
    """F1 per subset and PRM with CI bars; `table` has PRM, subset, F1, F1 CI low/high."""
    prms = list(dict.fromkeys(table["PRM"]))
    subsets = list(dict.fromkeys(table["subset"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(prms)
    for k, name in enumerate(prms):
        g = table[table["PRM"] == name].set_index("subset").loc[subsets]
        x = [i + k * width for i in range(len(subsets))]
        ax.bar(
            x,
            g["F1"],
            width,
            yerr=_ci_errors(g["F1"], g["F1 CI low"], g["F1 CI high"]),
            capsize=3,
            color=LABELER_COLORS.get(name),
            label=f"PRM from {name} labels",
        )
    ax.set_xticks([i + width * (len(prms) - 1) / 2 for i in range(len(subsets))], subsets)
    ax.set_ylabel("first-error F1 (95% CI)")
    ax.legend(fontsize=8)
    return fig


def ablation_panels(table: pd.DataFrame) -> plt.Figure:
    """One panel per factor: AUROC with CI per setting; `table` from the ablations notebook."""
    factors = list(dict.fromkeys(table["factor"]))
    fig, axes = plt.subplots(1, len(factors), figsize=(3.2 * len(factors), 3.6), sharey=True)
    for ax, factor in zip(axes, factors, strict=True):
        g = table[table["factor"] == factor]
        ax.errorbar(
            g["setting"],
            g["AUROC"],
            fmt="o",
            capsize=3,
            color=LABELER_COLORS["cpmi"],
            yerr=_ci_errors(g["AUROC"], g["CI low"], g["CI high"]),
        )
        ax.axhline(0.5, color="#999999", ls=":", lw=1)
        ax.set_title(factor)
        ax.tick_params(axis="x", rotation=30)
    axes[0].set_ylabel("step AUROC vs exact truth (95% CI)")
    return fig


def learning_curves(curves: dict[str, pd.DataFrame]) -> plt.Figure:
    """Train (dashed) and dev loss per epoch of each PRM; frames have epoch, train/eval_loss."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        color = LABELER_COLORS.get(name)
        ax.plot(curve["epoch"], curve["train_loss"], ls="--", color=color, label=f"{name}: train")
        ax.plot(curve["epoch"], curve["eval_loss"], marker="o", color=color, label=f"{name}: dev")
    ax.set_xlabel("epoch")
    ax.set_ylabel("binary cross-entropy (per labeled step)")
    ax.legend(fontsize=8)
    return fig


def budget_figure(table: pd.DataFrame, bon_column: str, majority: float) -> plt.Figure:
    """PRM quality against the labeling seconds its labels cost (`instrument.budget_comparison`):
    F1 and Best-of-N with CIs; truth labels cost nothing and sit at the left edge. With a
    ``labeler`` column (`labeler_axis.prm_table`), the first labeler's markers are filled and
    the others' hollow."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = table["label_seconds"].clip(lower=1.0)
    bon_label = f"Best-of-{bon_column.removeprefix('bon')} accuracy"
    first = table["labeler"].iloc[0] if "labeler" in table else None
    for ax, col, label in ((axes[0], "f1", "first-error F1"), (axes[1], bon_column, bon_label)):
        for (_, r), xi in zip(table.iterrows(), x, strict=True):
            lo, hi = r[f"{col}_ci"]
            color = LABELER_COLORS.get(r["labels"])
            by = "" if first is None else f"{r['labeler']}: "
            ax.errorbar(
                [xi],
                [r[col]],
                yerr=[[max(r[col] - lo, 0)], [max(hi - r[col], 0)]],
                fmt="o" if r["set"] == "base" else "s",
                ms=8,
                capsize=3,
                color=color,
                mfc=color if first is None or r["labeler"] == first else "white",
                label=f"{by}{r['labels']} labels, {r['set']} set ({r['trajectories']:,} traj.)",
            )
        ax.set_xscale("log")
        ax.set_xlabel("labeling wall-clock seconds (truth: free, shown at 1 s)")
        ax.set_ylabel(f"{label} (95% CI)")
    axes[1].axhline(
        majority, color=LABELER_COLORS["majority"], ls="--", lw=1, label="majority vote"
    )
    if len(table) <= 5:
        axes[1].legend(fontsize=7, loc="lower right")
    else:  # the labeler table: a legend inside would hide points
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=7)
        fig.set_layout_engine("constrained")  # keeps the outside legend clear of the axes
    return fig


def data_curve(table: pd.DataFrame, bon_column: str, majority: float) -> plt.Figure:
    """Truth-PRM F1 and Best-of-N against training trajectories (log scale), with CIs."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    bon_label = f"Best-of-{bon_column.removeprefix('bon')} accuracy"
    for ax, col, label in ((axes[0], "f1", "first-error F1"), (axes[1], bon_column, bon_label)):
        lo = table[f"{col}_ci"].map(lambda c: c[0])
        hi = table[f"{col}_ci"].map(lambda c: c[1])
        ax.errorbar(
            table["trajectories"],
            table[col],
            yerr=_ci_errors(table[col], lo, hi),
            marker="o",
            capsize=3,
            color=LABELER_COLORS["truth"],
            label="PRM from exact truth",
        )
        ax.set_xscale("log")
        ax.set_xlabel("training trajectories")
        ax.set_ylabel(f"{label} (95% CI)")
    axes[1].axhline(
        majority, color=LABELER_COLORS["majority"], ls="--", lw=1, label="majority vote"
    )
    axes[1].legend(fontsize=8)
    return fig


def within_position_bars(table: pd.DataFrame) -> plt.Figure:
    """Step AUROC vs truth at each step position, one bar group per score source."""
    rows = [
        {"scores": r["scores"], "position": int(p), "AUROC": a}
        for _, r in table.iterrows()
        for p, a in r["per_position"].items()
        if a is not None
    ]
    fig, ax = plt.subplots(figsize=(9, 4))
    if not rows:  # e.g. a tiny run where no position has both right and wrong steps
        ax.text(0.5, 0.5, "no step position has both right and wrong steps", ha="center")
        return fig
    sns.barplot(pd.DataFrame(rows), x="position", y="AUROC", hue="scores", ax=ax)
    ax.axhline(0.5, color="#999999", ls=":", lw=1)
    ax.set_xlabel("step index (0 = first step)")
    ax.set_ylabel("step AUROC vs exact truth, within position")
    ax.legend(fontsize=7, ncol=2)
    return fig


def labeler_axis_figure(summary: pd.DataFrame) -> plt.Figure:
    """Label quality against the labeler's anticipation skill (`labeler_axis.summary_table`):
    step AUROC vs exact truth of CPMI (its setting chosen on dev; pooled and within position)
    and of MC from the same labeler, one line per label source, one point per labeler."""
    table = summary.sort_values("anticipation")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = table["anticipation"]
    values = {
        c: pd.to_numeric(table[c], errors="coerce")
        for c in ("cpmi_auroc", "cpmi_within", "mc_auroc", "mc_within")
    }
    lines = (
        ("cpmi_auroc", "cpmi_auroc_ci", "CPMI, pooled", LABELER_COLORS["cpmi"], "-"),
        ("cpmi_within", "cpmi_within_ci", "CPMI, within position", LABELER_COLORS["cpmi"], "--"),
        ("mc_auroc", None, "MC (N rollouts), pooled", LABELER_COLORS["mc"], "-"),
        ("mc_within", None, "MC, within position", LABELER_COLORS["mc"], "--"),
    )
    for col, ci, label, color, ls in lines:
        yerr = None
        if ci is not None:
            lo = table[ci].map(lambda c: c[0] if c else float("nan"))
            hi = table[ci].map(lambda c: c[1] if c else float("nan"))
            yerr = _ci_errors(values[col], lo, hi)
        ax.errorbar(
            x, values[col], yerr=yerr, marker="o", ls=ls, color=color, capsize=3, label=label
        )
    for xi, yi, name in zip(x, values["cpmi_auroc"].fillna(0.5), table["labeler"], strict=True):
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.axhline(0.5, color="#999999", ls=":", lw=1)
    ax.set_xlabel("anticipation skill: mean P(gold answer) after a correct prefix, steps left")
    ax.set_ylabel("step AUROC vs exact truth (95% CI)")
    ax.legend(fontsize=8, loc="best")
    return fig


def anticipation_curves(curves: pd.DataFrame) -> plt.Figure:
    """P(gold answer) after a correct prefix against the steps still to do, one line per labeler
    (0 steps left: after the whole solution)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(curves, x="remaining", y="p_gold", hue="labeler", marker="o", ax=ax)
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("steps left after the prefix")
    ax.set_ylabel("P(gold answer | prefix, 'The answer is:')")
    return fig


def verifier_figure(frame: pd.DataFrame, aurocs: pd.DataFrame, bo4: pd.DataFrame) -> plt.Figure:
    """Zero-shot CPMI on real solutions (`cpmi_lib.studies.real_verifier`): left, each aggregate of
    the
    step CPMI for right and wrong solutions with its AUROC; right, Best-of-4 accuracy by selector
    with 95% CIs."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(1.2, 1))
    long = frame.melt(
        id_vars=["is_correct"],
        value_vars=[f"cpmi_{a}" for a in aurocs["aggregate"]],
        var_name="aggregate",
        value_name="CPMI",
    )
    long["aggregate"] = long["aggregate"].str.removeprefix("cpmi_")
    long["solution"] = long["is_correct"].map({True: "right", False: "wrong"})
    sns.boxplot(long, x="aggregate", y="CPMI", hue="solution", ax=left, fliersize=2)
    labels = [
        f"{r.aggregate}\nAUROC {r.auroc:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
        if pd.notna(r.auroc)
        else f"{r.aggregate}\n(one class only: no AUROC)"
        for r in aurocs.itertuples(index=False)
    ]
    left.set_xticks(range(len(labels)), labels)
    left.set_xlabel("step CPMI aggregated over the solution")
    left.set_ylabel("CPMI (nats per answer token)")
    colors = [
        LABELER_COLORS["cpmi"] if s.startswith("CPMI") else LABELER_COLORS.get(k, "#999999")
        for s, k in zip(
            bo4["selector"],
            bo4["selector"].map(
                {"majority vote": "majority", "random": "random", "oracle (pass@4)": "pass@n"}
            ),
            strict=True,
        )
    ]
    right.barh(
        bo4["selector"],
        bo4["accuracy"],
        xerr=_ci_errors(bo4["accuracy"], bo4["ci_low"], bo4["ci_high"]),
        color=colors,
        capsize=3,
    )
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel(f"Best-of-4 accuracy (95% CI, {int(bo4['n_problems'].iloc[0])} problems)")
    fig.tight_layout()
    return fig
