"""What a labeling LM can do, measured: its answer anticipation and its label quality.

CPMI assumes a labeling LM whose belief in the final answer follows the progress of a partial
solution; `cpmi_lib.studies.labeler_axis` defines labelers that differ in that skill. Per labeler
this
module measures

- `anticipation_skill`: the probability it gives the gold answer after a correct prefix, by the
  number of steps left, and after the first wrong step the gold answer vs the answer the wrong
  chain leads to (dev problems of the world, gold and corrupted solutions);
- `labeler_quality`: step AUROC against the exact truth on the first policy samples of a split,
  for the three CPMI variants and M ∈ {1, 4} negatives, the gold-only and negative-only terms,
  pooled and within step position, next to MC from the same labeler, with seconds per step of
  each.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.intervals import Resampling, interval
from cpmi_lib.core.roc import auroc_ci
from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.data.world import Problem
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.labeling.cpmi import (
    VARIANTS,
    CPMIConfig,
    answer_deltas,
    combine_terms,
    cpmi_requests,
)
from cpmi_lib.labeling.label_file import trajectory_seed
from cpmi_lib.labeling.label_results import read_labels, total_costs
from cpmi_lib.labeling.negatives import negatives_for_trajectory
from cpmi_lib.labeling.position import position_auroc
from cpmi_lib.lm.logprob import packed_logprobs

#: Numbers of negatives compared along the axis (M = 1 is the paper's best setting).
AXIS_NEGATIVES: tuple[int, ...] = (1, 4)


# ----------------------------------------------------------------------------- the skill


def answer_prefix_length(tokenizer: Any, answer_format: str, answer: str) -> int:
    """How many leading tokens of the answer line (``answer_format`` with `answer`) are its fixed
    prefix ("The answer is:"): the answer's own probability is that of the tokens after them.
    Raises when the prefix does not tokenize as a prefix of the line (then the answer's tokens
    cannot be told apart)."""
    head = answer_format.split("{answer}")[0].rstrip()
    line = tokenizer(answer_format.format(answer=answer), add_special_tokens=False).input_ids
    prefix = tokenizer(head, add_special_tokens=False).input_ids if head else []
    if list(line[: len(prefix)]) != list(prefix) or len(prefix) >= len(line):
        raise ValueError(
            f"the answer format's prefix {head!r} is not a token prefix of {answer_format!r} "
            f"with answer {answer!r} for this tokenizer"
        )
    return len(prefix)


def anticipation_skill(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    cfg: CPMIConfig,
    *,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (problem, context, answer): P(answer | context, "The answer is:"), averaged
    over `cfg.templates`, and the mean per-token log-probability of the whole answer line (CPMI's
    LP with ``length_norm="mean"``).

    Contexts: the gold solution's prefixes with k = 0..S steps (``case="correct"``, answer the
    gold; ``remaining`` = S − k), and a corrupted solution (`corrupt`, one seeded error per
    problem) up to and including its first wrong step (``case="after error"``; answers the gold
    and the wrong chain's final answer)."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    cumulative = replace(cfg, variant="cumulative")
    for p in tqdm(problems, desc="anticipation skill", disable=not progress):
        cases = [("correct", p.gold_steps, [p.answer])]
        wrong = corrupt(p, rng)
        if wrong is not None and wrong.first_error is not None and wrong.final_answer is not None:
            j = wrong.first_error
            cases.append(("after error", wrong.steps[: j + 1], [p.answer, wrong.final_answer]))
        for case, steps, answers in cases:
            probs, lps = _answer_probabilities(
                model, tokenizer, p.question, steps, answers, cumulative
            )
            contexts = range(len(steps) + 1) if case == "correct" else [len(steps)]
            for k in contexts:
                for a, label in enumerate(("gold", "wrong chain")[: len(answers)]):
                    rows.append(
                        {
                            "problem_id": p.id,
                            "case": case,
                            "steps_done": k,
                            "remaining": p.n_steps - k,
                            "answer": label,
                            "p_answer": float(probs[k, a]),
                            "lp_line_mean": float(lps[k, a]),
                        }
                    )
    return pd.DataFrame(rows)


def _answer_probabilities(
    model: Any,
    tokenizer: Any,
    question: str,
    steps: Sequence[str],
    answers: Sequence[str],
    cfg: CPMIConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(contexts, answers) arrays over the cumulative contexts: the answer's probability after
    the line's fixed prefix, and the line's mean token log-probability; both template-averaged."""
    requests, _ = cpmi_requests(tokenizer, question, steps, answers, cfg)
    token_lps = packed_logprobs(model, requests, cfg.max_batch_tokens, cfg.max_row_tokens)
    skips = [answer_prefix_length(tokenizer, cfg.answer_format, a) for a in answers]
    n_t, n_a = len(cfg.templates), len(answers)
    n_c = len(requests) // (n_t * n_a)
    prob = np.empty(len(requests))
    mean = np.empty(len(requests))
    for r, lp in enumerate(token_lps):
        x = lp.double()
        prob[r] = math.exp(float(x[skips[r % n_a] :].sum()))
        mean[r] = float(x.mean())
    shape = (n_t, n_c, n_a)
    return prob.reshape(shape).mean(axis=0), mean.reshape(shape).mean(axis=0)


