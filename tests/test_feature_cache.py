"""The backbone-feature cache: a hit returns exactly what the call computes, only that call hits,
copies of one backbone share entries, a damaged file is recomputed, and PRMs trained and scored
through it are bit for bit those trained and scored without it."""

from __future__ import annotations

import os
import random
from dataclasses import replace

import pytest
import torch

from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.prm import feature_cache
from cpmi_lib.prm.config import PRMConfig
from cpmi_lib.prm.encoding import encode_for_prm, step_spans
from cpmi_lib.prm.feature_cache import backbone_fingerprint, cached_step_features, call_key
from cpmi_lib.prm.features import step_features
from cpmi_lib.prm.model import load_causal_lm, load_prm, load_prm_tokenizer
from cpmi_lib.prm.targets import make_target_transform
from cpmi_lib.prm.train import train_prm


@pytest.fixture(scope="module")
def world_trajs(tiny_world):
    rng = random.Random(3)
    problems = build_world(tiny_world, {"train": 40, "dev": 12}, seed=3)
    truth = make_target_transform("truth")
    out = {}
    for split, ps in problems.items():
        pairs = [
            (t, truth.transform(t.step_labels))
            for p in ps
            for t in (p.gold_trajectory(), corrupt(p, rng))
            if t
        ]
        out[split] = pairs
    return out


@pytest.fixture(scope="module")
def backbone(tiny_lm_dir):
    tokenizer = load_prm_tokenizer(tiny_lm_dir)
    return load_causal_lm(tiny_lm_dir, tokenizer), tokenizer


@pytest.fixture(scope="module")
def spans(backbone, world_trajs):
    _, tokenizer = backbone
    encs = [encode_for_prm(tokenizer, t.question, t.steps) for t, _ in world_trajs["dev"]]
    return [step_spans(e.input_ids, e.label_positions, e.n_prompt_tokens) for e in encs]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_hit_returns_exactly_what_the_call_computes(backbone, spans, tmp_path, monkeypatch):
    model, _ = backbone
    want = step_features(model, spans, 8)
    first = cached_step_features(model, spans, 8, tmp_path)
    assert _same(first, want) and len(list(tmp_path.glob("features-*.pt"))) == 1

    def refuse(*_a, **_k):
        raise AssertionError("a cached call was recomputed")

    monkeypatch.setattr(feature_cache, "step_features", refuse)
    assert _same(cached_step_features(model, spans, 8, tmp_path), want)


def test_only_the_same_call_hits(backbone, spans):
    model, _ = backbone
    key = call_key(model, spans, 8)
    assert call_key(model, spans, 8) == key
    assert call_key(model, spans, 4) != key  # other batches may round differently
    assert call_key(model, spans[:-1], 8) != key
    assert call_key(model, list(reversed(spans)), 8) != key
    other = replace(spans[0], ends=[*spans[0].ends[:-1], spans[0].ends[-1] - 1])
    assert call_key(model, [other, *spans[1:]], 8) != key
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert call_key(model, spans, 8) != key
    finally:
        torch.set_num_threads(threads)


def test_the_fingerprint_follows_the_weights_not_the_folder(backbone, tmp_path):
    model, tokenizer = backbone
    model.save_pretrained(tmp_path / "copy")
    copy = load_causal_lm(tmp_path / "copy", tokenizer)
    assert copy.config._name_or_path != model.config._name_or_path
    assert backbone_fingerprint(copy) == backbone_fingerprint(model)
    with torch.no_grad():
        next(copy.parameters()).view(-1)[0] += 1e-6
    assert backbone_fingerprint(copy) != backbone_fingerprint(model)


def test_a_damaged_file_is_recomputed_and_replaced(backbone, spans, tmp_path):
    model, _ = backbone
    want = step_features(model, spans, 8)
    path = tmp_path / f"features-{call_key(model, spans, 8)}.pt"
    path.write_bytes(b"not a tensor file")
    with pytest.warns(UserWarning, match="unreadable"):
        assert _same(cached_step_features(model, spans, 8, tmp_path), want)
    torch.save(want[:-1], path)  # readable, but not this call's
    with pytest.warns(UserWarning, match="does not match"):
        assert _same(cached_step_features(model, spans, 8, tmp_path), want)
    assert _same(torch.load(path, weights_only=True), want)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_cache_that_cannot_be_written_still_gives_the_features(backbone, spans, tmp_path):
    model, _ = backbone
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="not cached"):
        got = cached_step_features(model, spans, 8, blocked / "features")
    assert _same(got, step_features(model, spans, 8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


SURPRISE = PRMConfig(
    head="surprise", head_hidden=8, lr=1e-2, epochs=2, batch_size=16, threads=1, target="truth"
)


def test_prms_through_the_cache_are_bitwise_those_without(tiny_lm_dir, world_trajs, tmp_path):
    train, dev = world_trajs["train"], world_trajs["dev"]
    cache = tmp_path / "features"
    plain = train_prm(tiny_lm_dir, train, dev, tmp_path / "plain", SURPRISE)
    cold = train_prm(tiny_lm_dir, train, dev, tmp_path / "cold", SURPRISE, feature_cache=cache)
    n_files = len(list(cache.glob("*.pt")))
    assert n_files == 2  # train and dev
    warm = train_prm(tiny_lm_dir, train, dev, tmp_path / "warm", SURPRISE, feature_cache=cache)
    assert len(list(cache.glob("*.pt"))) == n_files
    for result in (cold, warm):
        a, b = plain.model.model.state_dict(), result.model.model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    trajs = [t for t, _ in dev]
    want = load_prm(plain.path).predict(trajs)
    # each PRM folder has its own copy of the backbone; they share the cached features
    assert load_prm(cold.path, feature_cache=cache).predict(trajs) == want
    assert load_prm(warm.path, feature_cache=cache).predict(trajs) == want


def test_the_cache_keeps_the_recently_used_files_within_its_bound(
    backbone, spans, tmp_path, monkeypatch
):
    model, _ = backbone
    calls = [spans[:4], spans[4:8], spans[8:12]]
    paths = [tmp_path / f"features-{call_key(model, c, 8)}.pt" for c in calls]
    cached_step_features(model, calls[0], 8, tmp_path)
    cached_step_features(model, calls[1], 8, tmp_path)
    size = max(p.stat().st_size for p in paths[:2])
    for age, path in enumerate(paths[:2]):  # call 0 is older than call 1 ...
        os.utime(path, ns=(10**9 * (100 + age),) * 2)
    cached_step_features(model, calls[0], 8, tmp_path)  # ... until a hit renews it
    monkeypatch.setenv("CPMI_FEATURE_CACHE_BYTES", str(2 * size + size // 2))
    got = cached_step_features(model, calls[2], 8, tmp_path)
    assert _same(got, step_features(model, calls[2], 8))
    assert [p.exists() for p in paths] == [True, False, True]  # the least recently used went
    monkeypatch.setenv("CPMI_FEATURE_CACHE_BYTES", "0")  # the file just written always stays
    cached_step_features(model, calls[1], 8, tmp_path)
    assert [p.exists() for p in paths] == [False, True, False]


def test_the_bound_must_be_a_whole_number_of_bytes(monkeypatch):
    monkeypatch.setenv("CPMI_FEATURE_CACHE_BYTES", "4GB")
    with pytest.raises(ValueError, match="CPMI_FEATURE_CACHE_BYTES"):
        feature_cache.max_cache_bytes()
    monkeypatch.delenv("CPMI_FEATURE_CACHE_BYTES")
    assert feature_cache.max_cache_bytes() == feature_cache.DEFAULT_MAX_BYTES
