"""The PRM experiment end to end on a miniature world and LM: every stage runs, is cached, and the
summary holds what the README reports (F1 with CIs, Best-of-N curves, McNemar tables)."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from dataclasses import replace

import pandas as pd
import pytest

from cpmi_lib import cli
from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.roc import auroc
from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.data.math_shepherd import attach_gold_answers, graded, to_math_shepherd_rows
from cpmi_lib.data.world_data import WorldSpec
from cpmi_lib.eval.best_of_n import AGGREGATIONS
from cpmi_lib.experiment import presets
from cpmi_lib.experiment.hub_spec import HubSpec
from cpmi_lib.experiment.stages import (
    BASE,
    BUDGET,
    PRM_LABELS,
    Experiment,
    ExperimentConfig,
    parse_prm_name,
)
from cpmi_lib.experiment.summary import run_experiment
from cpmi_lib.labeling.cpmi import CPMIConfig
from cpmi_lib.labeling.label_results import read_labels, total_costs
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.prm.config import PRMConfig
from cpmi_lib.report.headline import read_headline, record_headline
from cpmi_lib.studies import instrument
from cpmi_lib.studies.ablations import cpmi_ablation
from cpmi_lib.studies.budget import budget_plan, budget_size
from cpmi_lib.studies.explore import example
from cpmi_lib.studies.label_quality import label_quality, reference_labels, step_scores


@pytest.fixture(scope="module")
def tiny_experiment(tiny_world, tiny_lm_config, tiny_lm_cache, tmp_path_factory):
    cfg = ExperimentConfig(
        world=WorldSpec(
            world=tiny_world, sizes={"train": 30, "dev": 60, "test": 60}, benchmark_per_subset=8
        ),
        lm=tiny_lm_config,
        prm_lm=None,  # the policy LM is the PRM backbone
        train_problems=20,
        dev_problems=10,
        samples_per_problem=2,
        cpmi=CPMIConfig(),
        n_negatives=2,
        mc=MCConfig(n_rollouts=2, max_new_tokens=30),
        prm=PRMConfig(epochs=1, lr=1e-3, batch_size=8, threads=1),
        bon_problems=6,
        bon_dev_problems=5,
        bon_pool=4,
        bon_ns=(1, 2, 4),
        curve_sizes=(10, 20),
    )
    return cfg, tiny_lm_cache, tmp_path_factory.mktemp("results") / "summary.json"


def test_experiment_runs_every_stage_and_reports_with_cis(tiny_experiment, monkeypatch):
    cfg, cache, out = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    summary = run_experiment(cfg, out=out, label_quality=label_quality)
    assert json.loads(out.read_text())["config_key"] == cfg.key()
    assert set(summary["processbench"]) == set(PRM_LABELS)
    for result in summary["processbench"].values():
        test = result["test"]
        assert set(test["subsets"]) == {"short", "long"}
        assert 0.0 < result["threshold_from_dev"] < 1.0
        f1 = test["headline_f1"]
        assert math.isnan(f1) or 0.0 <= f1 <= 1.0
        assert "upper bound" in result["test_oracle"]["label"]
        assert math.isnan(f1) or result["test_oracle"]["headline_f1"] >= f1 - 1e-12
    for rows in summary["best_of_n"].values():
        by = {(r["method"], r["n"]): r["accuracy"] for r in rows}
        assert by[("pass@n", 4)] >= by[("prm:min", 4)]
        assert by[("prm:min", 1)] == by[("majority", 1)] == by[("pass@n", 1)]  # paired pool
    # the pool is shared: the same pass@n for every PRM
    assert len({json.dumps(rows[-1]) for rows in summary["best_of_n"].values()}) == 1
    table = (
        summary["mcnemar"]["cpmi_vs_mc"]["4"]
        if "4" in summary["mcnemar"]["cpmi_vs_mc"]
        else summary["mcnemar"]["cpmi_vs_mc"][4]
    )
    assert sum(map(sum, table["table"])) == 6 and 0.0 <= table["p_value"] <= 1.0
    quality = summary["label_quality"]
    assert quality["n_steps"] > 0 and -1.0 <= quality["cpmi_vs_mc"]["spearman_rho"] <= 1.0
    costs = summary["labeling_costs_train"]
    assert costs["mc"]["generated_tokens"] > 0 and costs["cpmi"]["generated_tokens"] == 0


def test_stages_are_cached(tiny_experiment, monkeypatch):
    cfg, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    exp = Experiment(cfg)
    prm_dir = exp.train("cpmi")
    stamp = (prm_dir / "prm.json").stat().st_mtime_ns
    labels = exp.labels("mc", "train")
    size = labels.stat().st_size
    assert Experiment(cfg).train("cpmi") == prm_dir
    assert (prm_dir / "prm.json").stat().st_mtime_ns == stamp
    assert Experiment(cfg).labels("mc", "train").stat().st_size == size


def test_the_ablation_at_the_base_setting_scores_as_the_label_files(tiny_experiment, monkeypatch):
    """One CPMI pipeline per trajectory: the ablations' base setting gives the label files' CPMI,
    step for step, hence the same AUROC against the reference."""
    cfg, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    exp = Experiment(cfg)
    n = 6
    got = cpmi_ablation(exp, cfg.cpmi, cfg.n_negatives, n_trajectories=n)
    trajs = read_trajectories(exp.policy_samples("train"))[:n]
    records = {r["id"]: r for r in read_labels(exp.labels("cpmi", "train"))}
    reference = reference_labels(exp, trajs, "train")
    scores = [s["cpmi"] for t in trajs for s in records[t.id]["steps"]]
    truth = [x for t in trajs for x in reference[t.id]]
    assert got["n_steps"] == len(scores) and got["seconds"] > 0
    assert got["auroc"] == (auroc(scores, truth) if len(set(truth)) == 2 else None)


def test_example_is_a_wrong_training_sample_with_its_first_error(tiny_experiment, monkeypatch):
    cfg, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    exp = Experiment(cfg)
    t = example(exp, 0)
    assert not t.metadata["final_correct"] and t.first_error not in (None, -1)
    with pytest.raises(IndexError, match="problem_index 10000: the policy got"):
        example(exp, 10_000)
    pid = t.metadata["problem_id"]
    assert example(exp, problem_id=pid).metadata["problem_id"] == pid
    with pytest.raises(KeyError, match="problem_id 'nope' is not among"):
        example(exp, problem_id="nope")


def hub_config(base: ExperimentConfig) -> ExperimentConfig:
    return replace(base, hub=HubSpec.embedded(("short", "long"), dev_fraction=0.3))


def test_hub_track_experiment_without_step_truth(tiny_experiment, monkeypatch, tmp_path):
    """The paper track's code path on the tiny world and LM written out in the hub schemas: only
    the CPMI and MC PRMs, label quality against MC's hard labels, one McNemar pair."""
    base, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    cfg = hub_config(base)
    assert cfg.sample_key() != base.sample_key()
    exp = Experiment(cfg)
    controls = ("outcome", "cpmi_noself")  # they need no step truth
    assert exp.prm_names == ("cpmi", "mc", *controls) and not exp.track.step_truth
    with pytest.raises(ValueError, match="no exact step truth on the hub track"):
        exp.train("truth")
    trajs = read_trajectories(exp.policy_samples("train"))
    assert trajs and all(t.step_labels is None and t.id.startswith("gsm8k-train-") for t in trajs)
    summary = run_experiment(cfg, out=tmp_path / "summary.json", label_quality=label_quality)
    assert set(summary["processbench"]) == {"cpmi", "mc", *controls}
    pairs = itertools.combinations(exp.prm_names, 2)
    assert set(summary["mcnemar"]) == {f"{a}_vs_{b}" for a, b in pairs}
    quality = summary["label_quality"]
    assert quality["reference"] == "MC hard label (value > 0)"
    assert quality["auroc_mc"]["why"] == "MC is the reference"
    steps = step_scores(exp, "train")
    assert steps["truth"].isna().all()
    assert (steps["reference"] == (steps["mc"] > 0).astype(int)).all()
    assert "MC is the reference" in (tmp_path / "summary.md").read_text()


