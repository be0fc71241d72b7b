"""A disk cache of whole `step_features` calls, so a frozen backbone reads each set of
trajectories once, however many PRMs score it.

Why: every surprise-head PRM of an experiment carries the same frozen backbone, and each one
scores the same Best-of-N pools and benchmarks, and trains on the same trajectories as its
siblings with other label sources. Computing the features is nearly all of a surprise PRM's
prediction time (its head is a small MLP), so without the cache the default grid recomputes
identical features for every PRM it trains (the grid's seconds with and without it:
``results/rerun_comparison.md``).

The key is the whole call: a fingerprint of the backbone's weights and config, the device, the
torch thread count, the batch size and every span. A hit therefore returns exactly the tensors
this call would compute (the same batches, in the same order, on the same machine), never those
of another batch composition, so cached and uncached runs agree bit for bit. Files are written
atomically; one that cannot be read or does not match the call is recomputed and replaced, and
a cache that cannot be written costs a warning, never the features.

The cache is bounded: after each write, the least recently used files (a hit renews a file's
time) go until the folder holds at most ``CPMI_FEATURE_CACHE_BYTES`` (default 4 GiB, far above
the default grid's 58 MB, since a paper preset's features are much larger). Eviction only ever
costs a recomputation.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel

from cpmi_lib.core.files import write_atomically
from cpmi_lib.prm.features import StepSpans, step_features

#: Bump when `step_features` computes something else for the same inputs.
FEATURES_VERSION = 1
#: The cache folder's size bound unless ``$CPMI_FEATURE_CACHE_BYTES`` says otherwise.
DEFAULT_MAX_BYTES = 4 << 30


def max_cache_bytes() -> int:
    """The size bound: ``$CPMI_FEATURE_CACHE_BYTES`` (a whole number of bytes) or 4 GiB."""
    value = os.environ.get("CPMI_FEATURE_CACHE_BYTES")
    if value is None:
        return DEFAULT_MAX_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError(f"CPMI_FEATURE_CACHE_BYTES must be a whole number of bytes, got {value!r}")
    return limit


def evict(cache_dir: Path, max_bytes: int, keep: Path) -> list[Path]:
    """Delete the least recently used feature files of `cache_dir` (never `keep`, the file
    just written) until the folder's feature files hold at most `max_bytes`; the deleted paths.
    A file another process removed first is simply gone."""
    entries = []
    for path in cache_dir.glob("features-*.pt"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((stat.st_mtime_ns, path.name, path, stat.st_size))
    total = sum(size for *_, size in entries)
    deleted = []
    for _, _, path, size in sorted(entries):
        if total <= max_bytes:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted


def backbone_fingerprint(model: PreTrainedModel) -> str:
    """sha256 of the model's config (without where it was loaded from) and of every parameter
    and buffer (name, dtype, shape, bytes): two models with this fingerprint compute the same
    features, wherever their copies live (each PRM directory holds its own)."""
    config = {k: v for k, v in model.config.to_dict().items() if k != "_name_or_path"}
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def call_key(model: PreTrainedModel, spans: Sequence[StepSpans], batch_size: int) -> str:
    """The cache key of ``step_features(model, spans, batch_size)`` in this process."""
    device = next(model.parameters()).device
    h = hashlib.sha256(
        json.dumps(
            {
                "version": FEATURES_VERSION,
                "backbone": backbone_fingerprint(model),
                "device": device.type,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "batch_size": batch_size,
            },
            sort_keys=True,
        ).encode()
    )
    for s in spans:
        h.update(json.dumps([s.input_ids, s.starts, s.ends]).encode())
    return h.hexdigest()[:24]


def _fits(features: object, spans: Sequence[StepSpans]) -> bool:
    """Whether a loaded value has the call's shape: one tensor per span, one row per step."""
    return (
        isinstance(features, list)
        and len(features) == len(spans)
        and all(
            isinstance(f, torch.Tensor) and f.ndim == 2 and f.shape[0] == len(s.starts)
            for f, s in zip(features, spans, strict=True)
        )
    )


def cached_step_features(
    model: PreTrainedModel,
    spans: Sequence[StepSpans],
    batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[torch.Tensor]:
    """`step_features(model, spans, batch_size)`, read from `cache_dir` when this exact call
    was made before (see the module docstring); without `cache_dir`, computed every time."""
    if cache_dir is None or not spans:
        return step_features(model, spans, batch_size)
    max_bytes = max_cache_bytes()  # a bad setting fails before any work, not after it
    path = Path(cache_dir) / f"features-{call_key(model, spans, batch_size)}.pt"
    if path.is_file():
        try:
            features = torch.load(path, weights_only=True)
        except Exception as exc:  # a damaged file is recomputed, never trusted
            warnings.warn(f"{path}: unreadable ({exc}); recomputing", stacklevel=2)
        else:
            if _fits(features, spans):
                _renew(path)
                return features
            warnings.warn(f"{path}: does not match its call; recomputing", stacklevel=2)
    features = step_features(model, spans, batch_size)
    try:
        write_atomically(path, lambda tmp: torch.save(features, tmp))
        evict(path.parent, max_bytes, keep=path)
    except OSError as exc:  # a cache is a saving, not a requirement
        warnings.warn(f"{path}: not cached ({exc})", stacklevel=2)
    return features


def _renew(path: Path) -> None:
    """Mark a file used now, so eviction takes it last."""
    try:
        os.utime(path)
    except OSError:  # a read-only cache still serves hits
        pass
