"""What every command shares: the default LM by name, one-line usage and runtime errors, checks
of numbers and output paths."""

from __future__ import annotations

import argparse
from pathlib import Path


def load_model(name: str, **kwargs):
    """`load_lm`, where the name "default" means the embedded track's default LM (trained now if
    the cache lacks it)."""
    from cpmi_lib.lm.load import load_lm

    try:
        return load_lm(model_source(name), **kwargs)
    except (OSError, ValueError, KeyError) as exc:  # missing, not a model, unreadable
        raise ModelLoadError(f"--model {name}: cannot load it: {exc}") from None


def model_source(name: str) -> str:
    """What a ``--model`` name loads from: "default" is the default LM's directory (trained now if
    the cache lacks it), anything else itself (a hub id, a directory or a .gguf file)."""
    from cpmi_lib.lm.default_lm import ensure_default_lm

    return str(ensure_default_lm()) if name == "default" else name


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded: reported as one line naming it and the cause, exit 1."""


class UsageError(Exception):
    """A bad argument: reported as one line, exit code 2, before anything is loaded or written."""


def launch_of():
    """This process's place under a launcher (`cpmi_lib.core.launch.Launch`; rank 0 of 1 without
    one); a launcher environment that makes no sense is a usage error."""
    from cpmi_lib.core.launch import launch_env

    try:
        return launch_env()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def rank_device(device: str | None, launch) -> str:
    """The device of one rank of a launched job: its own GPU (``cuda``: the launcher's
    LOCAL_RANK-th GPU, made its only visible one), else the CPU with its share of the cores.
    `device` is the --device given (None: cuda when there are GPUs)."""
    import torch

    from cpmi_lib.core.launch import pin_local_gpu

    if device not in (None, "cpu", "cuda"):
        raise UsageError(
            f"--device {device}: under a launcher each rank uses its own GPU; pass --device cuda "
            "(or cpu, or leave it out)"
        )
    if device != "cpu":
        try:
            pin_local_gpu(launch)  # before anything asks CUDA about its devices
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if device == "cuda" or torch.cuda.is_available():
            return "cuda"
    torch.set_num_threads(launch.cpu_threads())
    return "cpu"


def runtime_errors() -> tuple[type[BaseException], ...]:
    """Errors of the input or of an output file that a command reports as one line, exit 1."""
    from cpmi_lib.core.launch import RankFailed
    from cpmi_lib.core.trajectory import RecordError
    from cpmi_lib.labeling.runs import LabelFileError
    from cpmi_lib.lm.identity import ModelIdentityError
    from cpmi_lib.lm.load import ModelUnavailableError
    from cpmi_lib.lm.logprob import SequenceTooLongError
    from cpmi_lib.lm.shipped import ShippedModelError

    return (
        LabelFileError,
        RecordError,
        SequenceTooLongError,
        FileExistsError,
        ModelLoadError,
        ModelUnavailableError,
        ModelIdentityError,
        ShippedModelError,
        RankFailed,
    )


def check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_finite(option: str, value: float, *, positive: bool = False) -> None:
    import math

    if not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, got {value}")
    if positive and not value > 0:
        raise UsageError(f"{option} must be > 0, got {value}")


def check_output_path(out: Path, option: str = "--out") -> None:
    """An output file path: not a directory, and its first existing ancestor is a directory (the
    missing ones are made)."""
    if out.is_dir():
        raise UsageError(
            f"{option} {out} is a directory; give a file path (e.g. {out}/labels.jsonl)"
        )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {out}: {parent} is not a directory")


def same_file(a: Path, b: Path) -> bool:
    import os

    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
