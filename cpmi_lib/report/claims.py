"""The results contract: every claim the suite makes, declared once.

A `Claim` is one measured number: its name, the sentence it supports, the paper's value where the
paper reports one, the notebook that measures it and the table and figure that show it. Most
claims are entries of `results/headline.json`; the paper's two cost claims are rows of their
table (`Claim.table_row`). Names that vary with a labeler or a Best-of-N size are a `Family`: a
template over an explicit, finite set of values, so that "declared" stays checkable.

- The producers (`cpmi_lib.studies`) take their names from here; none spells one.
- `results/README.md`'s claims table is rendered from `CLAIMS`, in its order
  (`cpmi_lib.report.results_readme`).
- ``tests/test_claims.py`` fails on a name produced but not declared, or declared but missing
  from the default grid's committed `results/headline.json` (`Family.elsewhere` names the values
  only other presets produce).
"""

from __future__ import annotations

from collections.abc import Iterable

from cpmi_lib.report.claim_types import BON_ELSEWHERE, BON_NS, Claim, Family, Style
from cpmi_lib.report.claims_decisive import (
    BON_MDD,
    NATURAL_F1,
    NATURAL_P,
    OUTCOME_AUROC,
    OUTCOME_PRM_BON,
    WITHIN_WRONG,
)

# ----------------------------------------------------------------------------- the paper's cost

LABELING_TIME = Claim(
    "cpmi_vs_mc_labeling_time",
    "CPMI vs MC: labeling time",
    "label_cost",
    "label_cost_vs_paper",
    paper=-0.84,
    style="saving",
    table_row="labeling time",
)
GENERATED_TOKENS = Claim(
    "cpmi_vs_mc_generated_tokens",
    "CPMI vs MC: generated tokens",
    "label_cost",
    "label_cost_vs_paper",
    paper=-0.98,
    style="saving",
    table_row="generated tokens",
)

# ----------------------------------------------------------------------------- the labeler axis

#: The labelers of the capability axis (`cpmi_lib.experiment.config.default_axis`; the smoke
#: grid's axis has the same names).
LABELERS: tuple[str, ...] = ("policy", "continued", "anticipate", "anticipate_long")


def _axis(template: str, text: str, style: Style = "ci") -> Family:
    """A number of every labeler of the axis: the notes' and seeds' material, no README row."""
    return Family(
        template, text, "labelers", LABELERS, (), "labeler_axis", "labeler_axis", style, row=False
    )


LABELER_ANTICIPATION = _axis("labeler_{}_anticipation", "labeler {}: anticipation skill (dev)")
LABELER_CPMI_AUROC = _axis(
    "labeler_{}_cpmi_auroc_vs_truth",
    "labeler {}: CPMI step AUROC vs exact truth (its dev-chosen setting)",
)
LABELER_MC_AUROC = _axis("labeler_{}_mc_auroc_vs_truth", "labeler {}: MC step AUROC vs exact truth")
LABELER_CPMI_SECONDS = _axis(
    "labeler_{}_cpmi_seconds_per_step", "labeler {}: CPMI labeling seconds per step", "count"
)
LABELER_MC_SECONDS = _axis(
    "labeler_{}_mc_seconds_per_step", "labeler {}: MC labeling seconds per step", "count"
)


def _best(name: str, text: str, table: str, figure: str, style: Style = "ci", row=True) -> Claim:
    return Claim(name, text, "labelers", table, figure, style=style, row=row)


