"""Writing a file so that a reader sees the old content or the new, never a part of it.

Every cache entry, headline file and data file of the library goes through `write_atomically`:
the content goes to a fresh temporary file beside the target (its name no other writer can
pick, so two processes never write into one temporary file), then `os.replace` swaps it in.
An interrupted or failing write leaves the target as it was and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(
    path: str | os.PathLike[str], content: str | Callable[[Path], object], *, sync: bool = False
) -> Path:
    """Replace `path` with `content`: a text (UTF-8) or a function that writes the temporary
    file it is given (e.g. ``lambda tmp: torch.save(x, tmp)``). The file is readable by all
    (0o644, as a plain ``open`` would make it, not mkstemp's private 0o600); `sync` flushes it
    to disk before the swap. The parent folder is made if missing; errors propagate."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o644)
            if isinstance(content, str):
                f.write(content)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
        if not isinstance(content, str):
            content(tmp)
            if sync:
                with tmp.open("rb") as f:
                    os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
