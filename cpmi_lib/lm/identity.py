"""A model's content identity, computable before the model is loaded.

A label file is the work of one model, but it names that model only by its `--model` string, and
other weights can sit behind the same string: a re-trained local directory, a moved symlink, a hub
id whose revision moved. `model_identity` says which weights and tokenizer a name points at *now*,
by content, so `--resume` and `merge` can refuse to mix two models in one file.

- A local directory (`save_pretrained`): sha256 over its top-level weight files plus
  `config.json` (the architecture is part of the model), and separately over its tokenizer files.
  Each file's name and bytes enter the hash, so a rename or a re-split changes it. Symlinks are
  followed: the identity is of the content, not of the path.
- A `.gguf` file: one sha256 of the file, for weights and tokenizer alike (it holds both).
- A hub id: ``revision:<commit>`` of the snapshot in the local cache (no network).

Large models are hashed once: each file's sha256 is cached beside it (`.cpmi-sha256.json` in the
directory, `<file>.cpmi-sha256.json` next to a `.gguf`), keyed by name, size and mtime_ns, and
reused only while size and mtime_ns still match. An unwritable directory just goes uncached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cpmi_lib.core.files import write_atomically

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
CACHE_SUFFIX = ".cpmi-sha256.json"
_CHUNK = 1 << 20  # hash 1 MiB at a time: weight files can be far larger than memory


class ModelIdentityError(ValueError):
    """A model name whose content cannot be identified: missing, not a model, or not cached."""


@dataclass(frozen=True)
class ModelIdentity:
    """What a model name points at by content; equal identities mean the same model."""

    weights: str  # "sha256:<hex>" over weight files (+ config.json), or "revision:<commit>"
    tokenizer: str  # "sha256:<hex>" over tokenizer files (a .gguf's own hash; a hub revision)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _file_digests(files: dict[str, Path], cache_file: Path) -> dict[str, str]:
    """The hex sha256 of each of `files` (relative name -> path).

    A digest cached in `cache_file` is reused while the file's size and mtime_ns still match; the
    cache is then rewritten atomically (only the entries of `files`) if anything changed.
    """
    try:
        cache = json.loads(cache_file.read_text())
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    fresh: dict[str, dict[str, object]] = {}
    for name, path in files.items():
        stat = path.stat()  # follows symlinks: the content's size and mtime
        key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        entry = cache.get(name)
        if isinstance(entry, dict) and {k: entry.get(k) for k in key} == key:
            fresh[name] = entry
        else:
            fresh[name] = {**key, "sha256": _sha256_file(path)}
    if fresh != cache:
        with contextlib.suppress(OSError):  # an unwritable place only costs rehashing
            write_atomically(cache_file, json.dumps(fresh, indent=1, sort_keys=True))
    return {name: str(entry["sha256"]) for name, entry in fresh.items()}


def _combine(digests: dict[str, str], names: list[str]) -> str:
    """``sha256:<hex>`` over each name and its file's digest, in sorted name order."""
    combined = hashlib.sha256()
    for name in sorted(names):
        combined.update(f"{name}\0{digests[name]}\n".encode())
    return f"sha256:{combined.hexdigest()}"


def _directory_identity(path: Path, shown: str) -> ModelIdentity:
    files = {p.name: p for p in path.iterdir() if p.is_file()}
    weights = {n: p for n, p in files.items() if n.lower().endswith(WEIGHT_SUFFIXES)}
    if not weights:
        expected = ", ".join(f"*{s}" for s in WEIGHT_SUFFIXES)
        raise ModelIdentityError(
            f"Cannot identify model {shown}: is not a model directory: no weight files "
            f"(expected {expected})"
        )
    if "config.json" in files:
        weights["config.json"] = files["config.json"]
    tokenizer = [n for n in TOKENIZER_FILES if n in files]
    digests = _file_digests({n: files[n] for n in [*weights, *tokenizer]}, path / CACHE_SUFFIX)
    weights_id = _combine(digests, list(weights))
    if not tokenizer and any(n.lower().endswith(".gguf") for n in weights):
        return ModelIdentity(weights_id, weights_id)  # the tokenizer comes from the .gguf
    return ModelIdentity(weights_id, _combine(digests, tokenizer))


def _hub_cache_dir() -> str:
    """The hub cache as the environment says now (huggingface_hub reads it only at import)."""
    from huggingface_hub import constants

    env = os.environ
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not cache and env.get("HF_HOME"):
        cache = os.path.join(env["HF_HOME"], "hub")
    return os.path.expanduser(os.path.expandvars(cache or constants.HF_HUB_CACHE))


def _hub_identity(repo_id: str) -> ModelIdentity:
    from huggingface_hub import snapshot_download

    cache = _hub_cache_dir()
    try:
        folder = snapshot_download(repo_id, local_files_only=True, cache_dir=cache)
    except (OSError, ValueError) as err:  # LocalEntryNotFoundError is a FileNotFoundError
        raise ModelIdentityError(
            f"Cannot identify model {repo_id}: not a local path, and the hub id is not in the "
            f"local Hugging Face cache ({cache}); cause: {type(err).__name__}"
        ) from err
    revision = f"revision:{Path(folder).name}"
    return ModelIdentity(revision, revision)


def model_identity(name: str | os.PathLike[str]) -> ModelIdentity:
    """The content identity of a model directory, a `.gguf` file, or a cached hub id.

    Raises ModelIdentityError (one line, naming the path and the cause) for a missing path that is
    not a cached hub id, a directory without weight files, or any other file.
    """
    shown = os.fspath(name)
    path = Path(shown).expanduser()
    if path.is_dir():
        return _directory_identity(path.resolve(), shown)
    if path.is_file() and path.name.lower().endswith(".gguf"):
        real = path.resolve()
        digests = _file_digests({real.name: real}, real.with_name(real.name + CACHE_SUFFIX))
        weights_id = f"sha256:{digests[real.name]}"  # the file's own sha256: any name, same id
        return ModelIdentity(weights_id, weights_id)
    if path.exists():
        raise ModelIdentityError(
            f"Cannot identify model {shown}: is neither a model directory nor a .gguf file"
        )
    # Imported here: a local model's identity needs no torch or transformers import.
    from cpmi_lib.lm.load import _looks_like_hub_id

    if shown.lower().endswith(".gguf") or not _looks_like_hub_id(shown):
        raise ModelIdentityError(f"Cannot identify model {shown}: no such file or directory")
    return _hub_identity(shown)


def loaded_identity(model: Any, tokenizer: Any) -> ModelIdentity:
    """The identity of a model already in memory (a library caller that names it freely):
    sha256 over its parameters and buffers (names, dtypes, shapes, bytes) and over its
    tokenizer's vocabulary and special tokens. It differs from `model_identity`'s file hashes, so
    a file is resumed under the same kind of identity it was started with."""
    import torch  # only here: file identities need no torch

    weights = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        weights.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        weights.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted(str(x) for x in getattr(tokenizer, "all_special_tokens", []))
    text = json.dumps([vocab, special, type(tokenizer).__name__], ensure_ascii=True)
    return ModelIdentity(
        f"params:{weights.hexdigest()}", f"vocab:{hashlib.sha256(text.encode()).hexdigest()}"
    )