BEST_LABELER_CPMI_AUROC = _best(
    "best_labeler_cpmi_auroc_vs_truth",
    "best labeler (chosen on dev): CPMI step AUROC vs exact truth",
    "labeler_axis",
    "labeler_axis",
)
BEST_LABELER_CPMI_WITHIN = _best(
    "best_labeler_cpmi_auroc_within_position",
    "best labeler: CPMI step AUROC within step position",
    "labeler_axis",
    "labeler_axis",
)
BEST_LABELER_MC_AUROC = _best(
    "best_labeler_mc_auroc_vs_truth",
    "best labeler: MC step AUROC vs exact truth",
    "labeler_axis",
    "labeler_axis",
)
#: F1 of the best labeler's PRMs, keyed by PRM (`cpmi_lib.studies.labeler_axis.prm_headline`).
BEST_LABELER_PRM_F1 = {
    "cpmi": _best(
        "best_labeler_cpmi_prm_f1",
        "best labeler: F1 of the PRM from its CPMI labels",
        "labeler_prms",
        "labeler_prms",
    ),
    "mc": _best(
        "best_labeler_mc_prm_f1",
        "best labeler: F1 of the PRM from its MC labels",
        "labeler_prms",
        "labeler_prms",
    ),
    "budget_cpmi": _best(
        "best_labeler_budget_cpmi_prm_f1",
        "best labeler, equal budget: F1 of the PRM from its CPMI labels",
        "labeler_prms",
        "labeler_prms",
    ),
}
#: Exact McNemar p of the best labeler's PRMs, keyed by pair (`labeler_axis.prm_tests`).
BEST_LABELER_P = {
    "budget_cpmi_vs_mc": _best(
        "best_labeler_budget_cpmi_vs_mc_p",
        "best labeler, equal budget: CPMI vs MC PRM, Best-of-N exact McNemar p",
        "labeler_prms_mcnemar",
        "labeler_prms",
        "p",
    ),
    "cpmi_vs_policy_cpmi": _best(
        "best_labeler_cpmi_vs_policy_cpmi_p",
        "best labeler vs the policy as labeler: CPMI PRMs, Best-of-N exact McNemar p",
        "labeler_prms_mcnemar",
        "labeler_prms",
        "p",
        row=False,
    ),
}

# ----------------------------------------------------------------------------- the instrument


def _inst(name: str, text: str, table: str, figure: str, style: Style = "ci") -> Claim:
    return Claim(name, text, "instrument", table, figure, style=style)


#: ProcessBench-style F1 of the base set's PRMs, keyed by PRM (`Experiment.prm_names`).
PRM_F1 = {
    "truth": _inst(
        "truth_prm_f1",
        "PRM from exact truth: ProcessBench-style F1 (τ from dev)",
        "processbench",
        "processbench_f1",
    ),
    "cpmi": _inst("cpmi_prm_f1", "PRM from CPMI labels: F1", "processbench", "processbench_f1"),
    "mc": _inst("mc_prm_f1", "PRM from MC labels: F1", "processbench", "processbench_f1"),
    "position": _inst(
        "position_prm_f1",
        "PRM from position-only labels (floor): F1",
        "processbench",
        "processbench_f1",
    ),
}


def _bon(template: str, text: str) -> Family:
    return Family(
        template, text, "instrument", BON_NS, BON_ELSEWHERE, "best_of_n", "best_of_n_truth"
    )


TRUTH_PRM_BON = _bon("truth_prm_bon{}", "truth PRM: Best-of-{} (aggregation chosen on dev)")
#: The baselines' Best-of-N, keyed by `cpmi_lib.eval.best_of_n` method.
BASELINE_BON = {
    "majority": _bon("majority_bon{}", "majority vote: Best-of-{}"),
    "random": _bon("random_bon{}", "random pick: Best-of-{}"),
}
TRUTH_PRM_VS_MAJORITY_P = _inst(
    "truth_prm_vs_majority_p",
    "truth PRM vs majority: exact McNemar p",
    "best_of_n",
    "best_of_n_truth",
    "p",
)
#: Pooled step AUROC of each label source vs the exact truth, keyed by source.
AUROC_VS_TRUTH = {
    "cpmi": _inst(
        "cpmi_auroc_vs_truth",
        "CPMI labels: step AUROC vs exact truth",
        "auroc_within_position",
        "auroc_within_position",
    ),
    "mc": _inst(
        "mc_auroc_vs_truth",
        "MC labels: step AUROC vs exact truth",
        "auroc_within_position",
        "auroc_within_position",
    ),
    "position": _inst(
        "position_auroc_vs_truth",
        "position-only labels: step AUROC vs exact truth",
        "auroc_within_position",
        "auroc_within_position",
    ),
}
CPMI_AUROC_WITHIN_POSITION = _inst(
    "cpmi_auroc_vs_truth_within_position",
    "CPMI labels: step AUROC within step position",
    "auroc_within_position",
    "auroc_within_position",
)


def _budget(name: str, text: str, style: Style = "ci", table: str = "budget_comparison") -> Claim:
    return _inst(name, text, table, "budget_quality_vs_seconds", style)


BUDGET_MC_SECONDS = _budget(
    "budget_mc_seconds", "equal budget: MC's labeling seconds (base set)", "count"
)
BUDGET_MC_TRAJECTORIES = _budget(
    "budget_mc_trajectories", "equal budget: MC's trajectories", "count"
)
BUDGET_CPMI_TRAJECTORIES = _budget(
    "budget_cpmi_trajectories", "equal budget: CPMI's trajectories in MC's time", "count"
)
BUDGET_MC_PRM_F1 = _budget("budget_mc_prm_f1", "equal budget: F1 of the MC PRM")
BUDGET_CPMI_PRM_F1 = _budget("budget_cpmi_prm_f1", "equal budget: F1 of the CPMI PRM")
BUDGET_CPMI_VS_MC_P = _budget(
    "budget_cpmi_vs_mc_p",
    "equal budget: CPMI vs MC PRM, Best-of-N exact McNemar p",
    "p",
    "budget_mcnemar",
)

