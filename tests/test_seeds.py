"""The seeds check: seeded presets change every seed but not the world, and the spread table
sets each committed headline number next to the values of the other seeds."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from cpmi_lib import seeds
from cpmi_lib.core.paths import REPO
from cpmi_lib.experiment.presets import PRESETS, SEED_PRESETS, experiment_config, seeded
from cpmi_lib.report.headline import Headline, read_headline, record_headline
from cpmi_lib.report.results_readme import write_results_readme


def test_seeded_presets_change_every_seed_but_not_the_world():
    base = experiment_config("default")
    for name in SEED_PRESETS:
        cfg = experiment_config(name)
        k = PRESETS[name].seed
        assert cfg == seeded(base, k)
        assert cfg.world == base.world and cfg.train_problems == base.train_problems
        assert (cfg.seed, cfg.lm.seed, cfg.prm.seed) == (k, k, k)
        assert cfg.prm_lm.parent == cfg.lm and cfg.prm_lm.seed != cfg.lm.seed
        assert cfg.key() != base.key() and cfg.sample_key() != base.sample_key()


def test_the_seeds_command_reruns_each_seed_into_its_root_and_aggregates_by_seed(monkeypatch):
    """`check_seeds` (``python -m cpmi_lib seeds``) runs only the headline notebooks of each seed
    preset into the preset's root, and keys each rerun by the preset's seed field."""
    import cpmi_lib.grid
    import cpmi_lib.report.results_readme

    calls, aggregated = [], {}
    monkeypatch.setattr(cpmi_lib.grid, "run_grid", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(seeds, "aggregate", lambda c, roots, out: aggregated.update(roots))
    monkeypatch.setattr(cpmi_lib.report.results_readme, "write_results_readme", lambda *a: None)
    seeds.check_seeds()
    assert calls == [
        ((name, PRESETS[name].root), {"only": list(seeds.HEADLINE_NOTEBOOKS)})
        for name in SEED_PRESETS
    ]
    assert aggregated == {1: PRESETS["default-seed1"].root, 2: PRESETS["default-seed2"].root}
    calls.clear()
    seeds.check_seeds(["default-seed2"], run=False)
    assert calls == []
    with pytest.raises(ValueError, match="not seed presets"):
        seeds.check_seeds(["default"], run=False)


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


def test_results_readme_says_which_claims_survive(tmp_path):
    """With `seeds.json` beside the headline file, `results/README.md` gets one verdict per
    claim: inside the committed CI for numbers with a CI, p < 0.05 for p-values."""
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / "tables", results / "tables")
    committed = read_headline(REPO / "results" / "headline.json")
    shifted = {
        k: Headline(v.value * (0.5 if k.endswith("_p") else 1.0), v.ci, v.n)
        for k, v in committed.items()
    }
    shifted["truth_prm_f1"] = Headline(0.5, None, 300)  # outside the committed CI
    shifted["truth_prm_vs_majority_p"] = Headline(0.2, None, 200)  # no longer significant
    record_headline(tmp_path / "seed1" / "results", shifted)
    committed["new_f1"] = Headline(0.7, (0.6, 0.8), 300)  # recorded after the seeds ran
    record_headline(results, committed)
    seeds.aggregate(results.parent, {1: tmp_path / "seed1"}, results)
    text = write_results_readme(results, tmp_path / "figures", "default").read_text()
    truth = f"{committed['truth_prm_f1'].value:.4g}"
    assert "## Which claims survive other seeds (2 seeds" in text
    assert f"| truth_prm_f1 | {truth} | 0.5 – {truth} | 1/2 seeds inside the CI |" in text
    assert "| truth_prm_vs_majority_p |" in text and "1/2 seeds p < 0.05 |" in text
    assert "| budget_mc_seconds |" not in text.split("## Which claims")[1]
    assert "| new_f1 | 0.7 | 0.7 – 0.7 | not rerun with other seeds |" in text
    assert "earlier committed run" not in text
    # A new committed run: the seeds' spreads are the old run's, and the README says so.
    record_headline(results, committed | {"truth_prm_f1": Headline(0.9, (0.85, 0.95), 300)})
    text = write_results_readme(results, tmp_path / "figures", "default").read_text()
    assert "made against an earlier committed run" in text and "`truth_prm_f1`" in text


def test_seeds_run_every_notebook_that_records_headline_numbers():
    """A seed runs only `HEADLINE_NOTEBOOKS`: a notebook that starts recording headline numbers
    must join it (or, if no experiment seed can change them, `SEED_FREE_NOTEBOOKS`), or its
    names would be missing from every seed."""
    recording = {
        p.stem for p in (REPO / "notebooks").glob("*.py") if "record_headline(" in p.read_text()
    }
    assert recording == set(seeds.HEADLINE_NOTEBOOKS) | set(seeds.SEED_FREE_NOTEBOOKS)
    assert not set(seeds.HEADLINE_NOTEBOOKS) & set(seeds.SEED_FREE_NOTEBOOKS)


def test_results_readme_puts_the_best_labeler_first_next_to_todays_labeler(tmp_path):
    """The best labeler's numbers lead the claims table, and the notes set its CPMI AUROC next
    to the policy labeler's, all read from the same headline file."""
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / "tables", results / "tables")
    committed = read_headline(REPO / "results" / "headline.json")
    entries = {k: v for k, v in committed.items() if not k.startswith("best_labeler_")} | {
        "best_labeler_cpmi_auroc_vs_truth": Headline(0.8123, (0.8, 0.82), 1000),
        "best_labeler_cpmi_auroc_within_position": Headline(0.7012, (0.68, 0.72), 1000),
        "best_labeler_mc_auroc_vs_truth": Headline(0.9034, (0.89, 0.91), 1000),
        "best_labeler_cpmi_prm_f1": Headline(0.6, (0.5, 0.7), 300),
        "best_labeler_mc_prm_f1": Headline(0.9, (0.85, 0.95), 300),
    }
    record_headline(results, entries)
    text = write_results_readme(results, tmp_path / "figures", "default").read_text()
    claims_table = text.split("## Every claim")[1]
    rows = [line for line in claims_table.splitlines() if line.startswith("| ")]
    first = 1 + next(i for i, row in enumerate(rows) if "generated tokens" in row)  # after cost
    assert "best labeler (chosen on dev): CPMI step AUROC vs exact truth" in rows[first]
    assert "0.812 [0.800, 0.820]" in rows[first]
    cpmi = entries["cpmi_auroc_vs_truth"].value
    assert f"CPMI's step AUROC is 0.812 (0.701 within step position) vs {cpmi:.3f}" in text
    assert "PRMs score F1 0.600 (CPMI labels, base set) and 0.900 (MC labels)" in text
    assert "at MC's labeling time" not in text  # its numbers are absent: no sentence


