"""The results contract (`cpmi_lib.report.claims`): every headline name is declared once and
produced by the default grid (both ways, against the committed `results/headline.json`; the smoke
grid's names are checked in tests/test_grid.py), no producer spells a name, the paper's numbers
live in the claims, and `results/README.md` renders from them as committed."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cpmi_lib import grid, seeds
from cpmi_lib.core.paths import REPO
from cpmi_lib.experiment.presets import (
    PRESET_NAMES,
    SEED_PRESETS,
    experiment_config,
    labeler_axis,
)
from cpmi_lib.report import claims
from cpmi_lib.report.claims import Claim, Family
from cpmi_lib.report.headline import Headline, HeadlineError, put_entry, read_headline
from cpmi_lib.report.results_readme import write_results_readme
from cpmi_lib.report.tables import COST_ROWS, label_cost_vs_paper

RESULTS = REPO / "results"
COMMITTED = read_headline(RESULTS / "headline.json")


def test_every_committed_headline_name_is_declared():
    assert claims.undeclared(COMMITTED) == []


def test_every_declared_name_is_produced_by_the_default_grid():
    """Names of other presets only are declared as such (`Family.elsewhere`); every other
    declared name is in the committed default run."""
    missing = claims.default_grid_names() - set(COMMITTED)
    assert not missing, f"declared but not produced by the default grid: {sorted(missing)}"
    assert set(COMMITTED) == claims.default_grid_names()


def test_names_are_unique_and_well_formed():
    names = [c.name for c in claims.all_claims()]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", n) for n in names)
    assert len({id(c) for c in claims.CLAIMS}) == len(claims.CLAIMS)


def test_each_claim_names_a_notebook_table_and_figure_that_exist():
    """...in the committed results; a claim awaiting the default grid's rerun names a notebook of
    the grid, and its table and figure come with the rerun."""
    for c in claims.all_claims():
        assert c.notebook in grid.NOTEBOOKS, c
        assert c.text and c.style in ("ci", "count", "p", "saving"), c
        if c.awaiting_rerun:
            continue
        assert c.table is None or (RESULTS / "tables" / f"{c.table}.csv").exists(), c
        assert c.figure is None or (REPO / "figures" / f"{c.figure}.png").exists(), c


def test_a_claim_awaits_the_rerun_only_while_the_committed_results_lack_it():
    """The flag says "measured by code the committed run predates": once the default grid's
    committed `results/headline.json` holds the name, the flag must go (and the figure, table
    and name checks above apply)."""
    awaiting = {c.name for c in claims.awaiting_rerun()}
    assert not awaiting & set(COMMITTED), sorted(awaiting & set(COMMITTED))
    every = claims.default_grid_names(measured_only=False)
    assert every - claims.default_grid_names() == {
        c.name for c in claims.awaiting_rerun() if c.name in every
    }


def test_the_notebooks_recording_claims_are_those_the_seeds_check_knows():
    recording = {c.notebook for c in claims.all_claims() if c.recorded}
    assert recording == set(seeds.HEADLINE_NOTEBOOKS) | set(seeds.SEED_FREE_NOTEBOOKS)
    for name in recording:
        assert "record_headline(" in (REPO / "notebooks" / f"{name}.py").read_text(), name


def test_every_embedded_preset_reports_a_declared_best_of_n():
    """The instrument records Best-of-N at the preset's largest N (embedded track only): the
    default grid's N is a declared value, any other preset's is declared as its own."""
    assert max(experiment_config("default").bon_ns) in claims.BON_NS
    for value, name in claims.BON_ELSEWHERE:
        assert name in PRESET_NAMES and max(experiment_config(name).bon_ns) == value
    for name in PRESET_NAMES:
        cfg = experiment_config(name)
        n = max(cfg.bon_ns)
        if cfg.hub is None and n not in claims.BON_NS:
            assert (n, name) in claims.BON_ELSEWHERE, f"{name}: Best-of-{n} is not declared"


def test_the_declared_labelers_are_every_embedded_presets_axis():
    """The seed presets rerun the default's axis (same names); not built here."""
    for name in PRESET_NAMES:
        if experiment_config(name).hub is None and name not in SEED_PRESETS:
            assert tuple(x.name for x in labeler_axis(name)) == claims.LABELERS, name


def test_a_family_refuses_an_undeclared_value_and_put_entry_a_bare_name():
    assert claims.TRUTH_PRM_BON[16].name == "truth_prm_bon16"
    assert claims.TRUTH_PRM_BON[4].name == "truth_prm_bon4"  # the smoke grid's
    with pytest.raises(KeyError, match="truth_prm_bon8.*not declared"):
        claims.TRUTH_PRM_BON[8]
    with pytest.raises(KeyError, match="labeler_bigger_anticipation"):
        claims.LABELER_ANTICIPATION["bigger"]
    out: dict[str, Headline] = {}
    with pytest.raises(HeadlineError, match="declared claim"):
        put_entry(out, "truth_prm_f1", 0.5, None, 10)  # type: ignore[arg-type]
    with pytest.raises(HeadlineError, match="declared claim"):
        put_entry(out, claims.LABELING_TIME, 0.5, None, 10)  # a table's number, not headline's
    put_entry(out, claims.PRM_F1["truth"], 0.5, (0.4, 0.6), 10)
    put_entry(out, claims.PRM_F1["mc"], float("nan"), None, 10)  # undefined: left out
    assert out == {"truth_prm_f1": Headline(0.5, (0.4, 0.6), 10)}
    with pytest.raises(ValueError, match="exactly one"):
        Family("x_{}_{}", "x {}", "instrument", (1,))


