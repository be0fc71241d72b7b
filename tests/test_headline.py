"""`results/headline.json`: entries are checked (no NaN/inf ever written), notebooks' contributions
merge atomically into one stably formatted file, a malformed file is refused naming it, a rerun is
compared with the committed numbers (every verdict), and ``grid --compare`` refuses a wrong command
line in one line without running a notebook."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cpmi_lib import grid
from cpmi_lib.experiment.presets import REPO
from cpmi_lib.report.headline import (
    DIFFERS,
    EXACT,
    MISSING,
    NEW,
    OUTSIDE,
    VERDICTS,
    WITHIN,
    Headline,
    HeadlineError,
    as_headline,
    compare_headlines,
    dumps_headline,
    format_comparison,
    read_headline,
    record_headline,
)


def entry(value=0.5, ci=(0.4, 0.6), n=100) -> dict:
    return {"value": value, "ci": None if ci is None else list(ci), "n": n}


# ---------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (entry(value=math.nan, ci=None), "value must be finite, got nan"),
        (entry(value=math.inf, ci=None), "value must be finite, got inf"),
        (entry(value=-math.inf, ci=None), "value must be finite, got -inf"),
        (entry(value=10**400, ci=None), f"value must be finite, got {10**400!r}"),
        (entry(value="0.5"), "value must be a number, got '0.5'"),
        (entry(value=None), "value must be a number, got None"),
        (entry(value=True), "value must be a number, got True"),
        (entry(ci=(0.6, 0.9)), "ci [0.6, 0.9] must contain the value 0.5 (low <= value <= high)"),
        (entry(ci=(0.6, 0.4)), "ci [0.6, 0.4] must contain the value 0.5 (low <= value <= high)"),
        (entry(ci=(math.nan, 0.6)), "ci bounds must be finite, got [nan, 0.6]"),
        (entry(ci=(0.4, math.inf)), "ci bounds must be finite, got [0.4, inf]"),
        (entry(ci=(0.4, "0.6")), "ci bounds must be numbers, got [0.4, '0.6']"),
        (entry(ci=(0.4,)), "ci must be [low, high] or null, got [0.4]"),
        ({"value": 0.5, "ci": "ab", "n": 1}, "ci must be [low, high] or null, got 'ab'"),
        ({"value": 0.5, "ci": 0.1, "n": 1}, "ci must be [low, high] or null, got 0.1"),
        (entry(n=-1), "n must be >= 0, got -1"),
        (entry(n=2.0), "n must be an integer count, got 2.0"),
        (entry(n=True), "n must be an integer count, got True"),
        (entry(n="3"), "n must be an integer count, got '3'"),
        ({"value": 0.5, "n": 1}, "missing field(s) ['ci']"),
        ({**entry(), "note": "x"}, "unknown field(s) ['note']"),
        ([0.5, None, 1], "entry must be an object with value, ci, n, got [0.5, None, 1]"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_entry_and_field(raw, message):
    with pytest.raises(HeadlineError) as exc:
        as_headline("truth_prm_f1", raw)
    assert str(exc.value) == f"headline 'truth_prm_f1': {message}"


@pytest.mark.parametrize("name", ["", "has space", "a/b", 3, None])
def test_a_bad_name_is_refused(name):
    with pytest.raises(HeadlineError) as exc:
        as_headline(name, entry())
    assert str(exc.value) == f"headline name must match [A-Za-z0-9_.-]+, got {name!r}"


def test_the_dataclass_checks_itself_and_takes_numpy_numbers():
    with pytest.raises(HeadlineError, match=r"^value must be finite, got nan$"):
        Headline(math.nan, None, 1)
    h = Headline(np.float32(0.5), (np.float64(0.25), 1), np.int64(7))
    assert h == Headline(0.5, (0.25, 1.0), 7)
    assert type(h.value) is float and type(h.n) is int and type(h.ci[1]) is float
    assert as_headline("x", h) is h
    # a CI may be a point (low == value == high), a count may be 0
    assert as_headline("x", entry(value=1, ci=(1, 1), n=0)) == Headline(1.0, (1.0, 1.0), 0)


# -------------------------------------------------------------------------- recording / reading


def test_contributions_merge_into_one_stably_formatted_file(tmp_path):
    results = tmp_path / "results"
    path = record_headline(results, {"truth_prm_f1": entry(0.71, (0.66, 0.75), 400)})
    assert path == results / "headline.json"
    record_headline(
        results,
        {
            "majority_bon16": Headline(0.5, (0.45, 0.55), 200),
            "budget_mc_seconds": entry(1234.5, None, 3),
        },
    )
    expected = (
        "{\n"
        '  "budget_mc_seconds": {"value": 1234.5, "ci": null, "n": 3},\n'
        '  "majority_bon16": {"value": 0.5, "ci": [0.45, 0.55], "n": 200},\n'
        '  "truth_prm_f1": {"value": 0.71, "ci": [0.66, 0.75], "n": 400}\n'
        "}\n"
    )
    assert path.read_text() == expected
    assert json.loads(expected)["majority_bon16"] == {"value": 0.5, "ci": [0.45, 0.55], "n": 200}
    assert read_headline(path) == read_headline(results)  # a results folder means its file
    assert read_headline(path)["truth_prm_f1"] == Headline(0.71, (0.66, 0.75), 400)

    # rewriting the same numbers (in any order) is byte-identical; no temp file is left behind
    before = path.read_bytes()
    record_headline(results, dict(reversed(list(read_headline(path).items()))))
    assert path.read_bytes() == before
    assert sorted(p.name for p in results.iterdir()) == ["headline.json"]

    # a notebook setting its own name again replaces only that entry
    record_headline(results, {"truth_prm_f1": entry(0.7, None, 400)})
    got = read_headline(path)
    assert got["truth_prm_f1"] == Headline(0.7, None, 400)
    assert set(got) == {"budget_mc_seconds", "majority_bon16", "truth_prm_f1"}
    assert dumps_headline({}) == "{}\n"


def test_nothing_is_written_when_an_entry_is_bad_or_the_write_fails(tmp_path, monkeypatch):
    path = record_headline(tmp_path, {"a": entry()})
    before = path.read_bytes()
    with pytest.raises(HeadlineError, match="headline 'b': value must be finite"):
        record_headline(tmp_path, {"c": entry(), "b": entry(value=math.nan, ci=None)})
    assert path.read_bytes() == before

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        record_headline(tmp_path, {"c": entry()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["headline.json"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"a": {"value": NaN, "ci": null, "n": 1}}', "NaN is not a finite number"),
        ('{"a": {"value": Infinity, "ci": null, "n": 1}}', "Infinity is not a finite number"),
        (
            '[{"value": 1, "ci": null, "n": 1}]',
            "must hold a JSON object of name -> entry, got list",
        ),
        ('{"a": {"value": 0.5, "ci": [0.6, 0.7], "n": 1}}', "headline 'a': ci [0.6, 0.7] must"),
        ('{"a": {"value": 0.5, "ci": null}}', "headline 'a': missing field(s) ['n']"),
        (
            '{"a": {"value": 1, "ci": null, "n": 1}, "a": {"value": 2, "ci": null, "n": 1}}',
            "'a' appears twice",
        ),
    ],
)
def test_a_malformed_existing_file_is_refused_naming_it_and_not_overwritten(
    tmp_path, text, message
):
    path = tmp_path / "headline.json"
    path.write_text(text)
    for call in (lambda: read_headline(path), lambda: record_headline(tmp_path, {"b": entry()})):
        with pytest.raises(HeadlineError) as exc:
            call()
        assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)
    assert path.read_text() == text


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(HeadlineError, match=r"^headline file .*nowhere\.json does not exist$"):
        read_headline(tmp_path / "nowhere.json")


# ----------------------------------------------------------------------------------- comparing


def _write(path: Path, entries: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries))
    return path


COMMITTED = {
    "inside": entry(0.50, (0.40, 0.60), 100),
    "outside": entry(0.50, (0.40, 0.60), 100),
    "exact": entry(0.03, None, 100),
    "differs": entry(12.0, None, 3),
    "dropped": entry(0.9, (0.8, 1.0), 50),
}
RERUN = {
    "inside": entry(0.60, (0.50, 0.70), 100),  # on the committed CI's edge: within
    "outside": entry(0.39, (0.30, 0.45), 100),
    "exact": entry(0.03, None, 100),
    "differs": entry(13.5, None, 3),
    "added": entry(0.2, None, 10),
}


def test_compare_gives_every_verdict(tmp_path):
    committed = read_headline(_write(tmp_path / "c.json", COMMITTED))
    rerun = read_headline(_write(tmp_path / "r.json", RERUN))
    table = compare_headlines(committed, rerun)
    assert list(table["name"]) == sorted(set(COMMITTED) | set(RERUN))
    rows = table.set_index("name")
    assert rows["verdict"].to_dict() == {
        "added": NEW,
        "differs": DIFFERS,
        "dropped": MISSING,
        "exact": EXACT,
        "inside": WITHIN,
        "outside": OUTSIDE,
    }
    assert set(rows["verdict"]) == set(VERDICTS)
    assert rows.loc["outside", "difference"] == pytest.approx(-0.11)
    assert rows.loc["differs", "difference"] == pytest.approx(1.5)
    assert rows.loc["inside", "committed CI"] == (0.4, 0.6)
    assert rows.loc["outside", "rerun CI"] == (0.3, 0.45)
    assert math.isnan(rows.loc["added", "committed"]) and math.isnan(rows.loc["dropped", "rerun"])
    assert rows.loc["exact", "committed n"] == 100 and rows["rerun n"].isna()["dropped"]

    text = format_comparison(table)
    lines = text.splitlines()
    assert lines[0].startswith("| name ") and "verdict" in lines[0]
    outside = next(line for line in lines if line.startswith("| outside "))
    assert "[0.4, 0.6]" in outside and "0.39" in outside and "-0.11" in outside
    assert OUTSIDE in outside
    assert lines[-1] == (
        "6 headline numbers: 1 within committed CI, 1 outside committed CI, "
        "1 no CI (exact match), 1 no CI (differs), 1 missing in rerun, 1 new in rerun"
    )


# ------------------------------------------------------------------------------ grid --compare


@pytest.fixture
def calls() -> list[tuple[str, Path, list[str] | None]]:
    """The faked `run_grid`'s calls: (preset, root, only)."""
    return []