def test_results_readme_of_a_seed_run_needs_only_the_headline_file(tmp_path):
    """A seed runs only the notebooks that record headline numbers: the label-cost table is
    absent there, and the README is written from the headline file alone."""
    results = tmp_path / "results"
    record_headline(results, read_headline(REPO / "results" / "headline.json"))
    text = write_results_readme(results, tmp_path / "figures", "default-seed1").read_text()
    assert "CPMI vs MC: labeling time" not in text
    assert "PRM from exact truth: ProcessBench-style F1" in text


def test_results_readme_of_a_run_without_the_instrument_keeps_the_prm_table_rows(tmp_path):
    """The hub track records no instrument numbers (no exact truth), only e.g. the real-text
    verifier's: the README then takes its PRM rows from the tables and adds the headline's."""
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / "tables", results / "tables")
    entries = {
        "real_gsm8k_cpmi_auroc_vs_correct": Headline(0.6, (0.55, 0.65), 40),
        "real_gsm8k_bo4_cpmi": Headline(0.4, (0.3, 0.5), 10),
        "real_gsm8k_bo4_majority": Headline(0.45, (0.35, 0.55), 10),
    }
    record_headline(results, entries)
    text = write_results_readme(results, tmp_path / "figures", "paper-smoke").read_text()
    assert "PRM from cpmi labels: ProcessBench-style F1" in text
    row = "| real GSM8K: Best-of-4 by CPMI (min step) | — | 0.400 [0.300, 0.500] (n = 10) |"
    assert row in text
    assert "**Real text.**" in text and "Sensitivity" not in text


