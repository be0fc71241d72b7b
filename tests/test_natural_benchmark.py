"""The natural-error benchmark: sampled solutions of world problems by three generator LMs, exact
first errors, balanced subsets, the ProcessBench schema round trip, and its cached stage."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.data.natural_benchmark import (
    NaturalBenchmarkConfig,
    processbench_rows,
    read_processbench,
    select_items,
    write_processbench,
)
from cpmi_lib.data.world import Problem, build_world
from cpmi_lib.data.world_data import WorldSpec, read_problems
from cpmi_lib.data.world_grading import grade_steps, graded_trajectory
from cpmi_lib.experiment import natural
from cpmi_lib.experiment.config import ExperimentConfig
from cpmi_lib.experiment.hub_spec import HubSpec
from cpmi_lib.experiment.natural import (
    NATURAL,
    SYNTHETIC,
    generator_lms,
    natural_key,
    natural_problems,
    weak_lm,
)
from cpmi_lib.experiment.presets import PRESETS
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.lm.default_lm import ContinuedLMConfig
from cpmi_lib.prm.config import PRMConfig
from cpmi_lib.studies.truth_prm import SURPRISE, surprise_processbench

# ------------------------------------------------------------------------------ building items


@pytest.fixture(scope="module")
def problems(tiny_world) -> list[Problem]:
    return build_world(tiny_world, {"test": 12})["test"]


def _correct(p: Problem, j: int) -> Trajectory:
    return graded_trajectory(p, p.gold_steps, p.answer, f"{p.id}-sample-{j}")


def _wrong(p: Problem, j: int) -> Trajectory:
    steps = [p.gold_steps[0].replace(" = ", " = 1"), *p.gold_steps[1:]]
    return graded_trajectory(p, steps, p.answer, f"{p.id}-sample-{j}")


def _unknown(p: Problem, j: int) -> Trajectory:  # every step right, a wrong answer line
    return graded_trajectory(p, p.gold_steps, p.answer + "1", f"{p.id}-sample-{j}")


def _samples(problems: list[Problem], kinds: str) -> list[Trajectory]:
    """One problem a letter: c (all-correct samples only), e (erroneous only), b (both),
    u (only samples whose first error is unknown)."""
    make = {"c": [_correct], "e": [_wrong], "b": [_wrong, _correct], "u": [_unknown, _unknown]}
    pairs = zip(problems[: len(kinds)], kinds, strict=True)
    return [f(p, j) for p, k in pairs for j, f in enumerate(make[k])]


def _kinds(items: list[Trajectory]) -> list[str]:
    return ["c" if t.first_error == -1 else "e" for t in items]


def test_the_samples_first_errors_are_exact(problems):
    p = problems[0]
    assert (_correct(p, 0).first_error, _wrong(p, 0).first_error) == (-1, 0)
    assert _unknown(p, 0).first_error is None
    assert grade_steps(p, _wrong(p, 0).steps, p.answer).first_error == 0


def test_items_are_half_erroneous_half_correct_one_per_problem(problems):
    ids = [p.id for p in problems[:8]]
    items, report = select_items(ids, _samples(problems, "ccceebbb"), 6)
    assert (report.erroneous_items, report.correct_items, report.balanced) == (3, 3, True)
    assert len({t.metadata["problem_id"] for t in items}) == len(items) == 6
    # pool order; single-sided problems first (c c c, e e), then a flexible one to the short side
    assert [t.metadata["problem_id"] for t in items] == ids[:6]
    assert _kinds(items) == ["c", "c", "c", "e", "e", "e"]
    assert (report.correct_only, report.erroneous_only, report.either) == (3, 2, 3)


def test_flexible_problems_never_cost_an_item_a_single_sided_one_could_give(problems):
    """Flexible problems first would give c e c and leave the erroneous side short; the rule
    fills both halves whenever one item per problem can."""
    items, report = select_items([p.id for p in problems[:5]], _samples(problems, "bbbcc"), 4)
    assert report.balanced and sorted(_kinds(items)) == ["c", "c", "e", "e"]


def test_a_side_the_samples_cannot_fill_is_made_up_by_the_other(problems):
    items, report = select_items([p.id for p in problems[:8]], _samples(problems, "ceeeeeuu"), 6)
    # one problem can give an all-correct item: 1 correct, 5 erroneous, still 6 items
    assert (report.correct_items, report.erroneous_items, report.balanced) == (1, 5, False)
    assert report.unknown_dropped == 4 and report.unusable == 2 and report.items == 6
    few, short = select_items([p.id for p in problems[:3]], _samples(problems, "ceu"), 6)
    assert len(few) == short.items == 2  # fewer only when the pool has fewer usable problems


def test_unknown_first_errors_are_dropped_and_counted(problems):
    items, report = select_items([p.id for p in problems[:4]], _samples(problems, "ubub"), 2)
    assert report.samples == 8 and report.unknown_dropped == 4
    assert all(t.first_error is not None for t in items)


def test_processbench_schema_round_trip(problems, tmp_path):
    items, _ = select_items([p.id for p in problems[:6]], _samples(problems, "cebbce"), 6)
    folder = write_processbench(tmp_path / "pb", {"policy": items}, {"policy": "lm-x"})
    back = read_processbench(folder, ["policy"])["policy"]
    rows = processbench_rows(items, "lm-x")
    assert [t.steps for t in back] == [t.steps for t in items] == [r["steps"] for r in rows]
    assert [t.first_error for t in back] == [t.first_error for t in items]
    assert [t.question for t in back] == [t.question for t in items]
    assert [t.id for t in back] == [f"processbench-{t.id}" for t in items]
    assert {t.metadata["generator"] for t in back} == {"lm-x"}
    assert [t.metadata["final_answer_correct"] for t in back] == [
        t.metadata["final_correct"] for t in items
    ]


def test_natural_config_checks_and_sizes():
    cfg = NaturalBenchmarkConfig(test_items=5, dev_items=3, problems_per_item=1.5)
    assert (cfg.items("test"), cfg.problems("test"), cfg.problems("dev")) == (5, 8, 5)
    for bad in ({"generators": ("huge",)}, {"test_items": 0}, {"weak_step_fraction": 1.0}):
        with pytest.raises(ValueError):
            NaturalBenchmarkConfig(**bad)
    with pytest.raises(ValueError, match="split"):
        cfg.items("train")


# ------------------------------------------------------------------------------ configuration


def test_the_natural_config_moves_no_key():
    default = ExperimentConfig()
    assert "natural" not in default.to_dict()
    other = replace(default, natural=NaturalBenchmarkConfig(test_items=300))
    assert other.to_dict()["natural"]["test_items"] == 300  # recorded in config.json
    assert (other.key(), other.sample_key(), other.label_key()) == (
        default.key(),
        default.sample_key(),
        default.label_key(),
    )
    assert natural_key(other) != natural_key(default)


@pytest.mark.parametrize("name", ["default", "default-seed1", "default-seed2", "smoke"])
def test_the_weak_lm_collides_with_no_other_lm_of_a_preset(name):
    p = PRESETS[name]
    cfg = p.config
    weak = weak_lm(cfg)
    others = [cfg.lm, cfg.prm_lm] + [x.lm for x in p.labelers if x.lm is not None]
    seeds = {s for lm in others for s in _lineage_seeds(lm)}
    assert weak.seed not in seeds
    assert weak.key() not in {lm.key() for lm in others}
    assert weak.train_steps < cfg.lm.train_steps and weak.warmup_steps < weak.train_steps
    assert list(generator_lms(cfg)) == ["weak", "policy", "strong"]
    assert generator_lms(cfg)["strong"] == cfg.prm_lm


def _lineage_seeds(lm) -> set[int]:
    return {x.seed for x in lm.lineage()} if isinstance(lm, ContinuedLMConfig) else {lm.seed}


def test_the_default_benchmark_is_at_least_200_test_items_a_subset():
    cfg = ExperimentConfig().natural
    assert cfg.test_items >= 200 and cfg.generators == ("weak", "policy", "strong")


def test_generators_need_the_world_and_a_strong_lm():
    with pytest.raises(ValueError, match="hub"):
        generator_lms(replace(ExperimentConfig(), hub=HubSpec(), prm_lm=None))
    with pytest.raises(ValueError, match="prm_lm"):
        generator_lms(replace(ExperimentConfig(), prm_lm=None))
    cfg = replace(
        ExperimentConfig(), prm_lm=None, natural=NaturalBenchmarkConfig(generators=("policy",))
    )
    assert list(generator_lms(cfg)) == ["policy"]


# ------------------------------------------------------------------------------ the stage


@pytest.fixture(scope="module")
def natural_cfg(tiny_world, tiny_lm_config) -> ExperimentConfig:
    return ExperimentConfig(
        world=WorldSpec(
            world=tiny_world, sizes={"train": 24, "dev": 16, "test": 16}, benchmark_per_subset=4
        ),
        lm=tiny_lm_config,
        prm_lm=ContinuedLMConfig(
            parent=tiny_lm_config, n_train_problems=200, train_steps=20, warmup_steps=2
        ),
        train_problems=8,
        dev_problems=4,
        samples_per_problem=2,
        sample_max_new_tokens=60,
        prm=PRMConfig(epochs=1, lr=1e-3, batch_size=8, threads=1),
        bon_problems=4,
        bon_dev_problems=4,
        bon_pool=2,
        bon_ns=(1, 2),
        natural=NaturalBenchmarkConfig(test_items=6, dev_items=4, samples_per_problem=3),
    )


@pytest.fixture(scope="module")
def built(natural_cfg, tiny_lm_cache, tmp_path_factory):
    """The natural benchmark of the tiny experiment, built once (both splits)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CPMI_CACHE", str(tiny_lm_cache))
        exp = Experiment(natural_cfg, tmp_path_factory.mktemp("natural-exp"))
        bench = {split: exp.natural_benchmark(split) for split in ("dev", "test")}
    return exp, bench


