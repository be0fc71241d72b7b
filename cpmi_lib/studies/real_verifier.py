"""CPMI on real text from a real pretrained LM: GSM8K's model solutions scored zero-shot.

GSM8K's test questions come with four GPT-3 solutions each (`example_model_solutions.jsonl`, in
``../shared/data/gsm8k/`` beside the checkout), each flagged `is_correct`. Every solution's steps
are scored with CPMI from SmolLM2-135M-Instruct (the one pretrained LM this machine has offline),
prompted through its chat template; no PRM is trained. CPMI needs the gold answer, so this
measures what a *label source* must do on real text (score right solutions above wrong ones), not
a verifier one could deploy without the answer: the oracle (pass@4), which also knows the gold,
bounds it.

Reported (`auroc_table`, `best_of_4`): the solution-level AUROC of the min, last and mean step
CPMI against `is_correct`, pooled and within problems (problem-clustered bootstrap CIs), with a
shuffled-label control; Best-of-4 accuracy of CPMI, majority vote, a random pick and the oracle,
with exact McNemar tests. The Best-of-4 aggregate is fixed before any measurement (`min`, the PRM
convention), never chosen on these problems. Scoring goes through the labeling CLI's engine
(`cpmi_lib.labeling.label_file.label_file`): resumable, and a solution that cannot be scored is
skipped and
counted, never silently lost.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.costs import Costs
from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.paths import cache_root
from cpmi_lib.core.roc import stratified_auroc, stratified_auroc_ci
from cpmi_lib.core.text_format import CHAT_INSTRUCTIONS, chat_prompt_template
from cpmi_lib.core.trajectory import RecordError, Trajectory, write_trajectories
from cpmi_lib.data.loaders import GSM8K_DIR, GSM8K_SOLUTION_KEYS, load_gsm8k_model_solutions
from cpmi_lib.eval.best_of_n import (
    Aggregation,
    Candidate,
    Pool,
    aggregate,
    best_of_n_curves,
    compare,
)
from cpmi_lib.labeling.cpmi import CPMIConfig, Variant
from cpmi_lib.labeling.label_file import LabelConfig, label_file
from cpmi_lib.labeling.label_results import describe_skip, read_labels
from cpmi_lib.lm.identity import model_identity
from cpmi_lib.lm.load import ensure_smollm2, load_lm
from cpmi_lib.report import claims
from cpmi_lib.report.headline import Headline, put_entry

SOLUTIONS_FILE = "example_model_solutions.jsonl"
AGGREGATES: tuple[Aggregation, ...] = ("min", "last", "mean")
#: The selectors of the Best-of-4 table (`cpmi_lib.eval.best_of_n` method names).
SELECTORS = ("prm:min", "prm:last", "prm:mean", "majority", "random", "pass@n")


@dataclass(frozen=True)
class VerifierConfig:
    """What the zero-shot verifier run scores, and how."""

    problems: int = 40  # the first GSM8K test problems of the solutions file, 4 solutions each
    variant: Variant = "cumulative"
    templates: int = 1  # K: the first K of CHAT_INSTRUCTIONS
    n_negatives: int = 1
    selection: Aggregation = "min"  # the Best-of-4 headline aggregate, fixed in advance
    seed: int = 0

    def __post_init__(self) -> None:
        if self.problems < 1:
            raise ValueError(f"problems must be >= 1, got {self.problems}")
        if not 1 <= self.templates <= len(CHAT_INSTRUCTIONS):
            raise ValueError(f"templates must be in 1..{len(CHAT_INSTRUCTIONS)}")
        if self.selection not in AGGREGATES:
            raise ValueError(f"selection must be one of {AGGREGATES}, got {self.selection!r}")

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def gsm8k_solutions_path(folder: str | os.PathLike[str] | None = None) -> Path:
    """The solutions file, or a FileNotFoundError that says where it was looked for."""
    path = Path(folder or GSM8K_DIR) / SOLUTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the real GSM8K files live in ../shared/data/gsm8k beside the "
            "checkout (or set CPMI_GSM8K_DIR)"
        )
    return path


def read_solutions(path: Path, problems: int) -> tuple[list[Trajectory], list[RecordError]]:
    """The first `problems` problems' solutions (4 each) and the rows skipped as invalid."""
    errors: list[RecordError] = []
    solutions = load_gsm8k_model_solutions(
        path, skip_invalid=True, errors=errors, limit=problems * len(GSM8K_SOLUTION_KEYS)
    )
    return solutions, errors


@dataclass
class VerifierScores:
    """One row per scored solution, what scoring cost, and what was dropped."""

    frame: pd.DataFrame  # problem, solver, is_correct, final_answer, n_steps, cpmi_<agg>
    costs: Costs
    dropped: list[str]  # "<where>: <field>: <problem>", rows and solutions not scored
    model: str
    templates: tuple[str, ...]


