"""Every confidence interval of the suite, through one function: `interval(metric, data, options)`.

The resampling options (how many resamples, the confidence level, the seed, the interval method)
travel together as one `Resampling` record instead of four keyword arguments in every signature.
The resampling *design* says what is drawn with replacement:

- ``"items"``: one sample of items (`data` is a 1-d array), e.g. the mean accuracy over problems;
- ``"rows"``: several aligned arrays whose rows are drawn together, e.g. F1 of (prediction,
  truth) pairs; `metric(*arrays)` is called once per resample;
- ``"strata"``: several samples, each drawn independently at its own fixed size, e.g. ProcessBench
  F1 (erroneous vs all-correct items) or AUROC (positives vs negatives).

Interval method: the **percentile** bootstrap by default. BCa corrects for bias and skew, but its
jackknife acceleration is undefined whenever the bootstrap distribution is degenerate, which is
routine here (a selector that is right on every item of a small subset), and it costs one extra
statistic evaluation per item for non-vectorized statistics. The percentile interval is slightly
too narrow at small n; report n next to it. ``Resampling(method="BCa")`` is available where it
matters. The numerics are scipy's; this module only fixes the conventions (seeds, interval
method, what happens on degenerate data).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

CIMethod = Literal["percentile", "basic", "BCa"]
Design = Literal["items", "rows", "strata"]


@dataclass(frozen=True)
class Resampling:
    """How an interval is resampled: the one set of options every CI of the suite takes."""

    n_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0
    method: CIMethod = "percentile"


def interval(
    metric: Callable[..., Any],
    data: ArrayLike | Sequence[ArrayLike],
    options: Resampling | None = None,
    *,
    design: Design = "items",
) -> tuple[float, float]:
    """Bootstrap CI of `metric` over `data`, resampled as `design` says (see the module docs).

    ``"items"``: `metric` may take an ``axis`` keyword (numpy reductions do); scipy then evaluates
    all resamples at once. ``"strata"``: `metric(*samples, axis=-1)` must reduce along `axis`; a
    sample of one observation is held fixed (that is all its resampling can give), an empty one is
    an error. ``"rows"``: if `metric` is undefined (NaN) on some resample, the interval is
    ``(nan, nan)`` with a warning, as a CI that skipped those draws would be biased. All-equal
    data gives ``(x, x)``, never NaN.
    """
    opts = options or Resampling()
    if design == "items":
        return _items(data, metric, opts)
    if design == "rows":
        return _rows(data, metric, opts)
    if design == "strata":
        return _strata(data, metric, opts)
    raise ValueError(f"unknown resampling design {design!r}: expected items, rows or strata")


def _items(values: Any, statistic: Callable[..., Any], opts: Resampling) -> tuple[float, float]:
    data = np.asarray(values, dtype=float)
    if data.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {data.shape}")
    return _bootstrap((data,), statistic, None, False, opts)


def _rows(arrays: Any, statistic: Callable[..., Any], opts: Resampling) -> tuple[float, float]:
    """Resample items (rows) jointly: resample i keeps ``arrays[0][i]`` with ``arrays[1][i]``."""
    data = tuple(np.asarray(a) for a in arrays)
    if not data:
        raise ValueError("a rows interval needs at least one array")
    lengths = {len(a) for a in data}
    if len(lengths) != 1:
        raise ValueError(f"paired arrays must have equal lengths, got {[len(a) for a in data]}")
    return _bootstrap(data, statistic, False, True, opts)


def _strata(samples: Any, statistic: Callable[..., Any], opts: Resampling) -> tuple[float, float]:
    """Resample each sample (stratum) independently, keeping its size fixed.

    Fixing the group sizes keeps every resample's statistic defined (no resample loses a whole
    class).
    """
    arrays = [np.asarray(s, dtype=float) for s in samples]
    if not arrays:
        raise ValueError("a strata interval needs at least one sample")
    for i, a in enumerate(arrays):
        if a.ndim != 1 or len(a) == 0:
            raise ValueError(f"sample {i} must be a non-empty 1-d array, got shape {a.shape}")
    varying = [i for i, a in enumerate(arrays) if len(a) > 1]
    if not varying:
        x = float(statistic(*arrays, axis=-1))
        return x, x

    def with_fixed(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = resampled[0].shape[:-1]
        full = [a if len(a) > 1 else np.broadcast_to(a, (*batch, 1)) for a in arrays]
        for i, r in zip(varying, resampled, strict=True):
            full[i] = r
        return statistic(*full, axis=axis)

    data = tuple(arrays[i] for i in varying)
    return _bootstrap(data, with_fixed, True, False, opts)


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    vectorized: bool | None,
    paired: bool,
    opts: Resampling,
) -> tuple[float, float]:
    if not 0 < opts.confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {opts.confidence}")
    if opts.n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {opts.n_resamples}")
    if any(len(d) == 0 for d in data):
        raise ValueError("cannot bootstrap an empty sample")
    if all(len(d) == 1 for d in data) or all(np.all(d == d[0]) for d in data):
        # One distinct resample only: the CI is the point itself (scipy's BCa would give NaN).
        x = float(statistic(*data, axis=-1) if vectorized else statistic(*data))
        return x, x
    with warnings.catch_warnings():
        # Degenerate and NaN distributions are handled below, with a clearer message.
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        res = sps.bootstrap(
            data,
            statistic,
            n_resamples=opts.n_resamples,
            confidence_level=opts.confidence,
            method=opts.method,
            vectorized=vectorized,
            paired=paired,
            rng=np.random.default_rng(opts.seed),
        )
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    n_undefined = int(np.isnan(dist).sum())
    if n_undefined:
        warnings.warn(
            f"statistic is undefined (NaN) on {n_undefined} of {dist.size} resamples; CI is NaN",
            RuntimeWarning,
            stacklevel=4,
        )
        return float("nan"), float("nan")
    if np.all(dist == dist.flat[0]):
        return float(dist.flat[0]), float(dist.flat[0])
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
