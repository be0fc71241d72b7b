"""Writing the experiment's sample and label files: the policy's samples with their parse report
(refused when too few could be read), Math-Shepherd's solutions in their place, and position
labels. `Experiment`'s stages decide what to write and where; these functions write it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.trajectory import write_trajectories
from cpmi_lib.experiment.config import ExperimentConfig
from cpmi_lib.experiment.tracks import HubTrack
from cpmi_lib.lm.sampling import ParseReport, SampleConfig, sample_solutions


def sample_config(cfg: ExperimentConfig, n: int, seed: int, template: str) -> SampleConfig:
    """How the policy samples `n` solutions a problem: the experiment's temperature and length."""
    return SampleConfig(
        n=n,
        temperature=cfg.sample_temperature,
        seed=seed,
        max_new_tokens=cfg.sample_max_new_tokens,
        batch_size=64,
        template=template,
    )


def write_samples(
    out: Path, lm: tuple[Any, Any], problems: list[Any], cfg: SampleConfig, what: str, model: str
) -> None:
    """Sample, and write the trajectories with their parse report (`<out>.parse.json`);
    refuse, naming the counts and the reason, samples too few of which could be read (no
    file is written then, so nothing downstream runs on them). `model` names the policy."""
    trajs = sample_solutions(*lm, problems, cfg)
    report = ParseReport.of(len(problems), cfg.n, trajs)
    write_atomically(out.with_suffix(".parse.json"), json.dumps(asdict(report), indent=2) + "\n")
    why = report.refusals()
    if why:
        raise ValueError(f"{what}: " + "; ".join(why) + f" (model {model})")
    write_trajectories(out, trajs)


def write_shepherd(
    out: Path, track: HubTrack, cfg: ExperimentConfig, split: str, extra_problems: int
) -> None:
    """The PRMs' `split` trajectories from Math-Shepherd, as many as the policy would have
    sampled (problems x samples per problem; ``"extra"``: `extra_problems` after the base set on
    the train side), with what was read, skipped and kept."""
    spp, n_train = cfg.samples_per_problem, cfg.train_problems
    if split == "dev":
        first, n, side = 0, cfg.dev_problems * spp, "dev"
    elif split == "train":
        first, n, side = 0, n_train * spp, "train"
    else:  # extra: the train side after the base set
        first, n, side = n_train * spp, extra_problems * spp, "train"
    trajs, report = track.prm_data(side, first, n)
    write_atomically(out.with_suffix(".parse.json"), json.dumps(report, indent=2) + "\n")
    write_trajectories(out, trajs)


def write_records(out: Path, records: Sequence[dict[str, Any]]) -> None:
    """JSON lines, written whole or not at all."""
    write_atomically(out, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
