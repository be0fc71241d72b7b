"""The parser and the entry point: ``python -m cpmi_lib COMMAND`` (see ``--help``).

Each command lives in the module of its role (world, label, prm, runs) with its own arguments
beside it; this module only puts them in one parser and turns errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys

from cpmi_lib.cli.common import UsageError, runtime_errors
from cpmi_lib.cli.label import register_label, register_merge
from cpmi_lib.cli.models import register as register_models
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
    register_models(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a command. Argument errors and refused outputs (an input, someone else's file, another
    run's labels, a file another process writes) exit with code 2; input errors (a bad record, a
    refused merge of shards), a model that cannot be loaded and what the OS refuses (disk full, a
    file-size limit, a read-only directory) with code 1; each as one line on stderr naming the
    path and the cause, no traceback. What a run wrote before an OS error stays resumable."""
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
        from cpmi_lib.labeling.runs import OutputRefused

        if isinstance(exc, OutputRefused):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            sys.exit(2)
        if isinstance(exc, OSError) and not isinstance(exc, runtime_errors()):
            print(f"{prog}: error: {os_error_line(exc)}", file=sys.stderr)
            sys.exit(1)
        if not isinstance(exc, runtime_errors()):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(1)


def os_error_line(exc: OSError) -> str:
    """What the OS refused, as "PATH: cause" ("…: No space left on device", "…: File too
    large", "…: Read-only file system"), or the error's own message when it names no file."""
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
