"""The decisive section `results/README.md` leads with: its table from the notebook's tables, the
seed spread, the paired tests, and a conclusion worded by the tests alone."""

from __future__ import annotations

import json

import pandas as pd

from cpmi_lib.report.results_decisive import conclusion, decisive_lead
from cpmi_lib.report.results_readme import write_results_readme


def _row(source, benchmark, f1, bon=None, seconds=None):
    return {
        "source": source,
        "benchmark": benchmark,
        "f1": f1,
        "f1_ci": json.dumps([f1 - 0.03, f1 + 0.03]),
        "bon16": bon,
        "bon16_ci": json.dumps([bon - 0.04, bon + 0.04]) if bon is not None else None,
        "labeling_seconds": seconds,
    }


def _tables(tmp_path, best_vs_outcome_p=0.01, best_vs_outcome_diff=-0.05):
    tables = tmp_path / "tables"
    tables.mkdir()
    rows = [
        _row("truth", "natural", 0.80, 0.815),
        _row("outcome", "natural", 0.75, 0.805),
        _row("best cpmi", "natural", 0.70, 0.79, seconds=57.4),
        _row("mc", "natural", 0.72, 0.80, seconds=212.0),
        _row("surprise", "natural", 0.785),
        _row("truth", "synthetic", 0.99, 0.815),
    ]
    pd.DataFrame(rows).to_csv(tables / "decisive.csv", index=False)
    paired = [
        ("best cpmi", "outcome", best_vs_outcome_diff, best_vs_outcome_p, 0.055),
        ("best cpmi", "mc", -0.02, 0.41, 0.061),
        ("truth", "surprise", 0.018, 0.42, 0.064),
    ]
    pd.DataFrame(
        [
            {
                "a": a,
                "b": b,
                "benchmark": "natural",
                "difference": d,
                "ci": json.dumps([d - 0.04, d + 0.04]),
                "p_value": p,
                "min_detectable_difference": mdd,
            }
            for a, b, d, p, mdd in paired
        ]
    ).to_csv(tables / "decisive_paired.csv", index=False)
    pd.DataFrame(
        [
            {
                "a": "best cpmi",
                "b": "outcome",
                "best_of": 16,
                "n": 600,
                "a_accuracy": 0.79,
                "b_accuracy": 0.805,
                "p_value": 0.3,
                "min_detectable_difference": 0.019,
            }
        ]
    ).to_csv(tables / "decisive_bon.csv", index=False)
    return tables


def test_the_lead_table_tests_and_seed_spread(tmp_path):
    _tables(tmp_path)
    seeds = [{"name": "natural_best_cpmi_prm_f1", "values": {"0": 0.70, "1": 0.65, "2": 0.75}}]
    (tmp_path / "seeds.json").write_text(json.dumps(seeds))
    lines = decisive_lead(tmp_path)
    text = "\n".join(lines)
    assert lines[0] == "## The decisive comparison"
    best = next(line for line in lines if line.startswith("| CPMI, best labeler |"))
    assert best == (
        "| CPMI, best labeler | 0.700 [0.670, 0.730] | 0.700 (0.650–0.750, 3 seeds) | – | "
        "0.790 [0.750, 0.830] | 57 |"
    )
    truth = next(line for line in lines if line.startswith("| exact truth (ceiling) |"))
    assert "0.990 [0.960, 1.020]" in truth and truth.endswith("| – |")
    surprise = next(line for line in lines if line.startswith("| untrained surprise"))
    assert surprise.split(" | ")[4] == "–"  # no PRM, no Best-of-N
    assert "| best cpmi − outcome | -0.050 [-0.090, -0.010] | 0.01 | 0.055 |" in text
    assert "| best cpmi vs outcome (N = 16, 600 problems) | 0.790 / 0.805 | 0.3 | 0.019 |" in text
    assert "position (floor)" not in text  # a source without rows is left out


def test_the_conclusion_is_worded_by_the_tests(tmp_path):
    tables = _tables(tmp_path)
    words = conclusion(tables)
    assert "best cpmi scores below outcome (F1 -0.050, p = 0.01)" in words
    assert (
        "best cpmi and mc cannot be told apart (F1 -0.020, p = 0.41; the test could have seen"
        in (words)
    )
    other = tmp_path / "other"
    other.mkdir()
    words = conclusion(_tables(other, best_vs_outcome_p=0.2, best_vs_outcome_diff=0.03))
    assert "best cpmi and outcome cannot be told apart" in words and "above" not in words
    third = tmp_path / "third"
    third.mkdir()
    assert "scores above outcome" in conclusion(_tables(third, 0.001, 0.04))


def test_the_results_readme_leads_with_it_only_when_there(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    plain = write_results_readme(results, figures, "smoke").read_text()
    assert "## The decisive comparison" not in plain and "## Every claim" in plain
    (results / "tables").rmdir()
    _tables(results)
    text = write_results_readme(results, figures, "default").read_text()
    assert text.index("## The decisive comparison") < text.index("## Every claim")
    assert "**What this concludes about CPMI**" in text


def test_every_lead_source_has_a_seed_spread_name():
    """The lead table's "across seeds" cell of each source reads one name of `seeds.json`: its
    headline name where the notebook records one, else the name `seeds` gives its table F1."""
    from cpmi_lib.report.results_decisive import LEAD_SOURCES, natural_f1_name

    names = {source: natural_f1_name(source) for source in LEAD_SOURCES}
    assert names["best cpmi"] == "natural_best_cpmi_prm_f1"  # a declared headline name
    assert names["cpmi"] == "natural_cpmi_prm_f1"
    assert names["cpmi no own answer"] == "natural_cpmi_no_own_answer_prm_f1"
    assert len(set(names.values())) == len(names)