def score_solutions(
    cfg: VerifierConfig,
    cache: str | os.PathLike[str] | None = None,
    gsm8k: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> VerifierScores:
    """CPMI of every step of every solution of the first `cfg.problems` problems, from
    SmolLM2-135M-Instruct; resumed from ``<cache>/real-gsm8k/verifier-<key>/`` if interrupted
    (`cache`: ``$CPMI_CACHE``, else the repository's ``.cache``)."""
    cache = Path(cache) if cache else cache_root()
    solutions, row_errors = read_solutions(gsm8k_solutions_path(gsm8k), cfg.problems)
    if not solutions:
        raise ValueError("no GSM8K model solution could be read; see the skipped rows")
    model_dir = ensure_smollm2(cache)
    model, tokenizer = load_lm(model_dir)
    templates = tuple(
        chat_prompt_template(tokenizer, t) for t in CHAT_INSTRUCTIONS[: cfg.templates]
    )
    work = cache / "real-gsm8k" / f"verifier-{cfg.key()}"
    work.mkdir(parents=True, exist_ok=True)
    inputs, labels = work / "solutions.jsonl", work / "cpmi.jsonl"
    write_trajectories(inputs, solutions)
    label_cfg = LabelConfig(
        method="cpmi",
        cpmi=CPMIConfig(variant=cfg.variant, templates=templates),
        n_negatives=cfg.n_negatives,
        seed=cfg.seed,
    )
    skipped: list[dict[str, Any]] = []
    costs = label_file(
        model,
        tokenizer,
        str(model_dir.name),
        inputs,
        labels,
        label_cfg,
        resume=True,
        skip_invalid=True,
        progress=progress,
        skipped=skipped,
        model_identity=model_identity(model_dir),
    )
    dropped = [str(e) for e in row_errors]  # "<file> line <n>: field '<f>': <problem>"
    dropped += [f"{inputs.name} {describe_skip(s)}" for s in skipped]
    by_id = {t.id: t for t in solutions}
    rows = []
    for record in read_labels(labels):
        traj = by_id[record["id"]]
        steps = [s["cpmi"] for s in record["steps"]]
        rows.append(
            {
                "id": traj.id,
                "problem": traj.id.removesuffix(f"-{traj.metadata['model']}"),
                "solver": traj.metadata["model"],
                "is_correct": bool(traj.metadata["is_correct"]),
                "final_answer": traj.final_answer,
                "n_steps": traj.n_steps,
                **{f"cpmi_{how}": aggregate(steps, how) for how in AGGREGATES},
                "step_cpmi": steps,
            }
        )
    return VerifierScores(pd.DataFrame(rows), costs, dropped, model_dir.name, templates)


def auroc_table(frame: pd.DataFrame, seed: int = 0, n_resamples: int = 2000) -> pd.DataFrame:
    """Per aggregate of the step CPMI: the AUROC against `is_correct` pooled over solutions and
    within problems (a problem with only right or only wrong solutions adds no pair), each with a
    CI that resamples whole problems (a problem's four solutions are not independent), and the
    pooled AUROC after shuffling `is_correct` across solutions (the control: about 0.5, or the
    pipeline leaks the label)."""
    truth = frame["is_correct"].to_numpy(bool)
    problems = frame["problem"].to_numpy()
    one = np.zeros(len(frame), dtype=int)
    shuffled = np.random.default_rng(seed).permutation(truth)
    rows = []
    for how in AGGREGATES:
        scores = frame[f"cpmi_{how}"].to_numpy(float)
        pooled = stratified_auroc(scores, truth, one).auroc
        within = stratified_auroc(scores, truth, problems)
        options = Resampling(n_resamples=n_resamples, seed=seed)
        pooled_ci = _ci(pooled, scores, truth, one, problems, options)
        within_ci = _ci(within.auroc, scores, truth, problems, problems, options)
        rows.append(
            {
                "aggregate": how,
                "auroc": pooled,
                "ci_low": pooled_ci[0],
                "ci_high": pooled_ci[1],
                "auroc_within_problem": within.auroc,
                "within_ci_low": within_ci[0],
                "within_ci_high": within_ci[1],
                "shuffled_auroc": stratified_auroc(scores, shuffled, one).auroc,
                "n_solutions": len(frame),
                "n_correct": int(truth.sum()),
                "n_problems": len(set(problems)),
                "within_pairs": within.n_pairs,
            }
        )
    return pd.DataFrame(rows)


def _ci(
    value: float | None,
    scores: np.ndarray,
    truth: np.ndarray,
    strata: np.ndarray,
    clusters: np.ndarray,
    options: Resampling,
) -> tuple[float, float]:
    if value is None:
        return float("nan"), float("nan")
    return stratified_auroc_ci(scores, truth, strata, clusters, options)


def pools(frame: pd.DataFrame) -> list[Pool]:
    """One Best-of-4 pool per problem, solutions in the file's order, CPMI steps as scores; a
    problem with a solution dropped has no pool (it would be Best-of-3)."""
    out = []
    for problem, group in frame.groupby("problem", sort=False):
        if len(group) != len(GSM8K_SOLUTION_KEYS):
            continue
        candidates = [
            Candidate(
                None if pd.isna(row.final_answer) else str(row.final_answer),  # none stated
                bool(row.is_correct),
                list(row.step_cpmi),
            )
            for row in group.itertuples(index=False)
        ]
        out.append(Pool(str(problem), candidates))
    if not out:
        raise ValueError("no problem has all four solutions scored")
    return out


def best_of_4(
    frame: pd.DataFrame, cfg: VerifierConfig, n_resamples: int = 2000
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Best-of-4 accuracy per selector (with CIs over problems) and exact McNemar tests of the
    headline CPMI selector (`cfg.selection`) against majority vote and the random pick."""
    curves = best_of_n_curves(
        pools(frame),
        ns=(len(GSM8K_SOLUTION_KEYS),),
        methods=SELECTORS,
        seed=cfg.seed,
        same_answer=answers_equivalent,
        n_resamples=n_resamples,
    )
    n = len(GSM8K_SOLUTION_KEYS)
    headline = f"prm:{cfg.selection}"
    tests = []
    for other in ("majority", "random"):
        result = compare(curves, headline, curves, other, n)
        tests.append(
            {
                "a": f"CPMI ({cfg.selection})",
                "b": other,
                "a_accuracy": result.a_accuracy,
                "b_accuracy": result.b_accuracy,
                "a_only": result.table[0][1],
                "b_only": result.table[1][0],
                "p_value": result.p_value,
                "n_problems": result.n,
            }
        )
    table = curves.drop(columns=["correct", "n"]).assign(
        selector=lambda d: d["method"].map(_selector_name)
    )
    return table[["selector", "accuracy", "ci_low", "ci_high", "n_problems"]], pd.DataFrame(tests)


def _selector_name(method: str) -> str:
    if method.startswith("prm:"):
        return f"CPMI ({method.removeprefix('prm:')} step)"
    return {"majority": "majority vote", "random": "random", "pass@n": "oracle (pass@4)"}[method]


def headline_entries(
    aurocs: pd.DataFrame, bo4: pd.DataFrame, cfg: VerifierConfig
) -> dict[str, Headline]:
    """The `real_gsm8k_*` names of `results/headline.json`."""
    out: dict[str, Headline] = {}
    row = aurocs.set_index("aggregate").loc[cfg.selection]
    put_entry(
        out,
        claims.REAL_CPMI_AUROC,
        row["auroc"],
        (row["ci_low"], row["ci_high"]),
        int(row["n_solutions"]),
    )
    by = bo4.set_index("selector")
    selectors = {
        claims.REAL_BO4_CPMI: _selector_name(f"prm:{cfg.selection}"),
        claims.REAL_BO4_MAJORITY: "majority vote",
        claims.REAL_BO4_RANDOM: "random",
        claims.REAL_PASS4: "oracle (pass@4)",
    }
    for claim, selector in selectors.items():
        r = by.loc[selector]
        put_entry(out, claim, r["accuracy"], (r["ci_low"], r["ci_high"]), int(r["n_problems"]))
    return out


def setup_table(cfg: VerifierConfig, scores: VerifierScores, seconds: float) -> pd.DataFrame:
    """What the run scored and with what, as one table (the sizes are the preset's)."""
    frame = scores.frame
    items = {
        "labeling LM": f"SmolLM2-135M-Instruct ({scores.model}), float32, CPU",
        "problems (GSM8K test, first n)": frame["problem"].nunique(),
        "solutions scored (GPT-3, 4 per problem)": len(frame),
        "of them correct": int(frame["is_correct"].sum()),
        "steps scored": int(frame["n_steps"].sum()),
        "dropped (unreadable or unscorable)": len(scores.dropped),
        "CPMI variant": cfg.variant,
        "K (chat prompt templates)": len(scores.templates),
        "M (hard negatives)": cfg.n_negatives,
        "Best-of-4 aggregate (fixed in advance)": cfg.selection,
        "CPMI seconds (all runs of this cache)": round(scores.costs.wall_seconds, 1),
        "seconds of this run (scoring, loading, statistics)": round(seconds, 1),
    }
    return pd.DataFrame({"setting": list(items), "value": [str(v) for v in items.values()]})
