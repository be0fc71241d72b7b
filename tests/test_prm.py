"""The PRM: label alignment, separator as token ids, truncation, loss, a real (tiny) training."""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import replace

import pytest
import torch
from sklearn.metrics import roc_auc_score
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from cpmi_lib.core.text_format import DEFAULT_TEMPLATE, STEP_SEPARATOR, render_prompt
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.data.world import build_world
from cpmi_lib.data.world_errors import corrupt
from cpmi_lib.data.world_tokenizer import build_world_tokenizer
from cpmi_lib.prm.config import PRMConfig
from cpmi_lib.prm.encoding import (
    IGNORE_INDEX,
    PRMCollator,
    build_prm_features,
    encode_for_prm,
    step_spans,
)
from cpmi_lib.prm.features import StepHead, step_features
from cpmi_lib.prm.model import (
    BACKBONE_DIR,
    PRM_FILE,
    ProcessRewardModel,
    load_causal_lm,
    load_prm,
    load_prm_tokenizer,
)
from cpmi_lib.prm.targets import TargetTransform, make_target_transform
from cpmi_lib.prm.train import compute_pos_weight, load_backbone, prm_bce_loss, train_prm

QUESTION = "Ava has 3 apples. She buys 4 more apples. How many apples does Ava have now?"
STEPS = ["Ava has 3 + 4 = 7 apples.", "Ava has 7 * 2 = 14 apples.", "Ava has 14 - 5 = 9 apples."]


@pytest.fixture(scope="module")
def tok():
    return build_world_tokenizer()


@pytest.fixture(scope="module")
def traj():
    return Trajectory(id="hand-1", question=QUESTION, steps=STEPS, step_labels=[True, False, False])


# ---------------------------------------------------------------------------------- encoding


def test_label_positions_are_the_last_token_of_each_step(tok, traj):
    enc = encode_for_prm(tok, QUESTION, STEPS, trajectory_id=traj.id)
    assert not enc.truncated and enc.n_steps_kept == 3
    assert tok.unk_token_id not in enc.input_ids
    ids, pos = enc.input_ids, enc.label_positions
    assert len(pos) == 3 and pos == sorted(pos) and pos[-1] == len(ids) - 1
    prompt_ids = tok(render_prompt(QUESTION)).input_ids
    assert ids[: len(prompt_ids)] == prompt_ids and ids[0] == tok.bos_token_id
    starts = [len(prompt_ids)] + [p + 1 for p in pos[:-1]]
    for start, end, step in zip(starts, pos, STEPS, strict=True):
        assert tok.decode([ids[end]]) == STEP_SEPARATOR  # the label sits on the separator
        assert tok.decode(ids[start:end]) == step  # ...right after the whole step


def test_labels_in_step_order_and_ignored_elsewhere(tok, traj):
    rows, n_trunc = build_prm_features(tok, [(traj, [1.0, 0.25, 0.0])])
    assert n_trunc == 0
    labels = rows[0]["labels"]
    pos = encode_for_prm(tok, QUESTION, STEPS).label_positions
    assert [labels[p] for p in pos] == [1.0, 0.25, 0.0]
    assert all(y == IGNORE_INDEX for i, y in enumerate(labels) if i not in pos)
    assert len(labels) == len(rows[0]["input_ids"])


class SpyTokenizer:
    """Records every text it is asked to tokenize."""

    def __init__(self, inner):
        self.inner, self.texts = inner, []

    def __call__(self, text, **kw):
        self.texts.append(text)
        return self.inner(text, **kw)


def test_separator_is_appended_as_token_ids(tok):
    spy = SpyTokenizer(tok)
    enc = encode_for_prm(spy, QUESTION, STEPS)
    # The world tokenizer splits at "\n", so token-level and string-level joins agree here ...
    joined = render_prompt(QUESTION) + "".join(s + STEP_SEPARATOR for s in STEPS)
    assert enc.input_ids == tok(joined).input_ids
    # ... but the code never tokenizes a joined string: only the prompt, the separator, each step.
    assert set(spy.texts) == {render_prompt(QUESTION), STEP_SEPARATOR, *STEPS}


