"""The benchmarks of the experiment as stages: the natural-error benchmark (sampled, graded,
balanced, written in the ProcessBench schema and read back) and the ProcessBench-style evaluation
of any step scorer on either benchmark. `Experiment` inherits them (`BenchmarkStages`).

**Two benchmarks.** ``"synthetic"``: the world's gold solutions with one synthetic corruption
(`cpmi_lib.data.world_benchmark`; `Track.benchmark`). ``"natural"``: solutions sampled at the
policy's temperature by three generator LMs, one subset each (`cpmi_lib.data.natural_benchmark`
holds the balance rule):

- ``weak``: the policy LM's recipe with a share of its training steps (`weak_lm`), trained and
  cached like every LM;
- ``policy``: the policy LM;
- ``strong``: the PRM backbone LM (`ExperimentConfig.prm_lm`: the policy trained further).

**Problems.** Each generator's problems are its own block of the world's dev or test stream
*after* the world's own dev or test problems (`natural_problems`): disjoint from the PRMs'
training and dev samples, the Best-of-N pools and the synthetic benchmark, whatever their sizes,
and from each other, so the subsets are independent.

**Files** (under the samples folder, ``natural-<natural_key>/``, keyed by the sizes and every
generator LM): ``samples-<generator>-<split>.jsonl`` (graded, with their parse report),
``report-<split>.json`` (what each subset was made from), ``processbench-<split>/`` (one file a
subset in the `Qwen/ProcessBench` schema and a card, written last). Evaluations read the items
back through `load_processbench`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.data.natural_benchmark import (
    GENERATORS,
    is_written,
    read_processbench,
    select_items,
    write_processbench,
)
from cpmi_lib.data.world import Problem, build_world
from cpmi_lib.eval.evaluate import StepScorer, evaluate_prm
from cpmi_lib.experiment.config import ExperimentConfig
from cpmi_lib.experiment.samples import sample_config, write_samples
from cpmi_lib.experiment.tracks import Track
from cpmi_lib.lm.default_lm import ContinuedLMConfig, LMTrainConfig, ensure_lm
from cpmi_lib.lm.load import load_lm
from cpmi_lib.prm.model import ProcessRewardModel

SYNTHETIC, NATURAL = "synthetic", "natural"
BENCHMARKS = (SYNTHETIC, NATURAL)
#: The weak generator's seed is the policy LM's plus this: no other LM of a preset has it (the
#: policy's are 0-2, the PRM backbones' 1 and 1001-1002, the labeler axis's single digits), so it
#: neither replays another LM's problems and batch order nor shares a cache key.
WEAK_SEED_OFFSET = 2000
#: Sampling seeds: the run's seed + this + 100 x the generator's place + 50 on test (batch b of a
#: file is seeded with its seed + b, so no two files share a batch seed at these sizes).
NATURAL_SAMPLE_SEED = 3000
#: Bump when the natural benchmark's construction changes what a config produces.
NATURAL_FORMAT = 1


def weak_lm(cfg: ExperimentConfig) -> LMTrainConfig:
    """The weak generator: the policy LM's recipe with `weak_step_fraction` of its training
    steps (warm-up capped at half of them) and a seed of its own (`WEAK_SEED_OFFSET`)."""
    lm = cfg.lm
    steps = max(1, round(lm.train_steps * cfg.natural.weak_step_fraction))
    return replace(
        lm,
        train_steps=steps,
        warmup_steps=min(lm.warmup_steps, steps // 2),
        seed=lm.seed + WEAK_SEED_OFFSET,
    )


def generator_lms(cfg: ExperimentConfig) -> dict[str, LMTrainConfig | ContinuedLMConfig]:
    """The LM config of each generator of `cfg.natural`, in its order."""
    if cfg.hub is not None:
        raise ValueError(
            "the natural-error benchmark grades steps exactly in the embedded world; the hub "
            "track has no step truth (its benchmark is HubSpec.processbench)"
        )
    if "strong" in cfg.natural.generators and cfg.prm_lm is None:
        raise ValueError(
            "the natural benchmark's 'strong' generator is the PRM backbone LM, and "
            "ExperimentConfig.prm_lm is None; drop 'strong' from NaturalBenchmarkConfig.generators"
        )
    lms: dict[str, LMTrainConfig | ContinuedLMConfig | None] = {
        "weak": weak_lm(cfg),
        "policy": cfg.lm,
        "strong": cfg.prm_lm,
    }
    return {g: lm for g in cfg.natural.generators if (lm := lms[g]) is not None}


def natural_key(cfg: ExperimentConfig) -> str:
    """What the natural benchmark depends on beyond its samples folder (world, policy LM,
    temperature, token limit, seed): its sizes and every generator LM."""
    blob = {
        "format": NATURAL_FORMAT,
        "natural": cfg.natural.to_dict(),
        "generators": {g: lm.key() for g, lm in generator_lms(cfg).items()},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def natural_problems(cfg: ExperimentConfig, split: str) -> dict[str, list[Problem]]:
    """Each generator's problems of `split` (dev or test): consecutive blocks of the world's
    `split` stream after the world's own `split` problems. `build_world` keeps the first problems
    of a split whatever size is asked, so those are exactly the world files' problems."""
    spec, natural = cfg.world, cfg.natural
    base, per = spec.sizes.get(split, 0), natural.problems(split)
    total = base + per * len(natural.generators)
    stream = build_world(spec.world, {split: total}, seed=spec.seed)[split]
    return {
        g: stream[base + i * per : base + (i + 1) * per] for i, g in enumerate(natural.generators)
    }


