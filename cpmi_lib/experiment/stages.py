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
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from cpmi_lib.core.costs import Costs
from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.paths import cache_root
from cpmi_lib.core.trajectory import Trajectory, read_trajectories, write_trajectories
from cpmi_lib.eval.best_of_n import best_of_n_curves, full_pools
from cpmi_lib.experiment.config import (
    BASE,
    BUDGET,
    FREE_SOURCES,
    LABEL_SETTINGS,
    NEEDS_TRUTH,
    PRM_LABELS,
    ExperimentConfig,
    label_run,
    parse_prm_name,
)
from cpmi_lib.experiment.natural import BenchmarkStages
from cpmi_lib.experiment.prompts import ReadPrompts
from cpmi_lib.experiment.samples import sample_config, write_records, write_samples, write_shepherd
from cpmi_lib.experiment.tracks import HubTrack, Track, make_track
from cpmi_lib.labeling.label_file import label_file
from cpmi_lib.labeling.label_results import read_labels
from cpmi_lib.labeling.outcome import outcome_label_records
from cpmi_lib.labeling.position import PositionLabeler
from cpmi_lib.lm.identity import model_identity
from cpmi_lib.lm.sampling import SampleConfig
from cpmi_lib.prm.model import ProcessRewardModel, load_prm
from cpmi_lib.prm.targets import SCORE_FIELD, scores_for_trajectories
from cpmi_lib.prm.train import train_prm

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


#: The Best-of-N pools' file names from before they were named by their settings (the default's
#: settings then), kept so that those pools are still found.
_LEGACY_POOLS = {("test", 200, 16): "bon-pool.jsonl", ("dev", 150, 16): "bon-pool-dev.jsonl"}


#: When labeling stops (`label_file`'s `stop_when`): given the costs of the file so far.
Stop = Callable[[Costs], bool] | None


def bon_pool_name(split: str, problems: int, pool: int) -> str:
    """The file of a Best-of-N pool of `pool` samples for each of `problems` problems of `split`
    (the rest of what it depends on, policy and sampling settings, is the folder's key)."""
    return _LEGACY_POOLS.get((split, problems, pool), f"bon-pool-{split}-{problems}x{pool}.jsonl")


