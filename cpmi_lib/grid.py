"""Run the notebook grid: ``python -m cpmi_lib grid --preset NAME`` (`presets.PRESETS`).

Executes the jupytext notebooks of `notebooks/` with papermill in the preset's order, each with its
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
``python -m cpmi_lib.grid`` is the same command under its old name.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError
from traitlets.config import Config

from cpmi_lib.core.paths import NOTEBOOKS, REPO
from cpmi_lib.experiment.presets import PRESET_NAMES, PRESETS
from cpmi_lib.lm.shipped import from_scratch
from cpmi_lib.report.headline import FILENAME as HEADLINE_FILE
from cpmi_lib.report.headline import (
    HeadlineError,
    compare_headlines,
    format_comparison,
    read_headline,
)

NOTEBOOK_DIR = NOTEBOOKS
#: The default grid's notebooks in the order they run (every preset runs these).
NOTEBOOKS = tuple(run.name for run in PRESETS["default"].notebooks)


def kernel_config(socket_dir: str) -> Config:
    """The notebooks' kernels talk to the grid over IPC (Unix sockets in `socket_dir`) instead
    of TCP on localhost: nothing listens on a port, and the kernel does not warn once per notebook
    that TCP is unencrypted. An absolute, short socket path: papermill runs the kernel in the
    notebooks' folder, and a socket path must stay under ~100 characters."""
    return Config({"KernelManager": {"transport": "ipc", "ip": str(Path(socket_dir) / "kernel")}})


class GridError(RuntimeError):
    """A notebook of the grid failed; the message names the notebook and the cell."""


class Refusal(Exception):
    """A `grid` command refused before or after the run, said in one line: exit code 2 for a
    wrong command line, 1 for a missing or malformed file."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


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
    """What notebook `name` runs with: the common parameters, then the preset's own for it."""
    return {
        "preset": preset,
        "results_dir": str(root / "results"),
        "figures_dir": str(root / "figures"),
        **PRESETS[preset].notebook(name).params,
    }


