"""The notebook grid: parameters agree with the presets (paper included), the smoke grids (embedded
and paper-smoke) write every table and figure, and a failing notebook stops the grid naming the
notebook and the cell."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import FrozenInstanceError, replace

import pandas as pd
import pytest

from cpmi_lib import cli, grid
from cpmi_lib.experiment.config import workload
from cpmi_lib.experiment.hub_spec import EMBEDDED
from cpmi_lib.experiment.presets import (
    COMMON_PARAMETERS,
    MATH_SHEPHERD,
    PRESET_NAMES,
    PRESETS,
    RESULT_ROOTS,
    SEED_PRESETS,
    NotebookRun,
    Preset,
    experiment_config,
    labeler_axis,
    with_params,
)
from cpmi_lib.lm.load import _looks_like_hub_id
from cpmi_lib.report.claims import undeclared
from cpmi_lib.report.headline import read_headline

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
    "budget_comparison",
    "budget_mcnemar",
    "truth_prm_data_curve",
    "auroc_within_position",
    "labeler_axis",
    "labeler_axis_quality",
    "labeler_prms",
    "labeler_prms_mcnemar",
    "ablations",
    "real_gsm8k_auroc",
    "real_gsm8k_bo4",
    "real_gsm8k_mcnemar",
    "real_gsm8k_setup",
    "decisive",
    "decisive_paired",
    "decisive_bon",
    "auroc_within_wrong_answers",
}
#: Tables that need the exact step truth: the paper track has none.
TRUTH_ONLY = {
    "decisive",
    "decisive_paired",
    "decisive_bon",
    "auroc_within_wrong_answers",
    "truth_prm_data_curve",
    "auroc_within_position",
    "labeler_axis",
    "labeler_axis_quality",
    "labeler_prms",
    "labeler_prms_mcnemar",
    "anticipation_skill",
    "best_of_n_truth",
    "best_of_n_position",
}
EXPECTED_FIGURES = {
    "decisive",
    "explore_single_problem",
    "label_quality_scatter",
    "train_prm_learning_curves",
    "processbench_f1",
    "best_of_n_cpmi",
    "best_of_n_mc",
    "best_of_n_truth",
    "best_of_n_position",
    "budget_quality_vs_seconds",
    "truth_prm_data_curve",
    "auroc_within_position",
    "labeler_axis",
    "anticipation_skill",
    "labeler_prms",
    "ablations",
    "real_gsm8k_verifier",
}


#: Pinned before presets became `Preset` records (the if-chain and dicts of notebook parameters):
#: per preset, `ExperimentConfig.key()` (a hash of its `to_dict`, so of every cache key), a hash
#: of its notebooks and their parameters in order, and one of its labeler axis. Nothing measured
#: may move: a change here moves cached stages and must regenerate the committed results.
#: Issue 21 added the `decisive` notebook after `labelers` in every preset (the notebook digests).
PINNED = {
    # issue 23: MC's rollout engine (`MCConfig.batch_trajectories` replaced `batch_size`) moves
    # every preset's key, and so its PRM and label folders; samples keep theirs
    "smoke": ("a1743dbb0af8", "e72641347fca", "1d2a27341110"),
    # issue 21: 600 Best-of-N test problems (was a98f37190d29 with 200) moves the default's and
    # its seeds' PRM folders (not their samples or labels): the default grid must be regenerated
    "default": ("e4d349c107c0", "16ba63c77ce6", "4aee3bfa8840"),
    "paper-smoke": ("d232a154a0b0", "1c87e19e1e15", "1d2a27341110"),
    "real-smoke": ("31de3dcba411", "1c87e19e1e15", "4aee3bfa8840"),
    "paper": ("33b30ee00bcc", "df0244a28446", "4aee3bfa8840"),
    "paper-mini": ("69a1af901442", "df0244a28446", "4aee3bfa8840"),
    "default-seed1": ("de8a5953e908", "16ba63c77ce6", "d31c23188b90"),
    # the axis of seed 2 was refused (its `continued` LM's seed 2 was the seeded policy's own);
    # `default_axis` now moves a taken seed up: continued/anticipate 3, anticipate_long 4
    "default-seed2": ("c8a830c09d2f", "16ba63c77ce6", "9fba203b4b36"),
}
#: The dependency order of the notebooks (the order of the old `PRESETS["default"]` dict).
ORDER = (
    "build_data",
    "explore_single_problem",
    "label_cost",
    "label_quality",
    "train_prm",
    "processbench",
    "best_of_n",
    "instrument",
    "labelers",
    "decisive",
    "ablations",
    "real_gsm8k_verifier",
)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _axis_digest(name: str) -> str | None:
    try:
        axis = labeler_axis(name)
    except ValueError:
        return None
    return _digest([[x.name, x.lm and x.lm.to_dict(), x.about] for x in axis])


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_measure_what_they_measured_before_they_were_typed(name):
    p = PRESETS[name]
    runs = [[run.name, dict(run.params)] for run in p.notebooks]
    assert (p.config.key(), _digest(runs), _axis_digest(name)) == PINNED[name]
    assert experiment_config(name) is p.config and p.root == RESULT_ROOTS[name]
    assert tuple(run.name for run in p.notebooks) == ORDER == grid.NOTEBOOKS


def test_preset_names_roots_and_seeds_are_fields_of_the_records():
    assert PRESET_NAMES == tuple(PINNED) and set(RESULT_ROOTS) == set(PINNED)
    assert SEED_PRESETS == ("default-seed1", "default-seed2")
    assert [PRESETS[n].seed for n in SEED_PRESETS] == [1, 2]
    assert all(p.seed == p.config.seed == 0 for n, p in PRESETS.items() if n not in SEED_PRESETS)
    assert len({p.root for p in PRESETS.values()}) == len(PRESETS)  # no run overwrites another


def test_a_preset_is_read_only_and_refuses_an_inconsistent_record():
    default = PRESETS["default"]
    with pytest.raises(FrozenInstanceError):
        default.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        default.notebook("labelers").params["skill_problems"] = 1  # type: ignore[index]
    with pytest.raises(ValueError, match="config.seed is 0"):
        replace(default, seed=1)
    twice = (*default.notebooks, NotebookRun("build_data"))
    with pytest.raises(ValueError, match="runs a notebook twice"):
        Preset("x", "", default.config, twice, default.root)
    with pytest.raises(ValueError, match="no notebook 'nope'"):
        default.notebook("nope")
    with pytest.raises(ValueError, match="no such notebook"):
        with_params(default.notebooks, nope={})
    changed = with_params(default.notebooks, ablations={"n_trajectories": 1})
    ablations = ORDER.index("ablations")
    assert [r.name for r in changed] == list(ORDER)
    assert changed[ablations].params == {"n_trajectories": 1}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_notebook_declares_the_parameters_its_preset_passes(preset):
    assert [run.name for run in PRESETS[preset].notebooks] == list(grid.NOTEBOOKS)
    for run in PRESETS[preset].notebooks:
        declared = grid.declared_parameters(run.name)
        missing = (set(run.params) | set(COMMON_PARAMETERS)) - declared
        assert not missing, f"{run.name} does not declare {missing}"


def test_presets_build_valid_experiments():
    configs = {name: experiment_config(name) for name in PRESET_NAMES}
    assert set(PRESET_NAMES) == set(PRESETS) == set(RESULT_ROOTS)
    assert len({c.key() for c in configs.values()}) == len(configs)
    smoke, default = configs["smoke"], configs["default"]
    assert smoke.train_problems < default.train_problems
    assert smoke.hub is None and default.hub is None
    with pytest.raises(ValueError, match="unknown preset"):
        experiment_config("huge")


def test_paper_preset_is_the_hub_track_at_scale():
    paper = experiment_config("paper")
    hub = paper.hub
    assert hub is not None and hub.device == "cuda" and hub.dtype == "bfloat16"
    for source in (hub.model, hub.prm_backbone, hub.problems, hub.processbench):
        assert _looks_like_hub_id(source) and source != EMBEDDED
    assert hub.problems == "openai/gsm8k" and hub.problems_config == "main"
    assert hub.processbench == "Qwen/ProcessBench"
    assert set(hub.processbench_subsets) == {"gsm8k", "math", "olympiadbench", "omnimath"}
    assert paper.train_problems > experiment_config("default").train_problems
    assert paper.prm.bf16 and paper.sample_max_new_tokens >= 512
    assert paper.mc.max_new_tokens >= 512 and max(paper.bon_ns) <= paper.bon_pool
    assert RESULT_ROOTS["paper"] != RESULT_ROOTS["default"]  # never overwrites
    # the paper's PRM training data: Math-Shepherd (label quality against its +/- labels)
    assert hub.prm_data == MATH_SHEPHERD and _looks_like_hub_id(hub.prm_data)


def test_paper_mini_is_the_paper_at_about_one_gpu_hour():
    paper, mini = experiment_config("paper"), experiment_config("paper-mini")
    assert mini.hub is not None and paper.hub is not None
    assert (mini.hub.model, mini.hub.prm_backbone, mini.hub.prm_data) == (
        paper.hub.model,
        paper.hub.prm_backbone,
        paper.hub.prm_data,
    )
    assert set(mini.hub.processbench_subsets) < set(paper.hub.processbench_subsets)
    assert (mini.cpmi, mini.mc, mini.n_negatives) == (paper.cpmi, paper.mc, paper.n_negatives)
    assert mini.train_problems < paper.train_problems and max(mini.bon_ns) <= mini.bon_pool
    assert mini.prm.bf16 and mini.prm.head == paper.prm.head == "value"
    # sized by the (assumed, stated) decode time: about one GPU hour, the paper about 40
    assert 0.5 <= workload(mini)["estimated_gpu_hours"] <= 1.25
    assert workload(paper)["estimated_gpu_hours"] > 20 * workload(mini)["estimated_gpu_hours"]
    assert RESULT_ROOTS["paper-mini"] not in (RESULT_ROOTS["paper"], RESULT_ROOTS["default"])


def test_workload_counts_a_hand_case():
    cfg = experiment_config("real-smoke")  # 2 + 1 problems x 2 samples; pools 2 + 1 problems x 2
    w = workload(cfg, mean_steps=4, decode_step_s=1.0)
    assert w["labelled_trajectories"] == 6 and w["policy_samples"] == 6 + 6
    assert w["mc_rollouts"] == 6 * 4 * 2
    assert w["generated_tokens_max"] == 12 * 96 + 48 * 32
    # one generate call for the 6 policy samples, one for the 6 pool samples, at 96 tokens;
    # MC's 48 rows in blocks of trajectories fill one 64-row call, at 32 tokens
    assert w["sampling_hours"] * 3600 == 2 * 96 and w["mc_hours"] * 3600 == 1 * 32


def test_paper_smoke_is_the_smoke_experiment_on_the_hub_code_path():
    smoke, paper_smoke = experiment_config("smoke"), experiment_config("paper-smoke")
    hub = paper_smoke.hub
    assert hub is not None and hub.device == "cpu"
    assert {hub.model, hub.prm_backbone, hub.problems, hub.processbench} == {EMBEDDED}
    assert replace(paper_smoke, hub=None) == smoke


def _grid_outputs(root):
    tables = {p.stem for p in (root / "results" / "tables").glob("*.csv")}
    figures = {p.stem for p in (root / "figures").glob("*.png")}
    assert all((root / "results" / "tables" / f"{t}.md").exists() for t in tables)
    return tables, figures


def test_smoke_grid_writes_every_table_and_figure(tmp_path, monkeypatch, smollm2_dir):
    monkeypatch.setenv("CPMI_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "models").mkdir(parents=True)  # SmolLM2, converted once per session
    (tmp_path / "cache" / "models" / smollm2_dir.name).symlink_to(smollm2_dir)
    executed = grid.run_grid("smoke", tmp_path)
    assert [p.stem for p in executed] == list(grid.NOTEBOOKS)
    tables, figures = _grid_outputs(tmp_path)
    assert EXPECTED_TABLES <= tables
    assert EXPECTED_FIGURES <= figures
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "labeling time" in readme and "-84%" in readme
    headline = read_headline(tmp_path / "results" / "headline.json")
    assert {"truth_prm_f1", "budget_mc_seconds", "budget_cpmi_trajectories"} <= set(headline)
    assert {"best_labeler_cpmi_prm_f1", "best_labeler_mc_prm_f1"} <= set(headline)
    assert {"best_labeler_budget_cpmi_vs_mc_p", "best_labeler_cpmi_vs_policy_cpmi_p"} <= set(
        headline
    )
    assert {"real_gsm8k_bo4_cpmi", "real_gsm8k_bo4_majority", "real_gsm8k_pass4"} <= set(headline)
    # the decisive comparison on the smoke world: the controls and the power of Best-of-4 (its
    # LMs solve too little for the natural benchmark to hold all-correct items: not scored here)
    assert {"outcome_prm_bon4", "bon4_min_detectable_difference"} <= set(headline)
    assert undeclared(headline) == []  # every name the smoke grid records is a declared claim

    # the paper track's code path, on the same smoke world and LM (cached) in the hub schemas
    paper = tmp_path / "paper-smoke"
    executed = grid.run_grid("paper-smoke", paper)
    assert [p.stem for p in executed] == list(grid.NOTEBOOKS)
    tables, figures = _grid_outputs(paper)
    assert EXPECTED_TABLES - TRUTH_ONLY <= tables and not TRUTH_ONLY & tables
    assert EXPECTED_FIGURES - TRUTH_ONLY <= figures and not TRUTH_ONLY & figures
    processbench = pd.read_csv(paper / "results" / "tables" / "processbench.csv")
    # the hub track's PRMs: CPMI, MC and the controls that need no step truth
    assert set(processbench["PRM"]) == {"cpmi", "mc", "outcome", "cpmi_noself"}
    assert set(processbench["subset"]) >= {"short", "medium", "long", "mean (headline)"}
    quality = pd.read_csv(paper / "results" / "tables" / "label_quality.csv")
    assert set(quality["against"].dropna()) == {"MC hard label (value > 0)"}
    data = pd.read_csv(paper / "results" / "tables" / "data.csv")
    assert data.loc[data["set"] == "policy train", "every step right"].isna().all()
    readme = (paper / "results" / "README.md").read_text()
    assert "vs MC hard label" in readme and "exact truth" not in readme
    assert undeclared(read_headline(paper / "results" / "headline.json")) == []


def test_a_failing_notebook_names_itself_and_its_cell(tmp_path, monkeypatch, capfd):
    """...through both names of the command; the kernels run over IPC, so none warns that TCP is
    unencrypted (its warning reaches the grid's stderr)."""
    (tmp_path / "broken.py").write_text(
        '# %% tags=["parameters"]\npreset = "smoke"\nresults_dir = ""\nfigures_dir = ""\n\n'
        "# %%\nx = 1\n\n# %%\nraise ValueError('boom')\n"
    )
    monkeypatch.setattr(grid, "NOTEBOOK_DIR", tmp_path)
    smoke = PRESETS["smoke"]
    broken = replace(smoke, notebooks=(*smoke.notebooks, NotebookRun("broken")))
    monkeypatch.setitem(grid.PRESETS, "smoke", broken)
    with pytest.raises(
        grid.GridError, match=r"notebook 'broken' failed in cell 4 \(ValueError: boom"
    ):
        grid.run_grid("smoke", tmp_path, only=["broken"])
    for main, argv in ((grid.main, []), (cli.main, ["grid"])):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--preset", "smoke", "--root", str(tmp_path), "--only", "broken"])
        assert exc.value.code == 1
    err = capfd.readouterr().err
    assert err.count("grid failed: notebook 'broken' failed in cell 4") == 2
    assert "without encryption" not in err and not list(tmp_path.glob("kernel*"))


def test_grid_and_seeds_are_subcommands_with_the_old_options(capsys):
    for command, options in (
        ("grid", ("--preset", "--root", "--only", "--compare")),
        ("seeds", ("--presets", "--no-run")),
    ):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: python -m cpmi_lib {command}")
        assert all(option in out for option in options)
    with pytest.raises(SystemExit) as exc:
        cli.main(["grid", "--preset", "smoke", "--compare"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m cpmi_lib grid: error: --compare needs --root DIR")


def test_the_grid_shows_one_progress_line_per_stage_and_starts_headline_afresh(
    tmp_path, monkeypatch, capsys
):
    """Stage i of n and the grid's elapsed time on every line (papermill faked: no notebook runs);
    a full run drops a stale results/headline.json, `only` keeps it to merge into."""
    import cpmi_lib.report.results_readme

    monkeypatch.delenv("CPMI_FROM_SCRATCH", raising=False)  # the full run below uses models/
    ran = []
    monkeypatch.setattr(grid.papermill, "execute_notebook", lambda nb, out, **kw: ran.append(out))
    monkeypatch.setattr(cpmi_lib.report.results_readme, "write_results_readme", lambda *args: None)
    headline = tmp_path / "results" / "headline.json"
    headline.parent.mkdir(parents=True)
    headline.write_text("{}\n")

    grid.run_grid("smoke", tmp_path, only=["build_data", "label_cost"])
    assert headline.exists()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0] == "[grid:smoke 1/2] build_data ... (elapsed 0s)"
    assert re.fullmatch(r"\[grid:smoke 1/2\] build_data done in \d+ s \(elapsed \d+s\)", lines[1])
    assert re.fullmatch(r"\[grid:smoke 2/2\] label_cost \.\.\. \(elapsed \d+s\)", lines[2])
    assert re.fullmatch(r"\[grid:smoke\] 2 notebooks in \d+s", lines[4])

    assert not (tmp_path / "results" / "timings.json").exists()  # only a full run writes it
    grid.run_grid("smoke", tmp_path)
    assert not headline.exists()
    n = len(grid.NOTEBOOKS)
    out = capsys.readouterr().out
    assert f"[grid:smoke {n}/{n}] {grid.NOTEBOOKS[-1]} ..." in out
    assert len(ran) == 2 + n
    timings = json.loads((tmp_path / "results" / "timings.json").read_text())
    assert list(timings["stages"]) == [run.name for run in grid.PRESETS["smoke"].notebooks]
    assert timings["preset"] == "smoke" and timings["machine"]["cpus"] == os.cpu_count()
    assert timings["total_seconds"] >= sum(timings["stages"].values()) - 0.1 * n
    from cpmi_lib.report.results_readme import timing_rows  # results/README.md's time table

    rows = timing_rows(tmp_path / "results")
    assert rows[1] == "## Time (the last full run, `timings.json`)"
    assert [r.split(" | ")[0] for r in rows[7:]] == [f"| `{name}`" for name in timings["stages"]]
    # the next run estimates what is left from the last full run's seconds, stage by stage
    stages = {name: 60.0 * (i + 1) for i, name in enumerate(timings["stages"])}
    (tmp_path / "results" / "timings.json").write_text(json.dumps({**timings, "stages": stages}))
    grid.run_grid("smoke", tmp_path, only=[grid.NOTEBOOKS[-1]])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f", about {grid.format_elapsed(60.0 * n)} left by the last run)")
    # a from-scratch run after a run from the shipped LMs: the estimate leaves LM training out
    # and says so; after a from-scratch run, whose seconds include it, it does not need to
    assert timings["from_scratch"] is False
    monkeypatch.setenv("CPMI_FROM_SCRATCH", "1")
    grid.run_grid("smoke", tmp_path, only=[grid.NOTEBOOKS[-1]])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("left by the last run, plus LM training)")
    record = {**timings, "stages": stages, "from_scratch": True}
    (tmp_path / "results" / "timings.json").write_text(json.dumps(record))
    grid.run_grid("smoke", tmp_path, only=[grid.NOTEBOOKS[-1]])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f", about {grid.format_elapsed(60.0 * n)} left by the last run)")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.9, "59s"), (252, "4m12s"), (3723, "1h02m03s")]
)
def test_elapsed_time_reads_at_a_glance(seconds, text):
    assert grid.format_elapsed(seconds) == text
