"""Minimal CPMI: one problem, its steps labeled by CPMI and by Monte Carlo (MC), side by side.

CPMI scores step i of a solution with a labeling LM's log-probability LP of the answer line
``The answer is: <answer>`` after the context c_i (the prompt and the step):

    r_i = [LP(A*|c_i) - LP(A*|c_{i-1})] - (1/M) * sum_m [LP(Ã_m|c_i) - LP(Ã_m|c_{i-1})]

A* is the gold answer, Ã_1..Ã_M are hard negatives (wrong but plausible answers). MC, the
baseline, samples N completions from every prefix of the solution instead; a step's value is the
share of them that reach the gold answer. CPMI needs forward passes only; MC generates.

    python examples/minimal_cpmi.py           # the smoke preset's tiny LM: a minute or so, 2 CPUs
    python examples/minimal_cpmi.py default   # the default LM (67% accurate): meaningful labels

Both LMs are world LMs trained from scratch on first use and cached ($CPMI_CACHE, else .cache/):
the smoke one in under a minute (it is nearly untrained, so its labels are mostly noise: this run
shows the mechanics), the default one in 8-15 minutes (or already there after `make reproduce`).
Everything runs offline.
"""

import random
import sys

import torch

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.paths import cache_root
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.label_file import LabelConfig, label_trajectory
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.lm.default_lm import ensure_default_lm
from cpmi_lib.lm.load import count_parameters, load_lm

torch.set_num_threads(2)
preset = sys.argv[1] if len(sys.argv) > 1 else "smoke"

# --- 1. The labeling LM: a small Llama trained on the preset's arithmetic world, cached.
lm_cfg = experiment_config(preset).lm
lm_dir = ensure_default_lm(lm_cfg, cache=cache_root(), progress=False)
model, tokenizer = load_lm(lm_dir)
print(f"labeling LM: {lm_dir.name} ({count_parameters(model):,} parameters)")

# --- 2. One problem of the world's test split (never trained on) with at least 3 steps, and a
# solution of it with one known error: the gold solution with an arithmetic slip at step 2, every
# later step continuing from the wrong value (as ProcessBench-style benchmarks are built).
problems = build_world(lm_cfg.world, {"test": 20}, seed=0)["test"]
problem = next(p for p in problems if p.n_steps >= 3)
traj = corrupt(problem, random.Random(0), kinds=("slip",), position=1)
assert traj is not None, "the world could not corrupt this problem"
print(f"\nquestion: {traj.question}")
print(f"gold answer: {traj.gold_answer}; this solution's answer: {traj.final_answer}")

# --- 3. CPMI labels: the marginal variant (context = prompt + step i, as in the paper's code),
# M = 4 hard negatives from the solution's own numbers and perturbations of the gold answer.
cpmi_cfg = LabelConfig(method="cpmi", cpmi=CPMIConfig(variant="marginal"), n_negatives=4)
cpmi_meter = CostMeter(count_parameters(model))
with cpmi_meter:
    cpmi = label_trajectory(model, tokenizer, traj, cpmi_cfg, cpmi_meter)
print("hard negatives: " + ", ".join(f"{n['answer']} ({n['source']})" for n in cpmi["negatives"]))

# --- 4. MC labels: N = 8 sampled rollouts from every prefix, Math-Shepherd style.
mc_cfg = LabelConfig(method="mc", mc=MCConfig(n_rollouts=8, max_new_tokens=100))
mc_meter = CostMeter(count_parameters(model))
with mc_meter:
    mc = label_trajectory(model, tokenizer, traj, mc_cfg, mc_meter)

# --- 5. Side by side. `truth` is the world's exact step label. CPMI = gold term - negative term:
# a step scores high when it raises LP(gold) more than LP(negatives). MC is a share in [0, 1].
print(f"\n{'step':>4}  {'truth':>5}  {'CPMI':>7}  {'gold':>7}  {'neg':>7}  {'MC':>5}  text")
for i, (step, c, m) in enumerate(zip(traj.steps, cpmi["steps"], mc["steps"], strict=True)):
    truth = "right" if traj.step_labels[i] else "wrong"
    print(
        f"{i + 1:>4}  {truth:>5}  {c['cpmi']:>7.3f}  {c['gold_term']:>7.3f}  "
        f"{c['neg_term']:>7.3f}  {m['value']:>5.2f}  {step}"
    )

# --- 6. What each cost: CPMI generates nothing; MC generates N rollouts per step.
print()
for name, costs in (("CPMI", cpmi_meter.costs), ("MC", mc_meter.costs)):
    print(
        f"{name:>4}: {costs.wall_seconds:6.2f} s, {costs.forward_tokens:6d} forward tokens, "
        f"{costs.generated_tokens:6d} generated tokens"
    )