@pytest.fixture
def committed_root(tmp_path, monkeypatch, calls):
    """The smoke preset's committed root in tmp, holding COMMITTED; `run_grid` faked to write
    RERUN into its root (no notebook runs)."""
    root = tmp_path / "committed"
    _write(root / "results" / "headline.json", COMMITTED)
    monkeypatch.setitem(grid.PRESETS, "smoke", replace(grid.PRESETS["smoke"], root=root))

    def fake_run_grid(preset, root, only=None):
        calls.append((preset, Path(root), only))
        if root.name != "empty":
            _write(root / "results" / "headline.json", RERUN)
        return []

    monkeypatch.setattr(grid, "run_grid", fake_run_grid)
    return root


def _main(capsys, *argv: str) -> tuple[int | None, str, str]:
    code = None
    try:
        grid.main(["--preset", "smoke", *argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "--compare needs --root DIR"),
        (("--root", str(REPO)), f"--compare needs a --root other than {REPO}"),
        (("--root", "."), f"--compare needs a --root other than {REPO}"),
    ],
)
def test_compare_refuses_a_missing_or_repository_root(
    committed_root, calls, capsys, monkeypatch, argv, message
):
    monkeypatch.chdir(REPO)
    code, out, err = _main(capsys, "--compare", *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"python -m cpmi_lib.grid: error: {message}")
    assert err.count("\n") == 1
    assert calls == []