def test_cli_runs_a_preset_into_its_own_results_folder(
    tiny_experiment, monkeypatch, tmp_path, capsys
):
    base, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    monkeypatch.setattr(presets, "experiment_config", lambda name: hub_config(base))
    monkeypatch.setitem(presets.RESULT_ROOTS, "paper-smoke", tmp_path)
    cli.main(["prm-experiment", "--preset", "paper-smoke", "--bon-problems", "5"])
    summary = json.loads((tmp_path / "results" / "prm_experiment.json").read_text())
    assert summary["config"]["bon_problems"] == 5
    assert summary["config"]["train_problems"] == base.train_problems
    assert set(summary["processbench"]) == {"cpmi", "mc", "outcome", "cpmi_noself"}
    assert "PRM from cpmi labels: ProcessBench-style F1" in capsys.readouterr().out


def test_prm_names_carry_source_and_size():
    assert parse_prm_name("mc") == ("mc", BASE)
    assert parse_prm_name("cpmi@budget") == ("cpmi", BUDGET)
    assert parse_prm_name("truth@1200") == ("truth", 1200)
    for bad, msg in (
        ("oracle", "unknown PRM label source"),
        ("truth@0", "positive count"),
        ("cpmi@big", "'budget' or a positive count"),
    ):
        with pytest.raises(ValueError, match=msg):
            parse_prm_name(bad)


