"""Shipped checkpoints: written with their manifest, verified file by file, installed into a cache
instead of training, refused in one line when changed, ignored under CPMI_FROM_SCRATCH."""

from __future__ import annotations

import json
import shutil

import pytest

from cpmi_lib import cli
from cpmi_lib.lm import default_lm, shipped
from cpmi_lib.lm.default_lm import ContinuedLMConfig, ensure_default_lm


@pytest.fixture()
def models(tmp_path, tiny_lm_dir, monkeypatch):
    """A models/ folder shipping the tiny LM, as the repository's would."""
    folder = tmp_path / "models"
    monkeypatch.setattr(shipped, "MODELS_DIR", folder)
    monkeypatch.delenv(shipped.FROM_SCRATCH_ENV, raising=False)
    shipped.ship_models([tiny_lm_dir])
    return folder


def test_ship_writes_every_file_and_its_sha256(models, tiny_lm_dir):
    manifest = json.loads((models / "manifest.json").read_text())
    entry = manifest["checkpoints"][tiny_lm_dir.name]
    assert entry["config_key"] == tiny_lm_dir.name.rsplit("-", 1)[-1]
    assert "model.safetensors" in entry["files"] and "training.json" in entry["files"]
    assert ".cpmi-sha256.json" not in entry["files"]  # a per-machine cache is not the model
    for name, digest in entry["files"].items():
        assert shipped._sha256(tiny_lm_dir / name) == digest


def test_a_fresh_cache_installs_the_shipped_lm_instead_of_training(
    models, tmp_path, tiny_lm_config, tiny_lm_dir, monkeypatch
):
    def no_training(*a, **kw):
        raise AssertionError("trained although a checkpoint is shipped")

    monkeypatch.setattr(default_lm, "train_lm", no_training)
    path = ensure_default_lm(tiny_lm_config, cache=tmp_path / "fresh", progress=False)
    assert path.name == tiny_lm_dir.name
    for name in json.loads((models / "manifest.json").read_text())["checkpoints"][path.name][
        "files"
    ]:
        assert (path / name).read_bytes() == (tiny_lm_dir / name).read_bytes()
    # from scratch: the shipped checkpoint is ignored and the LM trained
    monkeypatch.setenv(shipped.FROM_SCRATCH_ENV, "1")
    with pytest.raises(AssertionError, match="trained although"):
        ensure_default_lm(tiny_lm_config, cache=tmp_path / "scratch", progress=False)


def test_a_changed_or_missing_file_is_one_line_naming_it(models, tiny_lm_dir, tmp_path, capsys):
    weights = models / tiny_lm_dir.name / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(shipped.ShippedModelError, match="model.safetensors: sha256 .* does not"):
        shipped.install_shipped(tmp_path / "cache" / "models" / tiny_lm_dir.name)
    assert not (tmp_path / "cache" / "models" / tiny_lm_dir.name).exists()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify-models"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"python -m cpmi_lib verify-models: error: {weights}: sha256 ")
    weights.unlink()
    with pytest.raises(shipped.ShippedModelError, match=f"{weights}: missing"):
        shipped.verify_shipped(tiny_lm_dir.name)


def test_verify_and_ship_commands(models, tiny_lm_dir, tmp_path, capsys, monkeypatch):
    cli.main(["verify-models"])
    assert capsys.readouterr().out == f"1 shipped checkpoint(s) in {models} match the manifest\n"
    cache = tmp_path / "cache"
    shutil.copytree(tiny_lm_dir, cache / "models" / "continued-lm-c0123456789a")
    cli.main(["ship-models", "--cache", str(cache)])
    assert "shipped 1 LM(s)" in capsys.readouterr().out
    assert set(shipped.read_manifest()) == {tiny_lm_dir.name, "continued-lm-c0123456789a"}


def test_every_lm_of_the_default_grid_is_shipped():
    """`make reproduce` trains no LM: each LM the default grid uses (policy, PRM backbone, the
    labeler axis, the natural benchmark's generators) has a checkpoint in the manifest, under the
    name its config gives its cache directory. A recipe change that forgets `ship-models` fails."""
    from benchmarks.bench_lm_training import grid_lms
    from cpmi_lib.lm.shipped import read_manifest

    lms = grid_lms("default")
    assert {"policy", "prm backbone", "generator weak"} <= set(lms)
    shipped = {name.rsplit("-", 1)[1]: name for name in read_manifest()}
    assert {role: lm.key() in shipped for role, lm in lms.items()} == dict.fromkeys(lms, True)
    kinds = {role: shipped[lm.key()].split("-lm-")[0] for role, lm in lms.items()}
    assert kinds == {
        role: "continued" if isinstance(lm, ContinuedLMConfig) else "default"
        for role, lm in lms.items()
    }
