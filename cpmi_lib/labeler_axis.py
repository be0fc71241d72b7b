"""The labeler axis, measured: each labeler's anticipation skill and label quality, the CPMI
setting and the best labeler chosen on held-out dev samples, and the headline numbers.

Every choice is made on the dev policy samples and reported on the training samples (the
steps the PRMs learn from): per labeler the CPMI variant and M with the best within-position
AUROC on dev; across labelers the one whose chosen setting is best on dev. Measurements are
cached beside each labeler's labels, so a rerun of the notebook only redoes what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd

from cpmi_lib.default_lm import training_record
from cpmi_lib.headline import Headline, put_entry
from cpmi_lib.labelers import (
    AXIS_NEGATIVES,
    Labeler,
    anticipation_skill,
    labeler_quality,
    skill_summary,
)
from cpmi_lib.prm_experiment import Experiment, ExperimentConfig

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
    out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
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
        prefix = f"labeler_{name}"
        put_entry(
            out, f"{prefix}_anticipation", row["anticipation"], row["anticipation_ci"], n_problems
        )
        put_entry(
            out, f"{prefix}_cpmi_auroc_vs_truth", row["cpmi_auroc"], row["cpmi_auroc_ci"], steps
        )
        put_entry(out, f"{prefix}_mc_auroc_vs_truth", row["mc_auroc"], None, steps)
        put_entry(out, f"{prefix}_cpmi_seconds_per_step", row["cpmi_seconds_per_step"], None, steps)
        put_entry(out, f"{prefix}_mc_seconds_per_step", row["mc_seconds_per_step"], None, steps)
    best = best_labeler(results)
    cpmi, mc = chosen_row(results[best]), mc_row(results[best])
    n = int(cpmi["steps"])
    put_entry(out, "best_labeler_cpmi_auroc_vs_truth", cpmi["auroc"], cpmi["auroc_ci"], n)
    put_entry(out, "best_labeler_cpmi_auroc_within_position", cpmi["within"], cpmi["within_ci"], n)
    put_entry(out, "best_labeler_mc_auroc_vs_truth", mc["auroc"], mc["auroc_ci"], n)
    return out
