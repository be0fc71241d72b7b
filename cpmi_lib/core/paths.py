"""Where things live: the repository, its results and figures, the cache, and shared data.

One place for every path the library derives, so a moved module cannot silently point elsewhere.
The cache root is read at call time (``$CPMI_CACHE``, else the repository's ``.cache``), so tests
and runs that set the variable after import get their own cache.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding ``cpmi_lib/``, ``notebooks/`` and ``results/``).
REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
FIGURES = REPO / "figures"
NOTEBOOKS = REPO / "notebooks"
#: ``shared/`` beside the checkout: read-only public data (never copied into the repository).
SHARED = REPO.parent / "shared"


def cache_root() -> Path:
    """Where trained models, samples and labels are cached: ``$CPMI_CACHE`` or ``REPO/.cache``."""
    return Path(os.environ.get("CPMI_CACHE", REPO / ".cache"))