def _spelled_names(path: Path) -> list[str]:
    """Headline names written as a string where a producer names an entry: `put_entry`'s
    name, a dict literal passed to `record_headline`, ``out["..."] = Headline(...)``."""

    def spelled(node: ast.AST | None) -> bool:
        return isinstance(node, ast.JoinedStr) or (
            isinstance(node, ast.Constant) and isinstance(node.value, str)
        )

    def called(node: ast.AST, name: str) -> bool:
        f = node.func if isinstance(node, ast.Call) else None
        return (isinstance(f, ast.Name) and f.id == name) or (
            isinstance(f, ast.Attribute) and f.attr == name
        )

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
        if called(node, "put_entry") and len(node.args) > 1 and spelled(node.args[1]):
            found.append(where)
        if called(node, "record_headline") and len(node.args) > 1:
            entries = node.args[1]
            if isinstance(entries, ast.Dict) and any(spelled(k) for k in entries.keys):
                found.append(where)
        if isinstance(node, ast.Assign) and called(node.value, "Headline"):
            if any(isinstance(t, ast.Subscript) and spelled(t.slice) for t in node.targets):
                found.append(where)
    return found


def test_no_producer_spells_a_headline_name():
    sources = [*sorted((REPO / "cpmi_lib").rglob("*.py")), *sorted(REPO.glob("notebooks/*.py"))]
    spelled = [w for p in sources for w in _spelled_names(p)]
    assert not spelled, "headline names spelled outside cpmi_lib/report/claims.py: " + str(spelled)


def test_the_paper_numbers_live_in_the_claims_only():
    assert (claims.LABELING_TIME.paper, claims.GENERATED_TOKENS.paper) == (-0.84, -0.98)
    notebook = (REPO / "notebooks" / "label_cost.py").read_text()
    assert not re.search(r"0\.84|0\.98|84 ?%|98 ?%", notebook)
    committed = pd.read_csv(RESULTS / "tables" / "label_cost_vs_paper.csv")
    cost = pd.read_csv(RESULTS / "tables" / "label_cost.csv")
    pd.testing.assert_frame_equal(label_cost_vs_paper(cost), committed)
    paper = [c for c in claims.all_claims() if c.paper is not None]
    assert set(committed["claim"]) == {c.table_row for c in paper}
    assert {row for _, row in COST_ROWS} >= set(cost["per labeled step"]) - {
        "peak RSS (MiB, whole run)"
    }


def test_results_readme_renders_from_the_claims_as_committed(tmp_path):
    """Re-rendered from the committed headline file, tables and figures, `results/README.md`
    reads as committed: its claims table is `claims.CLAIMS`, in order."""
    skip = shutil.ignore_patterns("runs", "benchmarks", "README.md")
    shutil.copytree(RESULTS, tmp_path / "results", ignore=skip)
    (tmp_path / "figures").symlink_to(REPO / "figures")
    text = write_results_readme(tmp_path / "results", tmp_path / "figures", "default").read_text()
    assert text == (RESULTS / "README.md").read_text()
    rows = [line.split(" | ")[0].removeprefix("| ") for line in text.splitlines()]
    shown = [
        c.text
        for c in claims.all_claims(default_grid_only=True)
        if c.row and (not c.recorded or c.name in COMMITTED)
    ]
    assert [r for r in rows if r in shown] == shown


def test_every_claim_is_of_the_registry():
    """The module's public claims and families are all in `CLAIMS` (none declared and left out
    of the README's order or of the tests above)."""
    public = [
        v for k, v in vars(claims).items() if k.isupper() and isinstance(v, Claim | Family | dict)
    ]
    listed = set(map(id, claims.CLAIMS))
    for v in public:
        for c in v.values() if isinstance(v, dict) else [v]:
            if isinstance(c, Claim | Family):
                assert id(c) in listed, c


def test_the_real_verifier_records_its_committed_claims_from_its_committed_tables():
    """A producer end to end without a model: the committed tables give back the committed
    entries under the declared names."""
    from cpmi_lib.studies import real_verifier as rv

    tables = RESULTS / "tables"
    aurocs, bo4 = (pd.read_csv(tables / f"real_gsm8k_{t}.csv") for t in ("auroc", "bo4"))
    out = rv.headline_entries(aurocs, bo4, rv.VerifierConfig())
    real = (claims.REAL_CPMI_AUROC, claims.REAL_BO4_CPMI, claims.REAL_BO4_MAJORITY)
    assert set(out) == {c.name for c in (*real, claims.REAL_BO4_RANDOM, claims.REAL_PASS4)}
    assert out == {name: COMMITTED[name] for name in out}
