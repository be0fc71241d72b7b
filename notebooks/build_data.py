# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Build the data
# The track's models and data: on the embedded track the arithmetic world (problem splits and the
# ProcessBench-style benchmark) and the default LM; on the hub track GSM8K problems, ProcessBench
# and a hub LM. Then the policy's sampled solutions that the labelers label and the PRMs learn
# from. "every step right" is known exactly on the embedded track only.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
import pandas as pd

from cpmi_lib.core.trajectory import read_trajectories
from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.tables import save_table

exp = Experiment(experiment_config(preset))
exp.track.describe()

# %%
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
data = pd.DataFrame(rows)
save_table(data, "data", results_dir)
data
