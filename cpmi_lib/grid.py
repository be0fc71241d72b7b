"""Run the notebook grid: ``python -m cpmi_lib.grid --preset smoke|default|paper-smoke|paper``.

Executes the jupytext notebooks of `notebooks/` with papermill in dependency order, each with its
parameters from the preset, writing executed copies to ``results/runs/<preset>/``, tables to
``results/tables/`` and figures to ``figures/``, then ``results/README.md``. Expensive stages
(samples, labels, PRMs) are cached by the library under a hash of their parameters, so a rerun
only redoes what changed. A failing notebook stops the grid with a non-zero exit that names the
notebook and the cell. One line per stage shows where the whole grid is (``[3/8] label_cost``, the
grid's elapsed time).

Notebooks record their headline numbers in ``results/headline.json`` (`cpmi_lib.report.headline`); a
full run starts that file afresh so no stale name survives. ``--root DIR --compare`` reruns the
grid into DIR and prints every headline number next to the committed one (the preset's result root,
the repository's ``results/`` for ``default``) with its CI and whether the rerun lies within it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import jupytext
import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError

from cpmi_lib.core.paths import NOTEBOOKS, REPO
from cpmi_lib.experiment.presets import PRESET_NAMES, PRESETS, RESULT_ROOTS
from cpmi_lib.report.headline import FILENAME as HEADLINE_FILE
from cpmi_lib.report.headline import (
    HeadlineError,
    compare_headlines,
    format_comparison,
    read_headline,
)

NOTEBOOK_DIR = NOTEBOOKS
#: Dependency order: data first, then what reads it.
NOTEBOOKS = tuple(PRESETS["default"])


class GridError(RuntimeError):
    """A notebook of the grid failed; the message names the notebook and the cell."""


def notebook_node(name: str) -> nbformat.NotebookNode:
    """The notebook `notebooks/<name>.py` (jupytext percent format) as a notebook object."""
    nb = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def declared_parameters(name: str) -> set[str]:
    """The parameters the notebook's `parameters` cell declares (papermill.inspect_notebook)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.ipynb"
        nbformat.write(notebook_node(name), path)
        return set(papermill.inspect_notebook(str(path)))


def notebook_parameters(preset: str, name: str, root: Path) -> dict[str, Any]:
    return {
        "preset": preset,
        "results_dir": str(root / "results"),
        "figures_dir": str(root / "figures"),
        **PRESETS[preset][name],
    }


def format_elapsed(seconds: float) -> str:
    """``37s``, ``4m12s``, ``1h02m03s``: the grid's elapsed time on its progress line."""
    s = int(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def run_grid(preset: str, root: Path = REPO, only: list[str] | None = None) -> list[Path]:
    """Execute the grid; return the executed notebooks. Raises `GridError` on a failing cell.

    A full run (no `only`) removes ``results/headline.json`` first, so the file holds exactly the
    names this run's notebooks record; `only` merges into the existing one."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {PRESET_NAMES}")
    unknown = set(only or ()) - set(PRESETS[preset])
    if unknown:
        raise ValueError(f"unknown notebook(s) {sorted(unknown)}; known: {list(PRESETS[preset])}")
    runs = root / "results" / "runs" / preset
    runs.mkdir(parents=True, exist_ok=True)
    if only is None:
        (root / "results" / HEADLINE_FILE).unlink(missing_ok=True)
    executed = []
    stages = list(only or NOTEBOOKS)
    grid_start = time.perf_counter()
    for i, name in enumerate(stages, 1):
        out = runs / f"{name}.ipynb"
        start = time.perf_counter()
        stage = f"[grid:{preset} {i}/{len(stages)}] {name}"
        print(f"{stage} ... (elapsed {format_elapsed(start - grid_start)})", flush=True)
        try:
            papermill.execute_notebook(
                notebook_node(name),
                str(out),
                parameters=notebook_parameters(preset, name, root),
                kernel_name="python3",
                cwd=str(NOTEBOOK_DIR),
                progress_bar=False,
            )
        except PapermillExecutionError as exc:
            raise GridError(
                f"notebook {name!r} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                f"executed copy: {out}"
            ) from None
        now = time.perf_counter()
        print(
            f"{stage} done in {now - start:.0f} s (elapsed {format_elapsed(now - grid_start)})",
            flush=True,
        )
        executed.append(out)
    from cpmi_lib.report.results_readme import write_results_readme

    write_results_readme(root / "results", root / "figures", preset)
    total = format_elapsed(time.perf_counter() - grid_start)
    print(f"[grid:{preset}] {len(stages)} notebooks in {total}", flush=True)
    return executed


def compare_roots(committed_root: Path, rerun_root: Path) -> str:
    """The comparison table of the two roots' ``results/headline.json``. A missing or malformed
    file on either side is a `HeadlineError` naming it."""
    committed = read_headline(committed_root / "results" / HEADLINE_FILE)
    rerun = read_headline(rerun_root / "results" / HEADLINE_FILE)
    return format_comparison(compare_headlines(committed, rerun))


def _same_dir(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cpmi_lib.grid", description=__doc__)
    parser.add_argument("--preset", choices=PRESET_NAMES, default="default")
    parser.add_argument(
        "--root",
        default=None,
        help="where results/ and figures/ go (default: the repository for default, "
        ".cache/<preset> for the smoke presets, paper/ for paper)",
    )
    parser.add_argument("--only", nargs="+", default=None, help=f"some of {', '.join(NOTEBOOKS)}")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="after the run, print every results/headline.json number of --root next to the "
        "committed one (the preset's default root) with its CI and whether the rerun lies within "
        "it; a report, so the exit code is 0 either way",
    )
    args = parser.parse_args(argv)
    root = Path(args.root) if args.root else RESULT_ROOTS[args.preset]
    committed_root = RESULT_ROOTS[args.preset]
    if args.compare:
        if args.root is None:
            _refuse(
                "--compare needs --root DIR: the rerun goes to DIR, not over the committed results"
            )
        if _same_dir(root, REPO) or _same_dir(root, committed_root):
            _refuse(
                f"--compare needs a --root other than {root.resolve()}, which holds the "
                "committed results it compares against"
            )
        try:  # before the run: a missing reference is found now, not after the grid
            read_headline(committed_root / "results" / HEADLINE_FILE)
        except HeadlineError as exc:
            _refuse(f"--compare: {exc}", code=1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run_grid(args.preset, root, args.only)
    except (GridError, ValueError) as exc:
        print(f"grid failed: {exc}", file=sys.stderr)
        sys.exit(1)
    if args.compare:
        try:
            print(compare_roots(committed_root, root), flush=True)
        except HeadlineError as exc:
            _refuse(f"--compare: {exc}", code=1)


def _refuse(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and exit: 2 for a wrong command line, 1 for a missing/bad file."""
    print(f"python -m cpmi_lib.grid: error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
