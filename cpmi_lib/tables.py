"""Tables of the suite: every table is written as CSV (for machines) and Markdown (for people)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def save_table(df: pd.DataFrame, name: str, results_dir: str | os.PathLike[str]) -> Path:
    """Write `df` to ``results_dir/tables/name.csv`` and ``.md``; return the Markdown path."""
    out = Path(results_dir) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{name}.csv", index=False)
    md = out / f"{name}.md"
    md.write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")
    return md
