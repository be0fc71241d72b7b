"""The notebook grid: parameters agree with the presets, the smoke grid writes every table and
figure, and a failing notebook stops the grid naming the notebook and the cell."""

from __future__ import annotations

import pytest

from cpmi_lib import grid
from cpmi_lib.presets import COMMON_PARAMETERS, PRESETS, experiment_config

EXPECTED_TABLES = {
    "data",
    "explore_single_problem",
    "label_cost",
    "label_cost_vs_paper",
    "label_quality",
    "train_prm",
    "processbench",
    "best_of_n",
    "best_of_n_mcnemar",
    "ablations",
}
EXPECTED_FIGURES = {
    "explore_single_problem",
    "label_quality_scatter",
    "train_prm_learning_curves",
    "processbench_f1",
    "best_of_n_cpmi",
    "best_of_n_mc",
    "best_of_n_truth",
    "ablations",
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_notebook_declares_the_parameters_its_preset_passes(preset):
    assert set(PRESETS[preset]) == set(grid.NOTEBOOKS)
    for name, params in PRESETS[preset].items():
        declared = grid.declared_parameters(name)
        missing = (set(params) | set(COMMON_PARAMETERS)) - declared
        assert not missing, f"{name} does not declare {missing}"


def test_presets_build_valid_experiments():
    smoke, default = experiment_config("smoke"), experiment_config("default")
    assert smoke.key() != default.key()
    assert smoke.train_problems < default.train_problems
    with pytest.raises(ValueError, match="unknown preset"):
        experiment_config("huge")


def test_smoke_grid_writes_every_table_and_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("CPMI_CACHE", str(tmp_path / "cache"))
    executed = grid.run_grid("smoke", tmp_path)
    assert [p.stem for p in executed] == list(grid.NOTEBOOKS)
    tables = {p.stem for p in (tmp_path / "results" / "tables").glob("*.csv")}
    figures = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert EXPECTED_TABLES <= tables
    assert EXPECTED_FIGURES <= figures
    assert all((tmp_path / "results" / "tables" / f"{t}.md").exists() for t in EXPECTED_TABLES)
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "labeling time" in readme and "-84%" in readme


def test_a_failing_notebook_names_itself_and_its_cell(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text(
        '# %% tags=["parameters"]\npreset = "smoke"\nresults_dir = ""\nfigures_dir = ""\n\n'
        "# %%\nx = 1\n\n# %%\nraise ValueError('boom')\n"
    )
    monkeypatch.setattr(grid, "NOTEBOOK_DIR", tmp_path)
    monkeypatch.setitem(grid.PRESETS["smoke"], "broken", {})
    with pytest.raises(
        grid.GridError, match=r"notebook 'broken' failed in cell 4 \(ValueError: boom"
    ):
        grid.run_grid("smoke", tmp_path, only=["broken"])
    with pytest.raises(SystemExit) as exc:
        grid.main(["--preset", "smoke", "--root", str(tmp_path), "--only", "broken"])
    assert exc.value.code == 1
