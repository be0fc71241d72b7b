"""The ``real-smoke`` preset: the paper track's code path on real things (SmolLM2-135M-Instruct with
its chat template and BPE tokenizer, real GSM8K problems, a benchmark made from GSM8K's reference
solutions), end to end; and samples that cannot be read stop the experiment, with the counts."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.data.loaders import GSM8K_DIR, load_gsm8k_problems
from cpmi_lib.experiment import samples as experiment_samples
from cpmi_lib.experiment.hub_spec import GSM8K_REFERENCE, SHARED_GSM8K, SMOLLM2, HubSpec
from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.experiment.summary import run_experiment
from cpmi_lib.labeling.label_results import read_labels
from cpmi_lib.lm.sampling import MIN_KEPT_FOR_ANSWER_CHECK, ParseReport
from cpmi_lib.studies.label_quality import label_quality


@pytest.fixture
def real_cache(tmp_path, monkeypatch, smollm2_dir):
    """A fresh cache with the session's SmolLM2 linked in (no second conversion)."""
    if not (GSM8K_DIR / "train.jsonl").exists():
        pytest.skip(f"{GSM8K_DIR} not found (../shared/data beside the checkout)")
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / smollm2_dir.name).symlink_to(smollm2_dir)
    monkeypatch.setenv("CPMI_CACHE", str(cache))
    return cache


def test_real_smoke_preset_names_real_sources():
    cfg = experiment_config("real-smoke")
    hub = cfg.hub
    assert hub is not None and hub.chat and hub.device == "cpu"
    assert (hub.model, hub.prm_backbone) == (SMOLLM2, SMOLLM2)
    assert (hub.problems, hub.processbench) == (SHARED_GSM8K, GSM8K_REFERENCE)
    # every template is the same chat instruction, so the policy, labeler and PRM read one prompt
    assert hub.prompt == cfg.mc.template == cfg.prm.template == cfg.cpmi.templates[0]
    assert max(cfg.bon_ns) <= cfg.bon_pool


def test_hub_spec_keys_of_earlier_specs_are_unchanged():
    """Fields added later are left out of `to_dict` at their neutral values, so the cache keys
    of the paper presets do not move."""
    d = HubSpec().to_dict()
    assert not {"prompt", "chat", "benchmark_problems"} & set(d)
    assert HubSpec(chat=True, prompt="Q: {question}").to_dict()["chat"] is True
    with pytest.raises(ValueError, match="placeholder"):
        HubSpec(prompt="no slot")
    with pytest.raises(ValueError, match="one subset"):
        HubSpec(processbench=GSM8K_REFERENCE, processbench_subsets=("gsm8k", "math"))


def test_real_smoke_runs_end_to_end(real_cache, tmp_path):
    cfg = experiment_config("real-smoke")
    out = tmp_path / "results" / "prm_experiment.json"
    result = run_experiment(cfg, out=out, label_quality=label_quality)
    json.loads(out.read_text(), parse_constant=pytest.fail)  # no NaN or infinity written
    assert "/models/smollm2-135m-instruct" in result["track"]["LM"]
    assert result["track"]["ProcessBench"] == f"<cache>/benchmarks/{GSM8K_REFERENCE}-8"

    exp = Experiment(cfg)
    train = read_trajectories(exp.policy_samples("train"))
    chat_prompt = exp.sample_template()
    assert chat_prompt.startswith("<|im_start|>") and "{question}" in chat_prompt
    gsm8k_train = {p.question for p in load_gsm8k_problems(GSM8K_DIR, split="train", config=None)}
    assert train and all(t.question in gsm8k_train for t in train)  # real GSM8K train problems
    # CPMI and MC labelled every kept training sample, step by step, through the chat prompt
    for labeler in ("cpmi", "mc"):
        records = read_labels(exp.labels(labeler, "train"))
        assert [r["id"] for r in records] == [t.id for t in train]
        assert [len(r["steps"]) for r in records] == [t.n_steps for t in train]
    assert exp.cpmi_config().templates == (chat_prompt,)
    assert exp.mc_config().template == chat_prompt
    # the parse report counts every sample; what was dropped is said, not lost
    parsed = result["samples_parsed"]
    assert parsed["policy-train"]["samples"] == cfg.train_problems * cfg.samples_per_problem
    assert parsed["policy-train"]["kept"] == len(train)
    # every PRM (CPMI, MC and the two controls) was trained, evaluated and used for Best-of-N
    assert set(result["processbench"]) == {"cpmi", "mc", "outcome", "cpmi_noself"}
    for r in result["processbench"].values():
        assert 0.0 <= r["test"]["headline_f1"] <= 1.0
    assert {row["n"] for row in result["best_of_n"]["cpmi"]} == set(cfg.bon_ns)
    assert "CPMI" in out.with_suffix(".md").read_text()


def test_samples_that_cannot_be_read_stop_the_experiment(real_cache, monkeypatch):
    """A policy whose samples hold no step: the experiment refuses them with the counts and
    the reason, and writes no sample file (nothing downstream runs on an empty set)."""
    exp = Experiment(experiment_config("real-smoke"))
    monkeypatch.setattr(experiment_samples, "sample_solutions", lambda *a, **k: [])
    with pytest.raises(ValueError, match=r"policy samples \(train\): 4 of 4 samples have no "):
        exp.policy_samples("train")
    assert not (exp.data_dir / "policy-train.jsonl").exists()
    report = json.loads((exp.data_dir / "policy-train.parse.json").read_text())
    assert report == {"samples": 4, "kept": 0, "no_step": 4, "no_answer": 0}


def _traj(i: int, answer: str | None) -> Trajectory:
    return Trajectory(id=f"t{i}", question="q", steps=["s"], gold_answer="1", final_answer=answer)


def test_parse_report_reasons():
    n = MIN_KEPT_FOR_ANSWER_CHECK
    fine = ParseReport.of(n, 1, [_traj(i, "1" if i == 0 else None) for i in range(n)])
    assert fine.refusals() == [] and fine.no_answer == n - 1
    no_answers = ParseReport.of(n, 1, [_traj(i, None) for i in range(n)])
    assert "none of the" in no_answers.refusals()[0]
    # too few kept to tell a broken prompt from chance: not judged on answers
    assert ParseReport.of(2, 1, [_traj(0, None), _traj(1, None)]).refusals() == []
    half = ParseReport.of(5, 2, [_traj(i, "1") for i in range(4)])
    assert half.no_step == 6 and "6 of 10 samples have no parsable step" in half.refusals()[0]
    assert replace(half, kept=5).refusals() == []