def sample_seed(cfg: ExperimentConfig, generator: str, split: str) -> int:
    """The seed of one generator's samples of one split (`NATURAL_SAMPLE_SEED`)."""
    offset = 100 * GENERATORS.index(generator) + (50 if split == "test" else 0)
    return cfg.seed + NATURAL_SAMPLE_SEED + offset


class BenchmarkStages:
    """The natural benchmark's stages and the evaluation on either benchmark (`Experiment`
    provides the attributes, `train` and `load_prm`)."""

    cfg: ExperimentConfig
    track: Track
    cache: Path
    data_dir: Path
    dir: Path
    sample_template: Callable[[], str]
    train: Callable[[str], Path]
    load_prm: Callable[[str], ProcessRewardModel]

    # ------------------------------------------------------------------ the natural benchmark
    @property
    def natural_dir(self) -> Path:
        """The natural benchmark's files, below the samples folder, keyed by `natural_key`."""
        return self.data_dir / f"natural-{natural_key(self.cfg)}"

    def generator_path(self, generator: str) -> str:
        """A generator LM's directory (trained on first use, cached by its config)."""
        lm = generator_lms(self.cfg)[generator]
        if generator == "policy":
            return self.track.model_path
        if generator == "strong":
            return self.track.prm_backbone
        return str(ensure_lm(lm, cache=self.cache))

    def natural_samples(self, generator: str, split: str) -> Path:
        """`samples_per_problem` solutions of each of the generator's problems of `split`,
        graded exactly, at the policy's temperature and token limit (cached)."""
        out = self.natural_dir / f"samples-{generator}-{split}.jsonl"
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        problems = natural_problems(self.cfg, split)[generator]
        path = self.generator_path(generator)
        lm = self.track.lm() if generator == "policy" else load_lm(path)
        n = self.cfg.natural.samples_per_problem
        cfg = sample_config(
            self.cfg, n, sample_seed(self.cfg, generator, split), self.sample_template()
        )
        what = f"natural benchmark, {generator} samples ({split})"
        write_samples(out, lm, list(problems), cfg, what, self.track.shown(path))
        return out

    def natural_benchmark(self, split: str) -> dict[str, list[Trajectory]]:
        """The natural benchmark's items of `split` by subset (generator), as read back from
        their ProcessBench-schema files (built and written first if need be)."""
        folder = self.natural_dir / f"processbench-{split}"
        generators = self.cfg.natural.generators
        if not is_written(folder):
            problems = natural_problems(self.cfg, split)
            subsets, names, reports = {}, {}, {}
            for g in generators:
                samples = read_trajectories(self.natural_samples(g, split))
                pool = [p.id for p in problems[g]]
                subsets[g], report = select_items(pool, samples, self.cfg.natural.items(split))
                names[g] = self.track.shown(self.generator_path(g))
                reports[g] = {
                    "generator": names[g],
                    "lm_key": generator_lms(self.cfg)[g].key(),
                    "final_accuracy": _share(t.metadata["final_correct"] for t in samples),
                    "all_steps_right": _share(t.first_error == -1 for t in samples),
                    **report.to_dict(),
                }
            report_file = self.natural_dir / f"report-{split}.json"
            write_atomically(report_file, json.dumps(reports, indent=2) + "\n")
            write_processbench(folder, subsets, names)
        return read_processbench(folder, generators)

    def natural_report(self, split: str) -> dict[str, dict[str, Any]]:
        """What each subset of `split` was made from: the generator, its samples' accuracy,
        samples dropped for an unknown first error, problems by what they could give, and the
        items chosen of each kind (`SubsetReport`)."""
        self.natural_benchmark(split)
        return json.loads((self.natural_dir / f"report-{split}.json").read_text())

    def benchmark(self, benchmark: str, split: str) -> dict[str, list[Trajectory]]:
        """The items of a benchmark's dev or test part, by subset."""
        if benchmark == SYNTHETIC:
            return self.track.benchmark(split)
        if benchmark == NATURAL:
            return self.natural_benchmark(split)
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {BENCHMARKS}")

    # ------------------------------------------------------------------ evaluation
    def processbench(self, prm_name: str, benchmark: str = SYNTHETIC) -> dict[str, Any]:
        """First-error F1 of the PRM `prm_name` on the test part of `benchmark`, τ chosen on its
        dev part (`evaluate_prm`, its CIs seeded by the run's seed)."""
        return self.scored_processbench(prm_name, lambda: self.load_prm(prm_name), benchmark)

    def processbench_file(self, name: str, benchmark: str = SYNTHETIC) -> Path:
        """Where the evaluation of scorer `name` on `benchmark` is cached: the synthetic one's
        under the name results were always kept under, the natural one's beside the natural
        benchmark's key."""
        if benchmark == SYNTHETIC:
            return self.dir / f"processbench-{name}.json"
        if benchmark == NATURAL:
            return self.dir / f"natural-{natural_key(self.cfg)}" / f"processbench-{name}.json"
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {BENCHMARKS}")

    def scored_processbench(
        self, name: str, scorer: Callable[[], StepScorer], benchmark: str = SYNTHETIC
    ) -> dict[str, Any]:
        """`processbench` for any step scorer (made by `scorer` only when not cached), e.g. an
        untrained baseline (`cpmi_lib.studies.truth_prm.surprise_processbench`)."""
        out = self.processbench_file(name, benchmark)
        if out.exists():
            return json.loads(out.read_text())
        dev, test = self.benchmark(benchmark, "dev"), self.benchmark(benchmark, "test")
        try:
            evaluation = evaluate_prm(scorer(), dev, test, seed=self.cfg.seed)
        except ValueError as exc:  # e.g. a generator that solved none of its problems
            if benchmark == SYNTHETIC:
                raise
            counts = {
                split: {s: _kinds(x) for s, x in b.items()}
                for split, b in (("dev", dev), ("test", test))
            }
            raise ValueError(
                f"{exc}; natural benchmark items (all-correct, erroneous) per subset: {counts} "
                f"(see {self.natural_dir}/report-*.json)"
            ) from exc
        # the synthetic benchmark's records keep the fields they always had
        tag = {} if benchmark == SYNTHETIC else {"benchmark": benchmark}
        result = {"prm": name, **tag, **evaluation.to_dict()}
        write_atomically(out, json.dumps(result, indent=2))
        return result


def _kinds(items: list[Trajectory]) -> tuple[int, int]:
    return sum(t.first_error == -1 for t in items), sum(t.first_error != -1 for t in items)


def _share(flags: Any) -> float | None:
    values = [bool(x) for x in flags]
    return sum(values) / len(values) if values else None
