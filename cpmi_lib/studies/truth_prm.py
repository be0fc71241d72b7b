"""What does the truth PRM need to learn? Exact-truth PRMs under a few recipes (issue 10, item 1).

Every PRM here learns from the exact step truth of the embedded world, so the label source is
perfect and only the recipe varies (all with the value-head PRM, `VALUE_HEAD_PRM`, which the
experiment used before this diagnosis led to the surprise head): how many policy trajectories,
whether corrupted gold solutions (the benchmark's kind of error) are mixed in, how long it trains.
Each is scored by the ProcessBench-style F1 on the world benchmark: τ and the recipe are to be
chosen on the DEV benchmark (its F1 at its own τ is reported as ``dev_f1``); ``test_f1`` is the
held-out number.

The untrained baseline every PRM is measured against lives here too: the policy LM's surprise
(`lm_surprise`, the surprise head's ``min_logprob`` feature read as a probability), on the
synthetic and the natural-error benchmark alike (`surprise_processbench`).

A study, not a speed benchmark: its numbers are what the README's diagnosis of the value head rests
on. Every PRM is trained by `train_prm` and evaluated by `evaluate_prm`, like the experiment's.

Run: ``.venv/bin/python -m cpmi_lib.studies.truth_prm [--recipes base mix ...]`` (the default LM
must be trained or is trained first; sampling and each PRM take minutes on 2 CPU cores). Writes
``results/benchmarks/truth_prm.{json,md}``; recipes already measured are kept, so a run can add
recipes one at a time.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd
import torch

from cpmi_lib.core.paths import RESULTS
from cpmi_lib.core.roc import auroc
from cpmi_lib.core.trajectory import Trajectory, read_trajectories, write_trajectories
from cpmi_lib.data.world_data import build_world_files, load_benchmark, read_problems
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.eval.evaluate import PRMEvaluation, evaluate_prm
from cpmi_lib.experiment.config import ExperimentConfig
from cpmi_lib.experiment.natural import BENCHMARKS
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.lm.default_lm import DEFAULT_CACHE, ensure_default_lm
from cpmi_lib.lm.load import load_lm
from cpmi_lib.lm.sampling import SampleConfig, sample_solutions
from cpmi_lib.prm.config import PRMConfig
from cpmi_lib.prm.encoding import encode_for_prm, step_spans
from cpmi_lib.prm.features import SURPRISE_FEATURES, step_features
from cpmi_lib.prm.model import load_prm
from cpmi_lib.prm.train import train_prm

OUT = RESULTS / "benchmarks" / "truth_prm"
WORK = DEFAULT_CACHE / "bench-truth-prm"


@dataclass(frozen=True)
class Recipe:
    """Training data and length of one truth PRM; the PRM settings are the experiment's."""

    policy_problems: int = 600  # train problems, the experiment's samples_per_problem each
    corrupted: int = 0  # extra gold/corrupted solutions (half each) of further train problems
    epochs: float | None = None  # None: the experiment's
    patience: int | None = None
    lr: float | None = None  # None: the experiment's


#: The PRM recipe these rows measure: the value head the experiment used before issue 10 (its
#: default is now the surprise head over the continued LM; see the README).
VALUE_HEAD_PRM = PRMConfig(epochs=4, lr=1e-3, batch_size=16, threads=2, patience=2, head="value")

RECIPES = {
    "base": Recipe(),
    "mix": Recipe(corrupted=1200),
    "long": Recipe(epochs=12, patience=3),
    "policy-2400": Recipe(policy_problems=2400),
    "policy-6000": Recipe(policy_problems=6000),
    "mix-long": Recipe(corrupted=1200, epochs=12, patience=3),
    "mix-lr3e-4": Recipe(corrupted=1200, lr=3e-4, epochs=8, patience=3),
    "mix-lr1e-4": Recipe(corrupted=1200, lr=1e-4, epochs=8, patience=3),
    "mix-2400-long": Recipe(policy_problems=2400, corrupted=4800, epochs=12, patience=3),
}


def lm_surprise(model, tok, trajs: list[Trajectory], batch_size: int = 32) -> list[list[float]]:
    """Per step, the LM's smallest probability of one of the step's own tokens (its separator
    included) given everything before it: a verifier with no training at all. It shows how much
    of the step truth the backbone already holds: a PRM far below it fails to read it out, not to
    know it. The surprise PRM head's own feature (`step_features`' ``min_logprob``), read as a
    probability; steps beyond the PRM encoding's length get the last kept step's, as a PRM's."""
    encoded = [encode_for_prm(tok, t.question, t.steps, trajectory_id=t.id) for t in trajs]
    spans = [step_spans(e.input_ids, e.label_positions, e.n_prompt_tokens) for e in encoded]
    column = SURPRISE_FEATURES.index("min_logprob")
    out = []
    for features, t in zip(step_features(model, spans, batch_size), trajs, strict=True):
        probs = features[:, column].exp().tolist()
        out.append(probs + [probs[-1]] * (t.n_steps - len(probs)))
    return out


class LMSurprise:
    """`lm_surprise` as a step scorer, so that `evaluate_prm` scores it like a trained PRM."""

    def __init__(self, model, tok) -> None:
        self.model, self.tok = model, tok

    def predict(self, trajectories: list[Trajectory]) -> list[list[float]]:
        return lm_surprise(self.model, self.tok, trajectories)


#: The name the untrained surprise baseline's evaluations are cached under (no PRM has it).
SURPRISE = "lm-surprise"


