"""The PRM experiment, end to end: policy samples → CPMI, MC (and, where known, exact) labels →
one PRM per label source → ProcessBench-style F1 and Best-of-N, with CIs and paired tests.

It runs on either track (`cpmi_lib.tracks`): the embedded world, where every step's truth is
known and a third PRM learns from it, or the hub (paper scale), where MC's hard labels stand in
as the reference that label quality and the ablations are measured against.

Every stage writes its output under one work directory and is skipped when that output is already
complete, so a rerun (or a rerun after a kill) only redoes what is missing. The notebooks of the
suite call these stages one by one; ``python -m cpmi_lib prm-experiment`` runs them all.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cpmi_lib.best_of_n import Candidate, Pool, best_of_n_curves, compare
from cpmi_lib.costs import CostMeter
from cpmi_lib.cpmi import CPMIConfig, cpmi_step_scores
from cpmi_lib.default_lm import DEFAULT_CACHE, LMTrainConfig
from cpmi_lib.label_runs import LABEL_FORMAT
from cpmi_lib.labeling import LabelConfig, label_file, read_labels, total_costs, trajectory_seed
from cpmi_lib.mc import MCConfig
from cpmi_lib.negatives import hard_negatives
from cpmi_lib.prm import PRMConfig, load_prm, train_prm
from cpmi_lib.prm_targets import SCORE_FIELD, make_target_transform, scores_for_trajectories
from cpmi_lib.processbench import (
    choose_threshold,
    evaluate_processbench,
    first_errors,
    oracle_threshold_result,
)
from cpmi_lib.sampling import SampleConfig, sample_solutions
from cpmi_lib.stats import auroc, auroc_ci, rank_correlations
from cpmi_lib.text_format import PROMPT_TEMPLATES
from cpmi_lib.tracks import HubSpec, Track, make_track
from cpmi_lib.trajectory import Trajectory, read_trajectories, write_trajectories
from cpmi_lib.world_data import WorldSpec

log = logging.getLogger(__name__)

#: The PRMs and the labels each learns from: (labeler, target transform). The truth PRM needs
#: exact step labels, so only the embedded track trains it.
PRM_LABELS: dict[str, tuple[str, str]] = {
    "cpmi": ("cpmi", "zsig"),
    "mc": ("mc", "mc_soft"),
    "truth": ("truth", "truth"),
}


@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes and settings of the PRM experiment (defaults: the embedded track, ~15 min on CPU).

    `hub` switches to the hub track; `world` and `lm` then matter only for hub sources named
    ``"embedded"``.
    """

    world: WorldSpec = field(default_factory=WorldSpec)
    lm: LMTrainConfig = field(default_factory=LMTrainConfig)
    hub: HubSpec | None = None
    train_problems: int = 600
    dev_problems: int = 150
    samples_per_problem: int = 2
    sample_temperature: float = 0.7
    sample_max_new_tokens: int = 160
    cpmi: CPMIConfig = field(default_factory=lambda: CPMIConfig(templates=PROMPT_TEMPLATES))
    n_negatives: int = 4
    mc: MCConfig = field(default_factory=lambda: MCConfig(n_rollouts=8, max_new_tokens=160))
    prm: PRMConfig = field(
        default_factory=lambda: PRMConfig(epochs=4, lr=1e-3, batch_size=16, threads=2, patience=2)
    )
    bon_problems: int = 200
    bon_pool: int = 16
    bon_ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def key(self) -> str:
        return _hash(self.to_dict())

    def data_key(self) -> str:
        """What the samples and labels depend on: everything but the PRM's training settings."""
        d = self.to_dict()
        del d["prm"]
        d["label_format"] = LABEL_FORMAT  # a label file of another format cannot be resumed
        return _hash(d)


