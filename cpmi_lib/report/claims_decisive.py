"""The decisive comparison's claims (issue 21; `cpmi_lib.studies.decisive`), part of the one
registry `cpmi_lib.report.claims.CLAIMS`; the default grid's committed results hold each."""

from __future__ import annotations

from cpmi_lib.report.claim_types import BON_ELSEWHERE, BON_NS, Claim, Family, Style


def _decisive(
    name: str, text: str, table: str = "decisive", style: Style = "ci", row: bool = True
) -> Claim:
    return Claim(name, text, "decisive", table, "decisive", style=style, row=row)


#: F1 on the benchmark of natural errors (`cpmi_lib.studies.decisive`), keyed by source.
NATURAL_F1 = {
    "surprise": _decisive(
        "natural_surprise_f1", "natural errors: the policy LM's untrained surprise, F1"
    ),
    "truth": _decisive("natural_truth_prm_f1", "natural errors: F1 of the PRM from exact truth"),
    "mc": _decisive("natural_mc_prm_f1", "natural errors: F1 of the PRM from MC labels"),
    "outcome": _decisive(
        "natural_outcome_prm_f1", "natural errors: F1 of the PRM from outcome labels (free)"
    ),
    "best cpmi": _decisive(
        "natural_best_cpmi_prm_f1", "natural errors: F1 of the PRM from the best labeler's CPMI"
    ),
    "position": _decisive(
        "natural_position_prm_f1", "natural errors: F1 of the PRM from position labels (floor)"
    ),
}
#: Paired-bootstrap p of the F1 difference on the natural benchmark, keyed by (a, b).
NATURAL_P = {
    ("best cpmi", "outcome"): _decisive(
        "natural_best_cpmi_vs_outcome_f1_p",
        "natural errors: best labeler's CPMI PRM vs outcome PRM, paired-bootstrap F1 p",
        "decisive_paired",
        "p",
    ),
    ("best cpmi", "mc"): _decisive(
        "natural_best_cpmi_vs_mc_f1_p",
        "natural errors: best labeler's CPMI PRM vs MC PRM, paired-bootstrap F1 p",
        "decisive_paired",
        "p",
    ),
    ("truth", "surprise"): _decisive(
        "natural_truth_vs_surprise_f1_p",
        "natural errors: truth PRM vs untrained surprise, paired-bootstrap F1 p",
        "decisive_paired",
        "p",
    ),
}
#: Step AUROC among the steps of wrong-answer trajectories (outcome is 0.5 by construction).
WITHIN_WRONG = {
    "outcome": _decisive(
        "outcome_auroc_within_wrong_answers",
        "outcome labels: step AUROC within wrong answers (0.5 by construction)",
        "auroc_within_wrong_answers",
    ),
    "best_cpmi": _decisive(
        "best_labeler_cpmi_auroc_within_wrong_answers",
        "best labeler's CPMI: step AUROC within wrong answers",
        "auroc_within_wrong_answers",
    ),
    "best_mc": _decisive(
        "best_labeler_mc_auroc_within_wrong_answers",
        "best labeler's MC: step AUROC within wrong answers",
        "auroc_within_wrong_answers",
    ),
}
OUTCOME_AUROC = _decisive(
    "outcome_auroc_vs_truth",
    "outcome labels: step AUROC vs exact truth",
    "auroc_within_wrong_answers",
)


def _decisive_bon(template: str, text: str, style: Style = "ci") -> Family:
    return Family(
        template,
        text,
        "decisive",
        BON_NS,
        BON_ELSEWHERE,
        "decisive_bon",
        "decisive",
        style,
    )


OUTCOME_PRM_BON = _decisive_bon(
    "outcome_prm_bon{}", "outcome PRM: Best-of-{} (aggregation chosen on dev)"
)
BON_MDD = _decisive_bon(
    "bon{}_min_detectable_difference",
    "Best-of-{}: smallest difference the McNemar tests detect (80% power, largest of the pairs)",
    "count",
)