def test_instrument_budget_curve_controls_and_headline(tiny_experiment, monkeypatch, tmp_path):
    """The equal-budget plan comes from the run's own cost meters; the budget set extends the
    base set; the position labeler's labels depend on position only; every headline number is
    finite and checked."""
    cfg, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    exp = Experiment(cfg)
    mc = total_costs(read_labels(exp.labels("mc", "train")))
    cpmi = total_costs(read_labels(exp.labels("cpmi", "train")))
    plan = budget_plan(exp)
    base = read_trajectories(exp.policy_samples("train"))
    assert plan["mc_seconds"] == mc.wall_seconds and plan["mc_trajectories"] == len(base)
    assert plan["format"] == 2 and plan["cpmi_seconds_base"] == cpmi.wall_seconds
    # measured: CPMI labeled extra trajectories until its own seconds reached MC's, then stopped
    extra = read_labels(exp.labels("cpmi", "extra"))
    seconds = [r["costs"]["wall_seconds"] for r in extra]
    assert len(extra) == plan["extra_trajectories"] == plan["cpmi_trajectories"] - len(base)
    assert plan["cpmi_seconds"] == pytest.approx(cpmi.wall_seconds + sum(seconds))
    if cpmi.wall_seconds >= mc.wall_seconds:
        assert not extra and not plan["rounds"]
    elif not plan["capped_by_world"]:
        assert plan["cpmi_seconds"] >= plan["mc_seconds"] > plan["cpmi_seconds"] - seconds[-1]
    else:  # the 30 train problems ran out first
        assert plan["cpmi_seconds"] < plan["mc_seconds"] and plan["cpmi_trajectories"] <= 60
    assert plan["cpmi_seconds_with_sampling"] >= plan["cpmi_seconds"]
    assert plan["extra_sampling_seconds_all"] >= plan["extra_sampling_seconds"] >= 0.0
    assert len(base) <= plan["cpmi_trajectories_with_sampling"] <= plan["cpmi_trajectories"]
    assert budget_plan(exp) == plan  # decided once
    budget_set = exp.training_trajectories(BUDGET)
    assert len(budget_set) == budget_size(exp) == plan["cpmi_trajectories"]
    assert [t.id for t in budget_set[len(base) :]] == [r["id"] for r in extra]
    assert [t.id for t in budget_set[: len(base)]] == [t.id for t in base]
    assert len({t.id for t in budget_set}) == len(budget_set)
    assert exp.training_trajectories(10) == base[:10]
    with pytest.raises(ValueError, match="base set only"):
        exp.train("mc@budget")

    # position labels: one score per (index, length) cell, whatever the steps say
    records = read_labels(exp.labels("position", "dev"))
    dev = read_trajectories(exp.policy_samples("dev"))
    cells = {}
    for t, r in zip(dev, records, strict=True):
        for i, step in enumerate(r["steps"]):
            assert cells.setdefault((i, t.n_steps), step["value"]) == step["value"]

    table = instrument.budget_comparison(exp)
    assert list(table["prm"]) == list(instrument.BUDGET_PRMS)
    assert table.set_index("prm").loc["mc", "label_seconds"] == plan["mc_seconds"]
    assert table.set_index("prm").loc["truth", "label_seconds"] == 0.0
    row = table.set_index("prm").loc["cpmi@budget"]
    assert row["label_seconds"] == pytest.approx(plan["cpmi_seconds"])
    assert row["label_and_sampling_seconds"] == pytest.approx(plan["cpmi_seconds_with_sampling"])
    assert set(table["bon_method_from_dev"]) <= {f"prm:{a}" for a in AGGREGATIONS} | {
        f"prm-vote:{a}" for a in AGGREGATIONS
    }
    curve = instrument.learning_curve(exp)
    assert list(curve["trajectories"]) == sorted(curve["trajectories"])
    assert curve["trajectories"].iloc[-1] == budget_size(exp) and len(curve) >= 2
    within = instrument.label_quality_within_position(exp)
    assert list(within["scores"]) == [
        "cpmi labels",
        "mc labels",
        "position labels",
        "outcome labels",
        "cpmi_noself labels",
        *[f"{n} PRM" for n in exp.prm_names],
    ]
    # within wrong answers the outcome is constant: outcome labels score 0.5 by construction
    outcome = within.set_index("scores").loc["outcome labels"]
    if outcome["auroc_within_wrong_answers"] is not None:
        assert outcome["auroc_within_wrong_answers"] == 0.5
    tests = instrument.budget_tests(exp)
    path = record_headline(tmp_path, instrument.headline_entries(exp, table, tests, within))
    entries = read_headline(path)
    assert {
        "budget_mc_seconds",
        "budget_cpmi_trajectories",
        "truth_prm_f1",
        "mc_prm_f1",
        "position_prm_f1",
        "truth_prm_vs_majority_p",
    } <= set(entries)
    assert entries["budget_cpmi_trajectories"].value == budget_size(exp)