def _decisive_table(root, f1s: dict[str, float]) -> None:
    """A `decisive` table of natural-benchmark rows (and one synthetic row to ignore)."""
    rows = [
        {"source": s, "benchmark": "natural", "f1": f, "f1_ci": json.dumps([f - 0.05, f + 0.05])}
        | {"items": 600}
        for s, f in f1s.items()
    ]
    rows.append({"source": "cpmi", "benchmark": "synthetic", "f1": 0.1, "f1_ci": "[0, 0.2]"})
    rows[-1]["items"] = 300
    (root / "results" / "tables").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "results" / "tables" / "decisive.csv", index=False)


def test_sources_without_a_headline_name_are_spread_from_the_decisive_table(tmp_path):
    """The lead table's rows that the notebook records no headline for (the policy labeler's
    CPMI, the best labeler's MC) get their seed spread from each seed's decisive table; a source
    with a headline name keeps the headline's number, and a source a run did not score is left
    out of that run, not read as a number."""
    committed, one = tmp_path / "c", tmp_path / "s1"
    record_headline(committed / "results", {"natural_mc_prm_f1": Headline(0.76, (0.7, 0.8), 600)})
    record_headline(one / "results", {"natural_mc_prm_f1": Headline(0.75, (0.7, 0.8), 600)})
    _decisive_table(committed, {"cpmi": 0.31, "best mc": 0.77, "mc": 0.5})
    _decisive_table(one, {"cpmi": 0.25, "best mc": float("nan"), "mc": 0.5})
    table = seeds.aggregate(committed, {1: one}, tmp_path / "out").set_index("name")
    assert table.loc["natural_cpmi_prm_f1", "values"] == {"0": 0.31, "1": 0.25}
    assert table.loc["natural_cpmi_prm_f1", "committed CI"] == pytest.approx([0.26, 0.36])
    assert table.loc["natural_cpmi_prm_f1", "in committed CI"] == 1
    assert table.loc["natural_best_mc_prm_f1", "values"] == {"0": 0.77}
    assert table.loc["natural_mc_prm_f1", "values"] == {"0": 0.76, "1": 0.75}  # the headline's
    assert "natural_synthetic_cpmi_prm_f1" not in table.index


def test_a_table_f1_of_an_earlier_committed_run_is_called_stale(tmp_path):
    """The names `seeds` reads from the decisive table are checked against this run's table as
    the headline names are against its headline file: a new committed table makes the README say
    the spreads are an earlier run's."""
    committed, results = tmp_path / "c", tmp_path / "c" / "results"
    record_headline(results, {"natural_mc_prm_f1": Headline(0.76, (0.7, 0.8), 600)})
    _decisive_table(committed, {"cpmi": 0.31})
    seeds.aggregate(committed, {}, results)
    text = write_results_readme(results, tmp_path / "figures", "default").read_text()
    assert "| natural_cpmi_prm_f1 |" in text and "earlier committed run" not in text
    # called what it is: a table's F1, not a headline number
    assert "not in `headline.json` (1, e.g. `natural_cpmi_prm_f1`)" in text
    assert "| headline number |" not in text
    _decisive_table(committed, {"cpmi": 0.42})  # a new committed run, seeds not rerun
    text = write_results_readme(results, tmp_path / "figures", "default").read_text()
    assert "made against an earlier committed run" in text and "`natural_cpmi_prm_f1`" in text
