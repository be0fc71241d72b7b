"""The decisive comparison's figure (`cpmi_lib.studies.decisive`): every label source's PRM on
each benchmark, F1 with its CI, so a gap reads against the interval around it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from cpmi_lib.report.plots import LABELER_COLORS

#: Sources not in `LABELER_COLORS`: the controls and the best labeler's, in the same palette.
EXTRA_COLORS = {
    "best cpmi": "#0b5d47",
    "best mc": "#8a3d01",
    "outcome": "#e6ab02",
    "cpmi no own answer": "#66a61e",
    "surprise": "#a6761d",
}


def decisive_bars(table: pd.DataFrame) -> plt.Figure:
    """One panel per benchmark: F1 (τ from dev) with its 95% CI for each source, in table order;
    `table` from `cpmi_lib.studies.decisive.benchmark_table`."""
    benchmarks = list(dict.fromkeys(table["benchmark"]))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5 * len(benchmarks), 4), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks, strict=True):
        g = table[table["benchmark"] == benchmark]
        f1 = g["f1"].astype(float)
        low = g["f1_ci"].map(lambda ci: ci[0]).astype(float)
        high = g["f1_ci"].map(lambda ci: ci[1]).astype(float)
        colors = [LABELER_COLORS.get(s, EXTRA_COLORS.get(s, "#999999")) for s in g["source"]]
        y = range(len(g))
        ax.barh(
            list(y),
            f1,
            xerr=[(f1 - low).clip(lower=0), (high - f1).clip(lower=0)],
            color=colors,
            capsize=3,
        )
        ax.set_yticks(list(y), list(g["source"]))
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("first-error F1 (95% CI, τ from dev)")
        ax.set_title(f"{benchmark} benchmark")
    return fig
