"""Commands that run the notebook grid: grid and seeds."""

from __future__ import annotations

import argparse


def _cmd_grid(args: argparse.Namespace) -> None:
    from cpmi_lib import grid

    grid.run_cli(args, "python -m cpmi_lib grid")


def _cmd_seeds(args: argparse.Namespace) -> None:
    from cpmi_lib import seeds

    seeds.run_cli(args)


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
