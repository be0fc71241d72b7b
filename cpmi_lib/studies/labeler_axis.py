"""The labeler axis: when do CPMI labels work?

CPMI assumes a labeling LM whose belief in the final answer follows the progress of a partial
solution. The policy LM of the embedded track was trained on complete gold solutions only: after
a partial solution, "The answer is:" is outside everything it has seen. Labelers along the axis
(`default_axis`) differ in that one skill, *answer anticipation*
(`ContinuedLMConfig.anticipation`):

- ``policy``: the policy LM itself (today's labeler);
- ``continued``: the policy LM trained `steps` more steps on fresh gold solutions, without
  anticipation: the control for "more training" alone;
- ``anticipate``: the same problems, steps and order, but a fraction p of the examples stop after
  k < S steps and state the final answer at once;
- ``anticipate_long``: anticipation on top of the longer-trained PRM backbone LM.

Every labeler labels the same policy samples (`ExperimentConfig.labeler`: the samples are the
policy's, the labels go to a folder per labeler), and MC's rollouts use the same labeler, so cost
and quality stay comparable. This module measures each labeler (`cpmi_lib.studies.labeler_skill`),
chooses on
held-out dev samples, reports on the training samples (the steps the PRMs learn from), and trains
the PRMs of the best labeler: per labeler the CPMI variant and M with the best within-position
AUROC on dev; across labelers the one whose chosen setting is best on dev. Measurements are
cached beside each labeler's labels, so a rerun only redoes what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd

from cpmi_lib.core.files import write_atomically
from cpmi_lib.eval.best_of_n import compare
from cpmi_lib.experiment.config import Labeler
from cpmi_lib.experiment.stages import BUDGET, Experiment, ExperimentConfig, parse_prm_name
from cpmi_lib.labeling.cpmi import context_logprobs, cpmi_step_scores
from cpmi_lib.lm.default_lm import training_record
from cpmi_lib.report import claims
from cpmi_lib.report.headline import Headline, put_entry
from cpmi_lib.studies.budget import budget_plan
from cpmi_lib.studies.instrument import benchmark_items, budget_comparison, prm_row
from cpmi_lib.studies.labeler_skill import (
    AXIS_NEGATIVES,
    anticipation_skill,
    labeler_quality,
    skill_summary,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AxisSizes:
    """How much each labeler is measured on."""

    skill_problems: int = 100  # world dev problems, gold and one corrupted solution each
    select_trajectories: int = 300  # dev policy samples: choose the CPMI setting and the labeler
    quality_trajectories: int = 300  # training policy samples: report (MC labels these too)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:10]


def labeler_experiment(cfg: ExperimentConfig, labeler: Labeler) -> Experiment:
    """The experiment with `labeler` as labeling LM: the same policy samples, its own labels."""
    return Experiment(replace(cfg, labeler=labeler.lm))


def measure_labeler(
    cfg: ExperimentConfig, labeler: Labeler, sizes: AxisSizes, progress: bool = True
) -> dict[str, Any]:
    """Skill, the setting chosen on dev, and the quality table on train of one labeler
    (trained on first use); JSON-safe and cached in the labeler's label folder."""
    exp = labeler_experiment(cfg, labeler)
    out = exp.label_dir / f"axis-{sizes.key()}.json"
    if out.exists():
        return json.loads(out.read_text())
    model, tok = exp.labeler_lm()
    path = exp.track.labeler_path
    train_seconds = 0.0 if labeler.lm is None else training_record(path)["train_seconds"]
    problems = exp.track.problems("dev", sizes.skill_problems)
    skill = anticipation_skill(model, tok, problems, cfg.cpmi, seed=cfg.seed, progress=progress)
    dev, _ = labeler_quality(
        exp, sizes.select_trajectories, split="dev", with_mc=False, progress=progress
    )
    m = max((m for m in AXIS_NEGATIVES if m <= cfg.n_negatives), default=AXIS_NEGATIVES[0])
    default = {"variant": cfg.cpmi.variant, "M": m}
    chosen = choose_setting(dev, default)
    on_dev = _lookup(dev, chosen)
    train, seconds = labeler_quality(exp, sizes.quality_trajectories, progress=progress)
    result = {
        "labeler": labeler.name,
        "about": labeler.about,
        "lm": None if labeler.lm is None else labeler.lm.to_dict(),
        "train_seconds": train_seconds,
        "skill": skill_summary(skill, seed=cfg.seed),
        "chosen": chosen,
        "dev_within": on_dev["within"],
        "dev_auroc": on_dev["auroc"],
        "quality": json.loads(train.to_json(orient="records")),
        "seconds_per_step": seconds,
    }
    write_atomically(out, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


def choose_setting(dev: pd.DataFrame, fallback: dict[str, Any]) -> dict[str, Any]:
    """The CPMI (variant, M) with the highest within-position AUROC on the dev table (ties: the
    first in `VARIANTS` × M order); where no setting has one (too few dev steps per position),
    the highest pooled AUROC; where none has that either, `fallback`. ``by`` says which."""
    for column in ("within", "auroc"):
        cpmi = dev[(dev["scores"] == "cpmi") & dev[column].notna()]
        if not cpmi.empty:
            best = cpmi.loc[cpmi[column].idxmax()]
            return {"variant": str(best["variant"]), "M": int(best["M"]), "by": f"dev {column}"}
    log.warning("no CPMI setting has a defined AUROC on dev: the experiment's own is used")
    return {**fallback, "by": "the experiment's setting (dev AUROC undefined)"}


def _lookup(table: pd.DataFrame, chosen: dict[str, Any]) -> dict[str, Any]:
    rows = table[
        (table["scores"] == "cpmi")
        & (table["variant"] == chosen["variant"])
        & (table["M"] == chosen["M"])
    ]
    return rows.iloc[0].to_dict()


def best_labeler(results: dict[str, dict[str, Any]]) -> str:
    """The labeler whose chosen CPMI setting has the best within-position AUROC on dev (then
    the best pooled one, where the within-position one is undefined; ties: the first)."""

    def score(name: str) -> tuple[float, float]:
        r = results[name]
        return tuple(  # type: ignore[return-value]
            -math.inf if r[k] is None else r[k] for k in ("dev_within", "dev_auroc")
        )

    return max(results, key=score)


def chosen_row(result: dict[str, Any]) -> dict[str, Any]:
    """The labeler's training-steps quality row of its chosen CPMI setting."""
    return _lookup(pd.DataFrame(result["quality"]), result["chosen"])


def mc_row(result: dict[str, Any]) -> dict[str, Any]:
    table = pd.DataFrame(result["quality"])
    return table[table["scores"] == "mc"].iloc[0].to_dict()


def summary_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per labeler: training seconds, anticipation skill, the chosen CPMI setting's
    AUROC (pooled and within position) and MC's on the same training steps, seconds per step."""
    rows = []
    for name, r in results.items():
        cpmi, mc, skill = chosen_row(r), mc_row(r), r["skill"]
        variant = r["chosen"]["variant"]
        rows.append(
            {
                "labeler": name,
                "about": r["about"],
                "train_seconds": r["train_seconds"],
                "anticipation": skill["anticipation"],
                "anticipation_ci": skill["anticipation_ci"],
                "after_error_wrong_above_gold": skill.get("after_error_wrong_above_gold"),
                "cpmi_setting": f"{variant}, M={r['chosen']['M']}",
                "cpmi_dev_within": r["dev_within"],
                "cpmi_auroc": cpmi["auroc"],
                "cpmi_auroc_ci": cpmi["auroc_ci"],
                "cpmi_within": cpmi["within"],
                "cpmi_within_ci": cpmi["within_ci"],
                "mc_auroc": mc["auroc"],
                "mc_within": mc["within"],
                "cpmi_seconds_per_step": r["seconds_per_step"][f"cpmi-{variant}"],
                "mc_seconds_per_step": r["seconds_per_step"]["mc"],
            }
        )
    return pd.DataFrame(rows)


def quality_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Every labeler's full quality table on the training steps, one labeler column added."""
    return pd.concat(
        [pd.DataFrame(r["quality"]).assign(labeler=name) for name, r in results.items()],
        ignore_index=True,
    )


def skill_curves(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """P(gold answer) after a correct prefix by steps left, one row per (labeler, steps left)."""
    return pd.DataFrame(
        [
            {"labeler": name, "remaining": int(k), "p_gold": v}
            for name, r in results.items()
            for k, v in r["skill"]["p_gold_by_remaining"].items()
        ]
    )


def headline_entries(results: dict[str, dict[str, Any]]) -> dict[str, Headline]:
    """``labeler_<name>_*`` for every labeler and the ``best_labeler_*`` label-quality numbers;
    n is the training steps measured (for the anticipation: the dev problems)."""
    out: dict[str, Headline] = {}
    for _, row in summary_table(results).iterrows():
        name = row["labeler"]
        n_problems = results[name]["skill"]["n_problems"]
        steps = int(chosen_row(results[name])["steps"])
        for family, value, ci, count in (
            (claims.LABELER_ANTICIPATION, row["anticipation"], row["anticipation_ci"], n_problems),
            (claims.LABELER_CPMI_AUROC, row["cpmi_auroc"], row["cpmi_auroc_ci"], steps),
            (claims.LABELER_MC_AUROC, row["mc_auroc"], None, steps),
            (claims.LABELER_CPMI_SECONDS, row["cpmi_seconds_per_step"], None, steps),
            (claims.LABELER_MC_SECONDS, row["mc_seconds_per_step"], None, steps),
        ):
            put_entry(out, family[name], value, ci, count)
    best = best_labeler(results)
    cpmi, mc = chosen_row(results[best]), mc_row(results[best])
    n = int(cpmi["steps"])
    put_entry(out, claims.BEST_LABELER_CPMI_AUROC, cpmi["auroc"], cpmi["auroc_ci"], n)
    put_entry(out, claims.BEST_LABELER_CPMI_WITHIN, cpmi["within"], cpmi["within_ci"], n)
    put_entry(out, claims.BEST_LABELER_MC_AUROC, mc["auroc"], mc["auroc_ci"], n)
    return out


# ----------------------------------------------------------------------------- PRMs


#: The PRMs trained from a labeler's labels: CPMI and MC on the base set, and CPMI on the set it
#: labels in the seconds MC took on the base set (both measured with that labeler).
LABELER_PRMS: tuple[str, ...] = ("cpmi", "mc", f"cpmi@{BUDGET}")


def chosen_experiment(
    cfg: ExperimentConfig, labeler: Labeler, result: dict[str, Any]
) -> Experiment:
    """The experiment labelled by `labeler` with the CPMI setting chosen for it on dev (variant
    and M negatives). For the policy with the experiment's own setting, that is the experiment
    itself (same folders, nothing trained twice)."""
    chosen = result["chosen"]
    cpmi = replace(cfg.cpmi, variant=chosen["variant"])
    return Experiment(replace(cfg, labeler=labeler.lm, cpmi=cpmi, n_negatives=int(chosen["M"])))


def labeler_prms(
    cfg: ExperimentConfig, labelers: Sequence[Labeler], results: dict[str, dict[str, Any]]
) -> dict[str, Experiment]:
    """The experiments whose PRMs the labelers table compares: the experiment as configured
    (``"policy (as configured)"``: today's labeler and setting) and the best labeler's (chosen on
    dev), trained on first use (`LABELER_PRMS`)."""
    by_name = {x.name: x for x in labelers}
    best = best_labeler(results)
    exps = {
        "policy (as configured)": Experiment(cfg),
        f"{best} (best)": chosen_experiment(cfg, by_name[best], results[best]),
    }
    for exp in exps.values():
        for name in LABELER_PRMS:
            if parse_prm_name(name)[1] == BUDGET:
                budget_plan(exp)  # sizes the budget-matched set, measured once
            exp.train(name)
    return exps


def prm_table(exps: dict[str, Experiment]) -> pd.DataFrame:
    """One row per (labeler, PRM of `LABELER_PRMS`), the truth PRM of the base set as reference:
    trajectories, labeling seconds, ProcessBench-style F1 and Best-of-N (`budget_comparison`)."""
    frames = []
    for i, (name, exp) in enumerate(exps.items()):
        names = (*LABELER_PRMS, "truth") if i == 0 and exp.track.step_truth else LABELER_PRMS
        frames.append(budget_comparison(exp, names).assign(labeler=name))
    table = pd.concat(frames, ignore_index=True)
    return table[["labeler", *[c for c in table.columns if c != "labeler"]]]


def prm_tests(exps: dict[str, Experiment]) -> dict[str, dict[str, Any]]:
    """Exact McNemar at the largest N (each PRM with its own dev-chosen aggregation), paired
    over the same Best-of-N problems, keyed by a short name with the readable ``pair`` inside:
    within the best labeler CPMI at budget vs MC (``budget_cpmi_vs_mc``) and CPMI vs MC
    (``cpmi_vs_mc``); across labelers its CPMI vs the configured one's (``cpmi_vs_policy_cpmi``)."""
    (policy_name, policy), (best_name, best) = exps.items()
    n = max(policy.cfg.bon_ns)
    pairs = {
        "budget_cpmi_vs_mc": ((best_name, best, f"cpmi@{BUDGET}"), (best_name, best, "mc")),
        "cpmi_vs_mc": ((best_name, best, "cpmi"), (best_name, best, "mc")),
        "cpmi_vs_policy_cpmi": ((best_name, best, "cpmi"), (policy_name, policy, "cpmi")),
    }
    out = {}
    for key, ((la, ea, a), (lb, eb, b)) in pairs.items():
        res = compare(ea.best_of_n(a), ea.bon_method(a), eb.best_of_n(b), eb.bon_method(b), n)
        out[key] = {"pair": f"{a} ({la}) vs {b} ({lb})"} | res.to_dict()
    return out


def prm_headline(
    exps: dict[str, Experiment], tests: dict[str, dict[str, Any]]
) -> dict[str, Headline]:
    """``best_labeler_{cpmi,mc,budget_cpmi}_prm_f1`` and the McNemar p of the best labeler's
    CPMI at budget vs its MC and of its CPMI vs the configured labeler's (`prm_tests`)."""
    ((_, best),) = list(exps.items())[1:]
    out: dict[str, Headline] = {}
    for key, name in (("cpmi", "cpmi"), ("mc", "mc"), ("budget_cpmi", f"cpmi@{BUDGET}")):
        r = prm_row(best, name)
        n_items = benchmark_items(best, name)
        f1 = claims.BEST_LABELER_PRM_F1[key]
        put_entry(out, f1, r["f1"], tuple(r["f1_ci"]), n_items)
    n = prm_row(best, "cpmi")["bon_problems"]
    for key in ("budget_cpmi_vs_mc", "cpmi_vs_policy_cpmi"):
        put_entry(out, claims.BEST_LABELER_P[key], tests[key]["p_value"], None, n)
    return out


# ----------------------------------------------------------------------------- one problem


def explore_problem(
    cfg: ExperimentConfig,
    labelers: Sequence[Labeler],
    question: str,
    steps: Sequence[str],
    gold: str,
    negatives: Sequence[str],
    variant: str,
) -> tuple[pd.DataFrame, dict[str, tuple[list[float], list[list[float]]]]]:
    """Each labeler on one problem: a table of every step's gold term and CPMI (`variant`, the
    experiment's templates), and per labeler LP(gold) and LP(each negative) after the prompt
    and after every prefix of steps (cumulative contexts), for `plots.lp_along_steps_by_labeler`."""
    table = pd.DataFrame({"step": list(steps)})
    curves: dict[str, tuple[list[float], list[list[float]]]] = {}
    for labeler in labelers:
        exp = labeler_experiment(cfg, labeler)
        model, tok = exp.labeler_lm()
        cpmi = exp.cpmi_config()  # the templates as this labeler reads them (chat or plain)
        scoring = replace(cpmi, variant=variant)
        prefixes = replace(cpmi, variant="cumulative")
        scores = cpmi_step_scores(model, tok, question, steps, gold, negatives, scoring)
        table[f"gold term ({labeler.name})"] = [s.gold_term for s in scores]
        table[f"CPMI ({labeler.name})"] = [s.cpmi for s in scores]
        lp, _ = context_logprobs(model, tok, question, steps, [gold, *negatives], prefixes)
        curves[labeler.name] = (lp[:, 0].tolist(), lp[:, 1:].T.tolist())
    return table, curves
