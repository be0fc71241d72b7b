"""Where an experiment's models and data come from: the embedded world, or the hub (paper scale).

The *embedded* track is the generated arithmetic world and the default LM trained on it: every
step's correctness is known exactly. The *hub* track reads a policy/labeling LM, a PRM backbone,
problems in the GSM8K schema and ProcessBench from Hugging Face ids (or local copies in the same
schemas); there only final answers can be checked. Both give the experiment the same things (the
LM, problems per split, and a ProcessBench-style benchmark with a dev and a test part), so every
stage and notebook runs on either. The hub track's sources are a `hub_spec.HubSpec`.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.data.gsm8k_benchmark import write_processbench_file
from cpmi_lib.data.loaders import GSM8K_DIR, load_gsm8k_problems, load_processbench
from cpmi_lib.data.math_shepherd import ShepherdReport, graded, load_training_solutions
from cpmi_lib.data.world import Problem, stable_fraction
from cpmi_lib.data.world_data import (
    WorldSpec,
    build_world_files,
    dataset_card,
    export_hub_schemas,
    load_benchmark,
    read_problems,
)
from cpmi_lib.experiment.hub_spec import EMBEDDED, GSM8K_REFERENCE, SHARED_GSM8K, SMOLLM2, HubSpec
from cpmi_lib.lm.default_lm import (
    ContinuedLMConfig,
    LMTrainConfig,
    ensure_continued_lm,
    ensure_default_lm,
)
from cpmi_lib.lm.load import ensure_smollm2, load_lm

#: Salts of the stable hashes that split hub data, independent of any other split of the same texts.
DEV_SALT, PROCESSBENCH_DEV_SALT = "hub-dev:", "processbench-dev:"
#: The policy splits an experiment asks for, and the benchmark splits.
POLICY_SPLITS = ("train", "dev", "test")
BENCHMARK_SPLITS = ("dev", "test")


def dev_side(items: list[Trajectory], dev: bool, fraction: float, salt: str) -> list[Trajectory]:
    """The items on the dev side (`dev`) or the other side of a split by a stable hash of each
    item's question: every item of one question falls on the same side, and a `salt` makes the
    split independent of others made from the same questions."""
    return [t for t in items if (stable_fraction(t.question, salt) < fraction) == dev]


def _check_split(split: str, known: tuple[str, ...]) -> None:
    if split not in known:
        raise ValueError(f"unknown split {split!r}; known: {known}")


class Track(ABC):
    """What an experiment needs from its models and data, whatever the track."""

    #: Whether every policy step is graded exactly (`Trajectory.step_labels`).
    step_truth: bool

    def __init__(self, world: WorldSpec, lm: LMTrainConfig, cache: Path):
        self.world_spec, self.lm_config, self.cache = world, lm, cache
        self._lm: tuple[Any, Any] | None = None
        self._labeler: tuple[Any, Any] | None = None

    @functools.cached_property
    def world_dir(self) -> Path:
        """The embedded world's files (built on first use; cached by its spec)."""
        spec = self.world_spec
        return build_world_files(spec, self.cache / "worlds" / f"world-{spec.key()}")

    def default_lm_dir(self) -> Path:
        """The embedded default LM (trained on first use; cached by its config)."""
        return ensure_default_lm(self.lm_config, cache=self.cache)

    @property
    @abstractmethod
    def model_path(self) -> str:
        """The policy LM: a local directory or a hub id."""

    @property
    def labeler_path(self) -> str:
        """The labeling LM (CPMI and MC's rollouts): the policy unless the track names another."""
        return self.model_path

    @property
    @abstractmethod
    def prm_backbone(self) -> str:
        """What the PRMs are fine-tuned from: a local directory or a hub id."""

    def lm(self) -> tuple[Any, Any]:
        """The policy LM and its tokenizer, loaded once."""
        if self._lm is None:
            self._lm = self._load_lm(self.model_path)
        return self._lm

    def labeler_lm(self) -> tuple[Any, Any]:
        """The labeling LM and its tokenizer, loaded once (the policy's objects when the same)."""
        path = self.labeler_path
        if path == self.model_path:
            return self.lm()
        if self._labeler is None:
            self._labeler = self._load_lm(path)
        return self._labeler

    def _load_lm(self, path: str) -> tuple[Any, Any]:
        return load_lm(path)

    @abstractmethod
    def problems(self, split: str, n: int) -> list[Problem | Trajectory]:
        """The first `n` problems of a policy split (train, dev or test)."""

    @abstractmethod
    def benchmark(self, split: str) -> dict[str, list[Trajectory]]:
        """ProcessBench-style items of a benchmark split (dev or test), by subset."""

    def shown(self, source: str | Path) -> str:
        """A source as results record it: cached files relative to the cache, so a record does
        not depend on where the repository or cache lives."""
        path, cache = Path(source).resolve(), self.cache.resolve()
        if Path(source).exists() and path.is_relative_to(cache):
            return f"<cache>/{path.relative_to(cache).as_posix()}"
        return str(source)

    def describe(self) -> dict[str, str]:
        """The models and data sets of this track, for the record."""
        return {
            "track": type(self).__name__,
            "LM": self.shown(self.model_path),
            "labeler": self.shown(self.labeler_path),
            "PRM backbone": self.shown(self.prm_backbone),
        }


