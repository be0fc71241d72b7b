"""The decisive comparison's first answer, before its expensive label sources run: does the
natural-error benchmark leave room above the untrained surprise, and can it tell the exact truth
from the free controls? Only the PRMs of exact truth, outcome labels and step position, and the
policy LM's surprise (no labeler axis, no MC, no Best-of-N pool), so it takes minutes from the
shipped checkpoints, not hours.

``python -m cpmi_lib decisive-controls --preset default --out DIR`` writes DIR/tables/
``decisive_controls`` (F1 with CI on both benchmarks) and ``decisive_controls_paired`` (paired
bootstraps over the same natural items, with the smallest difference each could see). The full
comparison (`cpmi_lib.studies.decisive`, notebook ``decisive``) adds MC, the best labeler's CPMI
and Best-of-N, and reuses every stage this one caches.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cpmi_lib.experiment.config import ExperimentConfig
from cpmi_lib.experiment.natural import NATURAL
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.tables import save_table
from cpmi_lib.studies.decisive import (
    Source,
    bon_tests,
    f1_row,
    natural_scorable,
    paired_f1_tests,
    source_record,
    surprise_record,
)

CONTROLS = ("truth", "outcome", "position")
#: Best-of-N McNemar pairs among the controls (surprise has no Best-of-N: it is not a PRM).
CONTROL_BON_PAIRS: tuple[tuple[str, str], ...] = (
    ("truth", "outcome"),
    ("truth", "position"),
    ("outcome", "position"),
)
CONTROL_PAIRS: tuple[tuple[str, str], ...] = (
    ("truth", "surprise"),
    ("truth", "outcome"),
    ("truth", "position"),
    ("outcome", "position"),
)


def control_sources(cfg: ExperimentConfig) -> dict[str, Source]:
    """The PRMs of exact truth and of the free controls, from the experiment as configured."""
    base = Experiment(cfg)
    return {name: Source(base, name) for name in CONTROLS}


def control_tables(cfg: ExperimentConfig) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """First-error F1 (τ from dev) of each control PRM and of the surprise on every scorable
    benchmark; the paired tests on the natural one (None when it is not scorable)."""
    sources = control_sources(cfg)
    base = sources["truth"].exp
    natural = natural_scorable(base)
    rows = []
    for benchmark in natural["benchmarks"]:
        rows += [
            f1_row(name, benchmark, source_record(s, benchmark)) for name, s in sources.items()
        ]
        rows.append(f1_row("surprise", benchmark, surprise_record(base, benchmark)))
    paired = None
    if natural["scorable"]:
        paired = paired_f1_tests(sources, NATURAL, pairs=CONTROL_PAIRS, seed=cfg.seed)
    return pd.DataFrame(rows), paired


def save_control_tables(
    cfg: ExperimentConfig, results_dir: str | Path, best_of_n: bool = False
) -> list[Path]:
    """`control_tables` written to ``results_dir/tables`` (CSV and Markdown); with `best_of_n`
    also the McNemar tests of `CONTROL_BON_PAIRS` at the largest N with the smallest difference
    each could detect (this samples the Best-of-N pools: the longer part)."""
    table, paired = control_tables(cfg)
    written = [save_table(table, "decisive_controls", results_dir)]
    if paired is not None:
        written.append(save_table(paired, "decisive_controls_paired", results_dir))
    if best_of_n:
        bon = bon_tests(control_sources(cfg), CONTROL_BON_PAIRS)
        written.append(save_table(bon, "decisive_controls_bon", results_dir))
    return written
