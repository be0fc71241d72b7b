"""The command line: a thin layer over library calls, one module per role (world, label, prm,
runs), each holding its commands and their arguments side by side.

May import: every package of cpmi_lib (it sits on top, with grid and seeds).
"""

from cpmi_lib.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