class EmbeddedTrack(Track):
    """The arithmetic world and the default LM: policy steps are graded exactly."""

    step_truth = True

    @property
    def model_path(self) -> str:
        return str(self.default_lm_dir())

    def __init__(
        self,
        world: WorldSpec,
        lm: LMTrainConfig,
        cache: Path,
        prm_lm: ContinuedLMConfig | None = None,
        labeler: ContinuedLMConfig | None = None,
    ):
        super().__init__(world, lm, cache)
        if prm_lm is not None and prm_lm.parent != lm:
            raise ValueError("the PRM backbone LM must continue the policy LM (its parent)")
        if labeler is not None and labeler.root != lm:
            raise ValueError("the labeling LM must descend from the policy LM (same world)")
        self.prm_lm, self.labeler = prm_lm, labeler

    @property
    def labeler_path(self) -> str:
        """The policy LM itself, or the labeling LM trained from it (trained on first use)."""
        if self.labeler is None:
            return self.model_path
        return str(ensure_continued_lm(self.labeler, cache=self.cache))

    @property
    def prm_backbone(self) -> str:
        """The policy LM itself, or the LM continued from it (trained on first use)."""
        if self.prm_lm is None:
            return self.model_path
        return str(ensure_continued_lm(self.prm_lm, cache=self.cache))

    def problems(self, split: str, n: int) -> list[Problem | Trajectory]:
        _check_split(split, POLICY_SPLITS)
        return list(read_problems(self.world_dir / f"problems-{split}.jsonl")[:n])

    def benchmark(self, split: str) -> dict[str, list[Trajectory]]:
        _check_split(split, BENCHMARK_SPLITS)
        return load_benchmark(self.world_dir, split)

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "world": self.shown(self.world_dir)}