def test_problems_are_disjoint_from_the_world_files_each_other_and_across_splits(built):
    exp, _ = built
    world = exp.track.world_dir
    seen: dict[str, str] = {}
    for split in ("dev", "test"):
        for p in read_problems(world / f"problems-{split}.jsonl"):
            seen[p.question] = f"world {split}"
    for split in ("dev", "test"):
        blocks = natural_problems(exp.cfg, split)
        assert {g: len(ps) for g, ps in blocks.items()} == {
            g: exp.cfg.natural.problems(split) for g in ("weak", "policy", "strong")
        }
        for g, ps in blocks.items():
            for p in ps:
                assert p.question not in seen, (p.question, seen.get(p.question), g, split)
                assert p.split == split
                seen[p.question] = f"{g} {split}"
    # the world's own problems are the stream's first ones (`build_world` keeps them)
    stream = build_world(exp.cfg.world.world, {"test": 16}, seed=exp.cfg.world.seed)["test"]
    assert [p.question for p in stream] == [
        p.question for p in read_problems(world / "problems-test.jsonl")
    ]


def test_items_have_exact_first_errors_and_follow_the_rule(built):
    exp, bench = built
    for split, subsets in bench.items():
        assert list(subsets) == ["weak", "policy", "strong"]
        report = exp.natural_report(split)
        problems = natural_problems(exp.cfg, split)
        for g, items in subsets.items():
            samples = read_trajectories(exp.natural_samples(g, split))
            by_id = {f"processbench-{t.id}": t for t in samples}
            by_problem = {p.id: p for p in problems[g]}
            for item in items:
                sample = by_id[item.id]
                problem = by_problem[sample.metadata["problem_id"]]
                grade = grade_steps(problem, sample.steps, sample.final_answer)
                assert item.first_error == grade.first_error is not None
                assert item.steps == sample.steps and item.question == problem.question
            expected, rule = select_items([p.id for p in problems[g]], samples, len(items))
            assert [f"processbench-{t.id}" for t in expected] == [t.id for t in items]
            r = report[g]
            assert r["items"] == len(items) <= exp.cfg.natural.items(split)
            assert (r["correct_items"], r["erroneous_items"]) == (
                sum(t.first_error == -1 for t in items),
                sum(t.first_error >= 0 for t in items),
            )
            assert r == {**r, **rule.to_dict()}
            assert r["unknown_dropped"] == sum(t.first_error is None for t in samples)
            assert len({by_id[i.id].metadata["problem_id"] for i in items}) == len(items)