def format_elapsed(seconds: float) -> str:
    """``37s``, ``4m12s``, ``1h02m03s``: the grid's elapsed time on its progress line."""
    s = int(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def run_grid(preset: str, root: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """Execute the grid into `root` (default: the preset's own); return the executed notebooks.
    Raises `GridError` on a failing cell.

    `only` runs some of the notebooks, still in the preset's order. A full run (no `only`) removes
    ``results/headline.json`` first, so the file holds exactly the names this run's notebooks
    record; `only` merges into the existing one."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {PRESET_NAMES}")
    runs = PRESETS[preset].notebooks
    known = [run.name for run in runs]
    unknown = set(only or ()) - set(known)
    if unknown:
        raise ValueError(f"unknown notebook(s) {sorted(unknown)}; known: {known}")
    root = PRESETS[preset].root if root is None else root
    out_dir = root / "results" / "runs" / preset
    out_dir.mkdir(parents=True, exist_ok=True)
    if only is None:
        (root / "results" / HEADLINE_FILE).unlink(missing_ok=True)
    executed = []
    stages = [name for name in known if not only or name in only]
    last = read_timings(root)  # the last full run's seconds, for the estimate of what is left
    plus_lms = from_scratch() and not timed_from_scratch(root)
    seconds: dict[str, float] = {}
    grid_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cpmi-") as sockets:  # the kernels' IPC sockets
        for i, name in enumerate(stages, 1):
            out = out_dir / f"{name}.ipynb"
            start = time.perf_counter()
            stage = f"[grid:{preset} {i}/{len(stages)}] {name}"
            left = remaining(last, stages[i - 1 :], plus_lms)
            print(f"{stage} ... (elapsed {format_elapsed(start - grid_start)}{left})", flush=True)
            try:
                papermill.execute_notebook(
                    notebook_node(name),
                    str(out),
                    parameters=notebook_parameters(preset, name, root),
                    kernel_name="python3",
                    cwd=str(NOTEBOOK_DIR),
                    progress_bar=False,
                    config=kernel_config(sockets),
                )
            except PapermillExecutionError as exc:
                raise GridError(
                    f"notebook {name!r} failed in cell {exc.exec_count} ({exc.ename}: "
                    f"{exc.evalue}); executed copy: {out}"
                ) from None
            now = time.perf_counter()
            seconds[name] = round(now - start, 1)
            print(
                f"{stage} done in {now - start:.0f} s (elapsed {format_elapsed(now - grid_start)})",
                flush=True,
            )
            executed.append(out)
    from cpmi_lib.report.results_readme import write_results_readme

    write_results_readme(root / "results", root / "figures", preset)
    total_seconds = time.perf_counter() - grid_start
    if only is None:
        write_timings(root, preset, seconds, total_seconds)
    print(f"[grid:{preset}] {len(stages)} notebooks in {format_elapsed(total_seconds)}", flush=True)
    return executed


TIMINGS_FILE = "timings.json"


def _timings_record(root: Path) -> dict[str, Any]:
    """``results/timings.json`` of the last full run into `root`; {} if none or unreadable."""
    try:
        record = json.loads((root / "results" / TIMINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def read_timings(root: Path) -> dict[str, float]:
    """Seconds per stage of the last full run into `root` (``results/timings.json``; {} if none)."""
    try:
        return {k: float(v) for k, v in _timings_record(root)["stages"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}


def timed_from_scratch(root: Path) -> bool:
    """Whether the last full run into `root` retrained its LMs (``from_scratch`` in
    ``results/timings.json``; a record without it was made from the shipped checkpoints)."""
    return _timings_record(root).get("from_scratch") is True


def remaining(last: dict[str, float], stages: list[str], plus_lms: bool = False) -> str:
    """``, about 12m left`` from the last full run's seconds of `stages`; "" when unknown.
    `plus_lms`: this run trains LMs the last one read from ``models/`` (a from-scratch run after
    a shipped one, as in a fresh clone), so the estimate says it leaves their training out."""
    if not last or any(name not in last for name in stages):
        return ""
    left = f", about {format_elapsed(sum(last[name] for name in stages))} left by the last run"
    return left + (", plus LM training" if plus_lms else "")


def write_timings(root: Path, preset: str, seconds: dict[str, float], total: float) -> Path:
    """``results/timings.json``: every stage's seconds of this full run, its total and machine."""
    path = root / "results" / TIMINGS_FILE
    record = {
        "preset": preset,
        "stages": seconds,
        "total_seconds": round(total, 1),
        "from_scratch": from_scratch(),  # whether its seconds include training every LM
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def compare_roots(committed_root: Path, rerun_root: Path) -> str:
    """The comparison table of the two roots' ``results/headline.json``. A missing or malformed
    file on either side is a `HeadlineError` naming it."""
    committed = read_headline(committed_root / "results" / HEADLINE_FILE)
    rerun = read_headline(rerun_root / "results" / HEADLINE_FILE)
    return format_comparison(compare_headlines(committed, rerun))


def _same_dir(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def grid_command(
    preset: str, root: Path | None = None, only: list[str] | None = None, compare: bool = False
) -> str | None:
    """The `grid` command: run `preset`'s grid into `root` (default: the preset's own); with
    `compare`, return its headline numbers set next to the committed ones (the preset's root).

    Every refusal (`Refusal`) comes before the run: `compare` needs a `root` apart from the
    committed results, and the committed headline file must be readable."""
    committed_root = PRESETS[preset].root
    if compare:
        if root is None:
            raise Refusal(
                "--compare needs --root DIR: the rerun goes to DIR, not over the committed results"
            )
        if _same_dir(root, REPO) or _same_dir(root, committed_root):
            raise Refusal(
                f"--compare needs a --root other than {root.resolve()}, which holds the "
                "committed results it compares against"
            )
        try:  # before the run: a missing reference is found now, not after the grid
            read_headline(committed_root / "results" / HEADLINE_FILE)
        except HeadlineError as exc:
            raise Refusal(f"--compare: {exc}", code=1) from None
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_grid(preset, root, only)
    if not compare:
        return None
    assert root is not None
    try:
        return compare_roots(committed_root, root)
    except HeadlineError as exc:
        raise Refusal(f"--compare: {exc}", code=1) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `grid` command's options, shared by ``python -m cpmi_lib grid`` and the old name."""
    parser.add_argument("--preset", choices=PRESET_NAMES, default="default")
    parser.add_argument(
        "--root",
        default=None,
        help="where results/ and figures/ go (default: the preset's own: the repository for "
        "default, .cache/<preset> for the smoke presets, paper/ for paper)",
    )
    parser.add_argument("--only", nargs="+", default=None, help=f"some of {', '.join(NOTEBOOKS)}")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="after the run, print every results/headline.json number of --root next to the "
        "committed one (the preset's default root) with its CI and whether the rerun lies within "
        "it; a report, so the exit code is 0 either way",
    )


def run_cli(args: argparse.Namespace, prog: str) -> None:
    """Run `grid_command` from parsed `add_arguments` options. A refusal or a failing notebook
    is one line on stderr and a non-zero exit, without a traceback."""
    logging.getLogger("papermill").setLevel(logging.WARNING)  # its per-notebook INFO lines
    root = Path(args.root) if args.root else None
    try:
        table = grid_command(args.preset, root, args.only, args.compare)
    except Refusal as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(exc.code)
    except (GridError, ValueError) as exc:
        print(f"grid failed: {exc}", file=sys.stderr)
        sys.exit(1)
    if table is not None:
        print(table, flush=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m cpmi_lib.grid``: the old name of ``python -m cpmi_lib grid``."""
    prog = "python -m cpmi_lib.grid"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_arguments(parser)
    run_cli(parser.parse_args(argv), prog)


if __name__ == "__main__":
    main()
