"""`model_identity`: a model's weights and tokenizer by content, with a per-file hash cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from cpmi_lib.core import files
from cpmi_lib.lm import identity
from cpmi_lib.lm.identity import CACHE_SUFFIX, ModelIdentity, ModelIdentityError, model_identity

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _model_dir(path: Path) -> Path:
    """A tiny fake `save_pretrained` directory."""
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(b"weights-0")
    (path / "tokenizer.json").write_text('{"vocab": ["a", "b"]}')
    (path / "tokenizer_config.json").write_text("{}")
    return path


@pytest.fixture
def count_hashes(monkeypatch):
    """Count how many files are actually read and hashed."""
    hashed: list[str] = []
    real = identity._sha256_file

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(identity, "_sha256_file", counting)
    return hashed


def test_same_content_in_two_directories_is_the_same_identity(tmp_path):
    a = model_identity(_model_dir(tmp_path / "a"))
    b = model_identity(str(_model_dir(tmp_path / "b")))
    assert a == b
    assert a.weights.startswith("sha256:") and a.tokenizer.startswith("sha256:")
    assert a.weights != a.tokenizer
    assert a.to_dict() == {"weights": a.weights, "tokenizer": a.tokenizer}
    assert ModelIdentity(**a.to_dict()) == a


def test_a_changed_weight_byte_changes_weights_not_tokenizer(tmp_path):
    before = model_identity(_model_dir(tmp_path / "a"))
    other = _model_dir(tmp_path / "b")
    (other / "model.safetensors").write_bytes(b"weights-1")
    after = model_identity(other)
    assert after.weights != before.weights and after.tokenizer == before.tokenizer


def test_config_rename_and_split_enter_the_weights_identity(tmp_path):
    base = model_identity(_model_dir(tmp_path / "a")).weights
    config = _model_dir(tmp_path / "b")
    (config / "config.json").write_text('{"model_type": "gpt2"}')
    renamed = _model_dir(tmp_path / "c")
    (renamed / "model.safetensors").rename(renamed / "pytorch_model.bin")
    split = _model_dir(tmp_path / "d")
    (split / "model.safetensors").unlink()
    (split / "model-00001-of-00002.safetensors").write_bytes(b"weig")
    (split / "model-00002-of-00002.safetensors").write_bytes(b"hts-0")
    others = [model_identity(p).weights for p in (config, renamed, split)]
    assert len({base, *others}) == 4


def test_a_changed_tokenizer_file_changes_the_tokenizer_identity(tmp_path):
    before = model_identity(_model_dir(tmp_path / "a"))
    other = _model_dir(tmp_path / "b")
    (other / "tokenizer.json").write_text('{"vocab": ["a", "c"]}')
    after = model_identity(other)
    assert after.tokenizer != before.tokenizer and after.weights == before.weights
    (other / "chat_template.jinja").write_text("{{ messages }}")
    assert model_identity(other).tokenizer != after.tokenizer


def test_a_symlink_to_a_directory_has_the_targets_identity(tmp_path):
    target = _model_dir(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    assert model_identity(link) == model_identity(target)
    # A renamed copy (what a moved symlink would point at) is the same model too.
    shutil.copytree(target, tmp_path / "copy")
    assert model_identity(tmp_path / "copy") == model_identity(target)


def test_a_retrained_directory_gets_a_new_identity(tmp_path, count_hashes):
    model = _model_dir(tmp_path / "m")
    before = model_identity(model)
    weights = model / "model.safetensors"
    old = weights.stat()
    weights.write_bytes(b"weights-9")  # same size, new bytes
    os.utime(weights, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000_000_000))
    count_hashes.clear()
    after = model_identity(model)
    assert count_hashes == ["model.safetensors"]  # only the changed file is rehashed
    assert after.weights != before.weights and after.tokenizer == before.tokenizer


def test_the_cache_is_written_and_reused(tmp_path, count_hashes):
    model = _model_dir(tmp_path / "m")
    files = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    first = model_identity(model)
    assert sorted(count_hashes) == sorted(files)
    cache = json.loads((model / CACHE_SUFFIX).read_text())
    assert set(cache) == files  # the cache never lists (or hashes) itself
    assert set(cache["model.safetensors"]) == {"size", "mtime_ns", "sha256"}
    count_hashes.clear()
    assert model_identity(model) == first
    assert count_hashes == []  # nothing rehashed
    assert not [p for p in model.iterdir() if p.name.endswith(".tmp")]


def test_a_stale_or_corrupt_cache_is_not_trusted(tmp_path):
    model = _model_dir(tmp_path / "m")
    truth = model_identity(model)
    cache_file = model / CACHE_SUFFIX
    cache = json.loads(cache_file.read_text())
    cache["model.safetensors"]["sha256"] = "0" * 64
    cache["model.safetensors"]["size"] += 1  # a hash recorded for another version of the file
    cache_file.write_text(json.dumps(cache))
    assert model_identity(model) == truth
    cache_file.write_text("not json")
    assert model_identity(model) == truth


def test_an_unwritable_directory_still_works(tmp_path, monkeypatch):
    model = _model_dir(tmp_path / "m")
    expected = model_identity(_model_dir(tmp_path / "ref"))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    assert model_identity(model) == expected
    assert not (model / CACHE_SUFFIX).exists()


def test_a_read_only_directory_still_works(tmp_path):
    model = _model_dir(tmp_path / "m")
    expected = model_identity(_model_dir(tmp_path / "ref"))
    model.chmod(0o555)
    try:
        if os.access(model, os.W_OK):
            pytest.skip("running as root: chmod does not make the directory read-only")
        assert model_identity(model) == expected
        assert not (model / CACHE_SUFFIX).exists()
    finally:
        model.chmod(0o755)


def test_a_gguf_file_is_one_hash_for_weights_and_tokenizer(tmp_path, count_hashes):
    gguf = tmp_path / "model-Q8_0.gguf"
    gguf.write_bytes(b"GGUF\x03fake")
    ident = model_identity(gguf)
    assert ident.weights == ident.tokenizer
    assert ident.weights == "sha256:" + hashlib.sha256(b"GGUF\x03fake").hexdigest()
    renamed = tmp_path / "copy.gguf"
    shutil.copy(gguf, renamed)
    assert model_identity(renamed) == ident  # the file's content, whatever its name
    assert (tmp_path / f"model-Q8_0.gguf{CACHE_SUFFIX}").is_file()
    count_hashes.clear()
    assert model_identity(str(gguf)) == ident and count_hashes == []
    gguf.write_bytes(b"GGUF\x03fakf")
    os.utime(gguf, ns=(0, gguf.stat().st_mtime_ns + 1_000_000_000))
    assert model_identity(gguf).weights != ident.weights


def test_a_directory_holding_only_a_gguf_uses_it_for_the_tokenizer(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(b"GGUF\x03fake")
    ident = model_identity(folder)
    assert ident.weights == ident.tokenizer


def test_missing_paths_and_non_models_raise_naming_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelIdentityError, match="no such file or directory") as err:
        model_identity(missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelIdentityError, match="no such file or directory"):
        model_identity("missing-model.gguf")  # a .gguf name is never taken for a hub id
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(ModelIdentityError, match=r"no weight files \(expected \*\.safetensors"):
        model_identity(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    with pytest.raises(ModelIdentityError, match="neither a model directory nor a .gguf"):
        model_identity(text)
    assert issubclass(ModelIdentityError, ValueError)


def _fake_hub_cache(root: Path, repo_id: str) -> Path:
    """The layout huggingface_hub caches a model in: refs/main names a snapshot folder."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    return snapshot


@pytest.mark.parametrize("env", ["HF_HUB_CACHE", "HF_HOME"])
def test_a_cached_hub_id_is_its_revision(tmp_path, monkeypatch, env):
    monkeypatch.chdir(tmp_path)  # no local directory of the id's name
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    root = tmp_path / "hf"
    monkeypatch.setenv(env, str(root))
    _fake_hub_cache(root if env == "HF_HUB_CACHE" else root / "hub", "org/tiny-model")
    ident = model_identity("org/tiny-model")
    assert ident == ModelIdentity(f"revision:{COMMIT}", f"revision:{COMMIT}")


def test_an_uncached_hub_id_raises(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelIdentityError, match="not in the local Hugging Face cache") as err:
        model_identity("org/absent-model")
    assert "org/absent-model" in str(err.value) and "\n" not in str(err.value)
