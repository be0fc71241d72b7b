"""`evaluate_prm`: a PRM's ProcessBench-style F1, with τ chosen on dev and reported on test.

The one evaluation entry that the experiment (`Experiment.processbench`), the CLI's ``evaluate``
and the studies share, so that "τ from dev, F1 on test, oracle τ as an upper bound" means the same
everywhere. The metric itself lives in `cpmi_lib.eval.processbench`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cpmi_lib.core.costs import CostMeter, Costs
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.eval.processbench import (
    ProcessBenchResult,
    choose_threshold,
    evaluate_processbench,
    first_errors,
    oracle_threshold_result,
)

#: Bootstrap resamples behind `PRMEvaluation.dev_f1`: only its point value is kept, which does not
#: depend on them, so a few keep it cheap.
_DEV_RESAMPLES = 200


class StepScorer(Protocol):
    """What `evaluate_prm` needs of a PRM: per-step probabilities that each step is good."""

    def predict(self, trajectories: Sequence[Trajectory]) -> list[list[float]]: ...


@dataclass(frozen=True)
class PRMEvaluation:
    """τ chosen on dev, the test metrics at that τ, and the oracle-τ upper bound on test."""

    threshold_from_dev: float
    #: The headline F1 on dev at its own τ: what τ was chosen for (optimistic; dev only).
    dev_f1: float
    test: ProcessBenchResult
    test_oracle: ProcessBenchResult
    #: Scoring dev and test and choosing τ (the PRM's inference cost; not the bootstrap).
    costs: Costs

    def to_dict(self) -> dict[str, Any]:
        """The fields every evaluation record carries, in the order they are written."""
        return {
            "threshold_from_dev": self.threshold_from_dev,
            "test": self.test.to_dict(),
            "test_oracle": self.test_oracle.to_dict(),
        }


def evaluate_prm(
    prm: StepScorer,
    dev: Mapping[str, Sequence[Trajectory]],
    test: Mapping[str, Sequence[Trajectory]],
    seed: int = 0,
) -> PRMEvaluation:
    """ProcessBench-style F1 of `prm`: τ chosen on the `dev` subsets, reported on `test`.

    `dev` and `test` map a subset name to its trajectories (with their `first_error`); each subset
    counts equally in the headline. `seed` is the seed of the bootstrap CIs of BOTH test results
    (at τ from dev and at the oracle τ): the experiment passes its run seed, the CLI its
    ``--seed`` (default 0, the seed it always used), so a run and the CLI agree for the same seed.
    """
    meter = CostMeter(device=getattr(prm, "device", None))
    with meter:
        dev_probs, dev_truth = _scored(prm, dev)
        tau = choose_threshold(dev_probs, dev_truth)
        test_probs, test_truth = _scored(prm, test)
    dev_f1 = evaluate_processbench(dev_probs, dev_truth, tau, n_resamples=_DEV_RESAMPLES)
    return PRMEvaluation(
        threshold_from_dev=tau,
        dev_f1=dev_f1.headline_f1,
        test=evaluate_processbench(test_probs, test_truth, tau, seed=seed),
        test_oracle=oracle_threshold_result(test_probs, test_truth, seed=seed),
        costs=meter.costs,
    )


def _scored(
    prm: StepScorer, subsets: Mapping[str, Sequence[Trajectory]]
) -> tuple[dict[str, list[list[float]]], dict[str, list[int]]]:
    """Each subset's step probabilities and true first errors."""
    probs = {name: prm.predict(trajs) for name, trajs in subsets.items()}
    truth = {name: first_errors(trajs) for name, trajs in subsets.items()}
    return probs, truth
