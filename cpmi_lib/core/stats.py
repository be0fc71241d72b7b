"""The statistics behind every comparison in the suite: paired tests, bootstrap CIs, correlations.

Every number the suite reports next to another one comes with the means to tell whether the
difference is real: McNemar's exact test for two systems scored on the same items, bootstrap
confidence intervals for accuracies and composite metrics (F1, AUROC), rank correlations between
label sources. The numerics are scipy's, statsmodels' and scikit-learn's; this module only fixes
the conventions (seeds, interval method, what happens on degenerate data).

Interval method: the **percentile** bootstrap by default. BCa corrects for bias and skew, but its
jackknife acceleration is undefined whenever the bootstrap distribution is degenerate, which is
routine here (a selector that is right on every item of a small subset), and it costs one extra
statistic evaluation per item for non-vectorized statistics. The percentile interval is slightly
too narrow at small n; report n next to it. ``method="BCa"`` is available where it matters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse
from scipy import stats as sps
from sklearn.metrics import roc_auc_score, roc_curve
from statsmodels.stats.contingency_tables import mcnemar

CIMethod = Literal["percentile", "basic", "BCa"]


# ------------------------------------------------------------------------------------ McNemar


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test of two systems on the same items.

    `table` is ``[[both right, a right b wrong], [a wrong b right, both wrong]]``; only the
    discordant cells (``table[0][1]``, ``table[1][0]``) carry evidence. `statistic` is the smaller
    discordant count (statsmodels' exact form); `p_value` is the two-sided binomial p-value.
    """

    table: list[list[int]]
    statistic: float
    p_value: float
    n: int
    a_accuracy: float
    b_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_test(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemarResult:
    """Paired exact McNemar test: is system a's accuracy different from b's on the same items?

    Pairing matters: two selectors scored on the same problems are strongly correlated, and an
    unpaired test of two proportions would miss differences this one finds.
    """
    a = _as_bool_array(a_correct, "a_correct")
    b = _as_bool_array(b_correct, "b_correct")
    if len(a) != len(b):
        raise ValueError(f"paired test needs aligned items: a has {len(a)}, b has {len(b)}")
    if len(a) == 0:
        raise ValueError("McNemar test needs at least one item")
    table = [
        [int(np.sum(a & b)), int(np.sum(a & ~b))],
        [int(np.sum(~a & b)), int(np.sum(~a & ~b))],
    ]
    res = mcnemar(table, exact=True)
    return McNemarResult(
        table=table,
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        n=len(a),
        a_accuracy=float(a.mean()),
        b_accuracy=float(b.mean()),
    )


# ---------------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    values: ArrayLike,
    statistic: Callable[..., float] = np.mean,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: CIMethod = "percentile",
) -> tuple[float, float]:
    """Bootstrap CI of `statistic` over one sample of items (default: the mean).

    `statistic` may take an ``axis`` keyword (numpy reductions do); scipy then evaluates all
    resamples at once. All-equal data gives ``(x, x)``, never NaN.
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {data.shape}")
    return _bootstrap((data,), statistic, None, False, n_resamples, confidence, seed, method)


def accuracy_ci(
    correct: Sequence[bool],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: CIMethod = "percentile",
) -> tuple[float, float]:
    """Bootstrap CI of the share of True in `correct`."""
    data = _as_bool_array(correct, "correct").astype(float)
    return bootstrap_ci(
        data, np.mean, n_resamples=n_resamples, confidence=confidence, seed=seed, method=method
    )


def bootstrap_ci_paired(
    arrays: tuple[np.ndarray, ...],
    statistic: Callable[..., float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: CIMethod = "percentile",
) -> tuple[float, float]:
    """Bootstrap CI of a statistic of several aligned arrays, resampling items (rows) jointly.

    For metrics that need per-item pairs, e.g. F1 from predictions and truths: resample i keeps
    ``arrays[0][i]`` together with ``arrays[1][i]``. `statistic(*arrays)` is called once per
    resample. If it is undefined (NaN) on some resample, the interval is ``(nan, nan)`` with a
    warning: a resampled CI that skipped those draws would be biased.
    """
    data = tuple(np.asarray(a) for a in arrays)
    if not data:
        raise ValueError("bootstrap_ci_paired needs at least one array")
    lengths = {len(a) for a in data}
    if len(lengths) != 1:
        raise ValueError(f"paired arrays must have equal lengths, got {[len(a) for a in data]}")
    return _bootstrap(data, statistic, False, True, n_resamples, confidence, seed, method)


def bootstrap_ci_stratified(
    samples: Sequence[ArrayLike],
    statistic: Callable[..., float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: CIMethod = "percentile",
) -> tuple[float, float]:
    """Bootstrap CI resampling each sample (stratum) independently, keeping its size fixed.

    For metrics built from several groups whose sizes are part of the design: ProcessBench F1
    (erroneous vs all-correct items, per subset) or AUROC (positives vs negatives). Fixing the
    group sizes keeps every resample's statistic defined (no resample loses a whole class).
    `statistic(*samples, axis=-1)` must reduce along `axis` (vectorized). A sample of one
    observation is held fixed (that is all its resampling can give); an empty one is an error.
    """
    arrays = [np.asarray(s, dtype=float) for s in samples]
    if not arrays:
        raise ValueError("bootstrap_ci_stratified needs at least one sample")
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
    return _bootstrap(data, with_fixed, True, False, n_resamples, confidence, seed, method)


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    vectorized: bool | None,
    paired: bool,
    n_resamples: int,
    confidence: float,
    seed: int,
    method: CIMethod,
) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
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
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            vectorized=vectorized,
            paired=paired,
            rng=np.random.default_rng(seed),
        )
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    n_undefined = int(np.isnan(dist).sum())
    if n_undefined:
        warnings.warn(
            f"statistic is undefined (NaN) on {n_undefined} of {dist.size} resamples; CI is NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan"), float("nan")
    if np.all(dist == dist.flat[0]):
        return float(dist.flat[0]), float(dist.flat[0])
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# ------------------------------------------------------------------------------ correlations


def rank_correlations(x: ArrayLike, y: ArrayLike) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau (tau-b) of two aligned score lists, with p-values.

    Rank correlations, because label sources (CPMI, MC, human) agree on order far more than on
    scale. A constant input makes both undefined: the values are then None with a ``why`` (scipy
    would give NaN, which no result file may hold).
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be aligned 1-d arrays, got shapes {xs.shape}, {ys.shape}")
    if len(xs) < 2:
        raise ValueError(f"rank correlations need at least 2 items, got {len(xs)}")
    constant = [name for name, v in (("x", xs), ("y", ys)) if np.ptp(v) == 0]
    if constant:
        return {
            **dict.fromkeys(("spearman_rho", "spearman_p", "kendall_tau", "kendall_p")),
            "n": len(xs),
            "why": f"{' and '.join(constant)} constant: rank correlations undefined",
        }
    spearman = sps.spearmanr(xs, ys)
    kendall = sps.kendalltau(xs, ys)
    return {
        "spearman_rho": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
        "kendall_tau": float(kendall.statistic),
        "kendall_p": float(kendall.pvalue),
        "n": len(xs),
    }


# ------------------------------------------------------------------------------------- AUROC


def auroc(scores: ArrayLike, truth: Sequence[bool] | ArrayLike) -> float:
    """Area under the ROC curve of `scores` for the positive class (truth True / 1)."""
    s, t = _scores_and_truth(scores, truth)
    return float(roc_auc_score(t, s))


def auroc_ci(
    scores: ArrayLike,
    truth: Sequence[bool] | ArrayLike,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: CIMethod = "percentile",
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

    return bootstrap_ci_stratified(
        (pos, neg), auc, n_resamples=n_resamples, confidence=confidence, seed=seed, method=method
    )


def roc_curve_points(
    scores: ArrayLike, truth: Sequence[bool] | ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of the ROC curve, for plotting."""
    s, t = _scores_and_truth(scores, truth)
    fpr, tpr, _ = roc_curve(t, s)
    return fpr, tpr


def _scores_and_truth(scores: ArrayLike, truth: Sequence[bool] | ArrayLike):
    s = np.asarray(scores, dtype=float)
    t = _as_bool_array(truth, "truth")
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


def _as_bool_array(values: Sequence[bool] | ArrayLike, name: str) -> np.ndarray:
    """Booleans (or 0/1) as a bool array; anything else is an error rather than a silent cast."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = arr[~np.isin(arr, (0, 1))][0]
        raise ValueError(f"{name} must hold booleans (or 0/1), got {bad!r}")
    return arr.astype(bool)


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
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: CIMethod = "percentile",
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

    data = (np.arange(n_clusters, dtype=float),)
    return _bootstrap(data, statistic, True, False, n_resamples, confidence, seed, method)


def _stratified_inputs(
    scores: ArrayLike, truth: Sequence[bool] | ArrayLike, strata: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """Validated scores, truth, stratum codes (0..K-1) and the keys in order (sorted if they
    sort, else in order of first appearance)."""
    s = np.asarray(scores, dtype=float)
    t = _as_bool_array(truth, "truth")
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