def skill_summary(skill: pd.DataFrame, *, seed: int = 0) -> dict[str, Any]:
    """The skill in numbers: `anticipation` is the mean probability of the gold answer after a
    correct prefix with at least one step left (each problem weighs the same; bootstrap CI over
    problems); by steps left; after the whole solution; and after the first wrong step, the gold
    answer's and the wrong chain's answer's mean probability and how often the wrong one is
    the likelier."""
    correct = skill[(skill["case"] == "correct") & (skill["answer"] == "gold")]
    early = correct[correct["remaining"] >= 1]
    per_problem = early.groupby("problem_id")["p_answer"].mean()
    lo, hi = interval(np.mean, per_problem.to_numpy(), Resampling(seed=seed))
    out: dict[str, Any] = {
        "anticipation": float(per_problem.mean()),
        "anticipation_ci": [lo, hi],
        "n_problems": int(per_problem.size),
        "p_gold_by_remaining": {
            int(r): float(v) for r, v in correct.groupby("remaining")["p_answer"].mean().items()
        },
        "lp_gold_by_remaining": {
            int(r): float(v) for r, v in correct.groupby("remaining")["lp_line_mean"].mean().items()
        },
    }
    after = skill[skill["case"] == "after error"].pivot_table(
        index="problem_id", columns="answer", values="p_answer"
    )
    if len(after):
        out |= {
            "after_error_p_gold": float(after["gold"].mean()),
            "after_error_p_wrong_chain": float(after["wrong chain"].mean()),
            "after_error_wrong_above_gold": float((after["wrong chain"] > after["gold"]).mean()),
            "n_after_error": int(len(after)),
        }
    return out


# ----------------------------------------------------------------------------- label quality


@dataclass(frozen=True)
class StepTerms:
    """Per step of one trajectory, template-averaged: the gold term and the term of each of up
    to max(M) negatives, in the negatives' order (so M = 1 is the first column)."""

    gold: np.ndarray  # (steps,)
    negatives: np.ndarray  # (steps, negatives)

    def cpmi(self, m: int, neg_weight: float = 1.0) -> np.ndarray:
        return combine_terms(self.gold, self.negative_term(m), neg_weight)

    def negative_term(self, m: int) -> np.ndarray:
        if self.negatives.shape[1] == 0:
            return np.zeros_like(self.gold)
        return self.negatives[:, :m].mean(axis=1)


