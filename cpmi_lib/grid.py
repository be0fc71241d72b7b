"""Run the notebook grid: ``python -m cpmi_lib.grid --preset smoke|default|paper-smoke|paper``.

Executes the jupytext notebooks of `notebooks/` with papermill in dependency order, each with its
parameters from the preset, writing executed copies to ``results/runs/<preset>/``, tables to
``results/tables/`` and figures to ``figures/``, then ``results/README.md``. Expensive stages
(samples, labels, PRMs) are cached by the library under a hash of their parameters, so a rerun
only redoes what changed. A failing notebook stops the grid with a non-zero exit that names the
notebook and the cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError

from cpmi_lib.presets import PRESET_NAMES, PRESETS, REPO, RESULT_ROOTS

NOTEBOOK_DIR = REPO / "notebooks"
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


def run_grid(preset: str, root: Path = REPO, only: list[str] | None = None) -> list[Path]:
    """Execute the grid; return the executed notebooks. Raises `GridError` on a failing cell."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {PRESET_NAMES}")
    unknown = set(only or ()) - set(PRESETS[preset])
    if unknown:
        raise ValueError(f"unknown notebook(s) {sorted(unknown)}; known: {list(PRESETS[preset])}")
    runs = root / "results" / "runs" / preset
    runs.mkdir(parents=True, exist_ok=True)
    executed = []
    for name in only or NOTEBOOKS:
        out = runs / f"{name}.ipynb"
        start = time.perf_counter()
        print(f"[grid:{preset}] {name} ...", flush=True)
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
        print(f"[grid:{preset}] {name} done in {time.perf_counter() - start:.0f} s", flush=True)
        executed.append(out)
    from cpmi_lib.report import write_results_readme

    write_results_readme(root / "results", root / "figures", preset)
    return executed


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
    args = parser.parse_args(argv)
    root = Path(args.root) if args.root else RESULT_ROOTS[args.preset]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run_grid(args.preset, root, args.only)
    except (GridError, ValueError) as exc:
        print(f"grid failed: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