def test_cached_labels_resume_after_the_cache_moves(tiny_experiment, tmp_path, monkeypatch):
    """Labels name their labeler by its place in the cache, not by an absolute path: a cache
    that moves (or a clone that links it) resumes them instead of refusing a 'different model'."""
    cfg, lm_cache, _ = tiny_experiment
    cfg = replace(cfg, dev_problems=3)
    first = tmp_path / "first"
    shutil.copytree(lm_cache, first, ignore=shutil.ignore_patterns("experiments"))
    monkeypatch.setenv("CPMI_CACHE", str(first))
    labels = Experiment(cfg).labels("cpmi", "dev")
    record = read_labels(labels)[0]
    assert record["model"].startswith("<cache>/models/default-lm-")
    before = labels.read_bytes()

    moved = tmp_path / "moved"
    first.rename(moved)
    monkeypatch.setenv("CPMI_CACHE", str(moved))
    again = Experiment(cfg).labels("cpmi", "dev")
    assert again.is_relative_to(moved) and again.read_bytes() == before


def test_prms_train_on_math_shepherd_with_its_labels_as_reference(
    tiny_experiment, monkeypatch, tmp_path
):
    """HubSpec.prm_data: the PRMs' train and dev sets are a Math-Shepherd-schema file's solutions
    (gold answers joined from the problems by question, a malformed row skipped and counted),
    split by question, and label quality is scored against the file's '+'/'-' labels."""
    base, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    embedded = Experiment(base)  # its samples carry exact step labels: written as '+'/'-'
    samples = [
        *read_trajectories(embedded.policy_samples("train")),
        *read_trajectories(embedded.policy_samples("dev")),
    ]
    # and each question's reference solution (every step right), as Math-Shepherd has both
    track = Experiment(hub_config(base)).track
    reference = {t.question: t for s in ("train", "dev") for t in track.problems(s, 999)}
    solutions = [
        *(
            replace(reference[q], step_labels=[True] * reference[q].n_steps)
            for q in dict.fromkeys(t.question for t in samples)
        ),
        *samples,
    ]
    rows = to_math_shepherd_rows(solutions)
    rows.insert(3, {"input": "no tags at all", "label": "no tags at all", "task": "GSM8K"})
    path = tmp_path / "math-shepherd.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    cfg = hub_config(base)
    cfg = replace(cfg, hub=replace(cfg.hub, prm_data=str(path)))
    assert cfg.sample_key() != hub_config(base).sample_key()
    exp = Experiment(cfg)
    train = read_trajectories(exp.policy_samples("train"))
    dev = read_trajectories(exp.policy_samples("dev"))
    assert train and dev and not {t.question for t in train} & {t.question for t in dev}
    assert len(train) <= cfg.train_problems * cfg.samples_per_problem
    gold = {t.question: t.gold_answer for t in solutions}
    written = {(t.question, tuple(t.step_labels), t.final_answer) for t in solutions}
    for t in train + dev:
        assert t.gold_answer == gold[t.question]  # joined from the problems, not guessed
        assert (t.question, tuple(t.step_labels), t.final_answer) in written
        assert t.metadata["final_correct"] == (t.final_answer == t.gold_answer)
    assert {x for t in train for x in t.step_labels} == {True, False}
    report = json.loads((exp.data_dir / "policy-train.parse.json").read_text())
    assert report["invalid_rows"] == 1 and report["rows_read"] == len(solutions)
    assert report["no_gold"] == 0 and report["kept"] == len(solutions)

    summary = run_experiment(cfg, out=tmp_path / "summary.json", label_quality=label_quality)
    quality = summary["label_quality"]
    assert quality["reference"] == "Math-Shepherd label (+)"
    assert quality["auroc_mc"]["auroc"] is not None  # MC is scored, not the reference
    steps = step_scores(exp, "train")
    want = [int(x) for t in train for x in t.step_labels]
    assert steps["reference"].tolist() == want and steps["truth"].isna().all()
    assert summary["track"]["PRM data"] == str(path)


