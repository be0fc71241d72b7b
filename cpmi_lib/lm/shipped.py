"""Shipped checkpoints: the trained world LMs the committed results came from, in the repository.

Training the world LMs takes most of a fresh run's time, and a retrained LM drifts from machine to
machine (the default LM reached 64.2% on one and 67.1% on another), which moves every number
downstream. So the LMs a results run trained are saved under ``models/<dir name>/`` (each a
`save_pretrained` directory of about 2 MB, named as the cache names it: ``default-lm-<key>``,
``continued-lm-<key>``, the key a hash of its training config), and ``models/manifest.json``
records, per checkpoint, its config key and the sha256 of every file.

`install_shipped` is asked by `default_lm.ensure_default_lm` / `ensure_continued_lm` before they
train: a checkpoint shipped for exactly that config is verified file by file against the manifest
and copied into the cache, so a fresh clone starts from the very weights of the committed results.
A missing or changed file is a one-line `ShippedModelError` naming it: never a silent retrain.
``CPMI_FROM_SCRATCH=1`` (``make reproduce-from-scratch``) ignores the shipped checkpoints and
retrains every LM, as a run without them would. `ship_models` writes them (``python -m cpmi_lib
ship-models``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from cpmi_lib.core.paths import REPO

#: Where shipped checkpoints live, and their manifest.
MODELS_DIR = REPO / "models"
MANIFEST = "manifest.json"
#: Set to 1 to ignore shipped checkpoints and retrain every LM.
FROM_SCRATCH_ENV = "CPMI_FROM_SCRATCH"
#: Files of a model directory that are not part of the model (per-machine caches).
_NOT_SHIPPED = (".cpmi-sha256.json",)
MANIFEST_FORMAT = 1


class ShippedModelError(RuntimeError):
    """A shipped checkpoint that does not match its manifest (one line, naming the file)."""


def from_scratch() -> bool:
    """Whether shipped checkpoints are ignored (``CPMI_FROM_SCRATCH=1``)."""
    return os.environ.get(FROM_SCRATCH_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(models_dir: Path | None = None) -> dict[str, Any]:
    """The manifest's checkpoints by directory name (empty when nothing is shipped)."""
    models_dir = models_dir or MODELS_DIR
    path = models_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
        return dict(manifest["checkpoints"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ShippedModelError(f"{path}: not a checkpoint manifest ({exc})") from None


def verify_shipped(name: str, models_dir: Path | None = None) -> Path:
    """The directory of shipped checkpoint `name` after checking every file against the manifest;
    ShippedModelError names a missing file, a changed file or a checkpoint not in the manifest."""
    models_dir = models_dir or MODELS_DIR
    entry = read_manifest(models_dir).get(name)
    if entry is None:
        raise ShippedModelError(f"{models_dir / MANIFEST}: no checkpoint {name!r}")
    folder = models_dir / name
    for file, expected in sorted(entry["files"].items()):
        path = folder / file
        if not path.is_file():
            raise ShippedModelError(f"{path}: missing (listed in {models_dir / MANIFEST})")
        got = _sha256(path)
        if got != expected:
            raise ShippedModelError(
                f"{path}: sha256 {got[:12]}… does not match the manifest's {expected[:12]}…; "
                f"restore it (git checkout) or set {FROM_SCRATCH_ENV}=1 to retrain"
            )
    return folder


def install_shipped(dest: Path, models_dir: Path | None = None) -> bool:
    """Copy the shipped checkpoint named like `dest` (a cache directory ``.../models/<name>``)
    into `dest`, verified; False when none is shipped for it or `from_scratch()` is set."""
    models_dir = models_dir or MODELS_DIR
    if from_scratch() or dest.name not in read_manifest(models_dir):
        return False
    source = verify_shipped(dest.name, models_dir)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.installing")
    shutil.rmtree(tmp, ignore_errors=True)
    files = read_manifest(models_dir)[dest.name]["files"]
    tmp.mkdir(parents=True)
    for file in files:
        shutil.copy2(source / file, tmp / file)
    if dest.exists():  # a partial directory without training.json: replaced whole
        shutil.rmtree(dest)
    tmp.rename(dest)
    return True


def ship_models(model_dirs: list[Path], models_dir: Path | None = None) -> dict[str, Any]:
    """Copy trained LM directories (each with its ``training.json``) into `models_dir` and record
    them in the manifest (existing entries of other names are kept); the manifest written."""
    models_dir = models_dir or MODELS_DIR
    checkpoints = read_manifest(models_dir)
    for src in model_dirs:
        record_path = src / "training.json"
        if not record_path.is_file():
            raise ShippedModelError(f"{src}: no training.json: not a trained LM directory")
        record = json.loads(record_path.read_text())
        dest = models_dir / src.name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        files = {}
        for path in sorted(p for p in src.iterdir() if p.is_file()):
            if path.name in _NOT_SHIPPED:
                continue
            shutil.copy2(path, dest / path.name)
            files[path.name] = _sha256(dest / path.name)
        checkpoints[src.name] = {
            "config_key": src.name.rsplit("-", 1)[-1],
            "files": files,
            "train_seconds": record.get("train_seconds"),
        }
    manifest = {"format": MANIFEST_FORMAT, "checkpoints": dict(sorted(checkpoints.items()))}
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
