"""CPMI: the packed engine equals the one-pass-per-pair reference, and matches hand computation."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.data.world import WorldConfig, build_world
from cpmi_lib.data.world_tokenizer import build_world_tokenizer
from cpmi_lib.labeling.cpmi import VARIANTS, CPMIConfig, context_pairs, cpmi_step_scores
from cpmi_lib.lm.logprob import (
    ScoreRequest,
    SequenceTooLongError,
    packed_logprobs,
    reference_logprobs,
    trie_floor,
)

TEMPLATES = (
    "Question: {question}\nAnswer:\n",
    "Solve this problem.\nQuestion: {question}\nAnswer:\n",
    "{question}\n",
)


def random_lm(config_class: type, model_class: type, vocab_size: int) -> torch.nn.Module:
    """A tiny randomly initialised causal LM of an architecture, seeded."""
    torch.manual_seed(0)
    cfg = config_class(
        vocab_size=vocab_size,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    model = model_class(cfg).eval()
    with torch.no_grad():  # sharper than init so that log-probs differ between contexts
        for p in model.parameters():
            p.mul_(8.0)
    return model


@pytest.fixture(scope="module")
def lm():
    tok = build_world_tokenizer()  # adds BOS, like Llama's
    return random_lm(LlamaConfig, LlamaForCausalLM, len(tok)), tok


@pytest.fixture(scope="module")
def problem():
    return build_world(WorldConfig(), {"test": 3}, seed=2)["test"][2]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("norm", ["mean", "sum"])
@pytest.mark.parametrize("n_templates", [1, 3])
def test_packed_engine_equals_reference(lm, problem, variant, norm, n_templates):
    model, tok = lm
    negatives = ["91", "7", str(int(problem.answer) + 10)]
    common = dict(variant=variant, length_norm=norm, templates=TEMPLATES[:n_templates])
    ref = cpmi_step_scores(
        model,
        tok,
        problem.question,
        problem.gold_steps,
        problem.answer,
        negatives,
        CPMIConfig(engine="reference", **common),
    )
    # tiny rows and batches force several padded rows per forward pass
    for rows, batch in [(2048, 8192), (64, 200)]:
        fast = cpmi_step_scores(
            model,
            tok,
            problem.question,
            problem.gold_steps,
            problem.answer,
            negatives,
            CPMIConfig(max_row_tokens=rows, max_batch_tokens=batch, **common),
        )
        assert len(fast) == problem.n_steps
        for a, b in zip(ref, fast, strict=True):
            for name in ("cpmi", "gold_term", "neg_term", "lp_gold"):
                assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-4), name
            assert a.lp_negatives == pytest.approx(b.lp_negatives, abs=1e-4)
    assert any(abs(s.cpmi) > 1e-3 for s in ref)  # the model is not blind to the steps


def test_packed_logprobs_equal_reference_on_random_requests(lm):
    model, _ = lm
    rng = random.Random(1)
    base = [1] + [rng.randrange(4, 200) for _ in range(30)]
    requests = []
    for _ in range(8):
        ctx = tuple(base + [rng.randrange(4, 200) for _ in range(rng.randrange(0, 20))])
        for _ in range(3):
            tgt = tuple([50, 60] + [rng.randrange(4, 200) for _ in range(rng.randrange(1, 5))])
            requests.append(ScoreRequest(ctx, tgt))
    ref = reference_logprobs(model, requests)
    meter = CostMeter(n_parameters=10)
    fast = packed_logprobs(model, requests, max_batch_tokens=150, max_row_tokens=60, meter=meter)
    for a, b in zip(ref, fast, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    # encodes shared prefixes once: far fewer tokens than one pass per pair
    naive = sum(len(r.context) + len(r.target) for r in requests)
    assert meter.costs.forward_tokens < 0.5 * naive
    assert trie_floor(requests) < naive


@pytest.mark.parametrize(
    ("architecture", "model_class"),
    [
        (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),  # the paper preset's Qwen2.5
        (transformers.MistralConfig, transformers.MistralForCausalLM),
    ],
)
def test_packed_engine_honours_tree_masks_of_other_architectures(architecture, model_class):
    """The packed engine passes 4D tree masks and position ids; hub models of other families
    must read them as Llama does, or CPMI on the paper track would be silently wrong."""
    model = random_lm(architecture, model_class, vocab_size=256)
    rng = random.Random(2)
    base = [rng.randrange(4, 250) for _ in range(20)]
    requests = [
        ScoreRequest(
            tuple(base + [rng.randrange(4, 250) for _ in range(rng.randrange(0, 12))]),
            tuple(rng.randrange(4, 250) for _ in range(rng.randrange(1, 5))),
        )
        for _ in range(12)
    ]
    ref = reference_logprobs(model, requests)
    fast = packed_logprobs(model, requests, max_batch_tokens=120, max_row_tokens=60)
    for a, b in zip(ref, fast, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


# ----------------------------------------------------------------------- hand-computed toy model


class CountingLM(torch.nn.Module):
    """A toy LM whose logit for "7" is the number of "good" tokens it can see, and for "9" the
    number of "bad" tokens; every other logit is 0. It honours causal, padding and 4D masks."""

    def __init__(self, vocab: dict[str, int]):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_position_embeddings=64)

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
        b, n = input_ids.shape
        if attention_mask is not None and attention_mask.dim() == 4:
            visible = (attention_mask[:, 0] == 0).float()
        else:
            visible = torch.tril(torch.ones(n, n)).expand(b, n, n)
        onehot = torch.nn.functional.one_hot(input_ids, len(self.vocab)).float()
        counts = visible @ onehot  # (b, n, vocab): visible tokens of each kind
        logits = torch.zeros(b, n, len(self.vocab))
        logits[..., self.vocab["7"]] = counts[..., self.vocab["good"]]
        logits[..., self.vocab["9"]] = counts[..., self.vocab["bad"]]
        return SimpleNamespace(logits=logits + 0 * self.dummy)


@pytest.fixture(scope="module")
def toy():
    words = ["<s>", "q", "good", "bad", "ans", "7", "9", "x"]
    vocab = {w: i for i, w in enumerate(words)}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="x"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="x", pad_token="x")
    return CountingLM(vocab), tok


def _lp_by_hand(good: int, bad: int, answer: str, norm: str) -> float:
    """log p("ans") + log p(answer | ... ans) with Z = 6 + e^good + e^bad (8 words, 2 non-zero)."""
    log_z = math.log(6 + math.exp(good) + math.exp(bad))
    total = -log_z + ((good if answer == "7" else bad) - log_z)
    return total / 2 if norm == "mean" else total


@pytest.mark.parametrize("engine", ["packed", "reference"])
@pytest.mark.parametrize("norm", ["sum", "mean"])
def test_cpmi_by_hand_on_a_counting_model(toy, engine, norm):
    model, tok = toy
    steps = ["good", "bad", "good good"]
    cfg = CPMIConfig(
        variant="cumulative",
        templates=("{question} ",),
        answer_format="ans {answer}",
        step_separator=" ",
        length_norm=norm,
        engine=engine,
    )
    scores = cpmi_step_scores(model, tok, "q", steps, "7", ["9"], cfg)
    seen = [(0, 0), (1, 0), (1, 1), (3, 1)]  # (good, bad) visible after c_0 .. c_3
    for i, s in enumerate(scores, start=1):
        gold = _lp_by_hand(*seen[i], "7", norm) - _lp_by_hand(*seen[i - 1], "7", norm)
        neg = _lp_by_hand(*seen[i], "9", norm) - _lp_by_hand(*seen[i - 1], "9", norm)
        assert s.gold_term == pytest.approx(gold, abs=1e-5)
        assert s.neg_term == pytest.approx(neg, abs=1e-5)
        assert s.cpmi == pytest.approx(gold - neg, abs=1e-5)
        assert s.lp_gold == pytest.approx(_lp_by_hand(*seen[i], "7", norm), abs=1e-5)
    # the log Z terms cancel: a good step moves the gold up by one per "good" relative to the neg
    scale = 0.5 if norm == "mean" else 1.0
    assert [round(s.cpmi / scale, 5) for s in scores] == [1.0, -1.0, 2.0]


def test_marginal_and_loo_by_hand(toy):
    model, tok = toy
    steps = ["good", "bad", "good good"]
    common = dict(
        templates=("{question} ",),
        answer_format="ans {answer}",
        step_separator=" ",
        length_norm="sum",
    )
    marginal = cpmi_step_scores(
        model, tok, "q", steps, "7", ["9"], CPMIConfig(variant="marginal", **common)
    )
    assert [round(s.cpmi, 5) for s in marginal] == [1.0, -1.0, 2.0]
    loo = cpmi_step_scores(model, tok, "q", steps, "7", ["9"], CPMIConfig(variant="loo", **common))
    assert [round(s.cpmi, 5) for s in loo] == [1.0, -1.0, 2.0]
    everything = _lp_by_hand(3, 1, "7", "sum")
    assert loo[1].gold_term == pytest.approx(everything - _lp_by_hand(3, 0, "7", "sum"), abs=1e-5)
    # neg_weight scales the negative term only; no negatives means no negative term
    half = cpmi_step_scores(
        model, tok, "q", steps, "7", ["9"], CPMIConfig(variant="loo", neg_weight=0.5, **common)
    )
    assert half[1].cpmi == pytest.approx(loo[1].gold_term - 0.5 * loo[1].neg_term, abs=1e-6)
    alone = cpmi_step_scores(model, tok, "q", steps, "7", [], CPMIConfig(variant="loo", **common))
    assert all(s.neg_term == 0.0 and s.cpmi == s.gold_term for s in alone)
    assert all(s.lp_negatives == () for s in alone)


def test_context_construction():
    steps = ["a", "b", "c"]
    ctx, pairs = context_pairs("Q", steps, "T:{question}|", "cumulative", "\n")
    assert ctx == ["T:Q|", "T:Q|a\n", "T:Q|a\nb\n", "T:Q|a\nb\nc\n"]
    assert pairs == [(1, 0), (2, 1), (3, 2)]
    ctx, pairs = context_pairs("Q", steps, "T:{question}|", "marginal", "\n")
    assert ctx == ["T:Q|", "T:Q|a\n", "T:Q|b\n", "T:Q|c\n"] and pairs == [(1, 0), (2, 0), (3, 0)]
    ctx, pairs = context_pairs("Q", steps, "T:{question}|", "loo", "\n")
    assert ctx == ["T:Q|a\nb\nc\n", "T:Q|b\nc\n", "T:Q|a\nc\n", "T:Q|a\nb\n"]
    assert pairs == [(0, 1), (0, 2), (0, 3)]


def test_bad_configs_and_inputs_are_rejected(toy):
    with pytest.raises(ValueError, match="variant"):
        CPMIConfig(variant="prefix")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="placeholder"):
        CPMIConfig(templates=("no question here",))
    with pytest.raises(ValueError, match="answer"):
        CPMIConfig(answer_format="The answer")
    model, tok = toy
    cfg = CPMIConfig(templates=("{question} ",), answer_format="ans {answer}", step_separator=" ")
    with pytest.raises(ValueError, match="no steps"):
        cpmi_step_scores(model, tok, "q", [], "7", ["9"], cfg)
    with pytest.raises(SequenceTooLongError, match="exceeds the model's limit of 64"):
        cpmi_step_scores(
            model,
            tok,
            "q",
            ["good"] * 70,
            "7",
            ["9"],
            CPMIConfig(**{**cfg.to_dict(), "variant": "cumulative"}),
        )


def test_outputs_are_finite_on_a_real_problem(lm, problem):
    model, tok = lm
    scores = cpmi_step_scores(
        model,
        tok,
        problem.question,
        problem.gold_steps,
        problem.answer,
        ["1", "2"],
        CPMIConfig(variant="cumulative", length_norm="sum"),
    )
    values = [v for s in scores for v in (s.cpmi, s.gold_term, s.neg_term, s.lp_gold)]
    assert all(math.isfinite(v) for v in values)
