"""The section `results/README.md` leads with: the decisive comparison (issue 21), rendered from
the `decisive` notebook's tables, and one paragraph of what it concludes about CPMI, worded by
the paired tests alone (a difference is "above" or "below" only at p < 0.05; otherwise the
smallest difference the test could have seen is named), so the words cannot outrun the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from cpmi_lib.report.claims_decisive import NATURAL_F1
from cpmi_lib.report.headline import Headline

#: The sources of the lead table, in order, with the name a reader knows them by.
LEAD_SOURCES = {
    "truth": "exact truth (ceiling)",
    "mc": "MC, policy labeler",
    "best mc": "MC, best labeler",
    "outcome": "outcome labels (free)",
    "best cpmi": "CPMI, best labeler",
    "cpmi": "CPMI, policy labeler (today's)",
    "cpmi no own answer": "CPMI without the own answer",
    "position": "position (floor)",
    "surprise": "untrained surprise (no PRM)",
}
#: The paired tests the conclusion reads: CPMI from the best labeler against the free outcome
#: labels and against MC.
CONCLUSION_PAIRS = (("best cpmi", "outcome"), ("best cpmi", "mc"))
ALPHA = 0.05


def _ci(value: Any, ci: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    if isinstance(ci, str):
        ci = json.loads(ci)
    return f"{float(value):.3f} [{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def _seconds(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.0f}"


def _spread(seeds: dict[str, dict[str, Any]], name: str) -> str:
    """``mean (min–max, k seeds)`` of a headline name across the seeds (`results/seeds.json`,
    written by `python -m cpmi_lib seeds`), or – when it has fewer than two."""
    values = [float(v) for v in seeds.get(name, {}).get("values", {}).values() if v is not None]
    if len(values) < 2:
        return "–"
    mean = sum(values) / len(values)
    return f"{mean:.3f} ({min(values):.3f}–{max(values):.3f}, {len(values)} seeds)"


def natural_f1_name(source: str) -> str:
    """The name of a source's natural-benchmark F1 in `results/seeds.json`: its headline name,
    or ``natural_<source>_prm_f1`` for a source the decisive notebook records no headline for
    (`table_f1_headlines` reads those from its table)."""
    claim = NATURAL_F1.get(source)
    return claim.name if claim else f"natural_{source.replace(' ', '_')}_prm_f1"


def table_f1_headlines(results: Path) -> dict[str, Headline]:
    """The natural-benchmark F1 of every source of ``tables/decisive.csv`` without a headline
    name, as headline entries (`natural_f1_name`), so that `seeds` spreads the whole lead table
    across seeds and not only the recorded rows; {} without the table."""
    path = results / "tables" / "decisive.csv"
    if not path.is_file():
        return {}
    table = pd.read_csv(path)
    rows = table[(table["benchmark"] == "natural") & ~table["source"].isin(list(NATURAL_F1))]
    rows = rows[rows["f1"].notna() & rows["f1_ci"].notna()]  # a source this run did not score
    return {
        natural_f1_name(r.source): Headline(float(r.f1), tuple(json.loads(r.f1_ci)), int(r.items))
        for r in rows.itertuples()
    }


def decisive_lead(results: Path) -> list[str]:
    """The lead section's lines, or none when the `decisive` notebook has not written its
    tables (the smoke grids, a hub run)."""
    tables = results / "tables"
    if not (tables / "decisive.csv").is_file():
        return []
    table = pd.read_csv(tables / "decisive.csv")
    seeds_path = results / "seeds.json"
    entries = json.loads(seeds_path.read_text()) if seeds_path.is_file() else []
    seeds = {e["name"]: e for e in entries}
    bon_col = next((c for c in table.columns if c.startswith("bon") and c[3:].isdigit()), None)
    natural = table[table["benchmark"] == "natural"].set_index("source")
    synthetic = table[table["benchmark"] == "synthetic"].set_index("source")
    n = bon_col[3:] if bon_col else "N"
    lines = [
        "## The decisive comparison",
        "",
        "Every label source's PRM, same recipe and steps, on the benchmark of natural errors "
        "(the policy's and its neighbours' sampled mistakes) and the synthetic one; τ and the "
        f"Best-of-{n} aggregation from dev; labeling seconds of the training labels "
        "([`decisive`](tables/decisive.md), [docs](../docs/decisive.md)).",
        "",
        f"| source | natural F1 | across seeds | synthetic F1 | Best-of-{n} | labeling s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in LEAD_SOURCES.items():
        if key not in natural.index and key not in synthetic.index:
            continue
        nat = natural.loc[key] if key in natural.index else None
        syn = synthetic.loc[key] if key in synthetic.index else None
        row = nat if nat is not None else syn
        bon = _ci(row.get(bon_col), row.get(f"{bon_col}_ci")) if bon_col else "–"
        lines.append(
            f"| {label} | {_ci(nat['f1'], nat['f1_ci']) if nat is not None else '–'} | "
            f"{_spread(seeds, natural_f1_name(key))} | "
            f"{_ci(syn['f1'], syn['f1_ci']) if syn is not None else '–'} | {bon} | "
            f"{_seconds(row.get('labeling_seconds'))} |"
        )
    lines += _tests(tables)
    lines += ["", conclusion(tables), ""]
    return lines


def _tests(tables: Path) -> list[str]:
    lines = []
    if (tables / "decisive_paired.csv").is_file():
        paired = pd.read_csv(tables / "decisive_paired.csv")
        paired = paired[paired["benchmark"] == "natural"]
        lines += [
            "",
            "| natural errors, F1: a − b | difference [95% CI] | p | smallest detectable |",
            "| --- | --- | --- | --- |",
        ]
        for r in paired.itertuples():
            lines.append(
                f"| {r.a} − {r.b} | {_ci(r.difference, r.ci)} | {r.p_value:.3g} | "
                f"{r.min_detectable_difference:.3f} |"
            )
    if (tables / "decisive_bon.csv").is_file():
        bon = pd.read_csv(tables / "decisive_bon.csv")
        lines += [
            "",
            "| Best-of-N, exact McNemar: a vs b | accuracy a / b | p | smallest detectable |",
            "| --- | --- | --- | --- |",
        ]
        for r in bon.itertuples():
            lines.append(
                f"| {r.a} vs {r.b} (N = {r.best_of}, {r.n} problems) | {r.a_accuracy:.3f} / "
                f"{r.b_accuracy:.3f} | {r.p_value:.3g} | {r.min_detectable_difference:.3f} |"
            )
    return lines


def _verdict(row: pd.Series) -> str:
    a, b = row["a"], row["b"]
    diff, p = float(row["difference"]), float(row["p_value"])
    if p < ALPHA:
        side = "above" if diff > 0 else "below"
        return f"{a} scores {side} {b} (F1 {diff:+.3f}, p = {p:.3g})"
    return (
        f"{a} and {b} cannot be told apart (F1 {diff:+.3f}, p = {p:.3g}; the test could have "
        f"seen {float(row['min_detectable_difference']):.3f})"
    )


def conclusion(tables: Path) -> str:
    """One paragraph, worded by the natural benchmark's paired F1 tests of `CONCLUSION_PAIRS`."""
    path = tables / "decisive_paired.csv"
    if not path.is_file():
        return "No paired test on the natural benchmark was run, so nothing is concluded here."
    paired = pd.read_csv(path)
    paired = paired[paired["benchmark"] == "natural"]
    found = []
    for a, b in CONCLUSION_PAIRS:
        match = paired[(paired["a"] == a) & (paired["b"] == b)]
        if len(match):
            found.append(_verdict(match.iloc[0]))
    if not found:
        return "The paired tests of CPMI against outcome and MC labels are missing."
    return (
        "**What this concludes about CPMI** (natural errors, one seed unless a seed column "
        "shows more): " + "; ".join(found) + "."
    )
