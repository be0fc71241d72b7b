"""The parser and the entry point: ``python -m cpmi_lib COMMAND`` (see ``--help``).

Each command lives in the module of its role (world, label, prm, runs) with its own arguments
beside it; this module only puts them in one parser and turns errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys

from cpmi_lib.cli.common import UsageError, runtime_errors
from cpmi_lib.cli.label import register_label, register_merge
from cpmi_lib.cli.prm import register as register_prm
from cpmi_lib.cli.runs import register as register_runs
from cpmi_lib.cli.world import register as register_world
from cpmi_lib.cli.world import register_reproduce


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (``PROG: error: MESSAGE``, exit code 2), without the usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cpmi_lib", description="Command line of cpmi-suite.")
    sub = parser.add_subparsers(dest="command", required=True)
    register_reproduce(sub)
    register_runs(sub)
    register_world(sub)
    register_label(sub)
    register_prm(sub)
    register_merge(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a command. Argument errors exit with code 2 and input or output-file errors (a bad
    record, a refused resume or merge) with code 1, each as one line on stderr, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        args.func(args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if not isinstance(exc, runtime_errors()):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(1)
