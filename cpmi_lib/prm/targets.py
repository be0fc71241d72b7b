"""From any labeler's per-step scores to PRM training targets in [0, 1].

Labelers disagree on scale: CPMI scores are real-valued log-probability differences, MC values are
shares of rollouts in [0, 1], exact labels are booleans. A PRM trains on binary cross-entropy, so
each source goes through one named transform. Transforms that need statistics (the robust z-score's
median and MAD, the quantile's threshold) are fitted on the TRAINING split only and then applied
unchanged to dev and test data; `to_dict`/`from_dict` store the fitted statistics with the model so
the same targets can be rebuilt later.

Label records (`cpmi_lib.labeling.label_file`) hold scores as ``record["steps"][i][field]``;
`scores_from_records` and `scores_for_trajectories` pull them out with errors that name the record
and the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from cpmi_lib.core.trajectory import RecordError, Trajectory

#: 1.4826 · MAD estimates the standard deviation of normal data, so robust z-scores read like z.
MAD_TO_SIGMA = 1.4826


class NotFittedError(RuntimeError):
    """A transform that needs training statistics was used before `fit`."""


def _flat(train_scores: Sequence[Sequence[float]], name: str) -> np.ndarray:
    """All training steps as one float array; refuses empty or non-finite input."""
    values = [float(x) for scores in train_scores for x in scores]
    if not values:
        raise ValueError(f"target transform {name!r}: no training scores to fit on")
    arr = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"target transform {name!r}: training scores contain {bad.size} non-finite value(s), "
            f"e.g. {arr[bad[0]]!r}"
        )
    return arr


def _check_finite(scores: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray([float(x) for x in scores], dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"target transform {name!r}: non-finite score in {list(scores)!r}")
    return arr


class TargetTransform:
    """Per-step scores → targets in [0, 1]; `fit` on the training split, then `transform` anything.

    Subclasses set `name`, list their constructor parameters in `params()` and their fitted
    statistics in `stats()` (restored by `_set_stats`).
    """

    name: ClassVar[str]
    #: Whether `fit` computes statistics that `transform` needs.
    needs_fit: ClassVar[bool] = False
    #: Whether targets are 0/1 only (pos_weight and accuracy need hard targets).
    hard: ClassVar[bool] = True

    def __init__(self) -> None:
        self.fitted = not self.needs_fit

    def params(self) -> dict[str, Any]:
        return {}

    def stats(self) -> dict[str, Any]:
        return {}

    def _set_stats(self, stats: Mapping[str, Any]) -> None:
        pass

    def fit(self, train_scores: Sequence[Sequence[float]]) -> TargetTransform:
        """Fit statistics on the training split only (a no-op for stateless transforms)."""
        self.fitted = True
        return self

    def transform(self, scores: Sequence[float]) -> list[float]:
        raise NotImplementedError

    def transform_all(self, scores: Iterable[Sequence[float]]) -> list[list[float]]:
        return [self.transform(s) for s in scores]

    def _require_fit(self) -> None:
        if not self.fitted:
            raise NotFittedError(
                f"target transform {self.name!r} is not fitted: call fit(train_scores) on the "
                "training split first (or load it with from_dict)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Name, parameters and fitted statistics: enough to rebuild the same targets later."""
        self._require_fit()
        return {"name": self.name, "params": self.params(), "stats": self.stats()}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> TargetTransform:
        """Rebuild a (fitted) transform stored with `to_dict`."""
        if "name" not in d:
            raise ValueError(f"target transform record has no 'name': {dict(d)!r}")
        t = make_target_transform(d["name"], **dict(d.get("params") or {}))
        if t.needs_fit:
            stats = d.get("stats")
            if not stats:
                raise ValueError(f"target transform {d['name']!r}: record has no fitted 'stats'")
            t._set_stats(stats)
            t.fitted = True
        return t

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in {**self.params(), **self.stats()}.items())
        return f"{type(self).__name__}({inner})"