def step_terms(
    model: Any,
    tokenizer: Any,
    traj: Trajectory,
    cfg: CPMIConfig,
    negatives: Sequence[str],
    meter: CostMeter | None = None,
) -> StepTerms:
    """The CPMI terms of every step with every negative kept apart (`cpmi_step_scores` averages
    them; taking the first m columns gives its value with the first m negatives)."""
    assert traj.gold_answer is not None
    _, delta = answer_deltas(
        model, tokenizer, traj.question, traj.steps, [traj.gold_answer, *negatives], cfg, meter
    )
    delta = delta.numpy()
    return StepTerms(gold=delta[:, 0], negatives=delta[:, 1:])


def labeler_quality(
    exp: Experiment,
    n_trajectories: int,
    *,
    split: str = "train",
    negatives: Sequence[int] = AXIS_NEGATIVES,
    with_mc: bool = True,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Step AUROC against the exact truth of `exp`'s labeler on the first
    `n_trajectories` policy samples of `split`: CPMI for every variant and M in `negatives`, its
    gold-only and negative-only terms, and (`with_mc`) MC from the same labeler; pooled
    (bootstrap CI) and within step position (trajectory-bootstrap CI). Also seconds per step:
    ``cpmi-<variant>`` (with max(M) negatives) and ``mc``."""
    trajs = read_trajectories(exp.policy_samples(split))[:n_trajectories]
    model, tok = exp.labeler_lm()
    seed, m_max = exp.cfg.seed, max(negatives)
    negs = {
        t.id: [
            n.answer for n in negatives_for_trajectory(t, m_max, seed=trajectory_seed(seed, t.id))
        ]
        for t in trajs
    }
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    n_steps = sum(t.n_steps for t in trajs)
    for variant in VARIANTS:
        cfg = replace(exp.cfg.cpmi, variant=variant)
        meter = CostMeter()
        with meter:
            terms = [
                step_terms(model, tok, t, cfg, negs[t.id], meter)
                for t in tqdm(trajs, desc=f"CPMI terms ({variant}, {split})", disable=not progress)
            ]
        seconds[f"cpmi-{variant}"] = meter.costs.wall_seconds / n_steps
        scores: dict[tuple[str, int | None], list[np.ndarray]] = {
            ("gold term", None): [x.gold for x in terms]
        }
        for m in negatives:
            scores[("negative term", m)] = [-x.negative_term(m) for x in terms]
            scores[("cpmi", m)] = [x.cpmi(m, cfg.neg_weight) for x in terms]
        for (source, m), s in scores.items():
            rows.append({"scores": source, "variant": variant, "M": m} | _auroc_row(trajs, s, seed))
    if with_mc:
        mc, mc_seconds = _mc_values(exp, split, trajs)
        seconds["mc"] = mc_seconds / n_steps
        rows.append({"scores": "mc", "variant": None, "M": None} | _auroc_row(trajs, mc, seed))
    return pd.DataFrame(rows), seconds


def _auroc_row(
    trajs: Sequence[Trajectory], scores: Sequence[Sequence[float]], seed: int
) -> dict[str, Any]:
    res = position_auroc(trajs, [list(map(float, s)) for s in scores], seed=seed)
    flat = [float(x) for s in scores for x in s]
    truth = [bool(x) for t in trajs for x in (t.step_labels or [])]
    defined = res["auroc_pooled"] is not None
    ci = list(auroc_ci(flat, truth, Resampling(seed=seed))) if defined else None
    return {
        "steps": res["n_steps"],
        "auroc": res["auroc_pooled"],
        "auroc_ci": ci,
        "within": res["auroc_within_position"],
        "within_ci": res["ci"],
    }


def _mc_values(
    exp: Experiment, split: str, trajs: Sequence[Trajectory]
) -> tuple[list[list[float]], float]:
    """MC's step values on `trajs` (the first samples of `split`) from the experiment's labeler,
    and the wall-clock seconds its cost meters recorded for them."""
    records = {r["id"]: r for r in read_labels(exp.labels("mc", split, first=len(trajs)))}
    chosen = [records[t.id] for t in trajs]
    values = [[float(s["value"]) for s in r["steps"]] for r in chosen]
    return values, total_costs(chosen).wall_seconds