def test_custom_separator_and_template(tok):
    template = "Problem: {question}\nSolution:\n"
    enc = encode_for_prm(tok, QUESTION, STEPS[:2], template=template, separator=" .\n")
    sep = tok(" .\n", add_special_tokens=False).input_ids
    assert len(sep) == 2
    for p in enc.label_positions:
        assert enc.input_ids[p - 1 : p + 1] == sep


def test_truncation_drops_whole_trailing_steps(tok, traj, caplog):
    full = encode_for_prm(tok, QUESTION, STEPS)
    limit = full.label_positions[1] + 2  # two steps fit, a token of the third would too
    enc = encode_for_prm(tok, QUESTION, STEPS, max_length=limit)
    assert enc.truncated and enc.n_steps_kept == 2
    assert enc.input_ids == full.input_ids[: full.label_positions[1] + 1]
    assert enc.label_positions == full.label_positions[:2]
    exact = encode_for_prm(tok, QUESTION, STEPS, max_length=len(full.input_ids))
    assert not exact.truncated and exact.input_ids == full.input_ids

    with caplog.at_level(logging.WARNING, logger="cpmi_lib.prm.encoding"):
        rows, n_trunc = build_prm_features(tok, [(traj, [1.0, 0.0, 0.0])], max_length=limit)
    assert n_trunc == 1 and "'hand-1'" in caplog.text and "2 of 3 steps" in caplog.text
    assert sorted(y for y in rows[0]["labels"] if y != IGNORE_INDEX) == [0.0, 1.0]

    too_small = full.label_positions[0]  # the prompt fits, the prompt + first step does not
    with pytest.raises(RecordError, match=r"trajectory 'hand-1'.*steps\[0\].*max_length"):
        encode_for_prm(tok, QUESTION, STEPS, max_length=too_small, trajectory_id="hand-1")


def test_targets_are_checked_naming_the_trajectory(tok, traj):
    with pytest.raises(RecordError, match="'hand-1'.*2 targets for 3 steps"):
        build_prm_features(tok, [(traj, [1.0, 0.0])])
    with pytest.raises(RecordError, match=r"'hand-1'.*targets\[2\].*\[0, 1\]"):
        build_prm_features(tok, [(traj, [1.0, 0.0, 1.5])])