class ZSigmoid(TargetTransform):
    """CPMI, soft (the paper's choice): sigmoid of the robust z-score, clipped to ±`clip`.

    z = (x − median) / (1.4826·MAD) over all training steps. Median and MAD ignore the heavy tails
    CPMI scores have, so one extreme step does not squash all others to 0.5. Clipping bounds the
    targets away from exactly 0 and 1 (sigmoid(6) ≈ 0.9975). MAD = 0 (more than half the training
    steps share one score) has no meaningful scale and raises ValueError rather than dividing by an
    arbitrary epsilon.
    """

    name = "zsig"
    needs_fit = True
    hard = False

    def __init__(self, clip: float = 6.0) -> None:
        super().__init__()
        if not clip > 0:
            raise ValueError(f"zsig: clip must be > 0, got {clip!r}")
        self.clip = float(clip)
        self.median: float | None = None
        self.scale: float | None = None

    def params(self) -> dict[str, Any]:
        return {"clip": self.clip}

    def stats(self) -> dict[str, Any]:
        return {"median": self.median, "scale": self.scale}

    def _set_stats(self, stats: Mapping[str, Any]) -> None:
        self.median, self.scale = float(stats["median"]), float(stats["scale"])
        if not self.scale > 0:
            raise ValueError(f"zsig: stored scale must be > 0, got {self.scale!r}")

    def fit(self, train_scores: Sequence[Sequence[float]]) -> ZSigmoid:
        x = _flat(train_scores, self.name)
        median = float(np.median(x))
        mad = float(np.median(np.abs(x - median)))
        if mad == 0.0:
            raise ValueError(
                f"zsig: the median absolute deviation of the {x.size} training scores is 0 (more "
                f"than half equal {median!r}), so a robust z-score has no scale; use 'sign' or "
                "'quantile' targets, or more varied training data"
            )
        self.median, self.scale = median, MAD_TO_SIGMA * mad
        self.fitted = True
        return self

    def transform(self, scores: Sequence[float]) -> list[float]:
        self._require_fit()
        assert self.median is not None and self.scale is not None
        z = np.clip(
            (_check_finite(scores, self.name) - self.median) / self.scale, -self.clip, self.clip
        )
        return [float(v) for v in 1.0 / (1.0 + np.exp(-z))]


class Sign(TargetTransform):
    """CPMI, hard: 1.0 when the step raised the gold answer's probability more than the negatives'
    (score > 0), else 0.0. Needs no statistics."""

    name = "sign"

    def transform(self, scores: Sequence[float]) -> list[float]:
        return [1.0 if v > 0 else 0.0 for v in _check_finite(scores, self.name)]