class Experiment(ReadPrompts, BenchmarkStages):
    """The stages of the PRM experiment over one work directory (with its settings as each model
    reads them, `ReadPrompts`; the benchmarks and the evaluation on them, `BenchmarkStages`)."""

    def __init__(self, cfg: ExperimentConfig, work_dir: str | os.PathLike[str] | None = None):
        self.cfg = cfg
        cache = cache_root()
        self.cache = cache
        self.feature_dir = cache / "features"  # PRM backbone features (`prm.feature_cache`)
        root = Path(work_dir) if work_dir else cache / "experiments"
        # the policy's samples and Best-of-N pools; below them, one folder per labeling setup
        # (labeling LM, CPMI and MC settings) for its labels, budget plan and the extra samples
        # that plan asks for: labelers share the samples, so they label the same trajectories
        self.data_dir = root / f"samples-{cfg.sample_key()}"
        self.label_dir = self.data_dir / f"labels-{cfg.label_key()}"
        # the measured budget plan with its extra samples and labels (`studies.budget`)
        self.budget_dir = self.label_dir / "budget"
        self.dir = root / f"prm-{cfg.key()}"  # PRMs and their evaluations
        self.label_dir.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
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

    # ------------------------------------------------------------------ stages
    def policy_samples(self, split: str) -> Path:
        """The policy's sampled solutions of `split` problems: graded exactly on the embedded
        track, by final answer on the hub. ``"extra"``: the train problems after the base set's,
        as the measured budget plan sampled and labeled them (`cpmi_lib.studies.budget`,
        never here). With `HubSpec.prm_data`, the train, dev and extra sets are Math-Shepherd's
        solutions instead (`write_shepherd`); Best-of-N pools stay the policy's."""
        folder = self.budget_dir if split == "extra" else self.data_dir
        out = folder / f"policy-{split}.jsonl"
        if _done(out):
            return out
        if split == "extra":
            raise FileNotFoundError(f"{out}: written by the budget plan (studies.budget)")
        if self.shepherd is not None:  # Math-Shepherd's solutions instead of the policy's
            write_shepherd(out, self.shepherd, self.cfg, split, 0)
            return out
        n = {"train": self.cfg.train_problems, "dev": self.cfg.dev_problems}[split]
        problems = self.track.problems(split, n)
        cfg = sample_config(
            self.cfg, self.cfg.samples_per_problem, self.cfg.seed, self.sample_template()
        )
        self._write_samples(out, problems, cfg, f"policy samples ({split})")
        return out

    @property
    def shepherd(self) -> HubTrack | None:
        """The hub track when the PRMs train on Math-Shepherd (`HubSpec.prm_data`), else None."""
        track = self.track
        return track if isinstance(track, HubTrack) and track.spec.prm_data else None

    def _write_samples(self, out: Path, problems: list[Any], cfg: SampleConfig, what: str) -> None:
        write_samples(out, self.lm(), problems, cfg, what, str(self.track.model_path))

    def parse_reports(self) -> dict[str, dict[str, int]]:
        """The parse report of every sample file written so far, by file name."""
        return {
            p.name.removesuffix(".parse.json"): json.loads(p.read_text())
            for folder in (self.data_dir, self.label_dir)
            for p in sorted(folder.glob("*.parse.json"))
        }

    def labels(self, labeler: str, split: str, first: int | None = None) -> Path:
        """Labels of the policy samples of `split` (resumable): ``cpmi``, ``cpmi_noself``, ``mc``
        (`label_run`), or the free ``position`` and ``outcome`` (`FREE_SOURCES`). The extra
        split's CPMI labels are the measured budget plan's (`budget_plan` writes them).

        `first`: labels of at least the split's first n samples, for a measurement that needs no
        more (`cpmi_lib.studies.labeler_skill`): the whole split's file when it already covers
        them, else a file of those n alone."""
        trajs = self.policy_samples(split)
        if labeler in FREE_SOURCES:  # the same whoever labels (extra: with its samples)
            folder = self.budget_dir if split == "extra" else self.data_dir
            out = folder / f"labels-{labeler}-{split}.jsonl"
            if not _done(out):  # position: fit on the base set's truth
                pos = labeler == "position"
                make = self.position_labeler().label_records if pos else outcome_label_records
                write_records(out, make(read_trajectories(trajs)))
            return out
        folder = self.budget_dir if split == "extra" else self.label_dir
        out = folder / f"labels-{labeler}-{split}.jsonl"
        if split == "extra" and labeler == "cpmi":  # measured by the budget plan, not here
            if not _done(out):
                raise FileNotFoundError(f"{out}: written by the equal-budget plan")
            return out
        if first is not None:
            head = read_trajectories(trajs)[:first]
            if _done(out) and {t.id for t in head} <= {r["id"] for r in read_labels(out)}:
                return out
            trajs = self.label_dir / f"policy-{split}-first{first}.jsonl"
            if not _done(trajs):
                write_trajectories(trajs, head)
            out = self.label_dir / f"labels-{labeler}-{split}-first{first}.jsonl"
        self.label_into(labeler, trajs, out)
        return out

    def label_into(self, labeler: str, trajs: Path, out: Path, stop_when: Stop = None) -> Costs:
        """Label the trajectory file `trajs` into `out` with the labeling LM (`label_run`;
        resumable; `stop_when` as for `label_file`); the costs of the whole file."""
        cfg = label_run(self.cfg, labeler, self.cpmi_config(), self.mc_config())
        model, tok = self.labeler_lm()
        # by its cache-relative name: labels stay resumable when the cache moves or is linked
        name_path = self.track.labeler_path
        name = self.track.shown(name_path)
        # by content too: a re-trained labeler in the same folder never resumes another's file
        run = dict(resume=True, stop_when=stop_when, model_identity=model_identity(name_path))
        return label_file(model, tok, name, trajs, out, cfg, **run)

    def position_labeler(self) -> PositionLabeler:
        """The position-only labeler, fit on the exact truth of the base training set."""
        return PositionLabeler.fit(read_trajectories(self.policy_samples("train")))

    @property
    def budget_file(self) -> Path:
        """The equal-budget plan, written once (`cpmi_lib.studies.budget.budget_plan`)."""
        return self.budget_dir / "budget.json"

    def planned(self, field: str) -> int:
        """A count of the equal-budget plan: it sizes the extra samples and the budget-matched
        set, so those stages wait for the plan rather than guess it."""
        if not _done(self.budget_file):
            raise FileNotFoundError(
                f"{self.budget_file}: no equal-budget plan yet; the budget-matched set needs one "
                "(cpmi_lib.studies.budget.budget_plan(exp) measures and writes it)"
            )
        return int(json.loads(self.budget_file.read_text())[field])

    def training_trajectories(self, size: str | int) -> list[Trajectory]:
        """The base set, the budget-matched set (base + extra, `planned`) or the first n of
        the budget-matched set (so a smaller set is always a prefix of a larger one)."""
        base = read_trajectories(self.policy_samples("train"))
        if size == BASE or (isinstance(size, int) and size <= len(base)):
            return base if size == BASE else base[: int(size)]
        extra = read_trajectories(self.policy_samples("extra"))
        if size == BUDGET:
            # samples with no step are dropped by `sample_solutions`: the set can fall a few short
            n = min(self.planned("cpmi_trajectories"), len(base) + len(extra))
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
        """Train (or reuse) the PRM of `prm_name` with `train_prm`: its label source's target
        transform, fitted on the training split only."""
        self._check_prm(prm_name)
        out = self.dir / f"prm-{prm_name}"
        if (out / "prm.json").exists():
            return out
        _, target = PRM_LABELS[parse_prm_name(prm_name)[0]]
        train = self.training_pairs(prm_name, "train")
        dev = self.training_pairs(prm_name, "dev")
        cfg = replace(self.prm_config(), target=target)
        train_prm(self.track.prm_backbone, train, dev, out, cfg, feature_cache=self.feature_dir)
        return out

    def load_prm(self, prm_name: str) -> ProcessRewardModel:
        """The PRM of `prm_name` (trained first if need be), with the shared feature cache."""
        return load_prm(self.train(prm_name), feature_cache=self.feature_dir)

    def predict(self, prm_name: str, trajs: list[Trajectory]) -> list[list[float]]:
        """Per-step probabilities of the PRM of `prm_name` (trained first if need be)."""
        return self.load_prm(prm_name).predict(trajs)

    # ------------------------------------------------------------------ evaluation
    # `processbench` (either benchmark) is `BenchmarkStages`'s
    def bon_pool(self, split: str = "test") -> Path:
        """`bon_pool` sampled solutions for each of `bon_problems` test problems (or of
        `bon_dev_problems` dev problems, where each PRM's aggregation is chosen). The file is
        named by its own settings (`bon_pool_name`): they are not in the samples' key."""
        n = {"test": self.cfg.bon_problems, "dev": self.cfg.bon_dev_problems}[split]
        out = self.data_dir / bon_pool_name(split, n, self.cfg.bon_pool)
        if _done(out):
            return out
        problems = self.track.problems(split, n)
        seed = self.cfg.seed + (1 if split == "test" else 2)
        cfg = sample_config(self.cfg, self.cfg.bon_pool, seed, self.sample_template())
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
        full = full_pools(trajs, probs, max(self.cfg.bon_ns), split)
        curves = best_of_n_curves(full, self.cfg.bon_ns, seed=self.cfg.seed)
        curves.to_pickle(out)
        return curves

    def bon_method(self, prm_name: str) -> str:
        """The PRM's selection method (``prm:<agg>`` or ``prm-vote:<agg>``) with the best
        Best-of-N accuracy at the largest N on the DEV pool (ties: the first in the table)."""
        dev = self.best_of_n(prm_name, "dev")
        top = dev[(dev["n"] == max(self.cfg.bon_ns)) & dev["method"].str.startswith("prm")]
        return str(top.loc[top["accuracy"].idxmax(), "method"])
