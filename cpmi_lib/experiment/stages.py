"""The PRM experiment, end to end: policy samples → CPMI, MC (and, where known, exact) labels →
one PRM per label source → ProcessBench-style F1 and Best-of-N, with CIs and paired tests.

It runs on either track (`cpmi_lib.experiment.tracks`): the embedded world, where every step's
truth is
known and a third PRM learns from it, or the hub (paper scale), where MC's hard labels stand in
as the reference that label quality and the ablations are measured against.

Every stage writes its output under one work directory and is skipped when that output is already
complete, so a rerun (or a rerun after a kill) only redoes what is missing. The notebooks of the
suite call these stages one by one; ``python -m cpmi_lib prm-experiment`` runs them all.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformers import AutoTokenizer

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.paths import cache_root
from cpmi_lib.core.stats import auroc, auroc_ci, rank_correlations
from cpmi_lib.core.text_format import (
    CHAT_INSTRUCTIONS,
    DEFAULT_TEMPLATE,
    PROMPT_TEMPLATES,
    chat_prompt_template,
)
from cpmi_lib.core.trajectory import Trajectory, read_trajectories, write_trajectories
from cpmi_lib.eval.best_of_n import Candidate, Pool, best_of_n_curves
from cpmi_lib.eval.processbench import (
    choose_threshold,
    evaluate_processbench,
    first_errors,
    oracle_threshold_result,
)
from cpmi_lib.experiment.config import (
    BASE,
    BUDGET,
    LABEL_SETTINGS,
    NEEDS_TRUTH,
    PRM_LABELS,
    ExperimentConfig,
    parse_prm_name,
)
from cpmi_lib.experiment.tracks import HubTrack, Track, make_track
from cpmi_lib.labeling.cpmi import CPMIConfig, cpmi_step_scores
from cpmi_lib.labeling.label_file import (
    LabelConfig,
    label_file,
    read_labels,
    total_costs,
    trajectory_seed,
)
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.labeling.negatives import hard_negatives
from cpmi_lib.labeling.position import PositionLabeler, cross_fit_scores
from cpmi_lib.lm.sampling import ParseReport, SampleConfig, sample_solutions
from cpmi_lib.prm.model import PRMConfig, load_prm, train_prm
from cpmi_lib.prm.targets import SCORE_FIELD, make_target_transform, scores_for_trajectories

log = logging.getLogger(__name__)

__all__ = [  # the settings live in `cpmi_lib.experiment.config`; importable from here too
    "BASE",
    "BUDGET",
    "LABEL_SETTINGS",
    "NEEDS_TRUTH",
    "PRM_LABELS",
    "Experiment",
    "ExperimentConfig",
    "parse_prm_name",
]


def _done(path: Path) -> bool:
    return path.exists()


class Experiment:
    """The stages of the PRM experiment over one work directory."""

    def __init__(self, cfg: ExperimentConfig, work_dir: str | os.PathLike[str] | None = None):
        self.cfg = cfg
        cache = cache_root()
        self.cache = cache
        root = Path(work_dir) if work_dir else cache / "experiments"
        # the policy's samples and Best-of-N pools; below them, one folder per labeling setup
        # (labeling LM, CPMI and MC settings) for its labels, budget plan and the extra samples
        # that plan asks for: labelers share the samples, so they label the same trajectories
        self.data_dir = root / f"samples-{cfg.sample_key()}"
        self.label_dir = self.data_dir / f"labels-{cfg.label_key()}"
        self.dir = root / f"prm-{cfg.key()}"  # PRMs and their evaluations
        self.label_dir.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        self.track: Track = make_track(cfg.hub, cfg.world, cfg.lm, cache, cfg.prm_lm, cfg.labeler)

    # ------------------------------------------------------------------ inputs
    def lm(self) -> tuple[Any, Any]:
        """The policy LM with its tokenizer (loaded once): it samples every trajectory."""
        return self.track.lm()

    def labeler_lm(self) -> tuple[Any, Any]:
        """The labeling LM with its tokenizer (loaded once): CPMI and MC's rollouts alike."""
        return self.track.labeler_lm()

    @property
    def prm_names(self) -> tuple[str, ...]:
        """The PRMs of the main tables, on the base training set: truth and position only where
        the step truth is known."""
        return tuple(n for n in PRM_LABELS if n not in NEEDS_TRUTH or self.track.step_truth)

    @property
    def reference_name(self) -> str:
        """What label quality and the ablations are measured against."""
        if self.track.step_truth:
            return "exact step truth"
        return "Math-Shepherd label (+)" if self.shepherd else "MC hard label (value > 0)"

    # ------------------------------------------------------------------ prompts
    def _as_read(self, template: str, tokenizer: Callable[[], Any]) -> str:
        """`template` as its model reads it: itself, or with `HubSpec.chat` the instruction
        rendered through the model's chat template (`tokenizer` is called only then)."""
        if self.cfg.hub is None or not self.cfg.hub.chat:
            return template
        return chat_prompt_template(tokenizer(), template)

    @property
    def prompt_templates(self) -> tuple[str, ...]:
        """What K templates are drawn from: chat instructions (`HubSpec.chat`) or plain ones."""
        return CHAT_INSTRUCTIONS if self.cfg.hub and self.cfg.hub.chat else PROMPT_TEMPLATES

    def sample_template(self) -> str:
        """The prompt the policy samples from (`HubSpec.prompt`, else the default template)."""
        prompt = (self.cfg.hub and self.cfg.hub.prompt) or DEFAULT_TEMPLATE
        return self._as_read(prompt, lambda: self.lm()[1])

    def cpmi_config(self, cpmi: CPMIConfig | None = None) -> CPMIConfig:
        """CPMI's settings (default: the experiment's) with the templates the labeler reads."""
        cpmi = cpmi or self.cfg.cpmi
        templates = tuple(self._as_read(t, lambda: self.labeler_lm()[1]) for t in cpmi.templates)
        return replace(cpmi, templates=templates)

    def mc_config(self) -> MCConfig:
        """MC's settings with the prompt template the labeler's rollouts start from."""
        mc = self.cfg.mc
        return replace(mc, template=self._as_read(mc.template, lambda: self.labeler_lm()[1]))

    def prm_config(self) -> PRMConfig:
        """The PRMs' settings with the prompt template their backbone reads."""
        prm = self.cfg.prm
        backbone = lambda: AutoTokenizer.from_pretrained(self.track.prm_backbone)  # noqa: E731
        return replace(prm, template=self._as_read(prm.template, backbone))

    # ------------------------------------------------------------------ stages
    def policy_samples(self, split: str) -> Path:
        """The policy's sampled solutions of `split` problems: graded exactly on the embedded
        track, by final answer on the hub. ``"extra"``: the train problems after the base set's,
        as many as the budget-matched CPMI set needs (`budget_plan`). With `HubSpec.prm_data`,
        the train, dev and extra sets are Math-Shepherd's solutions instead (`_write_shepherd`);
        Best-of-N pools stay the policy's."""
        # the extra samples' count follows the labeler's budget plan: they live with its labels
        folder = self.label_dir if split == "extra" else self.data_dir
        out = folder / f"policy-{split}.jsonl"
        if _done(out):
            return out
        if self.shepherd is not None:  # Math-Shepherd's solutions instead of the policy's
            self._write_shepherd(out, split)
            return out
        if split == "extra":
            first = self.cfg.train_problems
            problems = self.track.problems("train", first + self.budget_plan()["extra_problems"])
            problems = problems[first:]
        else:
            n = {"train": self.cfg.train_problems, "dev": self.cfg.dev_problems}[split]
            problems = self.track.problems(split, n)
        model, tok = self.lm()
        cfg = SampleConfig(
            n=self.cfg.samples_per_problem,
            temperature=self.cfg.sample_temperature,
            seed=self.cfg.seed + (1000 if split == "extra" else 0),
            max_new_tokens=self.cfg.sample_max_new_tokens,
            batch_size=64,
            template=self.sample_template(),
        )
        self._write_samples(out, problems, cfg, f"policy samples ({split})")
        return out

    @property
    def shepherd(self) -> HubTrack | None:
        """The hub track when the PRMs train on Math-Shepherd (`HubSpec.prm_data`), else None."""
        track = self.track
        return track if isinstance(track, HubTrack) and track.spec.prm_data else None

    def _write_shepherd(self, out: Path, split: str) -> None:
        """The PRMs' `split` trajectories from Math-Shepherd, as many as the policy would have
        sampled (problems x samples per problem), with what was read, skipped and kept."""
        assert self.shepherd is not None
        spp, n_train = self.cfg.samples_per_problem, self.cfg.train_problems
        if split == "dev":
            first, n, side = 0, self.cfg.dev_problems * spp, "dev"
        elif split == "train":
            first, n, side = 0, n_train * spp, "train"
        else:  # extra: the train side after the base set
            first, n, side = n_train * spp, self.budget_plan()["extra_problems"] * spp, "train"
        trajs, report = self.shepherd.prm_data(side, first, n)
        out.with_suffix(".parse.json").write_text(json.dumps(report, indent=2) + "\n")
        write_trajectories(out, trajs)

    def _write_samples(self, out: Path, problems: list[Any], cfg: SampleConfig, what: str) -> None:
        """Sample, and write the trajectories with their parse report (`<out>.parse.json`);
        refuse, naming the counts and the reason, samples too few of which could be read (no
        file is written then, so nothing downstream runs on them)."""
        model, tok = self.lm()
        trajs = sample_solutions(model, tok, problems, cfg)
        report = ParseReport.of(len(problems), cfg.n, trajs)
        out.with_suffix(".parse.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
        why = report.refusals()
        if why:
            raise ValueError(f"{what}: " + "; ".join(why) + f" (model {self.track.model_path})")
        write_trajectories(out, trajs)

    def parse_reports(self) -> dict[str, dict[str, int]]:
        """The parse report of every sample file written so far, by file name."""
        return {
            p.name.removesuffix(".parse.json"): json.loads(p.read_text())
            for folder in (self.data_dir, self.label_dir)
            for p in sorted(folder.glob("*.parse.json"))
        }

    def labels(self, labeler: str, split: str, first: int | None = None) -> Path:
        """CPMI, MC or position labels of the policy samples of `split` (resumable).

        `first`: labels of at least the split's first n samples, for a measurement that needs no
        more (`cpmi_lib.studies.labeler_skill`): the whole split's file when it already covers
        them, else a
        file of those n alone."""
        trajs = self.policy_samples(split)
        if labeler == "position":  # fit on truth: the same whoever labels
            out = self.data_dir / f"labels-{labeler}-{split}.jsonl"
            if not _done(out):
                self._write_position_labels(out, read_trajectories(trajs))
            return out
        out = self.label_dir / f"labels-{labeler}-{split}.jsonl"
        if first is not None:
            head = read_trajectories(trajs)[:first]
            if _done(out) and {t.id for t in head} <= {r["id"] for r in read_labels(out)}:
                return out
            trajs = self.label_dir / f"policy-{split}-first{first}.jsonl"
            if not _done(trajs):
                write_trajectories(trajs, head)
            out = self.label_dir / f"labels-{labeler}-{split}-first{first}.jsonl"
        model, tok = self.labeler_lm()
        cfg = LabelConfig(
            method=labeler,
            cpmi=self.cpmi_config(),
            n_negatives=self.cfg.n_negatives,
            mc=self.mc_config(),
            seed=self.cfg.seed,
        )  # type: ignore[arg-type]
        # The labeler by its cache-relative name: cached labels stay resumable when the
        # repository (and its .cache) moves or is cloned with a linked cache.
        name = self.track.shown(self.track.labeler_path)
        label_file(model, tok, name, trajs, out, cfg, resume=True)
        return out

    def position_labeler(self) -> PositionLabeler:
        """The position-only labeler, fit on the exact truth of the base training set."""
        return PositionLabeler.fit(read_trajectories(self.policy_samples("train")))

    def _write_position_labels(self, out: Path, trajs: list[Trajectory]) -> None:
        records = self.position_labeler().label_records(trajs)
        tmp = out.with_suffix(".partial")
        with tmp.open("w") as f:
            for r in records:
                f.write(json.dumps(r, allow_nan=False) + "\n")
        tmp.replace(out)

    def budget_plan(self) -> dict[str, Any]:
        """The equal-budget plan: the wall-clock seconds MC took on the base training set (its
        own cost meter) and how many trajectories CPMI labels in that time at the rate it
        labeled the base set, rounded down to whole problems and capped by the world's train
        split. Cached: decided once from the first run's measured seconds, so reruns reuse the
        same data."""
        out = self.label_dir / "budget.json"
        if _done(out):
            return json.loads(out.read_text())
        mc = total_costs(read_labels(self.labels("mc", "train")))
        cpmi = total_costs(read_labels(self.labels("cpmi", "train")))
        n_base = len(read_trajectories(self.policy_samples("train")))
        per_trajectory = cpmi.wall_seconds / n_base
        spp = self.cfg.samples_per_problem
        available = len(self.track.problems("train", 10**9)) * spp  # the whole train split
        wanted = int(mc.wall_seconds / per_trajectory) // spp * spp
        n_cpmi = max(n_base, min(wanted, available))
        plan = {
            "mc_seconds": mc.wall_seconds,
            "mc_trajectories": n_base,
            "mc_rollouts": self.cfg.mc.n_rollouts,
            "cpmi_seconds_base": cpmi.wall_seconds,
            "cpmi_seconds_per_trajectory": per_trajectory,
            "cpmi_trajectories": n_cpmi,
            "capped_by_world": wanted > available,
            "extra_problems": max(0, math.ceil((n_cpmi - n_base) / spp)),
        }
        out.write_text(json.dumps(plan, indent=2) + "\n")
        return plan

    def budget_size(self) -> int:
        """Trajectories in the budget-matched set: the plan's count, or a few fewer where
        samples without steps were dropped."""
        return len(self.training_trajectories(BUDGET))

    def training_trajectories(self, size: str | int) -> list[Trajectory]:
        """The base set, the budget-matched set (base + extra, `budget_plan`) or the first n of
        the budget-matched set (so a smaller set is always a prefix of a larger one)."""
        base = read_trajectories(self.policy_samples("train"))
        if size == BASE or (isinstance(size, int) and size <= len(base)):
            return base if size == BASE else base[: int(size)]
        extra = read_trajectories(self.policy_samples("extra"))
        if size == BUDGET:
            # samples with no step are dropped by `sample_solutions`: the set can fall a few short
            n = min(self.budget_plan()["cpmi_trajectories"], len(base) + len(extra))
        else:
            n = int(size)
        if n > len(base) + len(extra):
            raise ValueError(
                f"{n} training trajectories asked, {len(base) + len(extra)} sampled (base + extra)"
            )
        return (base + extra)[:n]

    def training_pairs(self, prm_name: str, split: str) -> list[tuple[Trajectory, list[float]]]:
        """(trajectory, raw per-step scores) of a split for the PRM named `prm_name` (the dev
        split is the same for every size)."""
        source, size = self._check_prm(prm_name)
        labeler, target = PRM_LABELS[source]
        if split == "dev":
            trajs = read_trajectories(self.policy_samples("dev"))
            records = [] if labeler == "truth" else read_labels(self.labels(labeler, "dev"))
        else:
            trajs = self.training_trajectories(size)
            records = []
            if labeler != "truth":
                records = read_labels(self.labels(labeler, "train"))
                if len(trajs) > len(records):
                    records += read_labels(self.labels(labeler, "extra"))
                records = records[: len(trajs)]
        scores = scores_for_trajectories(trajs, records, SCORE_FIELD[target])
        return list(zip(trajs, scores, strict=True))

    def _check_prm(self, prm_name: str) -> tuple[str, str | int]:
        source, size = parse_prm_name(prm_name)
        if source in NEEDS_TRUTH and not self.track.step_truth:
            raise ValueError(
                f"PRM {prm_name!r} needs exact step labels (no exact step truth on the hub "
                f"track); known here: {self.prm_names}"
            )
        if source in ("mc", "position") and size != BASE:
            raise ValueError(f"PRM {prm_name!r}: {source} labels exist for the base set only")
        return source, size

    def train(self, prm_name: str) -> Path:
        """Train (or reuse) the PRM of `prm_name`; targets fitted on the training split only."""
        self._check_prm(prm_name)
        out = self.dir / f"prm-{prm_name}"
        if (out / "prm.json").exists():
            return out
        _, target = PRM_LABELS[parse_prm_name(prm_name)[0]]
        transform = make_target_transform(target)
        train_raw = self.training_pairs(prm_name, "train")
        dev_raw = self.training_pairs(prm_name, "dev")
        transform.fit([s for _, s in train_raw])
        train = [(t, transform.transform(s)) for t, s in train_raw]
        dev = [(t, transform.transform(s)) for t, s in dev_raw]
        cfg = replace(self.prm_config(), target=transform.name, target_params=transform.params())
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

    def bon_pool(self, split: str = "test") -> Path:
        """`bon_pool` sampled solutions for each of `bon_problems` test problems (or of
        `bon_dev_problems` dev problems, where each PRM's aggregation is chosen)."""
        out = self.data_dir / ("bon-pool.jsonl" if split == "test" else f"bon-pool-{split}.jsonl")
        if _done(out):
            return out
        n = {"test": self.cfg.bon_problems, "dev": self.cfg.bon_dev_problems}[split]
        problems = self.track.problems(split, n)
        cfg = SampleConfig(
            n=self.cfg.bon_pool,
            temperature=self.cfg.sample_temperature,
            seed=self.cfg.seed + (1 if split == "test" else 2),
            max_new_tokens=self.cfg.sample_max_new_tokens,
            batch_size=64,
            template=self.sample_template(),
        )
        self._write_samples(out, problems, cfg, f"Best-of-N pool ({split})")
        return out

    def best_of_n(self, prm_name: str, split: str = "test") -> pd.DataFrame:
        """Best-of-N curves of one PRM over the shared pool (paired across PRMs and N)."""
        out = self.dir / (
            f"bon-{prm_name}.pkl" if split == "test" else f"bon-{split}-{prm_name}.pkl"
        )
        if _done(out):
            return pd.read_pickle(out)
        trajs = read_trajectories(self.bon_pool(split))
        probs = self.predict(prm_name, trajs)
        pools: dict[str, list[Candidate]] = {}
        for t, p in zip(trajs, probs, strict=True):
            correct = bool(t.metadata["final_correct"])
            pools.setdefault(t.metadata["problem_id"], []).append(
                Candidate.from_trajectory(t, p, correct=correct)
            )
        # a sample with no step is not a trajectory (`sample_solutions` counts and drops it), so a
        # problem can have fewer candidates than the largest N: it is left out of every N (the
        # curves stay paired), counted and logged
        full = [Pool(k, v) for k, v in pools.items() if len(v) >= max(self.cfg.bon_ns)]
        if len(full) < len(pools):
            log.warning(
                "Best-of-N (%s pool): %d of %d problems have fewer than %d samples with steps and "
                "are left out",
                split,
                len(pools) - len(full),
                len(pools),
                max(self.cfg.bon_ns),
            )
        if not full:
            raise ValueError(
                f"Best-of-N ({split} pool): no problem has {max(self.cfg.bon_ns)} samples with "
                "steps; the policy writes no parsable steps"
            )
        curves = best_of_n_curves(full, self.cfg.bon_ns, seed=self.cfg.seed)
        curves.to_pickle(out)
        return curves

    def bon_method(self, prm_name: str) -> str:
        """The PRM's selection method (``prm:<agg>`` or ``prm-vote:<agg>``) with the best
        Best-of-N accuracy at the largest N on the DEV pool (ties: the first in the table)."""
        dev = self.best_of_n(prm_name, "dev")
        top = dev[(dev["n"] == max(self.cfg.bon_ns)) & dev["method"].str.startswith("prm")]
        return str(top.loc[top["accuracy"].idxmax(), "method"])

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
                        "truth": int(t.step_labels[i]) if self.track.step_truth else None,
                        "reference": reference[t.id][i],
                    }
                )
        return pd.DataFrame(rows)

    def reference_labels(self, trajs: list[Trajectory], split: str) -> dict[str, list[int]]:
        """Per-step 0/1 reference labels by trajectory id: the exact truth on the embedded track;
        on the hub, Math-Shepherd's own '+'/'-' when the PRMs train on it, else MC's hard
        estimate (right when any rollout reaches the gold, as Math-Shepherd labels)."""
        if self.track.step_truth or self.shepherd:  # exact, or Math-Shepherd's '+'/'-'
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
        is not scored against itself on the hub track), next to the position-only labeler's
        out-of-fold scores (embedded track): the AUROC a source gets for knowing only where a
        step is."""
        df = self.step_scores("train")
        truth = df["reference"].tolist()
        out: dict[str, Any] = {
            "n_steps": len(df),
            "reference": self.reference_name,
            "share_correct": float(np.mean(truth)),
        }
        out["cpmi_vs_mc"] = rank_correlations(df["cpmi"], df["mc"])
        if self.track.step_truth:  # the floor: out-of-fold position-only scores
            trajs = read_trajectories(self.policy_samples("train"))
            df["position"] = [x for row in cross_fit_scores(trajs, seed=self.cfg.seed) for x in row]
        mc_is_reference = not self.track.step_truth and not self.shepherd
        for name in ("cpmi", "gold_term", "neg_term", "mc", "position"):
            no_truth = name == "position" and not self.track.step_truth
            if (name == "mc" and mc_is_reference) or no_truth:
                why = "MC is the reference" if name == "mc" else "needs the exact step truth"
                out[f"auroc_{name}"] = {"auroc": None, "ci": None, "why": why}
                continue
            scores = df[name].tolist()
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
        model, tok = self.labeler_lm()
        cpmi = self.cpmi_config(cpmi)
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
