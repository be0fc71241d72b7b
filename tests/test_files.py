"""`write_atomically`: the one way the library replaces a file (caches, headline, data files)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cpmi_lib.core.files import write_atomically


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_text_replaces_the_file_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.jsonl"
    assert write_atomically(target, "é\n") == target  # parents made
    write_atomically(target, "second\n", sync=True)
    assert target.read_text(encoding="utf-8") == "second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(target.parent) == []


def test_a_writer_function_gets_a_fresh_temporary_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "features.pt"
    seen: list[Path] = []

    def inner(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"inner")

    def outer(tmp: Path) -> None:  # a second writer of the same file while this one writes
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.exists()
        write_atomically(target, inner)
        tmp.write_bytes(b"outer")

    write_atomically(target, outer, sync=True)
    assert seen[0] != seen[1]  # two writers never share a temporary file
    assert target.read_bytes() == b"outer"  # the last swap wins, whole
    assert _leftovers(tmp_path) == []


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "headline.json"
    target.write_text("old\n")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt  # an interruption, not only an error

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, broken)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["headline.json"]


def test_an_impossible_place_raises_and_leaves_the_rest_alone(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    with pytest.raises(OSError):  # even as root: a file cannot hold a folder
        write_atomically(blocker / "x.json", "{}\n")
    assert blocker.read_text() == "not a folder\n"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
