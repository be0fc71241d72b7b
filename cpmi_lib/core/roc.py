"""AUROC: of one score list, within strata (e.g. step positions), with their intervals, and the
ROC curve's points for plotting.

The plain AUROC's interval resamples positives and negatives separately (no resample loses a
class); the stratified AUROC's interval resamples whole clusters (e.g. trajectories), because the
steps of one trajectory are not independent. Both go through `intervals.interval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse
from scipy import stats as sps
from sklearn.metrics import roc_auc_score, roc_curve

from cpmi_lib.core.intervals import Resampling, interval
from cpmi_lib.core.stats import as_bool_array

# ------------------------------------------------------------------------------------- AUROC


def auroc(scores: ArrayLike, truth: Sequence[bool] | ArrayLike) -> float:
    """Area under the ROC curve of `scores` for the positive class (truth True / 1)."""
    s, t = _scores_and_truth(scores, truth)
    return float(roc_auc_score(t, s))


def auroc_ci(
    scores: ArrayLike,
    truth: Sequence[bool] | ArrayLike,
    options: Resampling | None = None,
) -> tuple[float, float]:
    """Bootstrap CI of the AUROC, resampling positives and negatives separately.

    Stratified so that no resample loses a class (AUROC would be undefined there). AUROC equals the
    Mann-Whitney U of positives vs negatives over ``n_pos * n_neg``, which scipy computes for all
    resamples at once.
    """
    s, t = _scores_and_truth(scores, truth)
    pos, neg = s[t], s[~t]

    def auc(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
        u = sps.mannwhitneyu(p, q, axis=axis, method="asymptotic").statistic
        return u / (p.shape[axis] * q.shape[axis])

    return interval(auc, (pos, neg), options, design="strata")


def roc_curve_points(
    scores: ArrayLike, truth: Sequence[bool] | ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of the ROC curve, for plotting."""
    s, t = _scores_and_truth(scores, truth)
    fpr, tpr, _ = roc_curve(t, s)
    return fpr, tpr


def _scores_and_truth(scores: ArrayLike, truth: Sequence[bool] | ArrayLike):
    s = np.asarray(scores, dtype=float)
    t = as_bool_array(truth, "truth")
    if s.shape != t.shape or s.ndim != 1:
        raise ValueError(
            f"scores and truth must be aligned 1-d arrays, got shapes {s.shape}, {t.shape}"
        )
    if np.isnan(s).any():
        raise ValueError(f"scores contain NaN at index {int(np.flatnonzero(np.isnan(s))[0])}")
    n_pos = int(t.sum())
    if n_pos == 0 or n_pos == len(t):
        only = "positive" if n_pos else "negative"
        raise ValueError(
            f"AUROC needs both classes, but all {len(t)} items are {only}: it is undefined"
        )
    return s, t


# ------------------------------------------------------------------- AUROC within strata


@dataclass(frozen=True)
class StratumAUROC:
    """AUROC of one stratum (e.g. one step position); `auroc` is None with only one class."""

    stratum: Any
    n: int
    n_pos: int
    n_neg: int
    auroc: float | None

    @property
    def n_pairs(self) -> int:
        return self.n_pos * self.n_neg


@dataclass(frozen=True)
class StratifiedAUROC:
    """Per-stratum AUROCs and their pair-weighted average (see `stratified_auroc`)."""

    auroc: float | None
    n: int
    n_pairs: int
    strata: list[StratumAUROC]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for s in d["strata"]:
            if isinstance(s["stratum"], tuple):
                s["stratum"] = list(s["stratum"])  # JSON has no tuples
        return d


def stratified_auroc(
    scores: ArrayLike, truth: Sequence[bool] | ArrayLike, strata: Sequence[Any]
) -> StratifiedAUROC:
    """AUROC within strata (e.g. step positions), so that knowing the stratum earns nothing.

    Per stratum: the AUROC of positives (truth True) vs negatives there, None when the stratum
    holds only one class. Stratified average: the per-stratum AUROCs weighted by each stratum's
    number of (positive, negative) pairs ``n_pos * n_neg``, i.e. the probability that a random
    positive scores above a random negative OF THE SAME STRATUM, ties counting 1/2 (the
    Mann-Whitney U summed over strata, over the pairs summed over strata). A score that is a
    function of the stratum alone gets exactly 0.5. None when no stratum has both classes.
    `strata` holds one hashable key per item (an int step index, or a tuple such as (i, S)).
    """
    s, t, codes, keys = _stratified_inputs(scores, truth, strata)
    tables = _pair_tables(s, t, codes, len(keys), np.arange(len(s)), len(s))
    u, pairs = _weighted_u(np.ones((1, len(s))), tables)
    per = []
    for k, key in enumerate(keys):
        m = codes == k
        n_pos = int(t[m].sum())
        n_neg = int(m.sum()) - n_pos
        value = float(u[k, 0] / pairs[k, 0]) if n_pos and n_neg else None
        per.append(StratumAUROC(key, int(m.sum()), n_pos, n_neg, value))
    total_pairs = int(sum(p.n_pairs for p in per))
    overall = float(u.sum() / pairs.sum()) if total_pairs else None
    return StratifiedAUROC(overall, len(s), total_pairs, per)


