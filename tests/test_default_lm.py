"""The default LM recipe and sampling: determinism, the cache, and the end-to-end integration path.

The real default LM takes minutes to train; these tests train miniatures of the same recipe for a
few seconds, which exercises every line of the code path.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from cpmi_lib.core.text_format import render_prompt
from cpmi_lib.core.trajectory import Trajectory, read_trajectories, write_trajectories
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_tokenizer import build_world_tokenizer
from cpmi_lib.lm.default_lm import (
    ContinuedLMConfig,
    LMTrainConfig,
    continued_lm_dir,
    default_lm_dir,
    ensure_continued_lm,
    ensure_default_lm,
    train_lm,
    training_record,
    training_text_ids,
)
from cpmi_lib.lm.load import load_lm
from cpmi_lib.lm.quality import measure_lm_quality
from cpmi_lib.lm.sampling import SampleConfig, generate_texts, generated_lengths, sample_solutions


@pytest.fixture(scope="module")
def test_problems(tiny_world):
    return build_world(tiny_world, {"test": 12}, seed=0)["test"]


def test_loss_is_on_the_solution_only(tiny_world, tiny_lm_config):
    tok = build_world_tokenizer()
    p = build_world(tiny_world, {"lm": 1}, seed=0)["lm"][0]
    template = tiny_lm_config.templates[1]
    ids, n_prompt = training_text_ids(tok, p, template)
    assert tok.decode(ids[:n_prompt], skip_special_tokens=True) == render_prompt(
        p.question, template
    )
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids[n_prompt:], skip_special_tokens=True).startswith(p.gold_steps[0])


def test_training_is_deterministic_and_cached(tiny_lm_dir, tiny_lm_cache, tiny_lm_config, tmp_path):
    path, cache, TINY = tiny_lm_dir, tiny_lm_cache, tiny_lm_config
    assert path == default_lm_dir(TINY, cache)
    again = train_lm(TINY, tmp_path / "again", progress=False)
    a, _ = load_lm(path)
    b, _ = load_lm(again)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    rec = training_record(path)
    assert rec["key"] == TINY.key() and rec["config"]["train_steps"] == TINY.train_steps
    assert rec["loss_curve"][-1] < rec["loss_curve"][0]  # it learned something
    # a second call reuses the cached model instead of training again
    stamp = (path / "training.json").stat().st_mtime_ns
    assert ensure_default_lm(TINY, cache=cache, progress=False) == path
    assert (path / "training.json").stat().st_mtime_ns == stamp
    other = LMTrainConfig(**{**TINY.__dict__, "seed": 1})
    assert other.key() != TINY.key()


def test_greedy_batches_equal_single_prompts(tiny_lm, test_problems):
    model, tok = tiny_lm
    prompts = [render_prompt(p.question) for p in test_problems[:6]]
    cfg = SampleConfig(n=1, temperature=0.0, max_new_tokens=40, batch_size=6)
    batched, _ = generate_texts(model, tok, prompts, cfg)
    single = [generate_texts(model, tok, [p], cfg)[0][0] for p in prompts]
    assert batched == single


def test_sampling_is_seeded(tiny_lm, test_problems):
    model, tok = tiny_lm
    cfg = SampleConfig(n=4, temperature=1.0, max_new_tokens=40, batch_size=8, seed=3)
    a = sample_solutions(model, tok, test_problems[:4], cfg, progress=False)
    b = sample_solutions(model, tok, test_problems[:4], cfg, progress=False)
    c = sample_solutions(
        model, tok, test_problems[:4], SampleConfig(**{**cfg.__dict__, "seed": 4}), progress=False
    )
    assert [t.steps for t in a] == [t.steps for t in b]
    assert [t.steps for t in a] != [t.steps for t in c]


def test_generated_lengths_stop_at_the_first_eos():
    new = torch.tensor([[5, 6, 2, 0, 0], [5, 5, 5, 5, 5], [2, 2, 2, 2, 2]])
    assert generated_lengths(new, eos_id=2).tolist() == [3, 5, 1]
    assert generated_lengths(new, eos_id=None).tolist() == [5, 5, 5]


def test_integration_world_train_save_reload_sample_round_trip(tiny_lm, test_problems, tmp_path):
    """A small world, a miniature LM trained, reloaded and sampled; trajectories round-trip."""
    model, tok = tiny_lm
    cfg = SampleConfig(n=2, temperature=0.7, max_new_tokens=60, batch_size=8, seed=0)
    trajs = sample_solutions(model, tok, test_problems, cfg, progress=False)
    assert trajs, "a trained miniature writes steps"
    for t in trajs:
        assert t.gold_answer == next(
            p.answer for p in test_problems if p.id == t.metadata["problem_id"]
        )
        assert t.step_labels is not None and len(t.step_labels) == t.n_steps
        assert t.metadata["final_correct"] == (t.final_answer == t.gold_answer)
    path = tmp_path / "samples.jsonl"
    write_trajectories(path, trajs)
    assert read_trajectories(path) == trajs
    assert [Trajectory.from_stepwise(t.to_stepwise()) for t in trajs] == trajs
    # the non-world path: answers checked with math-verify, steps left unlabelled
    gold_only = [p.gold_trajectory() for p in test_problems[:3]]
    plain = sample_solutions(model, tok, gold_only, cfg, progress=False)
    assert all(
        t.step_labels is None and isinstance(t.metadata["final_correct"], bool) for t in plain
    )


def test_quality_report_is_consistent(tiny_lm, test_problems):
    model, tok = tiny_lm
    q = measure_lm_quality(
        model, tok, test_problems, n_sampled_problems=4, samples_per_problem=3, progress=False
    )
    assert q.n_problems == 12 and q.n_sampled_problems == 4
    assert 0.0 <= q.greedy_accuracy <= 1.0
    assert q.greedy_accuracy_ci95[0] <= q.greedy_accuracy <= q.greedy_accuracy_ci95[1]
    assert 0.0 <= q.mixed_rate <= 1.0 and q.greedy_mean_steps >= 0


def test_continued_lm_starts_from_its_parent_and_is_cached(
    tiny_lm_dir, tiny_lm_cache, tiny_lm_config
):
    """The PRM backbone LM: the parent's weights, trained further on new problems; cached."""
    cfg = ContinuedLMConfig(parent=tiny_lm_config, n_train_problems=100, train_steps=3, seed=7)
    path = ensure_continued_lm(cfg, cache=tiny_lm_cache, progress=False)
    assert path == continued_lm_dir(cfg, tiny_lm_cache) and path != tiny_lm_dir
    parent, _ = load_lm(tiny_lm_dir)
    child, _ = load_lm(path)
    diffs = [
        (x - y).abs().max().item()
        for x, y in zip(parent.state_dict().values(), child.state_dict().values(), strict=True)
    ]
    # 3 small steps from the parent: changed, but close (a fresh init would be far away)
    assert 0 < max(diffs) < 0.05
    rec = training_record(path)
    assert rec["config"]["parent"]["train_steps"] == tiny_lm_config.train_steps
    assert rec["key"] == cfg.key() and rec["config"]["parent_dir"] == tiny_lm_dir.name
    stamp = (path / "training.json").stat().st_mtime_ns
    assert ensure_continued_lm(cfg, cache=tiny_lm_cache, progress=False) == path
    assert (path / "training.json").stat().st_mtime_ns == stamp
    assert ContinuedLMConfig(parent=tiny_lm_config, train_steps=4, seed=7).key() != cfg.key()
    with pytest.raises(ValueError, match="must differ from the parent's"):
        ContinuedLMConfig(parent=tiny_lm_config, seed=tiny_lm_config.seed)


def test_concurrent_callers_build_an_lm_once(tiny_lm_config, tmp_path, monkeypatch):
    """Two callers at once (as the ranks of a launched job asking for ``--model default``): one
    trains, the other waits for the build lock and finds the LM built."""
    from cpmi_lib.lm import default_lm

    calls = []

    def slow_train(cfg, out, progress=True):
        calls.append(out)
        time.sleep(0.5)  # long enough that the second caller arrives while this one trains
        out.mkdir(parents=True)
        (out / "training.json").write_text("{}")
        return out

    monkeypatch.setattr(default_lm, "train_lm", slow_train)
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(ensure_default_lm, tiny_lm_config, tmp_path, False) for _ in range(2)
        ]
        paths = [f.result() for f in futures]
    assert len(calls) == 1 and paths[0] == paths[1] == calls[0]