class HubTrack(Track):
    """Hugging Face models and data sets: only final answers are checked (math-verify)."""

    step_truth = False

    def __init__(self, spec: HubSpec, world: WorldSpec, lm: LMTrainConfig, cache: Path):
        super().__init__(world, lm, cache)
        self.spec = spec

    def _model(self, name: str) -> str:
        if name == EMBEDDED:
            return str(self.default_lm_dir())
        if name == SMOLLM2:
            return str(ensure_smollm2(self.cache))
        return name

    @property
    def model_path(self) -> str:
        return self._model(self.spec.model)

    @property
    def prm_backbone(self) -> str:
        return self._model(self.spec.prm_backbone)

    @property
    def labeler_path(self) -> str:
        return self._model(self.spec.labeler) if self.spec.labeler else self.model_path

    def _load_lm(self, path: str) -> tuple[Any, Any]:
        return load_lm(path, device=self.spec.device, dtype=self.spec.dtype)

    @functools.cached_property
    def _exported(self) -> dict[str, Path]:
        return export_hub_schemas(self.world_dir)

    def _problem_source(self) -> tuple[str, str | None]:
        if self.spec.problems == EMBEDDED:
            return str(self._exported["gsm8k"]), None
        if self.spec.problems == SHARED_GSM8K:
            return str(GSM8K_DIR), None
        return self.spec.problems, self.spec.problems_config

    def _processbench_source(self) -> str:
        if self.spec.processbench == EMBEDDED:
            return str(self._exported["processbench"])
        if self.spec.processbench == GSM8K_REFERENCE:
            return str(self._reference_benchmark)
        return self.spec.processbench

    @functools.cached_property
    def _reference_benchmark(self) -> Path:
        """The ``"gsm8k-reference"`` benchmark: a folder in ProcessBench's layout (subset
        ``gsm8k``), made once from GSM8K's test split into the cache."""
        n = self.spec.benchmark_problems
        folder = self.cache / "benchmarks" / f"{GSM8K_REFERENCE}-{n}"
        card = folder / "README.md"  # written last: its presence means the folder is complete
        if not card.exists():
            write_processbench_file(GSM8K_DIR / "test.jsonl", folder / "gsm8k.jsonl", n)
            card.write_text(dataset_card(["gsm8k"]))
        return folder

    def problems(self, split: str, n: int) -> list[Problem | Trajectory]:
        _check_split(split, POLICY_SPLITS)
        source, config = self._problem_source()
        if split == "test":
            rows = load_gsm8k_problems(source, split=self.spec.test_split, config=config, limit=n)
        else:
            rows = load_gsm8k_problems(source, split=self.spec.train_split, config=config)
            rows = dev_side(rows, split == "dev", self.spec.dev_fraction, DEV_SALT)[:n]
        if not rows:
            raise ValueError(f"no {split} problems in {source} (split {self.spec.train_split!r})")
        return list(rows)

    @functools.cached_property
    def _shepherd(self) -> tuple[list[Trajectory], ShepherdReport]:
        if self.spec.prm_data is None:
            raise ValueError("HubSpec.prm_data is None: the PRMs train on the policy's samples")
        source, config = self._problem_source()
        known = {
            t.question: t.gold_answer
            for t in load_gsm8k_problems(source, split=self.spec.train_split, config=config)
            if t.gold_answer is not None
        }
        return load_training_solutions(self.spec.prm_data, known)

    def prm_data(self, split: str, first: int, n: int) -> tuple[list[Trajectory], dict[str, Any]]:
        """Math-Shepherd solutions `first` .. `first + n` of the train or dev side
        (`HubSpec.prm_data`), and a record of what was read, skipped and kept."""
        solutions, report = self._shepherd
        _check_split(split, ("train", "dev"))
        side = dev_side(solutions, split == "dev", self.spec.dev_fraction, DEV_SALT)
        chosen = graded(side[first : first + n])
        if not chosen:
            raise ValueError(
                f"Math-Shepherd {self.spec.prm_data}: no {split} solutions from {first} on "
                f"({len(side)} on that side; {report.to_dict()})"
            )
        return chosen, {"source": self.shown(self.spec.prm_data), **report.to_dict()}

    def benchmark(self, split: str) -> dict[str, list[Trajectory]]:
        _check_split(split, BENCHMARK_SPLITS)
        source = self._processbench_source()
        out = {}
        for subset in self.spec.processbench_subsets:
            try:
                rows = load_processbench(source, split=subset)
            except ValueError as exc:  # e.g. datasets' "Unknown split"
                raise ValueError(f"ProcessBench {source}: subset {subset!r}: {exc}") from exc
            fraction = self.spec.processbench_dev_fraction
            items = dev_side(rows, split == "dev", fraction, PROCESSBENCH_DEV_SALT)
            if not items:
                raise ValueError(f"ProcessBench {source} [{subset}] has no {split} items")
            out[subset] = items
        return out

    def describe(self) -> dict[str, str]:
        data = {} if self.spec.prm_data is None else {"PRM data": self.shown(self.spec.prm_data)}
        return {
            **super().describe(),
            **data,
            "problems": self.shown(self._problem_source()[0]),
            "ProcessBench": self.shown(self._processbench_source()),
        }


def make_track(
    hub: HubSpec | None,
    world: WorldSpec,
    lm: LMTrainConfig,
    cache: str | os.PathLike[str],
    prm_lm: ContinuedLMConfig | None = None,
    labeler: ContinuedLMConfig | None = None,
) -> Track:
    """The hub track when `hub` is given (its PRM backbone is `hub.prm_backbone`, its labeler
    `hub.labeler`), else the embedded one (PRM backbone: `prm_lm`, labeler: `labeler`; the policy
    LM where None)."""
    if hub is None:
        return EmbeddedTrack(world, lm, Path(cache), prm_lm, labeler)
    if labeler is not None:
        raise ValueError("a labeler config is the embedded track's; the hub's is HubSpec.labeler")
    return HubTrack(hub, world, lm, Path(cache))