def stratified_auroc_ci(
    scores: ArrayLike,
    truth: Sequence[bool] | ArrayLike,
    strata: Sequence[Any],
    clusters: Sequence[Any],
    options: Resampling | None = None,
) -> tuple[float, float]:
    """Bootstrap CI of the stratified AUROC, resampling whole CLUSTERS (e.g. trajectories).

    Steps of one trajectory are dependent (prefix labels: one error makes every later step
    wrong), so resampling steps would give too narrow an interval. Each resample draws clusters
    with replacement and recomputes `stratified_auroc`'s average on the drawn steps (a cluster
    drawn twice counts twice). `clusters` holds one hashable key per item. Seeded like the other
    bootstraps here; a resample with no (positive, negative) pair in any stratum makes the CI
    (nan, nan) with a warning. BCa's jackknife costs memory quadratic in the number of clusters.
    """
    s, t, codes, keys = _stratified_inputs(scores, truth, strata)
    if len(clusters) != len(s):
        raise ValueError(f"clusters has {len(clusters)} keys for {len(s)} scores")
    cluster_ids: dict[Any, int] = {}
    ccodes = np.asarray([cluster_ids.setdefault(c, len(cluster_ids)) for c in clusters], dtype=int)
    n_clusters = len(cluster_ids)
    tables = _pair_tables(s, t, codes, len(keys), ccodes, n_clusters)
    if not any(pos.nnz and neg.nnz for pos, neg in tables):
        raise ValueError("stratified AUROC is undefined: no stratum holds both classes")

    def statistic(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        drawn = np.asarray(drawn)
        batch = drawn.shape[:-1]
        ids = drawn.reshape(-1, drawn.shape[-1]).astype(int)
        rows = np.arange(ids.shape[0])[:, None] * n_clusters
        w = np.bincount((ids + rows).ravel(), minlength=ids.shape[0] * n_clusters)
        u, pairs = _weighted_u(w.reshape(ids.shape[0], n_clusters).astype(float), tables)
        u, pairs = u.sum(axis=0), pairs.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(pairs > 0, u / np.where(pairs > 0, pairs, 1.0), np.nan)
        return out.reshape(batch)

    return interval(statistic, np.arange(n_clusters, dtype=float), options)


def _stratified_inputs(
    scores: ArrayLike, truth: Sequence[bool] | ArrayLike, strata: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """Validated scores, truth, stratum codes (0..K-1) and the keys in order (sorted if they
    sort, else in order of first appearance)."""
    s = np.asarray(scores, dtype=float)
    t = as_bool_array(truth, "truth")
    if s.ndim != 1 or s.shape != t.shape or len(strata) != len(s):
        raise ValueError(
            f"scores, truth and strata must be aligned and 1-d, got {s.shape}, {t.shape} and "
            f"{len(strata)} strata"
        )
    if len(s) == 0:
        raise ValueError("stratified AUROC needs at least one item")
    if not np.isfinite(s).all():
        bad = int(np.flatnonzero(~np.isfinite(s))[0])
        raise ValueError(f"scores are not finite at index {bad}")
    seen = list(dict.fromkeys(strata))
    try:
        keys = sorted(seen)
    except TypeError:
        keys = seen
    index = {k: i for i, k in enumerate(keys)}
    return s, t, np.asarray([index[k] for k in strata], dtype=int), keys


def _pair_tables(
    s: np.ndarray, t: np.ndarray, codes: np.ndarray, n_strata: int, ccodes: np.ndarray, n_c: int
) -> list[tuple[Any, Any]]:
    """Per stratum: sparse (clusters x distinct scores) counts of positives and of negatives."""
    tables = []
    for k in range(n_strata):
        m = codes == k
        _, level = np.unique(s[m], return_inverse=True)
        n_levels = int(level.max()) + 1
        c, tk = ccodes[m], t[m]
        pos = sparse.csc_matrix((np.ones(int(tk.sum())), (c[tk], level[tk])), shape=(n_c, n_levels))
        neg = sparse.csc_matrix(
            (np.ones(int((~tk).sum())), (c[~tk], level[~tk])), shape=(n_c, n_levels)
        )
        tables.append((pos, neg))
    return tables


def _weighted_u(w: np.ndarray, tables: list[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Mann-Whitney U and pair counts per stratum (rows) for cluster weights `w` (batch x
    clusters, one column per weighting): each positive/negative pair counts w_c * w_d."""
    u = np.empty((len(tables), w.shape[0]))
    pairs = np.empty_like(u)
    for k, (pos, neg) in enumerate(tables):
        pw = np.asarray(pos.T @ w.T).T  # batch x levels: weighted positives at each score
        nw = np.asarray(neg.T @ w.T).T
        below = np.cumsum(nw, axis=1) - nw  # weighted negatives strictly below each level
        u[k] = (pw * (below + 0.5 * nw)).sum(axis=1)
        pairs[k] = pw.sum(axis=1) * nw.sum(axis=1)
    return u, pairs