def test_gold_answers_come_from_the_problems_or_a_plus_ending_sibling():
    def sol(i, question, final, labels):
        gold = final if labels[-1] else None  # as the loader sets it
        return Trajectory(
            id=f"s{i}",
            question=question,
            steps=["a"] * len(labels),
            gold_answer=gold,
            final_answer=final,
            step_labels=labels,
        )

    solutions = [
        sol(0, "known", "5", [True, False]),  # gold from the problems: 7
        sol(1, "sibling", "3", [True, False]),  # gold from solution 2, which ends with '+'
        sol(2, "sibling", "4", [True, True]),
        sol(3, "orphan", "9", [False]),  # no gold anywhere: dropped, counted
    ]
    kept, dropped = attach_gold_answers(solutions, {"known": "7"})
    assert dropped == 1 and [t.id for t in kept] == ["s0", "s1", "s2"]
    assert [t.gold_answer for t in kept] == ["7", "4", "4"]
    assert [t.metadata["final_correct"] for t in graded(kept)] == [False, False, True]
    assert kept[1].metadata["problem_id"] == kept[2].metadata["problem_id"]


def test_control_labels_outcome_and_cpmi_without_the_own_answer(tiny_experiment, monkeypatch):
    """`outcome` gives every step the final answer's grade; `cpmi_noself`'s negatives never
    equal the trajectory's own answer, while `cpmi`'s run identity is as before the option."""
    cfg, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    exp = Experiment(cfg)
    trajs = {t.id: t for t in read_trajectories(exp.policy_samples("dev"))}
    outcome = read_labels(exp.labels("outcome", "dev"))
    assert exp.labels("outcome", "dev").parent == exp.data_dir  # whoever labels
    for r in outcome:
        grade = 1.0 if trajs[r["id"]].metadata["final_correct"] else 0.0
        assert [s["value"] for s in r["steps"]] == [grade] * trajs[r["id"]].n_steps
    noself = read_labels(exp.labels("cpmi_noself", "dev"))
    assert len(noself) == len(trajs)
    for r in noself:
        assert r["config"]["exclude_own_answer"] is True
        assert r["config"]["negative_sources"] == ["perturb"]
        own = trajs[r["id"]].final_answer
        for n in r["negatives"]:
            assert n["source"] == "perturb"
            assert own is None or not (
                answers_equivalent(own, n["answer"]) or answers_equivalent(n["answer"], own)
            )
    for r in read_labels(exp.labels("cpmi", "dev")):
        assert "exclude_own_answer" not in r["config"]


def test_decisive_controls_score_every_control_and_test_only_a_scorable_natural_benchmark(
    tiny_experiment, monkeypatch, tmp_path
):
    """`decisive-controls`: truth, outcome, position and surprise on every scorable benchmark;
    paired tests only when the natural benchmark has both kinds of items in every subset."""
    from cpmi_lib.data.natural_benchmark import NaturalBenchmarkConfig
    from cpmi_lib.studies.decisive import natural_scorable
    from cpmi_lib.studies.decisive_controls import control_tables, save_control_tables

    cfg, cache, _ = tiny_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    small = NaturalBenchmarkConfig(generators=("policy",), test_items=6, dev_items=4)
    cfg = replace(cfg, natural=small)  # no PRM backbone here: the policy's subset alone
    table, paired = control_tables(cfg)
    scorable = natural_scorable(Experiment(cfg))
    assert list(table["benchmark"].unique()) == list(scorable["benchmarks"])
    for _, rows in table.groupby("benchmark"):
        assert list(rows["source"]) == ["truth", "outcome", "position", "surprise"]
    assert all(
        0 <= f1 <= 1 and lo <= f1 <= hi for f1, (lo, hi) in zip(table.f1, table.f1_ci, strict=True)
    )
    assert (paired is None) == (not scorable["scorable"])
    written = save_control_tables(cfg, tmp_path, best_of_n=True)
    assert written[0].name == "decisive_controls.md"
    assert written[-1].name == "decisive_controls_bon.md"
    bon = pd.read_csv(tmp_path / "tables" / "decisive_controls_bon.csv")
    assert list(zip(bon.a, bon.b, strict=True)) == [
        ("truth", "outcome"),
        ("truth", "position"),
        ("outcome", "position"),
    ]
    assert (bon.best_of == max(cfg.bon_ns)).all() and (bon.min_detectable_difference > 0).all()
