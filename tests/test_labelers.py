"""The labeler axis: anticipation training, a labeler apart from the policy, the skill and the
label quality measured per labeler, each checked against a slow, obvious reference."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cpmi_lib.core.text_format import PROMPT_TEMPLATES, render_prompt
from cpmi_lib.core.trajectory import read_trajectories
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_data import WorldSpec
from cpmi_lib.data.world_tokenizer import build_world_tokenizer
from cpmi_lib.experiment.config import CONFIGURED, Labeler, default_axis
from cpmi_lib.experiment.stages import Experiment, ExperimentConfig
from cpmi_lib.labeling.cpmi import CPMIConfig, cpmi_step_scores
from cpmi_lib.labeling.label_results import read_labels
from cpmi_lib.labeling.mc import MCConfig
from cpmi_lib.lm.default_lm import (
    ContinuedLMConfig,
    LMTrainConfig,
    _training_data,
    ensure_continued_lm,
    training_record,
    training_text_ids,
)
from cpmi_lib.lm.logprob import ScoreRequest, reference_logprobs
from cpmi_lib.prm.config import PRMConfig
from cpmi_lib.studies import labeler_axis
from cpmi_lib.studies import labeler_skill as labelers


def test_cached_model_and_experiment_keys_are_unchanged_by_the_labeler_fields():
    """`anticipation` and `labeler` were added after the default models and experiment were
    cached: at their neutral defaults they must leave every key alone (a changed key retrains
    the LMs, about 40 min here). Change these pins only on purpose."""
    assert LMTrainConfig().key() == "622fb63fbec5"
    assert ContinuedLMConfig().key() == "c6eb508d0087"
    # issue 21: 600 Best-of-N test problems (was 200, key a98f37190d29) moved the PRMs' folder;
    # the samples and labels keep theirs (`sample_key`, `label_key`): regenerate the default
    # grid's PRMs, evaluations and Best-of-N pool, not its LMs, samples or labels
    assert ExperimentConfig().key() == "e4d349c107c0"  # MC's engine (issue 23); was 191ef2494f86
    assert ExperimentConfig().sample_key() == "80d5d8b92b0b"
    # label format 3 (issue 22: the model's content identity) moved the labels (was 3b97cc710e57),
    # then MC's engine (issue 23: blocks of trajectories) (was f25ea9c79ee0)
    assert ExperimentConfig().label_key() == "f06feb0ca4a4"
    assert "anticipation" not in ContinuedLMConfig().to_dict()
    assert "labeler" not in ExperimentConfig().to_dict()
    assert ContinuedLMConfig(anticipation=0.3).key() != ContinuedLMConfig().key()


def test_anticipation_example_is_a_cut_gold_solution_with_the_final_answer(tiny_world):
    tok = build_world_tokenizer()
    p = next(q for q in build_world(tiny_world, {"lm": 20}, seed=0)["lm"] if q.n_steps == 3)
    template = PROMPT_TEMPLATES[0]
    full, n_prompt = training_text_ids(tok, p, template)
    for k in range(p.n_steps):
        ids, n = training_text_ids(tok, p, template, cut=k)
        assert n == n_prompt and ids[:n] == full[:n] and ids[-1] == tok.eos_token_id
        text = tok.decode(ids[n:], skip_special_tokens=True)
        want = "".join(s + "\n" for s in p.gold_steps[:k]) + f"The answer is: {p.answer}"
        assert text.replace(" ", "") == want.replace(" ", "")
    with pytest.raises(ValueError, match="cut must be in"):
        training_text_ids(tok, p, template, cut=p.n_steps)


def test_anticipation_share_and_no_draw_without_it(tiny_lm_config):
    tok = build_world_tokenizer()
    plain = _training_data(tok, tiny_lm_config, 400, seed=5)
    assert plain == _training_data(tok, tiny_lm_config, 400, seed=5, anticipation=0.0)
    mixed = _training_data(tok, tiny_lm_config, 400, seed=5, anticipation=0.3)
    cut = sum(a != b for a, b in zip(plain, mixed, strict=True))
    assert 0.2 < cut / 400 < 0.4  # p = 0.3 of the examples (k < S always shortens one)
    everything = _training_data(tok, tiny_lm_config, 400, seed=5, anticipation=1.0)
    assert all(len(a[0]) < len(b[0]) for a, b in zip(everything, plain, strict=True))
    assert mixed == _training_data(tok, tiny_lm_config, 400, seed=5, anticipation=0.3)


def test_a_continued_lm_can_continue_a_continued_lm(tiny_lm_config, tiny_lm_cache):
    first = ContinuedLMConfig(parent=tiny_lm_config, n_train_problems=50, train_steps=2, seed=7)
    second = ContinuedLMConfig(
        parent=first, n_train_problems=50, train_steps=2, seed=8, anticipation=0.5
    )
    assert second.root == tiny_lm_config and second.lineage() == [second, first, tiny_lm_config]
    path = ensure_continued_lm(second, cache=tiny_lm_cache, progress=False)
    rec = training_record(path)
    assert rec["config"]["anticipation"] == 0.5
    assert (
        rec["config"]["parent_dir"]
        == ensure_continued_lm(first, tiny_lm_cache, progress=False).name
    )
    with pytest.raises(ValueError, match="every earlier ancestor"):
        ContinuedLMConfig(parent=first, seed=tiny_lm_config.seed)
    with pytest.raises(ValueError, match="anticipation"):
        ContinuedLMConfig(parent=tiny_lm_config, seed=7, anticipation=1.5)


def test_answer_prefix_is_the_fixed_part_of_the_answer_line():
    tok = build_world_tokenizer()
    n = labelers.answer_prefix_length(tok, "The answer is: {answer}", "42")
    line = tok("The answer is: 42", add_special_tokens=False).input_ids
    assert tok.decode(line[n:]).replace(" ", "") == "42"


def test_anticipation_skill_equals_a_per_request_reference(tiny_lm, tiny_world):
    model, tok = tiny_lm
    problems = build_world(tiny_world, {"dev": 3}, seed=1)["dev"]
    cfg = CPMIConfig(templates=PROMPT_TEMPLATES[:2])
    skill = labelers.anticipation_skill(model, tok, problems, cfg, seed=0, progress=False)
    p = problems[0]
    rows = skill[(skill["problem_id"] == p.id) & (skill["case"] == "correct")]
    assert list(rows["steps_done"]) == list(range(p.n_steps + 1))
    assert list(rows["remaining"]) == list(range(p.n_steps, -1, -1))
    line = tok(f"The answer is: {p.answer}", add_special_tokens=False).input_ids
    skip = labelers.answer_prefix_length(tok, cfg.answer_format, p.answer)
    for k, row in zip(rows["steps_done"], rows.itertuples(), strict=True):
        probs, means = [], []
        for t in cfg.templates:
            ctx = render_prompt(p.question, t) + "".join(s + "\n" for s in p.gold_steps[:k])
            req = ScoreRequest(tuple(tok(ctx).input_ids), tuple(line))
            lp = reference_logprobs(model, [req])[0].double()
            probs.append(math.exp(float(lp[skip:].sum())))
            means.append(float(lp.mean()))
        assert row.p_answer == pytest.approx(np.mean(probs), rel=1e-4, abs=1e-9)
        assert row.lp_line_mean == pytest.approx(np.mean(means), abs=1e-4)
    after = skill[skill["case"] == "after error"]
    assert set(after["answer"]) == {"gold", "wrong chain"}
    assert ((skill["p_answer"] > 0) & (skill["p_answer"] <= 1)).all()
    summary = labelers.skill_summary(skill)
    early = rows[rows["remaining"] >= 1]["p_answer"]
    assert 0 <= summary["anticipation"] <= 1 and summary["n_problems"] == 3
    assert summary["anticipation_ci"][0] <= summary["anticipation"] <= summary["anticipation_ci"][1]
    assert min(summary["p_gold_by_remaining"]) == 0
    assert 0 <= summary["after_error_wrong_above_gold"] <= 1
    assert early.size == p.n_steps


def test_step_terms_give_cpmi_for_every_number_of_negatives(tiny_lm, tiny_world):
    model, tok = tiny_lm
    p = build_world(tiny_world, {"dev": 1}, seed=2)["dev"][0]
    traj = p.gold_trajectory()
    negatives = ["1", "2", "3", "4"]
    for variant in ("marginal", "cumulative", "loo"):
        cfg = CPMIConfig(variant=variant, templates=PROMPT_TEMPLATES[:2])
        terms = labelers.step_terms(model, tok, traj, cfg, negatives)
        for m in (1, 2, 4):
            ref = cpmi_step_scores(
                model, tok, p.question, p.gold_steps, p.answer, negatives[:m], cfg
            )
            np.testing.assert_allclose(terms.cpmi(m), [s.cpmi for s in ref], atol=1e-5)
            np.testing.assert_allclose(terms.negative_term(m), [s.neg_term for s in ref], atol=1e-5)
        np.testing.assert_allclose(terms.gold, [s.gold_term for s in ref], atol=1e-5)


@pytest.fixture(scope="module")
def labeler_experiment(tiny_world, tiny_lm_config, tiny_lm_cache):
    base = ExperimentConfig(
        world=WorldSpec(
            world=tiny_world, sizes={"train": 30, "dev": 60, "test": 60}, benchmark_per_subset=8
        ),
        lm=tiny_lm_config,
        prm_lm=None,
        train_problems=6,
        dev_problems=4,
        samples_per_problem=2,
        cpmi=CPMIConfig(templates=PROMPT_TEMPLATES[:2]),
        n_negatives=2,
        mc=MCConfig(n_rollouts=2, max_new_tokens=30),
        prm=PRMConfig(epochs=1, lr=1e-3, batch_size=8, threads=1),
    )
    lm = ContinuedLMConfig(
        parent=tiny_lm_config, n_train_problems=60, train_steps=3, seed=9, anticipation=0.5
    )
    return base, replace(base, labeler=lm), tiny_lm_cache


def test_a_labeler_apart_from_the_policy_labels_the_same_samples(labeler_experiment, monkeypatch):
    base_cfg, cfg, cache = labeler_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    base, other = Experiment(base_cfg), Experiment(cfg)
    assert base.data_dir == other.data_dir and base.label_dir != other.label_dir
    assert base.dir != other.dir
    assert other.labeler_lm()[0] is not other.lm()[0] and base.labeler_lm()[0] is base.lm()[0]
    assert other.track.labeler_path != other.track.model_path
    assert other.track.describe()["labeler"] != other.track.describe()["LM"]
    a = read_labels(base.labels("cpmi", "dev"))
    b = read_labels(other.labels("cpmi", "dev"))
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert [s["cpmi"] for r in a for s in r["steps"]] != [s["cpmi"] for r in b for s in r["steps"]]
    with pytest.raises(ValueError, match="descend from `lm`"):
        replace(base_cfg, labeler=ContinuedLMConfig(seed=3))


def test_labeler_quality_table_and_mc_on_the_first_trajectories(labeler_experiment, monkeypatch):
    _, cfg, cache = labeler_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    exp = Experiment(cfg)
    n = 6
    table, seconds = labelers.labeler_quality(exp, n, progress=False)
    assert len(table) == 3 * (1 + 2 + 2) + 1
    assert set(table["scores"]) == {"gold term", "negative term", "cpmi", "mc"}
    assert min(seconds.values()) > 0 and set(seconds) == {
        "cpmi-marginal",
        "cpmi-cumulative",
        "cpmi-loo",
        "mc",
    }
    # MC labelled only the first n trajectories, in a file of their own
    head = exp.label_dir / f"labels-mc-train-first{n}.jsonl"
    ids = [t.id for t in read_trajectories(exp.policy_samples("train"))[:n]]
    assert [r["id"] for r in read_labels(head)] == ids
    assert not (exp.label_dir / "labels-mc-train.jsonl").exists()
    # a labelled whole split serves instead
    full = exp.labels("mc", "train")
    assert exp.labels("mc", "train", first=n) == full
    steps = sum(t.n_steps for t in read_trajectories(exp.policy_samples("train"))[:n])
    assert (table["steps"] == steps).all()
    ok = table["auroc"].notna()
    assert ((table.loc[ok, "auroc"] >= 0) & (table.loc[ok, "auroc"] <= 1)).all()


def test_chosen_setting_is_its_own_labeling_setup_and_the_configured_one_is_reused(
    labeler_experiment, monkeypatch
):
    base_cfg, cfg, cache = labeler_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    own = {"chosen": {"variant": base_cfg.cpmi.variant, "M": base_cfg.n_negatives}}
    same = labeler_axis.chosen_experiment(base_cfg, CONFIGURED, own)
    assert same.cfg == base_cfg and same.dir == Experiment(base_cfg).dir
    labeler = Labeler("anticipating", cfg.labeler, "test")
    other = labeler_axis.chosen_experiment(
        base_cfg, labeler, {"chosen": {"variant": "cumulative", "M": 1}}
    )
    assert other.cfg.labeler == cfg.labeler and other.cfg.n_negatives == 1
    assert other.cfg.cpmi == replace(base_cfg.cpmi, variant="cumulative")
    assert other.data_dir == same.data_dir and other.label_dir != same.label_dir


def test_explore_problem_shows_each_labeler_with_the_engine_values(labeler_experiment, monkeypatch):
    base_cfg, cfg, cache = labeler_experiment
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    t = read_trajectories(Experiment(base_cfg).policy_samples("train"))[0]
    negatives = ["12345", "7"]
    chosen = [CONFIGURED, Labeler("anticipating", cfg.labeler, "test")]
    table, curves = labeler_axis.explore_problem(
        base_cfg, chosen, t.question, t.steps, t.gold_answer, negatives, "cumulative"
    )
    assert list(curves) == ["policy", "anticipating"] and len(table) == t.n_steps
    model, tok = Experiment(cfg).labeler_lm()
    scoring = replace(base_cfg.cpmi, variant="cumulative")
    want = cpmi_step_scores(model, tok, t.question, t.steps, t.gold_answer, negatives, scoring)
    assert table["CPMI (anticipating)"].tolist() == [s.cpmi for s in want]
    gold_lp, negative_lps = curves["anticipating"]
    assert len(gold_lp) == t.n_steps + 1 and len(negative_lps) == len(negatives)
    assert gold_lp[1:] == [s.lp_gold for s in want]
    assert table["CPMI (policy)"].tolist() != table["CPMI (anticipating)"].tolist()


def test_default_axis_isolates_anticipation(tiny_lm_config):
    prm_lm = ContinuedLMConfig(parent=tiny_lm_config, seed=1)
    axis = {x.name: x for x in default_axis(tiny_lm_config, prm_lm, steps=10)}
    assert list(axis) == ["policy", "continued", "anticipate", "anticipate_long"]
    assert axis["policy"].lm is None
    control, anticipate = axis["continued"].lm, axis["anticipate"].lm
    assert replace(anticipate, anticipation=0.0) == control and anticipate.anticipation > 0
    assert axis["anticipate_long"].lm.parent == prm_lm
    assert len({x.lm.key() for x in axis.values() if x.lm is not None}) == 3


def _quality(cpmi_within: float, mc: float) -> list[dict]:
    rows = []
    for variant in ("marginal", "cumulative", "loo"):
        for m in (1, 4):
            bump = 0.05 if (variant, m) == ("cumulative", 1) else 0.0
            rows.append(
                {
                    "scores": "cpmi",
                    "variant": variant,
                    "M": m,
                    "steps": 50,
                    "auroc": 0.6 + bump,
                    "auroc_ci": [0.5, 0.7],
                    "within": cpmi_within + bump,
                    "within_ci": [0.4, 0.8],
                }
            )
    rows.append(
        {
            "scores": "mc",
            "variant": None,
            "M": None,
            "steps": 50,
            "auroc": mc,
            "auroc_ci": [mc - 0.1, mc + 0.05],
            "within": mc,
            "within_ci": None,
        }
    )
    return rows


def _result(name: str, dev_within: float | None, dev_auroc: float, quality_within: float) -> dict:
    return {
        "labeler": name,
        "about": name,
        "train_seconds": 1.0,
        "skill": {
            "anticipation": 0.2,
            "anticipation_ci": [0.1, 0.3],
            "n_problems": 9,
            "p_gold_by_remaining": {0: 0.9, 1: 0.2},
        },
        "chosen": {"variant": "cumulative", "M": 1, "by": "dev within"},
        "dev_within": dev_within,
        "dev_auroc": dev_auroc,
        "quality": _quality(quality_within, 0.85),
        "seconds_per_step": {
            "cpmi-marginal": 0.1,
            "cpmi-cumulative": 0.2,
            "cpmi-loo": 0.3,
            "mc": 2.0,
        },
    }


def test_setting_and_best_labeler_are_chosen_on_dev():
    dev = labeler_axis.pd.DataFrame(_quality(0.55, 0.9))
    assert labeler_axis.choose_setting(dev, {"variant": "marginal", "M": 4}) == {
        "variant": "cumulative",
        "M": 1,
        "by": "dev within",
    }
    dev["within"] = None  # no position has both classes: the pooled AUROC decides
    assert labeler_axis.choose_setting(dev, {"variant": "marginal", "M": 4})["by"] == "dev auroc"
    dev["auroc"] = None
    assert labeler_axis.choose_setting(dev, {"variant": "marginal", "M": 4}) == {
        "variant": "marginal",
        "M": 4,
        "by": "the experiment's setting (dev AUROC undefined)",
    }
    results = {
        "policy": _result("policy", 0.55, 0.6, 0.50),
        "anticipate": _result("anticipate", 0.70, 0.6, 0.52),  # best on dev, not on train
        "continued": _result("continued", None, 0.9, 0.90),
    }
    assert labeler_axis.best_labeler(results) == "anticipate"
    entries = labeler_axis.headline_entries(results)
    assert entries["best_labeler_cpmi_auroc_within_position"].value == pytest.approx(0.57)
    assert entries["labeler_policy_cpmi_seconds_per_step"].value == 0.2  # the chosen variant's
    assert entries["labeler_continued_mc_auroc_vs_truth"].value == 0.85
    assert entries["labeler_policy_anticipation"].ci == (0.1, 0.3)
    assert entries["labeler_policy_anticipation"].n == 9
    for name in ("policy", "anticipate", "continued"):
        for what in (
            "anticipation",
            "cpmi_auroc_vs_truth",
            "mc_auroc_vs_truth",
            "cpmi_seconds_per_step",
            "mc_seconds_per_step",
        ):
            assert f"labeler_{name}_{what}" in entries
    summary = labeler_axis.summary_table(results)
    assert list(summary["cpmi_setting"]) == ["cumulative, M=1"] * 3
    assert set(labeler_axis.skill_curves(results)["remaining"]) == {0, 1}
    assert len(labeler_axis.quality_table(results)) == 3 * 7


def test_hub_labeler_is_named_apart_from_the_policy():
    from cpmi_lib.experiment.hub_spec import HubSpec
    from cpmi_lib.experiment.tracks import make_track

    spec = HubSpec(model="org/policy", prm_backbone="org/prm", labeler="org/labeler")
    track = make_track(spec, WorldSpec(), LMTrainConfig(), cache="/nonexistent")
    assert track.labeler_path == "org/labeler" and track.model_path == "org/policy"
    assert (
        make_track(
            HubSpec(model="org/policy"), WorldSpec(), LMTrainConfig(), cache="/x"
        ).labeler_path
        == "org/policy"
    )
    with pytest.raises(ValueError, match="HubSpec.labeler"):
        make_track(spec, WorldSpec(), LMTrainConfig(), "/x", labeler=ContinuedLMConfig())
    with pytest.raises(ValueError, match="HubSpec.labeler is empty"):
        HubSpec(labeler="")