def test_the_stage_is_cached_and_reads_its_files_back(built, monkeypatch):
    exp, bench = built
    folder = exp.natural_dir / "processbench-test"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert set(stamps) == {"README.md", "weak.jsonl", "policy.jsonl", "strong.jsonl"}

    def no_model(*_, **__):
        raise AssertionError("a cached natural benchmark loads no LM")

    monkeypatch.setattr(natural, "load_lm", no_model)
    again = Experiment(exp.cfg, exp.data_dir.parent).natural_benchmark("test")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert {g: [t.to_dict() for t in ts] for g, ts in again.items()} == {
        g: [t.to_dict() for t in ts] for g, ts in bench["test"].items()
    }
    rows = [json.loads(line) for line in (folder / "policy.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [t.first_error for t in bench["test"]["policy"]]
    assert exp.natural_dir.name == f"natural-{natural_key(exp.cfg)}"
    assert exp.natural_dir.parent == exp.data_dir


def test_the_benchmark_is_deterministic_per_seed(built, tiny_lm_cache, tmp_path, monkeypatch):
    exp, bench = built
    monkeypatch.setenv("CPMI_CACHE", str(tiny_lm_cache))
    twin = Experiment(exp.cfg, tmp_path / "twin").natural_benchmark("dev")
    assert {g: [(t.id, t.steps) for t in ts] for g, ts in twin.items()} == {
        g: [(t.id, t.steps) for t in ts] for g, ts in bench["dev"].items()
    }
    other = Experiment(replace(exp.cfg, seed=1), tmp_path / "other")
    assert natural.sample_seed(other.cfg, "policy", "dev") != natural.sample_seed(
        exp.cfg, "policy", "dev"
    )
    mine = read_trajectories(exp.natural_samples("policy", "dev"))
    theirs = read_trajectories(other.natural_samples("policy", "dev"))
    assert [t.steps for t in mine] != [t.steps for t in theirs]


@pytest.fixture(scope="module")
def evaluable(natural_cfg, tiny_lm_cache, tmp_path_factory):
    """An experiment whose natural benchmark files hold gold and corrupted solutions of its own
    natural problems, alternately: the tiny LMs solve too few problems to give all-correct
    items, and the evaluation scores whatever the files hold."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CPMI_CACHE", str(tiny_lm_cache))
        exp = Experiment(natural_cfg, tmp_path_factory.mktemp("evaluable"))
    for split in ("dev", "test"):
        subsets = {
            g: [(_wrong if i % 2 else _correct)(p, 0) for i, p in enumerate(ps)]
            for g, ps in natural_problems(natural_cfg, split).items()
        }
        folder = exp.natural_dir / f"processbench-{split}"
        write_processbench(folder, subsets, {g: g for g in subsets})
    return exp


def test_evaluations_on_either_benchmark_are_cached_apart(evaluable):
    exp = evaluable
    bench = {split: exp.natural_benchmark(split) for split in ("dev", "test")}
    result = surprise_processbench(exp)
    assert set(result) == {SYNTHETIC, NATURAL}
    assert exp.processbench_file(SURPRISE) == exp.dir / f"processbench-{SURPRISE}.json"
    natural_file = exp.processbench_file(SURPRISE, NATURAL)
    assert natural_file.parent == exp.dir / f"natural-{natural_key(exp.cfg)}"
    assert "benchmark" not in result[SYNTHETIC] and result[NATURAL]["benchmark"] == NATURAL
    assert set(result[NATURAL]["test"]["subsets"]) == set(bench["test"])
    assert set(result[SYNTHETIC]["test"]["subsets"]) == {"short", "long"}
    # a corrupted result is very surprising: the baseline finds these errors
    assert result[NATURAL]["test"]["headline_f1"] > 0.5
    stamp = natural_file.stat().st_mtime_ns
    assert surprise_processbench(exp, (NATURAL,)) == {NATURAL: result[NATURAL]}
    assert natural_file.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="unknown benchmark"):
        exp.processbench("truth", "hub")


def test_a_prm_is_evaluated_on_the_natural_benchmark(evaluable):
    exp = evaluable
    bench = exp.natural_benchmark("test")
    result = exp.processbench("truth", NATURAL)
    assert result["prm"] == "truth" and result["benchmark"] == NATURAL
    assert exp.processbench_file("truth", NATURAL).exists()
    assert not exp.processbench_file("truth").exists()  # the synthetic one only when asked
    test = result["test"]
    assert set(test["subsets"]) == set(bench)
    for name, m in test["subsets"].items():
        assert (m["n_error"], m["n_correct"]) == (
            sum(t.first_error >= 0 for t in bench[name]),
            sum(t.first_error == -1 for t in bench[name]),
        )


def test_a_subset_without_all_correct_items_cannot_be_evaluated_and_says_why(built):
    """The tiny LMs solve none of their problems: F1 is undefined, and the error counts the
    items of each kind per subset."""
    exp, bench = built
    if all(any(t.first_error == -1 for t in ts) for ts in bench["dev"].values()):
        pytest.skip("every dev subset of the tiny LMs has an all-correct item")
    with pytest.raises(ValueError, match=r"F1 is undefined.*\(all-correct, erroneous\)"):
        surprise_processbench(exp, (NATURAL,))
    assert not exp.processbench_file(SURPRISE, NATURAL).exists()