class Quantile(TargetTransform):
    """CPMI, hard at a chosen share: 1.0 when the score is strictly above the q-quantile of the
    training scores (numpy's linear interpolation), so about 1 − q of training steps are positive.

    Useful when the share of good steps is known or assumed, since the sign of CPMI depends on the
    negatives' calibration.
    """

    name = "quantile"
    needs_fit = True

    def __init__(self, q: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile: q must be within [0, 1], got {q!r}")
        self.q = float(q)
        self.threshold: float | None = None

    def params(self) -> dict[str, Any]:
        return {"q": self.q}

    def stats(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def _set_stats(self, stats: Mapping[str, Any]) -> None:
        self.threshold = float(stats["threshold"])

    def fit(self, train_scores: Sequence[Sequence[float]]) -> Quantile:
        self.threshold = float(np.quantile(_flat(train_scores, self.name), self.q))
        self.fitted = True
        return self

    def transform(self, scores: Sequence[float]) -> list[float]:
        self._require_fit()
        return [1.0 if v > self.threshold else 0.0 for v in _check_finite(scores, self.name)]


def _check_unit(scores: Sequence[float], name: str) -> np.ndarray:
    arr = _check_finite(scores, name)
    if np.any((arr < 0.0) | (arr > 1.0)):
        raise ValueError(
            f"target transform {name!r}: MC values must lie in [0, 1], got {list(scores)!r}"
        )
    return arr


class MCSoft(TargetTransform):
    """MC, soft: the value itself (the share of rollouts reaching the gold answer), in [0, 1]."""

    name = "mc_soft"
    hard = False

    def transform(self, scores: Sequence[float]) -> list[float]:
        return [float(v) for v in _check_unit(scores, self.name)]


class MCHard(TargetTransform):
    """MC, hard (Math-Shepherd): 1.0 when at least one rollout reached the gold answer."""

    name = "mc_hard"

    def transform(self, scores: Sequence[float]) -> list[float]:
        return [1.0 if v > 0 else 0.0 for v in _check_unit(scores, self.name)]


class Truth(TargetTransform):
    """Exact step labels (booleans) for the oracle PRM: True → 1.0, False → 0.0."""

    name = "truth"

    def transform(self, scores: Sequence[float]) -> list[float]:
        out = []
        for v in scores:
            if isinstance(v, bool) or v in (0, 1):
                out.append(1.0 if v else 0.0)
            else:
                raise ValueError(f"target transform 'truth': labels must be booleans, got {v!r}")
        return out


_REGISTRY: dict[str, type[TargetTransform]] = {
    cls.name: cls for cls in (ZSigmoid, Sign, Quantile, MCSoft, MCHard, Truth)
}
#: The names `make_target_transform` accepts.
TARGET_TRANSFORMS: tuple[str, ...] = tuple(_REGISTRY)
#: Which score field of a label record each transform reads (None: the trajectory's step_labels).
SCORE_FIELD: dict[str, str | None] = {
    "zsig": "cpmi",
    "sign": "cpmi",
    "quantile": "cpmi",
    "mc_soft": "value",
    "mc_hard": "value",
    "truth": None,
}


def make_target_transform(name: str, **kwargs: Any) -> TargetTransform:
    """A fresh (unfitted) transform by name, e.g. ``make_target_transform("quantile", q=0.3)``."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown target transform {name!r}; known: {', '.join(TARGET_TRANSFORMS)}"
        ) from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"target transform {name!r}: bad parameters {kwargs!r} ({exc})") from None


# ------------------------------------------------------------------------ scores from records


def _record_where(record: Mapping[str, Any], i: int) -> str:
    rid = record.get("id") if isinstance(record, Mapping) else None
    return f"label record {rid!r}" if rid is not None else f"label record #{i}"


def scores_from_records(records: Iterable[Mapping[str, Any]], field: str) -> list[list[float]]:
    """Per-step scores ``record["steps"][i][field]`` of each label record, in record order.

    `field` is "cpmi" for CPMI records and "value" for MC records (any numeric step field works).
    A missing or non-numeric score raises `RecordError` naming the record id and the field.
    """
    out: list[list[float]] = []
    for i, record in enumerate(records):
        where = _record_where(record, i)
        steps = record.get("steps") if isinstance(record, Mapping) else None
        if not isinstance(steps, list) or not steps:
            raise RecordError(where, "steps", "missing or empty: not a label record")
        scores = []
        for j, step in enumerate(steps):
            if not isinstance(step, Mapping) or field not in step:
                raise RecordError(
                    where,
                    f"steps[{j}].{field}",
                    f"missing (this record's step fields: "
                    f"{sorted(step) if isinstance(step, Mapping) else type(step).__name__})",
                )
            v = step[field]
            if not isinstance(v, int | float) or (
                not isinstance(v, bool) and not math.isfinite(float(v))
            ):
                problem = f"must be a finite number, got {v!r}"
                raise RecordError(where, f"steps[{j}].{field}", problem)
            scores.append(float(v))
        out.append(scores)
    return out


def scores_for_trajectories(
    trajectories: Sequence[Trajectory], records: Iterable[Mapping[str, Any]], field: str | None
) -> list[list[float]]:
    """Scores aligned with `trajectories` by id (label files may be sharded or reordered).

    `field` None takes the trajectories' exact `step_labels` (for the `truth` transform). Every
    trajectory must have a record with one score per step.
    """
    if field is None:
        out = []
        for t in trajectories:
            if t.step_labels is None:
                raise RecordError(f"trajectory {t.id!r}", "step_labels", "missing: no exact labels")
            out.append([1.0 if x else 0.0 for x in t.step_labels])
        return out
    records = list(records)
    by_id: dict[str, list[float]] = {}
    for i, (record, scores) in enumerate(
        zip(records, scores_from_records(records, field), strict=True)
    ):
        if record.get("id") is None:
            raise RecordError(_record_where(record, i), "id", "missing")
        by_id[str(record["id"])] = scores
    out = []
    for t in trajectories:
        scores = by_id.get(t.id)
        if scores is None:
            raise RecordError(f"trajectory {t.id!r}", "id", "has no label record")
        if len(scores) != t.n_steps:
            raise RecordError(
                f"label record {t.id!r}",
                "steps",
                f"has {len(scores)} scores for a trajectory of {t.n_steps} steps",
            )
        out.append(scores)
    return out
