"""Commands for the shipped checkpoints (`cpmi_lib.lm.shipped`): verify-models, ship-models."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_verify_models(args: argparse.Namespace) -> None:
    from cpmi_lib.lm.shipped import MODELS_DIR, from_scratch, read_manifest, verify_shipped

    names = sorted(read_manifest())
    for name in names:
        verify_shipped(name)
    note = " (ignored: CPMI_FROM_SCRATCH is set, every LM is retrained)" if from_scratch() else ""
    print(f"{len(names)} shipped checkpoint(s) in {MODELS_DIR} match the manifest{note}")


def _cmd_ship_models(args: argparse.Namespace) -> None:
    from cpmi_lib.lm.shipped import MODELS_DIR, ship_models

    models = Path(args.cache) / "models"
    dirs = sorted(p for p in models.glob("*-lm-*") if (p / "training.json").is_file())
    if args.names:
        dirs = [d for d in dirs if d.name in args.names]
        missing = sorted(set(args.names) - {d.name for d in dirs})
        if missing:
            from cpmi_lib.cli.common import UsageError

            raise UsageError(f"no trained LM {missing[0]!r} under {models}")
    manifest = ship_models(dirs)
    print(f"shipped {len(dirs)} LM(s) into {MODELS_DIR}; manifest: {len(manifest['checkpoints'])}")


def register(sub: argparse._SubParsersAction) -> None:
    """verify-models, ship-models."""
    from cpmi_lib.lm.default_lm import DEFAULT_CACHE

    p = sub.add_parser(
        "verify-models", help="check the shipped checkpoints under models/ against the manifest"
    )
    p.set_defaults(func=_cmd_verify_models)
    p = sub.add_parser(
        "ship-models", help="copy trained LMs from a cache into models/ and the manifest"
    )
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="the cache of a results run")
    p.add_argument("names", nargs="*", help="LM directory names (default: every trained LM)")
    p.set_defaults(func=_cmd_ship_models)