def surprise_processbench(
    exp: Experiment, benchmarks: tuple[str, ...] = BENCHMARKS
) -> dict[str, dict[str, Any]]:
    """The untrained-surprise baseline (`LMSurprise` of the policy LM) on each benchmark, scored
    as the PRMs are (`Experiment.scored_processbench`: τ chosen on the benchmark's dev part, F1
    on its test part, cached). Its F1 is ``result[benchmark]["test"]["headline_f1"]``."""
    return {
        b: exp.scored_processbench(SURPRISE, lambda: LMSurprise(*exp.lm()), b) for b in benchmarks
    }


def f1_of(evaluation: PRMEvaluation) -> dict[str, object]:
    """The table's columns from one evaluation: τ and F1 from dev, the held-out test F1."""
    test = evaluation.test
    return {
        "tau_from_dev": evaluation.threshold_from_dev,
        "dev_f1": evaluation.dev_f1,
        "test_f1": test.headline_f1,
        "test_f1_ci": list(test.headline_ci),
        "test_subset_f1": {k: m.f1 for k, m in test.subsets.items()},
    }


def _save(results: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipes", nargs="*", default=["base", "mix", "long"], choices=RECIPES)
    parser.add_argument(
        "--lm-surprise", action="store_true", help="also score the untrained LM-surprise verifier"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    exp = ExperimentConfig()
    biggest = max(
        (RECIPES[r].policy_problems + RECIPES[r].corrupted for r in args.recipes), default=0
    )
    # A larger train split only extends the stream: dev, test and the first train problems are
    # the default world's own (see `world.build_world`).
    spec = replace(exp.world, sizes={**exp.world.sizes, "train": max(biggest, 2000)})
    world = build_world_files(spec, WORK / f"world-{spec.key()}")
    train_problems = read_problems(world / "problems-train.jsonl")
    lm_dir = ensure_default_lm(exp.lm)
    model, tok = load_lm(lm_dir)
    bench_splits = (load_benchmark(world, "dev"), load_benchmark(world, "test"))

    def policy(split: str, n: int) -> list[Trajectory]:
        path = WORK / f"policy-{spec.key()}-{split}-{n}x{exp.samples_per_problem}.jsonl"
        if not path.exists():
            problems = (
                train_problems
                if split == "train"
                else read_problems(world / f"problems-{split}.jsonl")
            )[:n]
            cfg = SampleConfig(
                n=exp.samples_per_problem,
                temperature=exp.sample_temperature,
                seed=exp.seed,
                max_new_tokens=exp.sample_max_new_tokens,
            )
            write_trajectories(path, sample_solutions(model, tok, problems, cfg))
        return read_trajectories(path)

    def corrupted(start: int, n: int) -> list[Trajectory]:
        rng = random.Random(exp.seed)
        problems = train_problems[start : start + n]
        return [
            (corrupt(p, rng) or p.gold_trajectory()) if i % 2 else p.gold_trajectory()
            for i, p in enumerate(problems)
        ]

    dev = policy("dev", exp.dev_problems)

    results = (
        json.loads(OUT.with_suffix(".json").read_text())
        if OUT.with_suffix(".json").exists()
        else {}
    )
    if args.lm_surprise:
        start = time.perf_counter()
        results["lm-surprise (no training)"] = {
            "recipe": None,
            "train_trajectories": 0,
            "train_steps": 0,
            "best_dev_loss": None,
            **f1_of(evaluate_prm(LMSurprise(model, tok), *bench_splits, seed=exp.seed)),
            # the policy's own mistakes: steps of its dev samples against their exact truth
            "policy_dev_step_auroc": auroc(
                [x for scores in lm_surprise(model, tok, dev) for x in scores],
                [int(x) for t in dev for x in t.step_labels],
            ),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print("lm-surprise", json.dumps(results["lm-surprise (no training)"]), flush=True)
        _save(results)
    for name in args.recipes:
        recipe = RECIPES[name]
        train = policy("train", recipe.policy_problems)
        train += corrupted(recipe.policy_problems, recipe.corrupted)
        cfg = VALUE_HEAD_PRM
        if recipe.epochs is not None:
            cfg = replace(cfg, epochs=recipe.epochs)
        if recipe.lr is not None:
            cfg = replace(cfg, lr=recipe.lr)
        if recipe.patience is not None:
            cfg = replace(cfg, patience=recipe.patience)
        start = time.perf_counter()
        out = WORK / "prms" / name
        result = train_prm(
            lm_dir,
            [(t, [float(x) for x in t.step_labels]) for t in train],
            [(t, [float(x) for x in t.step_labels]) for t in dev],
            out,
            cfg,  # target "truth": the exact 0/1 step labels as they are
        )
        evaluation = evaluate_prm(load_prm(out), *bench_splits, seed=exp.seed)
        results[name] = {
            "recipe": asdict(recipe),
            "train_trajectories": len(train),
            "train_steps": sum(t.n_steps for t in train),
            "best_dev_loss": result.best_eval_loss,
            **f1_of(evaluation),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(name, json.dumps(results[name]), flush=True)
        _save(results)
    rows = [
        {
            "recipe": name,
            "train trajectories": r["train_trajectories"],
            "train steps": r["train_steps"],
            "best dev loss": "—" if r["best_dev_loss"] is None else f"{r['best_dev_loss']:.3f}",
            "dev F1 (τ from dev)": r["dev_f1"],
            "test F1 (95% CI)": f"{r['test_f1']:.3f} [{r['test_f1_ci'][0]:.3f}, "
            f"{r['test_f1_ci'][1]:.3f}]",
            "seconds": r["seconds"],
        }
        for name, r in results.items()
    ]
    OUT.with_suffix(".md").write_text(
        pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f") + "\n"
    )


if __name__ == "__main__":
    main()
