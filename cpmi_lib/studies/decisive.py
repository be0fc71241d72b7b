"""The decisive comparison (issue 21): every label source's PRM, side by side, on the benchmark of
natural errors, with the free controls and the tests that say what the sizes can tell.

- Sources (`decisive_sources`): PRMs from exact truth, MC (the policy's rollouts, and the best
  labeler's), outcome labels (free once answers are graded), the best labeler's CPMI (its
  dev-chosen setting), today's CPMI, CPMI without the trajectory's own answer among its
  negatives, and position-only labels; the untrained LM surprise as the no-training baseline.
- `benchmark_table`: each one's first-error F1 (τ chosen on dev) on the natural and the synthetic
  benchmark, and its Best-of-N at the largest N (aggregation chosen on the dev pool).
- `paired_f1_tests`: paired bootstraps of the F1 difference over the same benchmark items, with
  the smallest difference each could have detected; `bon_tests`: exact McNemar with the same.
- `wrong_answer_table`: step AUROC among the steps of wrong-answer trajectories, where the
  outcome is constant (outcome labels score 0.5 by construction), so a source scores higher only
  by locating the error; pooled and within step position, on the same steps for every source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.power import mcnemar_mdd_for_outcomes
from cpmi_lib.core.roc import auroc
from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.eval.best_of_n import compare, outcomes
from cpmi_lib.eval.evaluate import StepScorer
from cpmi_lib.eval.paired import paired_f1_difference
from cpmi_lib.eval.processbench import first_errors, predict_first_error
from cpmi_lib.experiment.config import ExperimentConfig, Labeler
from cpmi_lib.experiment.natural import NATURAL, SYNTHETIC
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.labeling.label_results import read_labels, total_costs
from cpmi_lib.labeling.position import cross_fit_scores
from cpmi_lib.labeling.wrong_answers import UndefinedAUROC, wrong_answer_auroc
from cpmi_lib.report import claims
from cpmi_lib.report.headline import Headline, put_entry
from cpmi_lib.studies.instrument import label_scores
from cpmi_lib.studies.labeler_axis import best_labeler, chosen_experiment
from cpmi_lib.studies.truth_prm import SURPRISE, LMSurprise


@dataclass(frozen=True)
class Source:
    """A PRM of the comparison: the experiment that trains it and its name there."""

    exp: Experiment
    prm: str


#: The rows of the decisive table, in order: what each is.
ABOUT = {
    "truth": "exact step truth (the ceiling)",
    "mc": "MC from the policy's rollouts",
    "best mc": "MC from the best labeler's rollouts",
    "outcome": "the final answer's correctness on every step (free)",
    "best cpmi": "CPMI from the best labeler (its dev-chosen setting)",
    "cpmi": "CPMI from the policy as labeler (today's setting)",
    "cpmi no own answer": "CPMI, negatives never the trajectory's own answer",
    "position": "step position only (the floor)",
}
#: The paired F1 tests: (a, b) — the decisive questions first.
PAIRS: tuple[tuple[str, str], ...] = (
    ("best cpmi", "outcome"),
    ("best cpmi", "mc"),
    ("best cpmi", "best mc"),
    ("truth", "surprise"),
    ("truth", "mc"),
    ("truth", "outcome"),
    ("mc", "outcome"),
    ("best cpmi", "position"),
    ("outcome", "position"),
    ("cpmi", "cpmi no own answer"),
)
#: The Best-of-N McNemar tests: the decisive pairs and the free controls against each other.
BON_PAIRS: tuple[tuple[str, str], ...] = (*PAIRS[:3], ("outcome", "position"))


def decisive_sources(
    cfg: ExperimentConfig, labelers: Sequence[Labeler], results: dict[str, dict[str, Any]]
) -> dict[str, Source]:
    """The PRMs of `ABOUT`: the experiment as configured, and the best labeler's (chosen on dev
    by `cpmi_lib.studies.labeler_axis`)."""
    base = Experiment(cfg)
    best_name = best_labeler(results)
    best = chosen_experiment(cfg, {x.name: x for x in labelers}[best_name], results[best_name])
    return {
        "truth": Source(base, "truth"),
        "mc": Source(base, "mc"),
        "best mc": Source(best, "mc"),
        "outcome": Source(base, "outcome"),
        "best cpmi": Source(best, "cpmi"),
        "cpmi": Source(base, "cpmi"),
        "cpmi no own answer": Source(base, "cpmi_noself"),
        "position": Source(base, "position"),
    }


def natural_scorable(exp: Experiment) -> dict[str, Any]:
    """Whether every subset of the natural benchmark has both all-correct and erroneous items in
    dev and test (F1 needs both), with the counts that say why not."""
    counts = {
        split: {
            s: [sum(t.first_error == -1 for t in items), sum(t.first_error != -1 for t in items)]
            for s, items in exp.natural_benchmark(split).items()
        }
        for split in ("dev", "test")
    }
    ok = all(a > 0 and e > 0 for split in counts.values() for a, e in split.values())
    return {
        "scorable": ok,
        "benchmarks": (NATURAL, SYNTHETIC) if ok else (SYNTHETIC,),
        "all-correct, erroneous items per subset": counts,
    }


def source_record(source: Source, benchmark: str) -> dict[str, Any]:
    return source.exp.processbench(source.prm, benchmark)


def _scorer(source: Source) -> StepScorer:
    return source.exp.load_prm(source.prm)


def surprise_record(exp: Experiment, benchmark: str) -> dict[str, Any]:
    return exp.scored_processbench(SURPRISE, lambda: LMSurprise(*exp.lm()), benchmark)


def benchmark_table(
    sources: dict[str, Source], benchmarks: Sequence[str] = (NATURAL, SYNTHETIC)
) -> pd.DataFrame:
    """One row per (source, benchmark): F1 with CI and τ from dev; Best-of-N at the largest N
    with the dev-chosen aggregation (the same for both benchmarks); surprise rows have no PRM."""
    base = sources["truth"].exp
    n = max(base.cfg.bon_ns)
    rows = []
    for benchmark in benchmarks:
        for name, source in sources.items():
            rec = source_record(source, benchmark)
            bon = source.exp.best_of_n(source.prm).set_index(["method", "n"])
            method = source.exp.bon_method(source.prm)
            b = bon.loc[(method, n)]
            rows.append(
                f1_row(name, benchmark, rec)
                | {
                    f"bon{n}": float(b["accuracy"]),
                    f"bon{n}_ci": [float(b["ci_low"]), float(b["ci_high"])],
                    "bon_method_from_dev": method,
                    "bon_problems": int(b["n_problems"]),
                    "labeling_seconds": labeling_seconds(source),
                }
            )
        rows.append(f1_row("surprise", benchmark, surprise_record(base, benchmark)))
    return pd.DataFrame(rows)


def labeling_seconds(source: Source) -> float | None:
    """Wall seconds of labeling the source's training set with an LM (CPMI, MC), as its label
    file's records measured them; None for truth, outcome and position (no LM labels them)."""
    if source.prm not in ("cpmi", "cpmi_noself", "mc"):
        return None
    return total_costs(read_labels(source.exp.labels(source.prm, "train"))).wall_seconds