def test_collator_pads_right(tok):
    batch = PRMCollator(pad_token_id=0)(
        [
            {"input_ids": [5, 6, 7], "labels": [-100.0, -100.0, 0.5]},
            {"input_ids": [8], "labels": [1.0]},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[-100.0, -100.0, 0.5], [1.0, -100.0, -100.0]]


# -------------------------------------------------------------------------------------- loss


def test_bce_loss_hand_computed():
    logits = torch.tensor([[[0.0], [2.0], [-1.0]], [[5.0], [0.0], [0.0]]])
    labels = torch.tensor([[-100.0, 1.0, 0.25], [-100.0, 0.0, -100.0]])

    def bce(x, y, w=1.0):
        log_p, log_not_p = -math.log1p(math.exp(-x)), -math.log1p(math.exp(x))
        return -(w * y * log_p + (1 - y) * log_not_p)

    want = (bce(2.0, 1.0) + bce(-1.0, 0.25) + bce(0.0, 0.0)) / 3
    assert prm_bce_loss(logits, labels).item() == pytest.approx(want, rel=1e-6)
    want_w = (bce(2.0, 1.0, 3.0) + bce(-1.0, 0.25, 3.0) + bce(0.0, 0.0, 3.0)) / 3
    assert prm_bce_loss(logits, labels, pos_weight=3.0).item() == pytest.approx(want_w, rel=1e-6)
    assert prm_bce_loss(logits, torch.full((2, 3), -100.0)).item() == 0.0


def test_pos_weight_hand_computed():
    assert compute_pos_weight([[1.0, 1.0, 0.0], [1.0]]) == pytest.approx(1 / 3)
    assert compute_pos_weight([[0.9, 0.2, 0.6, 0.5]]) == 1.0  # soft: > 0.5 is positive
    with pytest.raises(ValueError, match="4 positive and 0 negative"):
        compute_pos_weight([[1.0, 1.0], [1.0, 1.0]])


# ---------------------------------------------------------------------------------- backbones


def test_default_lm_backbone_reuses_the_lm_body(tiny_lm, tiny_lm_dir):
    lm, _ = tiny_lm
    tokenizer = load_prm_tokenizer(tiny_lm_dir)
    assert tokenizer.pad_token_id is not None
    model = load_backbone(tiny_lm_dir, tokenizer, seed=0)
    assert type(model).__name__ == "LlamaForTokenClassification"
    assert model.score.out_features == 1
    assert torch.equal(model.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    again = load_backbone(tiny_lm_dir, tokenizer, seed=0)
    assert torch.equal(model.score.weight, again.score.weight)  # the new head is seeded


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_other_causal_lm_families_load_as_prm_backbones(family, tok, tmp_path):
    torch.manual_seed(0)
    if family == "gpt2":
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2))
    else:
        cfg = Qwen2Config(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
        lm = Qwen2ForCausalLM(cfg)
    lm.save_pretrained(tmp_path)
    no_pad = build_world_tokenizer()
    no_pad.pad_token = None  # like GPT-2's: the eos token must stand in
    no_pad.save_pretrained(tmp_path)
    tokenizer = load_prm_tokenizer(tmp_path)
    assert tokenizer.pad_token == tokenizer.eos_token
    model = load_backbone(tmp_path, tokenizer, seed=0).eval()
    enc = encode_for_prm(tokenizer, QUESTION, STEPS)
    batch = PRMCollator(tokenizer.pad_token_id)([{"input_ids": enc.input_ids}])
    assert model(**batch).logits.shape == (1, len(enc.input_ids), 1)


# ---------------------------------------------------------------------------------- training


def _world_data(world, split: str, n: int, seed: int) -> list[tuple[Trajectory, list[float]]]:
    """Gold + one corruption per problem, with exact step labels as `truth` targets."""
    rng = random.Random(seed)
    truth = make_target_transform("truth")
    out = []
    for p in build_world(world, {split: n}, seed=seed)[split]:
        for t in (p.gold_trajectory(), corrupt(p, rng)):
            if t is not None:
                out.append((t, truth.transform(t.step_labels)))
    return out


@pytest.fixture(scope="module")
def data(tiny_world):
    return _world_data(tiny_world, "train", 100, 1), _world_data(tiny_world, "dev", 30, 2)


CFG = PRMConfig(epochs=4, lr=3e-3, batch_size=16, threads=1, patience=2, target="truth")


@pytest.fixture(scope="module")
def trained(tiny_lm_dir, data, tmp_path_factory):
    train, dev = data
    out = tmp_path_factory.mktemp("prm")
    return train_prm(tiny_lm_dir, train, dev, out, CFG)


@pytest.mark.slow
def test_trained_prm_beats_chance_on_its_training_steps(trained, data):
    train, _ = data
    assert len(train) >= 190
    probs = trained.model.predict([t for t, _ in train])
    y = [v for _, ys in train for v in ys]
    p = [v for ps in probs for v in ps]
    assert [len(ps) for ps in probs] == [t.n_steps for t, _ in train]
    assert all(0.0 < v < 1.0 for v in p)
    assert roc_auc_score(y, p) > 0.6
    assert trained.n_train_steps == len(y) and trained.n_truncated == {"train": 0, "dev": 0}


@pytest.mark.slow
def test_save_load_gives_identical_predictions(trained, data):
    trajs = [t for t, _ in data[1]]
    loaded = load_prm(trained.path)
    assert loaded.predict(trajs, batch_size=7) == trained.model.predict(trajs, batch_size=7)
    assert loaded.config == CFG
    assert loaded.target_transform().name == "truth"


@pytest.mark.slow
def test_prm_json_records_config_curve_and_time(trained):
    record = json.loads((trained.path / PRM_FILE).read_text())
    assert PRMConfig.from_dict(record["config"]) == CFG
    assert TargetTransform.from_dict(record["target_transform"]).name == "truth"
    curve = record["learning_curve"]
    assert len(curve) == trained.epochs_completed == 4
    assert [row["epoch"] for row in curve] == [1.0, 2.0, 3.0, 4.0]
    assert all(row["train_loss"] > 0 and row["eval_loss"] > 0 for row in curve)
    assert trained.best_eval_loss == min(row["eval_loss"] for row in curve)
    assert record["train_seconds"] > 0 and record["result"]["global_steps"] == trained.global_steps
    assert (trained.path / "config.json").is_file() and (trained.path / "tokenizer.json").is_file()
    assert not (trained.path / "checkpoints").exists()


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(trained, tiny_lm_dir, data, tmp_path):
    train, dev = data
    again = train_prm(tiny_lm_dir, train, dev, tmp_path / "again", CFG)
    trajs = [t for t, _ in dev]
    assert load_prm(again.path).predict(trajs) == load_prm(trained.path).predict(trajs)
    assert again.learning_curve == trained.learning_curve


@pytest.mark.slow
def test_pos_weight_comes_from_training_targets_only(tiny_lm_dir, data, tmp_path):
    train, dev = data
    n_pos = sum(y for _, ys in train for y in ys)
    n_neg = sum(len(ys) for _, ys in train) - n_pos
    all_good_dev = [(t, [1.0] * t.n_steps) for t, _ in dev]  # would give 0 if it were used
    cfg = replace(CFG, epochs=1, pos_weight=True)
    result = train_prm(tiny_lm_dir, train, all_good_dev, tmp_path / "pw", cfg)
    assert result.pos_weight == pytest.approx(n_neg / n_pos)
    record = json.loads((tmp_path / "pw" / PRM_FILE).read_text())
    assert record["result"]["pos_weight"] == pytest.approx(n_neg / n_pos)


@pytest.mark.slow
def test_predict_on_truncated_trajectories(trained, traj):
    prm = trained.model
    full = prm.predict([traj])[0]
    enc = encode_for_prm(prm.tokenizer, QUESTION, STEPS)
    short = ProcessRewardModel(
        prm.model, prm.tokenizer, replace(prm.config, max_length=enc.label_positions[0] + 1)
    )
    filled = short.predict([traj])[0]
    assert filled[0] == pytest.approx(full[0], abs=1e-6)  # same prefix, same probability
    assert filled == [filled[0]] * 3
    with pytest.raises(RecordError, match="'hand-1'.*1 of 3 steps"):
        short.predict([traj], on_truncate="raise")


def test_train_prm_refuses_bad_input(tiny_lm_dir, traj, tmp_path):
    with pytest.raises(ValueError, match="needs training and dev data"):
        train_prm(tiny_lm_dir, [(traj, [1.0, 0.0, 0.0])], [], tmp_path, CFG)
    with pytest.raises(ValueError, match="labels must be booleans"):  # truth wants 0/1 scores
        train_prm(tiny_lm_dir, [(traj, [1.0, 0.5, 0.0])], [(traj, [1.0, 0.0, 0.0])], tmp_path, CFG)
    with pytest.raises(FileNotFoundError, match="not a PRM directory"):
        load_prm(tmp_path)
    with pytest.raises(ValueError, match="PRMConfig.target must be a target transform name"):
        PRMConfig(target={"name": "zsig"})
    with pytest.raises(ValueError, match="warmup_ratio"):
        PRMConfig(warmup_ratio=1.5)
    assert DEFAULT_TEMPLATE == PRMConfig().template


# ------------------------------------------------------------------------- the surprise head

SURPRISE = replace(CFG, head="surprise", head_hidden=16, lr=1e-2, epochs=6, patience=3)


def test_step_features_equal_a_one_trajectory_reference(tiny_lm, tok):
    """Batched, padded features == token log-probabilities computed one trajectory at a time."""
    lm, _ = tiny_lm
    lm.config.pad_token_id = tok.pad_token_id
    trajs = [STEPS, STEPS[:1], ["Ava has 9 - 2 = 7 apples.", "Ava has 7 + 7 = 14 apples."]]
    encs = [encode_for_prm(tok, QUESTION, s) for s in trajs]
    spans = [step_spans(e.input_ids, e.label_positions, e.n_prompt_tokens) for e in encs]
    batched = step_features(lm, spans, batch_size=3)
    for enc, got in zip(encs, batched, strict=True):
        ids = enc.input_ids
        with torch.no_grad():
            out = lm(input_ids=torch.tensor([ids]), output_hidden_states=True)
        logits, hidden = out.logits[0].double(), out.hidden_states[-1][0]
        begin = enc.n_prompt_tokens
        for i, end in enumerate(enc.label_positions):
            lps, margins = [], []
            for k in range(begin, end + 1):  # every token of the step, given all before it
                logp = torch.log_softmax(logits[k - 1], -1)
                lps.append(float(logp[ids[k]]))
                margins.append(float(logp[ids[k]] - logp.max()))
            want = [min(lps), sum(lps) / len(lps), min(margins), sum(margins) / len(margins)]
            assert got[i, :4].tolist() == pytest.approx(want, abs=1e-4)
            assert torch.allclose(got[i, 4:], hidden[end], atol=1e-5)
            begin = end + 1
    assert [len(f) for f in batched] == [3, 1, 2]


def test_step_head_standardizes_with_training_statistics():
    head = StepHead(3, hidden=0)
    head.fit_scaler([torch.tensor([[1.0, 2.0, 5.0], [3.0, 2.0, 7.0]])])
    assert head.mean.tolist() == [2.0, 2.0, 6.0]
    assert head.std[0].item() == pytest.approx(2**0.5, rel=1e-6) and head.std[1].item() == 1.0


@pytest.fixture(scope="module")
def trained_surprise(tiny_lm_dir, data, tmp_path_factory):
    train, dev = data
    out = tmp_path_factory.mktemp("prm-surprise")
    return train_prm(tiny_lm_dir, train, dev, out, SURPRISE)


@pytest.mark.slow
def test_surprise_prm_learns_saves_loads_and_repeats(trained_surprise, tiny_lm_dir, data, tmp_path):
    train, dev = data
    trajs = [t for t, _ in dev]
    probs = trained_surprise.model.predict([t for t, _ in train])
    y = [v for _, ys in train for v in ys]
    assert roc_auc_score(y, [v for ps in probs for v in ps]) > 0.6
    loaded = load_prm(trained_surprise.path)
    assert loaded.config == SURPRISE and loaded.backbone is not None
    got, want = loaded.predict(trajs, batch_size=5), trained_surprise.model.predict(trajs)
    assert [len(p) for p in got] == [t.n_steps for t in trajs]
    assert sum(got, []) == pytest.approx(sum(want, []), abs=1e-6)
    assert (trained_surprise.path / BACKBONE_DIR / "config.json").is_file()
    again = train_prm(tiny_lm_dir, train, dev, tmp_path / "again", SURPRISE)
    assert load_prm(again.path).predict(trajs) == loaded.predict(trajs)
    # the backbone stays frozen: its weights are the LM's own
    lm = load_causal_lm(tiny_lm_dir, loaded.tokenizer)
    for (name, a), (_, b) in zip(
        loaded.backbone.named_parameters(), lm.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_surprise_prm_fills_truncated_steps(trained_surprise, traj):
    prm = trained_surprise.model
    full = prm.predict([traj])[0]
    enc = encode_for_prm(prm.tokenizer, QUESTION, STEPS)
    short = ProcessRewardModel(
        prm.model,
        prm.tokenizer,
        replace(prm.config, max_length=enc.label_positions[0] + 1),
        backbone=prm.backbone,
    )
    assert short.predict([traj])[0] == pytest.approx([full[0]] * 3, abs=1e-6)


def test_prm_head_option_is_checked():
    with pytest.raises(ValueError, match="PRMConfig.head must be one of"):
        PRMConfig(head="attention")
    with pytest.raises(ValueError, match="head_hidden"):
        PRMConfig(head="surprise", head_hidden=-1)
