"""Paired tests and correlations: McNemar's exact test for two systems scored on the same items,
rank correlations between label sources.

Every number the suite reports next to another one comes with the means to tell whether the
difference is real. This module holds the tests; the bootstrap intervals are in `intervals` (one
function, `interval`), the AUROC and its intervals in `roc`. The numerics are scipy's and
statsmodels'; this module only fixes the conventions (what happens on degenerate data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

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
    a = as_bool_array(a_correct, "a_correct")
    b = as_bool_array(b_correct, "b_correct")
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


# ------------------------------------------------------------------------------------ inputs


def as_bool_array(values: Sequence[bool] | ArrayLike, name: str) -> np.ndarray:
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
