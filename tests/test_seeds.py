"""The seeds check: seeded presets change every seed but not the world, and the spread table
sets each committed headline number next to the values of the other seeds."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cpmi_lib import seeds
from cpmi_lib.headline import Headline, record_headline
from cpmi_lib.presets import SEED_PRESETS, experiment_config, seeded


def test_seeded_presets_change_every_seed_but_not_the_world():
    base = experiment_config("default")
    for name in SEED_PRESETS:
        cfg = experiment_config(name)
        k = int(name.rsplit("seed", 1)[1])
        assert cfg == seeded(base, k)
        assert cfg.world == base.world and cfg.train_problems == base.train_problems
        assert (cfg.seed, cfg.lm.seed, cfg.prm.seed) == (k, k, k)
        assert cfg.prm_lm.parent == cfg.lm and cfg.prm_lm.seed != cfg.lm.seed
        assert cfg.key() != base.key() and cfg.data_key() != base.data_key()


def test_spread_table_against_the_committed_cis(tmp_path):
    committed, one, two = tmp_path / "c", tmp_path / "s1", tmp_path / "s2"
    record_headline(
        committed / "results",
        {"f1": Headline(0.8, (0.7, 0.9), 300), "seconds": Headline(300.0, None, 1200)},
    )
    record_headline(
        one / "results",
        {"f1": Headline(0.75, (0.6, 0.8), 300), "seconds": Headline(320.0, None, 1200)},
    )
    record_headline(two / "results", {"f1": Headline(0.95, (0.9, 1.0), 300)})
    table = seeds.aggregate(committed, {1: one, 2: two}, tmp_path / "out").set_index("name")
    f1 = table.loc["f1"]
    assert f1["seeds"] == 3 and f1["values"] == {"0": 0.8, "1": 0.75, "2": 0.95}
    assert f1["mean"] == pytest.approx((0.8 + 0.75 + 0.95) / 3)
    assert (f1["min"], f1["max"], f1["in committed CI"]) == (0.75, 0.95, 2)
    assert f1["CI half-width"] == pytest.approx(0.1)
    secs = table.loc["seconds"]
    assert secs["seeds"] == 2 and pd.isna(secs["in committed CI"])  # no CI; seed 2 lacks it
    saved = json.loads((tmp_path / "out" / "seeds.json").read_text())
    assert {r["name"] for r in saved} == {"f1", "seconds"}
    md = (tmp_path / "out" / "seeds.md").read_text()
    assert "| f1 " in md and "2/3" in md