# ----------------------------------------------------------------------------- real text


def _real(name: str, text: str, table: str = "real_gsm8k_bo4") -> Claim:
    return Claim(name, text, "real_gsm8k_verifier", table, "real_gsm8k_verifier")


REAL_CPMI_AUROC = _real(
    "real_gsm8k_cpmi_auroc_vs_correct",
    "real GSM8K, SmolLM2-135M zero-shot: solution AUROC of step CPMI (min) vs is_correct",
    "real_gsm8k_auroc",
)
REAL_BO4_CPMI = _real("real_gsm8k_bo4_cpmi", "real GSM8K: Best-of-4 by CPMI (min step)")
REAL_BO4_MAJORITY = _real("real_gsm8k_bo4_majority", "real GSM8K: Best-of-4 by majority vote")
REAL_BO4_RANDOM = _real("real_gsm8k_bo4_random", "real GSM8K: Best-of-4 by a random pick")
REAL_PASS4 = _real("real_gsm8k_pass4", "real GSM8K: oracle (pass@4)")

# ----------------------------------------------------------------------------- the registry

#: Every claim, in the order of `results/README.md`'s claims table.
CLAIMS: tuple[Claim | Family, ...] = (
    *NATURAL_F1.values(),
    *NATURAL_P.values(),
    OUTCOME_PRM_BON,
    BON_MDD,
    OUTCOME_AUROC,
    *WITHIN_WRONG.values(),
    LABELING_TIME,
    GENERATED_TOKENS,
    BEST_LABELER_CPMI_AUROC,
    BEST_LABELER_CPMI_WITHIN,
    BEST_LABELER_MC_AUROC,
    *BEST_LABELER_PRM_F1.values(),
    *BEST_LABELER_P.values(),
    *PRM_F1.values(),
    TRUTH_PRM_BON,
    *BASELINE_BON.values(),
    TRUTH_PRM_VS_MAJORITY_P,
    AUROC_VS_TRUTH["cpmi"],
    CPMI_AUROC_WITHIN_POSITION,
    AUROC_VS_TRUTH["mc"],
    AUROC_VS_TRUTH["position"],
    BUDGET_MC_SECONDS,
    BUDGET_MC_TRAJECTORIES,
    BUDGET_CPMI_TRAJECTORIES,
    BUDGET_MC_PRM_F1,
    BUDGET_CPMI_PRM_F1,
    BUDGET_CPMI_VS_MC_P,
    REAL_CPMI_AUROC,
    REAL_BO4_CPMI,
    REAL_BO4_MAJORITY,
    REAL_BO4_RANDOM,
    REAL_PASS4,
    LABELER_ANTICIPATION,
    LABELER_CPMI_AUROC,
    LABELER_MC_AUROC,
    LABELER_CPMI_SECONDS,
    LABELER_MC_SECONDS,
)


def all_claims(default_grid_only: bool = False) -> tuple[Claim, ...]:
    """Every declared claim, families expanded (to the default grid's values only, if asked)."""
    out: list[Claim] = []
    for c in CLAIMS:
        out += c.members(default_grid_only) if isinstance(c, Family) else [c]
    return tuple(out)


def declared_names() -> frozenset[str]:
    """The `results/headline.json` names any preset may record."""
    return frozenset(c.name for c in all_claims() if c.recorded)


def default_grid_names(measured_only: bool = True) -> frozenset[str]:
    """The `results/headline.json` names the default grid records: every one, or (by default)
    those its committed run has measured, leaving out the claims awaiting a rerun."""
    return frozenset(
        c.name
        for c in all_claims(default_grid_only=True)
        if c.recorded and not (measured_only and c.awaiting_rerun)
    )


def awaiting_rerun() -> tuple[Claim, ...]:
    """The declared claims whose code landed after the default grid's last committed run."""
    return tuple(c for c in all_claims() if c.awaiting_rerun)


def undeclared(names: Iterable[str]) -> list[str]:
    """Those of `names` (e.g. a headline file's) that no claim declares, sorted."""
    return sorted(set(names) - declared_names())
