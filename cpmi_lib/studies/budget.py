"""The equal budget, measured: CPMI labels more training trajectories until its measured labeling
seconds reach MC's on the base set, then stops; the budget-matched set is exactly the base set and
the extra trajectories labeled by then.

How (`budget_plan`):

1. MC's seconds are its cost meter's on the base training set; CPMI's count starts with its own
   seconds on the same set.
2. While CPMI's seconds are below MC's, a *round* of extra train problems (after the base set's)
   is sampled by the policy with a cost meter, and CPMI labels the round's trajectories in order,
   stopping at the first trajectory after which its cumulative seconds (base set included) reach
   MC's (`label_file(..., stop_when=...)`). A round holds as many problems as the seconds left
   need at the rate measured so far, plus `ROUND_MARGIN`, in whole sampling batches, so one round
   usually suffices. Its problems and batch seeds continue the previous round's, so the rounds'
   samples are those one sampling call over all their problems would give.
3. The budget set is the base set and those extra trajectories; the plan records the outcome
   (`Experiment.budget_file`, written last) and the extra trajectories and their CPMI labels are
   written beside it (``policy-extra.jsonl``, ``labels-cpmi-extra.jsonl``), where
   `Experiment.training_trajectories` and `Experiment.labels` read them.

Resumable and deterministic given the recorded seconds: a round's samples and their metered
seconds are written once (``round-<k>.json`` then ``round-<k>.jsonl``), its labels resume, the
stopping point and the next round's size follow from the seconds the label records hold, and once
the plan is written it is reused as it is. With Math-Shepherd's solutions as the PRMs' training
data (`HubSpec.prm_data`) a round reads the next solutions of the file instead of sampling, and
the "sampling" seconds are the reading's.

The comparison is reported two ways: labeling seconds alone (``cpmi_seconds`` against
``mc_seconds``), and labeling plus the seconds spent sampling the extra trajectories the budget
set uses (``cpmi_seconds_with_sampling``; each round's sampling seconds shared equally by its
trajectories). ``cpmi_trajectories_with_sampling`` is the size of the set at which labeling plus
sampling reaches MC's seconds (a ``cpmi@<n>`` PRM trains on it).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.trajectory import Trajectory, read_trajectories, write_trajectories
from cpmi_lib.experiment.config import SAMPLE_BATCH
from cpmi_lib.experiment.samples import sample_config, write_records
from cpmi_lib.experiment.stages import BUDGET, Experiment
from cpmi_lib.labeling.label_results import read_labels, total_costs
from cpmi_lib.lm.load import count_parameters
from cpmi_lib.lm.sampling import ParseReport, sample_solutions

#: A round samples this much more than the seconds left need at the measured rate.
ROUND_MARGIN = 1.25
#: The plan's format: 2 is the measured plan (1, extrapolated from the base rate, had no field).
PLAN_FORMAT = 2
#: Seed offset of the extra samples (batch b of the extra problems is seeded seed + 1000 + b).
EXTRA_SEED = 1000


def budget_plan(exp: Experiment) -> dict[str, Any]:
    """The equal-budget plan, measured (see the module docstring). Cached: decided once from
    the recorded seconds, so reruns reuse the same data. Fields: ``mc_seconds``,
    ``mc_trajectories``, ``mc_rollouts``, ``cpmi_seconds_base``, ``cpmi_seconds_per_trajectory``
    (the base set's rate, now only the first round's guide), ``cpmi_trajectories`` (the budget
    set), ``capped_by_world`` (the train split ran out first), ``extra_problems`` (the problems
    its extra trajectories come from), and the measured ones: ``cpmi_seconds``,
    ``extra_trajectories``, ``extra_label_seconds``, ``extra_sampling_seconds`` (of the extra
    trajectories used), ``extra_sampling_seconds_all`` (of every round sampled),
    ``cpmi_seconds_with_sampling``, ``cpmi_trajectories_with_sampling``, ``extra_source``,
    ``rounds`` and ``format``."""
    out = exp.budget_file
    if out.exists():
        return json.loads(out.read_text())
    mc = total_costs(read_labels(exp.labels("mc", "train")))
    cpmi = total_costs(read_labels(exp.labels("cpmi", "train")))
    n_base = len(read_trajectories(exp.policy_samples("train")))
    spp = exp.cfg.samples_per_problem
    world_problems = len(exp.track.problems("train", 10**9))  # the whole train split
    measured = _measure(exp, mc.wall_seconds, cpmi.wall_seconds, n_base, world_problems)
    used, rounds = measured["used"], measured["rounds"]
    label_s = sum(u["label_seconds"] for u in used)
    # whole rounds count their measured seconds exactly (as `extra_sampling_seconds` reads
    # them), so this never exceeds the sum over every round by a rounding error
    sample_s = extra_sampling_seconds(
        {"mc_trajectories": n_base, "rounds": rounds}, n_base + len(used)
    )
    spent = cpmi.wall_seconds + label_s
    plan = {
        "mc_seconds": mc.wall_seconds,
        "mc_trajectories": n_base,
        "mc_rollouts": exp.cfg.mc.n_rollouts,
        "cpmi_seconds_base": cpmi.wall_seconds,
        "cpmi_seconds_per_trajectory": cpmi.wall_seconds / n_base,
        "cpmi_trajectories": n_base + len(used),
        "capped_by_world": spent < mc.wall_seconds,
        "extra_problems": len({u["problem"] for u in used}),
        "format": PLAN_FORMAT,
        "cpmi_seconds": spent,
        "extra_trajectories": len(used),
        "extra_label_seconds": label_s,
        "extra_sampling_seconds": sample_s,
        "extra_sampling_seconds_all": sum(r["sampling_seconds"] for r in rounds),
        "cpmi_seconds_with_sampling": spent + sample_s,
        "cpmi_trajectories_with_sampling": n_base
        + _reach(cpmi.wall_seconds, used, mc.wall_seconds),
        "cpmi_vs_mc_label_seconds": spent / mc.wall_seconds,
        "cpmi_vs_mc_seconds_with_sampling": (spent + sample_s) / mc.wall_seconds,
        "extra_source": "Math-Shepherd file" if exp.shepherd is not None else "policy samples",
        "samples_per_problem": spp,
        "rounds": rounds,
    }
    # the extra set and its labels, then the plan: the plan is the commit
    write_trajectories(exp.budget_dir / "policy-extra.jsonl", [u["traj"] for u in used])
    write_records(exp.budget_dir / "labels-cpmi-extra.jsonl", [u["record"] for u in used])
    write_atomically(out, json.dumps(plan, indent=2, allow_nan=False) + "\n")
    return plan


def _measure(
    exp: Experiment, mc_seconds: float, base_seconds: float, n_base: int, world_problems: int
) -> dict[str, Any]:
    """Sample and label rounds of extra problems until CPMI's seconds reach `mc_seconds`; the
    extra trajectories used (in order, each with its record and seconds) and the rounds."""
    spp = exp.cfg.samples_per_problem
    batch = max(1, SAMPLE_BATCH // spp)  # problems in one sampling batch
    first = exp.cfg.train_problems
    spent, labeled = base_seconds, n_base
    used: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    k = 0
    while spent < mc_seconds and first < world_problems:
        rate = max(spent / labeled, 1e-9)  # seconds a trajectory, measured so far
        need = (mc_seconds - spent) / rate * ROUND_MARGIN  # trajectories
        size = math.ceil(max(1.0, need) / spp / batch) * batch
        trajs, meta = _round(exp, k, first, min(size, world_problems - first), batch)
        labels = exp.budget_dir / f"labels-cpmi-round-{k}.jsonl"
        before = spent
        if trajs:
            exp.label_into(
                "cpmi",
                exp.budget_dir / f"round-{k}.jsonl",
                labels,
                stop_when=lambda c, before=before: before + c.wall_seconds >= mc_seconds,
            )
        records = read_labels(labels) if trajs else []
        by_id = {t.id: t for t in trajs}
        per_trajectory = meta["sampling_seconds"] / len(trajs) if trajs else 0.0
        # summed as `label_file` sums them for `stop_when`, so both stop at the same record
        round_total, taken = 0.0, 0
        for record in records:
            if before + round_total >= mc_seconds:
                break
            seconds = float(record["costs"]["wall_seconds"])
            round_total += seconds
            taken += 1
            traj = by_id[record["id"]]
            used.append(
                {
                    "traj": traj,
                    "record": record,
                    "label_seconds": seconds,
                    "sampling_seconds": per_trajectory,
                    "problem": traj.metadata.get("problem_id", traj.id),
                }
            )
        spent, labeled = before + round_total, labeled + taken
        rounds.append(meta | {"trajectories": len(trajs), "used": taken})
        first += meta["problems"]
        k += 1
    return {"used": used, "rounds": rounds}


def _round(
    exp: Experiment, k: int, first: int, problems: int, batch: int
) -> tuple[list[Trajectory], dict[str, Any]]:
    """Round `k`'s trajectories (`problems` train problems from index `first`) and what
    producing them cost: read when written before, else sampled (or read from Math-Shepherd)
    under a cost meter, its seconds written before the trajectories."""
    path = exp.budget_dir / f"round-{k}.jsonl"
    meta_path = exp.budget_dir / f"round-{k}.json"
    if path.exists() and meta_path.exists():
        return read_trajectories(path), json.loads(meta_path.read_text())
    exp.budget_dir.mkdir(parents=True, exist_ok=True)
    spp = exp.cfg.samples_per_problem
    track = exp.shepherd
    if track is not None:
        meter = CostMeter()
        with meter:
            trajs, _report = track.prm_data("train", first * spp, problems * spp)
        seed = None
    else:
        model, tok = exp.lm()
        meter = CostMeter(count_parameters(model), next(model.parameters()).device)
        chosen = exp.track.problems("train", first + problems)[first:]
        # batch b of the extra problems is seeded as one call over all of them would seed it
        seed = exp.cfg.seed + EXTRA_SEED + (first - exp.cfg.train_problems) // batch
        cfg = sample_config(exp.cfg, spp, seed, exp.sample_template())
        with meter:
            trajs = sample_solutions(model, tok, chosen, cfg, meter=meter)
        report = ParseReport.of(len(chosen), spp, trajs)
        why = report.refusals()
        if why:
            raise ValueError(f"extra samples (round {k}): " + "; ".join(why))
    meta = {
        "round": k,
        "first_problem": first,
        "problems": problems,
        "seed": seed,
        "sampling_seconds": meter.costs.wall_seconds,
        "sampling_costs": asdict(meter.costs),
    }
    write_atomically(meta_path, json.dumps(meta, indent=2, allow_nan=False) + "\n")
    write_trajectories(path, trajs)
    return trajs, meta


def _reach(base_seconds: float, used: list[dict[str, Any]], budget: float) -> int:
    """Extra trajectories (a prefix of `used`) after which labeling plus sampling seconds reach
    `budget` (all of them when they never do)."""
    spent = base_seconds
    for i, u in enumerate(used):
        if spent >= budget:
            return i
        spent += u["label_seconds"] + u["sampling_seconds"]
    return len(used)


def extra_sampling_seconds(plan: dict[str, Any], n: int) -> float:
    """The sampling seconds of the extra trajectories among the first `n` training
    trajectories (base set first, then the extra set in order; 0 for the base set alone, and
    for a plan written before sampling was measured)."""
    left = max(0, n - int(plan["mc_trajectories"]))
    total = 0.0
    for r in plan.get("rounds", []):
        take = min(left, int(r["used"]))
        if take and take == r["trajectories"]:  # a whole round: its seconds exactly, unrounded
            total += r["sampling_seconds"]
        elif take:
            total += take * r["sampling_seconds"] / r["trajectories"]
        left -= take
    return total


def budget_size(exp: Experiment) -> int:
    """Trajectories in the budget-matched set: the plan's count (exactly the trajectories
    labeled within the budget)."""
    budget_plan(exp)
    return len(exp.training_trajectories(BUDGET))


def save_budget_plan(exp: Experiment, results_dir: str | Path) -> dict[str, Any]:
    """The plan, also written to ``<results_dir>/budget_plan.json`` for the results folder."""
    plan = budget_plan(exp)
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    (Path(results_dir) / "budget_plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    return plan
