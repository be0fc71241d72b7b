"""Commands that run the notebook grid (grid, seeds) and the decisive comparison's controls."""

from __future__ import annotations

import argparse


def _cmd_grid(args: argparse.Namespace) -> None:
    from cpmi_lib import grid

    grid.run_cli(args, "python -m cpmi_lib grid")


def _cmd_seeds(args: argparse.Namespace) -> None:
    from cpmi_lib import seeds

    seeds.run_cli(args)


def _cmd_decisive_controls(args: argparse.Namespace) -> None:
    from cpmi_lib.experiment.presets import experiment_config
    from cpmi_lib.studies.decisive_controls import save_control_tables

    cfg = experiment_config(args.preset)
    for path in save_control_tables(cfg, args.out, best_of_n=args.best_of_n):
        print(f"written: {path}")
        print(path.read_text())


def register(sub: argparse._SubParsersAction) -> None:
    """grid and seeds: their options come from the modules that run them."""
    from cpmi_lib import grid, seeds

    p = sub.add_parser(
        "grid",
        help="run a preset's notebook grid: results/, figures/ (make reproduce: --preset default)",
        description=grid.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid.add_arguments(p)
    p.set_defaults(func=_cmd_grid)

    p = sub.add_parser(
        "seeds",
        help="rerun the headline notebooks with other seeds; their spread next to the CIs",
        description=seeds.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seeds.add_arguments(p)
    p.set_defaults(func=_cmd_seeds)

    from cpmi_lib.experiment.presets import PRESET_NAMES

    p = sub.add_parser(
        "decisive-controls",
        help="truth, outcome and position PRMs and the LM's surprise on the natural benchmark",
        description="The decisive comparison before its expensive sources: first-error F1 of the "
        "PRMs of exact truth, outcome labels and step position and of the policy LM's surprise "
        "on both benchmarks, and paired bootstraps on the natural one "
        "(cpmi_lib.studies.decisive_controls); tables to OUT/tables/.",
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default="default")
    p.add_argument("--out", required=True, help="a results folder: tables go to OUT/tables/")
    p.add_argument(
        "--best-of-n",
        action="store_true",
        help="also McNemar on Best-of-N at the largest N (samples the Best-of-N pools)",
    )
    p.set_defaults(func=_cmd_decisive_controls)