def f1_row(name: str, benchmark: str, rec: dict[str, Any]) -> dict[str, Any]:
    test = rec["test"]
    return {
        "source": name,
        "about": ABOUT.get(name, "the policy LM's untrained surprise (min token probability)"),
        "benchmark": benchmark,
        "f1": test["headline_f1"],
        "f1_ci": list(test["headline_ci"]),
        "tau_from_dev": rec["threshold_from_dev"],
        "items": sum(s["n_error"] + s["n_correct"] for s in test["subsets"].values()),
    }


def first_error_predictions(
    scorer: StepScorer, tau: float, items: dict[str, list[Trajectory]]
) -> dict[str, list[int]]:
    """Each item's predicted first error at threshold `tau` (the one chosen on dev)."""
    return {
        s: [predict_first_error(p, tau) for p in scorer.predict(trajs)]
        for s, trajs in items.items()
    }


def paired_f1_tests(
    sources: dict[str, Source],
    benchmark: str = NATURAL,
    pairs: Sequence[tuple[str, str]] = PAIRS,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired bootstrap of F1(a) − F1(b) over the same test items of `benchmark` (each side at
    its own τ from dev): difference, CI, p and the smallest difference detectable at this size."""
    base = sources["truth"].exp
    items = base.benchmark(benchmark, "test")
    truth = {s: first_errors(trajs) for s, trajs in items.items()}
    preds: dict[str, dict[str, list[int]]] = {}
    for name in {x for pair in pairs for x in pair}:
        if name == "surprise":
            rec, scorer = surprise_record(base, benchmark), LMSurprise(*base.lm())
        else:
            rec, scorer = source_record(sources[name], benchmark), _scorer(sources[name])
        preds[name] = first_error_predictions(scorer, rec["threshold_from_dev"], items)
    rows = []
    for a, b in pairs:
        res = paired_f1_difference(truth, preds[a], preds[b], Resampling(seed=seed))
        d = res.to_dict()
        rows.append({"a": a, "b": b, "benchmark": benchmark} | d)
    return pd.DataFrame(rows)


def bon_tests(
    sources: dict[str, Source], pairs: Sequence[tuple[str, str]] = BON_PAIRS
) -> pd.DataFrame:
    """Exact McNemar at the largest N over the same Best-of-N problems (each PRM with its own
    dev-chosen aggregation), with the smallest difference detectable at that size (80% power,
    α = 0.05, at the pair's observed discordance: a planning figure, not post-hoc power)."""
    n = max(sources["truth"].exp.cfg.bon_ns)
    rows = []
    for a, b in pairs:
        ea, eb = sources[a], sources[b]
        ca, cb = ea.exp.best_of_n(ea.prm), eb.exp.best_of_n(eb.prm)
        ma, mb = ea.exp.bon_method(ea.prm), eb.exp.bon_method(eb.prm)
        res = compare(ca, ma, cb, mb, n)
        mdd = mcnemar_mdd_for_outcomes(outcomes(ca, ma, n), outcomes(cb, mb, n))
        rows.append(
            {"a": a, "b": b, "best_of": n}
            | res.to_dict()
            | {"min_detectable_difference": mdd.min_detectable_difference}
        )
    return pd.DataFrame(rows)


def labeler_experiments(
    cfg: ExperimentConfig, labelers: Sequence[Labeler], results: dict[str, dict[str, Any]]
) -> dict[str, Experiment]:
    """Each labeler's experiment at its dev-chosen CPMI setting (its labels, cached)."""
    return {x.name: chosen_experiment(cfg, x, results[x.name]) for x in labelers}


def wrong_answer_table(
    sources: dict[str, Source], labeler_exps: dict[str, Experiment], n_trajectories: int
) -> pd.DataFrame:
    """Step AUROC vs the exact truth of each label source on the same steps (the first
    `n_trajectories` training samples): pooled over all steps, and among wrong-answer
    trajectories' steps pooled and within step position. CPMI of every labeler (its dev-chosen
    setting), MC of the policy and of the best labeler, outcome, position."""
    base = sources["truth"].exp
    n = n_trajectories
    trajs = read_trajectories(base.policy_samples("train"))[:n]
    scores = {
        f"cpmi ({name})": label_scores(e, "cpmi", "cpmi", trajs, n)
        for name, e in labeler_exps.items()
    }
    scores |= {
        "mc": label_scores(base, "mc", "value", trajs, n),
        "best mc": label_scores(sources["best mc"].exp, "mc", "value", trajs, n),
        "outcome": label_scores(base, "outcome", "value", trajs, n),
        "position": cross_fit_scores(trajs, seed=base.cfg.seed),
    }
    rows = []
    for name, s in scores.items():
        flat = [x for row in s for x in row]
        truth = [bool(x) for t in trajs for x in t.step_labels]
        try:
            res = wrong_answer_auroc(trajs, s, options=Resampling(seed=base.cfg.seed))
        except UndefinedAUROC as exc:  # e.g. a tiny run without both kinds of wrong steps
            rows.append(
                {"labels": name, "steps": len(flat), "auroc_pooled": _auroc_or_none(flat, truth)}
                | {"note": str(exc)}
            )
            continue
        rows.append(
            {"labels": name, "steps": len(flat), "auroc_pooled": _auroc_or_none(flat, truth)}
            | {
                "auroc_within_wrong_answers": res.value,
                "ci": list(res.ci) if res.ci else None,
                "within_wrong_answers_and_position": res.within_position,
                "within_position_ci": list(res.within_position_ci)
                if res.within_position_ci
                else None,
                "wrong_answer_steps": res.n_steps,
                "wrong_answer_trajectories": res.n_trajectories,
            }
        )
    return pd.DataFrame(rows)


def _auroc_or_none(scores: list[float], truth: list[bool]) -> float | None:
    """Pooled AUROC, None where the steps hold one class (a tiny run): never NaN."""
    return auroc(scores, truth) if 0 < sum(truth) < len(truth) else None


def headline_entries(
    table: pd.DataFrame,
    paired: pd.DataFrame | None,
    bon: pd.DataFrame,
    wrong: pd.DataFrame,
    best_labeler_name: str,
) -> dict[str, Headline]:
    """The decisive comparison's numbers for `results/headline.json` (`claims.DECISIVE_*`)."""
    out: dict[str, Headline] = {}
    n = int(bon["best_of"].max())
    natural = table[table["benchmark"] == NATURAL].set_index("source")
    if paired is not None and len(natural):
        for key, claim in claims.NATURAL_F1.items():
            r = natural.loc[key]
            put_entry(out, claim, float(r["f1"]), tuple(r["f1_ci"]), int(r["items"]))
        p = paired.set_index(["a", "b"])
        for (a, b), claim in claims.NATURAL_P.items():
            r = p.loc[(a, b)]
            put_entry(out, claim, float(r["p_value"]), None, int(r["n"]))
    rows = table[table["benchmark"] == SYNTHETIC].set_index("source")
    o = rows.loc["outcome"]
    put_entry(
        out,
        claims.OUTCOME_PRM_BON[n],
        float(o[f"bon{n}"]),
        tuple(o[f"bon{n}_ci"]),
        int(o["bon_problems"]),
    )
    put_entry(
        out,
        claims.BON_MDD[n],
        float(bon["min_detectable_difference"].max()),
        None,
        int(o["bon_problems"]),
    )
    w = wrong.set_index("labels")
    for key, label in (
        ("outcome", "outcome"),
        ("best_cpmi", f"cpmi ({best_labeler_name})"),
        ("best_mc", "best mc"),
    ):
        r = w.loc[label]
        if pd.notna(r.get("auroc_within_wrong_answers")):  # undefined in a tiny run: left out
            ci = r["ci"]
            put_entry(
                out,
                claims.WITHIN_WRONG[key],
                float(r["auroc_within_wrong_answers"]),
                tuple(ci) if isinstance(ci, list | tuple) else None,
                int(r["wrong_answer_steps"]),
            )
    if pd.notna(w.loc["outcome", "auroc_pooled"]):
        put_entry(
            out,
            claims.OUTCOME_AUROC,
            float(w.loc["outcome", "auroc_pooled"]),
            None,
            int(w.loc["outcome", "steps"]),
        )
    return out
