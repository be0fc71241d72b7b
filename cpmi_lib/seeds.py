"""The `seeds` check: do the headline claims survive retraining with other seeds?

The committed CIs resample problems; they do not cover the training of the models. This reruns
the notebooks that record headline numbers (`HEADLINE_NOTEBOOKS`) with other seeds of everything
trained or sampled (world LM, PRM backbone LM, policy samples, PRMs; the world, its problems and
benchmarks stay the same), each into its preset's folder (`Preset.root`), and sets every
`results/headline.json` number of the committed run (seed 0), and the natural-benchmark F1 of every
source of the decisive table, next to its spread across seeds: mean, standard deviation, min, max,
and how many seeds fall inside the committed CI.

Run: ``python -m cpmi_lib seeds`` (or ``make seeds``; not part of ``make reproduce``: each seed
retrains both LMs and relabels, nearly as long as ``make reproduce`` itself). ``--no-run`` only
aggregates the folders already there. Writes ``results/seeds.{json,md}``. ``python -m
cpmi_lib.seeds`` is the same command under its old name.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from cpmi_lib.core.paths import REPO
from cpmi_lib.experiment.presets import PRESETS, SEED_PRESETS
from cpmi_lib.report.headline import FILENAME, Headline, read_headline
from cpmi_lib.report.results_decisive import table_f1_headlines

#: The notebooks that record `results/headline.json` numbers: a seed runs only these (they train
#: and sample everything the headline needs through the experiment's cache), not the whole grid.
HEADLINE_NOTEBOOKS = ("instrument", "labelers", "decisive")
#: Notebooks whose headline numbers no experiment seed changes (fixed data, deterministic
#: scoring, no sampling): a seed does not rerun them, and their names read "not rerun".
SEED_FREE_NOTEBOOKS = ("real_gsm8k_verifier",)


def seed_spread(
    committed: Mapping[str, Headline], reruns: Mapping[int, Mapping[str, Headline]]
) -> pd.DataFrame:
    """`spread_rows` as a table."""
    return pd.DataFrame(spread_rows(committed, reruns))


def spread_rows(
    committed: Mapping[str, Headline], reruns: Mapping[int, Mapping[str, Headline]]
) -> list[dict[str, Any]]:
    """One row per committed headline name: the committed value and CI, the values of every
    seed (seed 0 is the committed run), their mean, sd, min, max, and how many lie in the CI."""
    rows = []
    for name, c in sorted(committed.items()):
        values = {0: c.value} | {s: r[name].value for s, r in sorted(reruns.items()) if name in r}
        xs = list(values.values())
        inside = None
        if c.ci is not None:
            inside = sum(c.ci[0] <= x <= c.ci[1] for x in xs)
        rows.append(
            {
                "name": name,
                "committed": c.value,
                "committed CI": list(c.ci) if c.ci is not None else None,
                "seeds": len(xs),
                "values": {str(s): v for s, v in values.items()},
                "mean": statistics.fmean(xs),
                "sd": statistics.stdev(xs) if len(xs) > 1 else None,
                "min": min(xs),
                "max": max(xs),
                "in committed CI": inside,
                "CI half-width": (c.ci[1] - c.ci[0]) / 2 if c.ci is not None else None,
            }
        )
    return rows


def spread_markdown(rows: list[dict[str, Any]]) -> str:
    def f(x: object) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "—"
        if isinstance(x, list):
            return f"[{x[0]:.4g}, {x[1]:.4g}]"
        return f"{x:.4g}" if isinstance(x, float) else str(x)

    cols = ["name", "committed", "committed CI", "CI half-width", "mean", "sd", "min", "max"]
    body = [
        [f(r[c]) for c in cols]
        + [f"{r['in committed CI']}/{r['seeds']}" if r["in committed CI"] is not None else "—"]
        for r in rows
    ]
    return tabulate(body, headers=[*cols, "seeds in CI"], tablefmt="github", disable_numparse=True)


def _with_table_f1(results: Path) -> dict[str, Headline]:
    """A run's headline numbers and the natural-benchmark F1 of the decisive table's sources
    that have no headline name (`table_f1_headlines`)."""
    return read_headline(results / FILENAME) | table_f1_headlines(results)


def aggregate(committed_root: Path, seed_roots: Mapping[int, Path], out_dir: Path) -> pd.DataFrame:
    """Read the headline files, write ``seeds.{json,md}`` to `out_dir`, return the table."""
    committed = _with_table_f1(committed_root / "results")
    reruns = {s: _with_table_f1(root / "results") for s, root in seed_roots.items()}
    rows = spread_rows(committed, reruns)
    table = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "seeds.json").write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n")
    (out_dir / "seeds.md").write_text(
        f"Headline numbers across {1 + len(seed_roots)} seeds (0 = committed).\n\n"
        + spread_markdown(rows)
        + "\n"
    )
    return table


def check_seeds(presets: Sequence[str] = SEED_PRESETS, run: bool = True) -> pd.DataFrame:
    """The `seeds` command: rerun the headline notebooks of each seed preset (unless not `run`),
    set the committed headline numbers next to theirs in ``results/seeds.{json,md}``, and
    rewrite ``results/README.md`` (it says which claims survive); return the table."""
    unknown = [p for p in presets if p not in SEED_PRESETS]
    if unknown:
        raise ValueError(f"not seed presets: {unknown}; known: {SEED_PRESETS}")
    if run:
        from cpmi_lib.grid import run_grid

        for name in presets:
            run_grid(name, PRESETS[name].root, only=list(HEADLINE_NOTEBOOKS))
    roots = {PRESETS[name].seed: PRESETS[name].root for name in presets}
    table = aggregate(REPO, roots, REPO / "results")
    from cpmi_lib.report.results_readme import write_results_readme

    write_results_readme(REPO / "results", REPO / "figures", "default")  # + which claims survive
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `seeds` command's options, shared by ``python -m cpmi_lib seeds`` and the old name."""
    parser.add_argument("--presets", nargs="+", default=list(SEED_PRESETS), choices=SEED_PRESETS)
    parser.add_argument("--no-run", action="store_true", help="only aggregate existing folders")


def run_cli(args: argparse.Namespace) -> None:
    """Run `check_seeds` from parsed `add_arguments` options and print the spread table; a
    failing notebook is one line on stderr and exit code 1, without a traceback."""
    from cpmi_lib.grid import GridError

    logging.getLogger("papermill").setLevel(logging.WARNING)  # its per-notebook INFO lines
    try:
        check_seeds(args.presets, run=not args.no_run)
    except GridError as exc:
        print(f"seeds failed: {exc}", file=sys.stderr)
        sys.exit(1)
    print((REPO / "results" / "seeds.md").read_text())


def main(argv: list[str] | None = None) -> None:
    """``python -m cpmi_lib.seeds``: the old name of ``python -m cpmi_lib seeds``."""
    parser = argparse.ArgumentParser(prog="python -m cpmi_lib.seeds", description=__doc__)
    add_arguments(parser)
    run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    main()