def test_compare_refuses_the_committed_root_itself(committed_root, calls, capsys):
    code, _, err = _main(capsys, "--compare", "--root", str(committed_root))
    assert code == 2 and f"--compare needs a --root other than {committed_root}" in err
    assert calls == []


def test_compare_needs_both_headline_files(committed_root, calls, tmp_path, capsys):
    code, _, err = _main(capsys, "--compare", "--root", str(tmp_path / "empty"))
    assert code == 1 and err.count("\n") == 1
    assert f"headline file {tmp_path / 'empty' / 'results' / 'headline.json'} does not exist" in err
    assert len(calls) == 1  # the rerun ran, then its file was missing

    (committed_root / "results" / "headline.json").unlink()
    code, _, err = _main(capsys, "--compare", "--root", str(tmp_path / "rerun"))
    assert code == 1 and "committed/results/headline.json does not exist" in err
    assert len(calls) == 1  # refused before running the grid


def test_compare_prints_the_table_and_exits_0_even_outside_the_ci(
    committed_root, calls, tmp_path, capsys
):
    rerun = tmp_path / "rerun"
    code, out, err = _main(capsys, "--compare", "--root", str(rerun), "--only", "build_data")
    assert code is None and err == ""
    assert calls == [("smoke", rerun, ["build_data"])]
    assert out == grid.compare_roots(committed_root, rerun) + "\n"
    assert OUTSIDE in out and "1 outside committed CI" in out


def test_compare_roots_names_a_malformed_side(committed_root, tmp_path):
    bad = tmp_path / "bad" / "results" / "headline.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"a": {"value": NaN, "ci": null, "n": 1}}')
    with pytest.raises(HeadlineError, match=f"^{bad}: NaN is not a finite number"):
        grid.compare_roots(committed_root, tmp_path / "bad")
