"""What the experiment's data hold: per set of policy samples, Best-of-N pool and benchmark
subset, how many trajectories and problems, mean steps, and how often the final answer and every
step are right ("every step right" is known exactly on the embedded track only)."""

from __future__ import annotations

import pandas as pd

from cpmi_lib.core.trajectory import read_trajectories
from cpmi_lib.experiment.stages import Experiment


def data_table(exp: Experiment) -> pd.DataFrame:
    """One row per set: the policy's train and dev samples, the test Best-of-N pool, then each
    benchmark subset of dev and test (made by the stages on first use)."""
    rows = []
    for name, path in [
        ("policy train", exp.policy_samples("train")),
        ("policy dev", exp.policy_samples("dev")),
        ("Best-of-N pool (test)", exp.bon_pool()),
    ]:
        trajs = read_trajectories(path)
        rows.append(
            {
                "set": name,
                "trajectories": len(trajs),
                "problems": len({t.metadata["problem_id"] for t in trajs}),
                "mean steps": sum(t.n_steps for t in trajs) / len(trajs),
                "final answer right": sum(t.metadata["final_correct"] for t in trajs) / len(trajs),
                "every step right": (
                    sum(t.first_error == -1 for t in trajs) / len(trajs)
                    if exp.track.step_truth
                    else None
                ),
            }
        )
    for split in ("dev", "test"):
        for subset, items in exp.track.benchmark(split).items():
            rows.append(
                {
                    "set": f"benchmark {split}/{subset}",
                    "trajectories": len(items),
                    "problems": len(items),
                    "mean steps": sum(t.n_steps for t in items) / len(items),
                    "final answer right": sum(t.first_error == -1 for t in items) / len(items),
                    "every step right": sum(t.first_error == -1 for t in items) / len(items),
                }
            )
    return pd.DataFrame(rows)