def _hash(d: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _done(path: Path) -> bool:
    return path.exists()


class Experiment:
    """The stages of the PRM experiment over one work directory."""

    def __init__(self, cfg: ExperimentConfig, work_dir: str | os.PathLike[str] | None = None):
        self.cfg = cfg
        cache = Path(os.environ.get("CPMI_CACHE", DEFAULT_CACHE))
        self.cache = cache
        root = Path(work_dir) if work_dir else cache / "experiments"
        self.data_dir = root / f"data-{cfg.data_key()}"  # samples, labels, Best-of-N pool
        self.dir = root / f"prm-{cfg.key()}"  # PRMs and their evaluations
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        self.track: Track = make_track(cfg.hub, cfg.world, cfg.lm, cache)

    # ------------------------------------------------------------------ inputs
    def lm(self) -> tuple[Any, Any]:
        """The policy and labeling LM with its tokenizer (loaded once)."""
        return self.track.lm()

    @property
    def prm_names(self) -> tuple[str, ...]:
        """The PRMs this track can train: truth only where the step truth is known."""
        return tuple(n for n in PRM_LABELS if n != "truth" or self.track.step_truth)

    @property
    def reference_name(self) -> str:
        """What label quality and the ablations are measured against."""
        return "exact step truth" if self.track.step_truth else "MC hard label (value > 0)"

    # ------------------------------------------------------------------ stages
    def policy_samples(self, split: str) -> Path:
        """The policy's sampled solutions of `split` problems: graded exactly on the embedded
        track, by final answer on the hub."""
        out = self.data_dir / f"policy-{split}.jsonl"
        if _done(out):
            return out
        n = {"train": self.cfg.train_problems, "dev": self.cfg.dev_problems}[split]
        problems = self.track.problems(split, n)
        model, tok = self.lm()
        cfg = SampleConfig(
            n=self.cfg.samples_per_problem,
            temperature=self.cfg.sample_temperature,
            seed=self.cfg.seed,
            max_new_tokens=self.cfg.sample_max_new_tokens,
        )
        write_trajectories(out, sample_solutions(model, tok, problems, cfg))
        return out

    def labels(self, labeler: str, split: str) -> Path:
        """CPMI or MC labels of the policy samples of `split` (resumable)."""
        out = self.data_dir / f"labels-{labeler}-{split}.jsonl"
        trajs = self.policy_samples(split)
        model, tok = self.lm()
        cfg = LabelConfig(
            method=labeler,
            cpmi=self.cfg.cpmi,
            n_negatives=self.cfg.n_negatives,
            mc=self.cfg.mc,
            seed=self.cfg.seed,
        )  # type: ignore[arg-type]
        label_file(model, tok, self.track.model_path, trajs, out, cfg, resume=True)
        return out

    def training_pairs(self, prm_name: str, split: str) -> list[tuple[Trajectory, list[float]]]:
        """(trajectory, raw per-step scores) of a split for the PRM named `prm_name`."""
        self._check_prm(prm_name)
        labeler, target = PRM_LABELS[prm_name]
        trajs = read_trajectories(self.policy_samples(split))
        records = [] if labeler == "truth" else read_labels(self.labels(labeler, split))
        scores = scores_for_trajectories(trajs, records, SCORE_FIELD[target])
        return list(zip(trajs, scores, strict=True))

    def _check_prm(self, prm_name: str) -> None:
        if prm_name not in self.prm_names:
            raise ValueError(
                f"unknown PRM {prm_name!r} on this track; known: {self.prm_names}"
                + ("" if self.track.step_truth else " (no exact step truth on the hub track)")
            )

    def train(self, prm_name: str) -> Path:
        """Train (or reuse) the PRM of `prm_name`; targets fitted on the training split only."""
        self._check_prm(prm_name)
        out = self.dir / f"prm-{prm_name}"
        if (out / "prm.json").exists():
            return out
        _, target = PRM_LABELS[prm_name]
        transform = make_target_transform(target)
        train_raw = self.training_pairs(prm_name, "train")
        dev_raw = self.training_pairs(prm_name, "dev")
        transform.fit([s for _, s in train_raw])
        train = [(t, transform.transform(s)) for t, s in train_raw]
        dev = [(t, transform.transform(s)) for t, s in dev_raw]
        cfg = replace(self.cfg.prm, target=transform.name, target_params=transform.params())
        train_prm(self.track.prm_backbone, train, dev, out, cfg, transform=transform)
        return out

    def predict(self, prm_name: str, trajs: list[Trajectory]) -> list[list[float]]:
        return load_prm(self.train(prm_name)).predict(trajs)

    # ------------------------------------------------------------------ evaluation
    def processbench(self, prm_name: str) -> dict[str, Any]:
        """First-error F1 on the test benchmark, τ chosen on the dev benchmark."""
        out = self.dir / f"processbench-{prm_name}.json"
        if _done(out):
            return json.loads(out.read_text())
        scored = {}
        for split in ("dev", "test"):
            bench = self.track.benchmark(split)
            scored[split] = (
                {k: self.predict(prm_name, v) for k, v in bench.items()},
                {k: first_errors(v) for k, v in bench.items()},
            )
        tau = choose_threshold(*scored["dev"])
        result = {
            "prm": prm_name,
            "threshold_from_dev": tau,
            "test": evaluate_processbench(*scored["test"], tau, seed=self.cfg.seed).to_dict(),
            "test_oracle": oracle_threshold_result(*scored["test"], seed=self.cfg.seed).to_dict(),
        }
        out.write_text(json.dumps(result, indent=2))
        return result

    def bon_pool(self) -> Path:
        """`bon_pool` sampled solutions for each of `bon_problems` test problems."""
        out = self.data_dir / "bon-pool.jsonl"
        if _done(out):
            return out
        problems = self.track.problems("test", self.cfg.bon_problems)
        model, tok = self.lm()
        cfg = SampleConfig(
            n=self.cfg.bon_pool,
            temperature=self.cfg.sample_temperature,
            seed=self.cfg.seed + 1,
            max_new_tokens=self.cfg.sample_max_new_tokens,
            batch_size=64,
        )
        write_trajectories(out, sample_solutions(model, tok, problems, cfg))
        return out

    def best_of_n(self, prm_name: str) -> pd.DataFrame:
        """Best-of-N curves of one PRM over the shared pool (paired across PRMs and N)."""
        out = self.dir / f"bon-{prm_name}.pkl"
        if _done(out):
            return pd.read_pickle(out)
        trajs = read_trajectories(self.bon_pool())
        probs = self.predict(prm_name, trajs)
        pools: dict[str, list[Candidate]] = {}
        for t, p in zip(trajs, probs, strict=True):
            correct = bool(t.metadata["final_correct"])
            pools.setdefault(t.metadata["problem_id"], []).append(
                Candidate.from_trajectory(t, p, correct=correct)
            )
        curves = best_of_n_curves(
            [Pool(k, v) for k, v in pools.items()], self.cfg.bon_ns, seed=self.cfg.seed
        )
        curves.to_pickle(out)
        return curves

    def example(self, index: int = 0, problem_id: str | None = None) -> Trajectory:
        """A training sample of the policy to explore step by step: the `index`-th one with a
        wrong final answer or, given `problem_id`, that problem's first wrong sample (else its
        first sample). Its exact first error is known on the embedded track only."""
        trajs = read_trajectories(self.policy_samples("train"))
        if problem_id is not None:
            mine = [t for t in trajs if t.metadata["problem_id"] == problem_id]
            if not mine:
                raise KeyError(
                    f"problem_id {problem_id!r} is not among the {len(trajs)} training samples' "
                    f"problems (e.g. {trajs[0].metadata['problem_id']!r})"
                )
            return next((t for t in mine if not t.metadata["final_correct"]), mine[0])
        wrong = [t for t in trajs if not t.metadata["final_correct"]]
        if not 0 <= index < len(wrong):
            raise IndexError(
                f"problem_index {index}: the policy got {len(wrong)} of {len(trajs)} training "
                f"samples wrong; choose 0..{len(wrong) - 1}"
            )
        return wrong[index]

    def step_scores(self, split: str = "train") -> pd.DataFrame:
        """One row per policy step: CPMI and its terms, MC value, the exact truth where known
        (else None) and the reference label (`reference_name`)."""
        trajs = read_trajectories(self.policy_samples(split))
        cpmi = {r["id"]: r for r in read_labels(self.labels("cpmi", split))}
        mc = {r["id"]: r for r in read_labels(self.labels("mc", split))}
        reference = self.reference_labels(trajs, split)
        rows = []
        for t in trajs:
            for i in range(t.n_steps):
                step = cpmi[t.id]["steps"][i]
                rows.append(
                    {
                        "trajectory": t.id,
                        "step": i,
                        "cpmi": step["cpmi"],
                        "gold_term": step["gold_term"],
                        "neg_term": -step[
                            "neg_term"
                        ],  # sign flipped: pushing negatives down is good
                        "mc": mc[t.id]["steps"][i]["value"],
                        "truth": int(t.step_labels[i]) if t.step_labels is not None else None,
                        "reference": reference[t.id][i],
                    }
                )
        return pd.DataFrame(rows)

    def reference_labels(self, trajs: list[Trajectory], split: str) -> dict[str, list[int]]:
        """Per-step 0/1 reference labels by trajectory id: the exact truth on the embedded track;
        on the hub, MC's hard estimate (right when any rollout reaches the gold, as in
        Math-Shepherd)."""
        if self.track.step_truth:
            out = {}
            for t in trajs:
                if t.step_labels is None:
                    raise ValueError(f"trajectory {t.id!r}: field 'step_labels' is missing")
                out[t.id] = [int(x) for x in t.step_labels]
            return out
        mc = {r["id"]: r for r in read_labels(self.labels("mc", split))}
        return {t.id: [int(s["value"] > 0) for s in mc[t.id]["steps"]] for t in trajs}

    def label_quality(self) -> dict[str, Any]:
        """CPMI vs MC on the same training steps, and each against the reference labels (MC
        is not scored against itself on the hub track)."""
        df = self.step_scores("train")
        truth = df["reference"].tolist()
        out: dict[str, Any] = {
            "n_steps": len(df),
            "reference": self.reference_name,
            "share_correct": float(np.mean(truth)),
        }
        out["cpmi_vs_mc"] = rank_correlations(df["cpmi"], df["mc"])
        for name in ("cpmi", "gold_term", "neg_term", "mc"):
            scores = df[name].tolist()
            if name == "mc" and not self.track.step_truth:
                out[f"auroc_{name}"] = {"auroc": None, "ci": None, "why": "MC is the reference"}
                continue
            if len(set(truth)) < 2:  # e.g. a policy that never gets a step right
                out[f"auroc_{name}"] = {"auroc": None, "ci": None, "why": "one class only"}
                continue
            lo, hi = auroc_ci(scores, truth, seed=self.cfg.seed)
            out[f"auroc_{name}"] = {"auroc": auroc(scores, truth), "ci": [lo, hi]}
        return out

    def cpmi_ablation(
        self,
        cpmi: CPMIConfig,
        n_negatives: int,
        sources: tuple[str, ...] = ("trajectory", "perturb"),
        n_trajectories: int = 300,
    ) -> dict[str, Any]:
        """Step-level AUROC against the reference labels of CPMI with other settings, on the
        first `n_trajectories` training samples (the same ones for every setting)."""
        model, tok = self.lm()
        trajs = read_trajectories(self.policy_samples("train"))[:n_trajectories]
        reference = self.reference_labels(trajs, "train")
        scores: list[float] = []
        truth: list[int] = []
        meter = CostMeter()
        with meter:
            for t in trajs:
                assert t.gold_answer is not None
                negs = hard_negatives(
                    t.question,
                    t.steps,
                    t.gold_answer,
                    n_negatives,
                    sources=sources,
                    model=model,
                    tokenizer=tok,
                    seed=trajectory_seed(self.cfg.seed, t.id),
                    meter=meter,
                )
                steps = cpmi_step_scores(
                    model,
                    tok,
                    t.question,
                    t.steps,
                    t.gold_answer,
                    [n.answer for n in negs],
                    cpmi,
                    meter=meter,
                )
                scores += [s.cpmi for s in steps]
                truth += reference[t.id]
        out: dict[str, Any] = {"n_steps": len(scores), "seconds": meter.costs.wall_seconds}
        if len(set(truth)) < 2:
            return {**out, "auroc": None, "ci": None}
        lo, hi = auroc_ci(scores, truth, seed=self.cfg.seed)
        return {**out, "auroc": auroc(scores, truth), "ci": [lo, hi]}

    def summary(self, mcnemar_method: str = "prm:min") -> dict[str, Any]:
        """Everything the README reports, with CIs and paired tests."""
        curves = {name: self.best_of_n(name) for name in self.prm_names}
        bon = {}
        for name, df in curves.items():
            bon[name] = [
                {
                    "method": r.method,
                    "n": int(r.n),
                    "accuracy": r.accuracy,
                    "ci": [r.ci_low, r.ci_high],
                }
                for r in df.itertuples(index=False)
            ]
        tests = {}
        for a, b in itertools.combinations(self.prm_names, 2):
            tests[f"{a}_vs_{b}"] = {
                n: compare(curves[a], mcnemar_method, curves[b], mcnemar_method, n).to_dict()
                for n in self.cfg.bon_ns
            }
        costs = {
            lab: total_costs(read_labels(self.labels(lab, "train"))).to_dict()
            for lab in ("cpmi", "mc")
        }
        return {
            "config_key": self.cfg.key(),
            "config": self.cfg.to_dict(),
            "track": self.track.describe(),
            "processbench": {name: self.processbench(name) for name in self.prm_names},
            "best_of_n": bon,
            "mcnemar_method": mcnemar_method,
            "mcnemar": tests,
            "label_quality": self.label_quality(),
            "labeling_costs_train": costs,
        }


def summary_markdown(summary: dict[str, Any], ns: tuple[int, ...] = (4, 16)) -> str:
    """The tables the README shows, from a summary (so the README's numbers are this run's)."""

    def ci(x: float, lo: float, hi: float) -> str:
        return f"{x:.3f} [{lo:.3f}, {hi:.3f}]"

    pb = summary["processbench"]
    subsets = list(next(iter(pb.values()))["test"]["subsets"])
    lines = [
        "| PRM trained on | F1 (95% CI), τ from dev | "
        + " | ".join(f"{s} F1" for s in subsets)
        + " | τ | oracle-τ F1 (upper bound) |",
        "| --- | --- | " + " | ".join("---:" for _ in subsets) + " | ---: | ---: |",
    ]
    for name, r in pb.items():
        t = r["test"]
        cells = [f"{t['subsets'][s]['f1']:.3f}" for s in subsets]
        lines.append(
            f"| {name} labels | {ci(t['headline_f1'], *t['headline_ci'])} | "
            + " | ".join(cells)
            + f" | {r['threshold_from_dev']:.2f} | {r['test_oracle']['headline_f1']:.3f} |"
        )
    methods = ("prm:min", "prm:last", "prm-vote:min", "majority", "random", "pass@n")
    lines += [
        "",
        "| Best-of-N accuracy (95% CI) | " + " | ".join(f"N = {n}" for n in ns) + " |",
        "| --- | " + " | ".join("---" for _ in ns) + " |",
    ]
    for name, rows in summary["best_of_n"].items():
        by = {(r["method"], r["n"]): r for r in rows}
        for m in methods:
            if m in ("majority", "random", "pass@n") and name != "cpmi":
                continue  # the same for every PRM (one shared pool)
            label = f"{name} PRM, {m}" if m.startswith("prm") else m
            cells = [ci(by[(m, n)]["accuracy"], *by[(m, n)]["ci"]) for n in ns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| exact McNemar, {summary['mcnemar_method']} | "
        + " | ".join(f"N = {n}: table, p" for n in ns)
        + " |",
        "| --- | " + " | ".join("---" for _ in ns) + " |",
    ]
    for pair, by_n in summary["mcnemar"].items():
        cells = [f"{by_n[str(n)]['table']}, p = {by_n[str(n)]['p_value']:.3f}" for n in ns]
        lines.append(f"| {pair.replace('_', ' ')} | " + " | ".join(cells) + " |")
    q = summary["label_quality"]
    lines += [
        "",
        f"Label quality on the {q['n_steps']:,} training steps "
        f"({q['share_correct']:.1%} right by the {q['reference']}): Spearman ρ(CPMI, MC) = "
        f"{q['cpmi_vs_mc']['spearman_rho']:.3f}, Kendall τ = "
        f"{q['cpmi_vs_mc']['kendall_tau']:.3f}.",
        "",
        f"| step-level AUROC vs {q['reference']} | AUROC (95% CI) |",
        "| --- | --- |",
    ]
    for key, label in [
        ("auroc_cpmi", "CPMI"),
        ("auroc_gold_term", "CPMI gold term only"),
        ("auroc_neg_term", "CPMI negative term only (sign flipped)"),
        ("auroc_mc", "MC value"),
    ]:
        a = q[key]
        value = ci(a["auroc"], *a["ci"]) if a["auroc"] is not None else a.get("why", "undefined")
        lines.append(f"| {label} | {value} |")
    return "\n".join(lines) + "\n"


def run_experiment(cfg: ExperimentConfig | None = None, out: Path | None = None) -> dict[str, Any]:
    """All stages; writes the summary JSON (default `results/prm_experiment.json`) and its
    Markdown tables beside it."""
    torch.set_num_threads(2)
    exp = Experiment(cfg or ExperimentConfig())
    for name in exp.prm_names:
        exp.train(name)
    summary = exp.summary()
    out = out or Path(__file__).resolve().parents[1] / "results" / "prm_experiment.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    summary = json.loads(out.read_text())  # JSON keys (N as strings), as readers will see them
    out.with_suffix(".md").write_text(summary_markdown(summary, cfg_ns(cfg)))
    return summary


def cfg_ns(cfg: ExperimentConfig | None) -> tuple[int, ...]:
    """The two largest N of the Best-of-N curves, for the tables."""
    ns = (cfg or ExperimentConfig()).bon_ns
    return tuple(sorted(ns)[-2:])
