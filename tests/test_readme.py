"""The README fits on a few screens, and what it and docs/ point to exists.

- README.md is at most 10,000 characters;
- every relative link of README.md and docs/*.md names a file that exists, and an anchor
  (``page.md#heading``) names a heading of that page;
- every ``python -m cpmi_lib COMMAND`` in the README's code blocks answers ``--help`` with exit
  0, and every ``make TARGET`` is a target of the Makefile; docs/ name only existing commands;
- every library path (``cpmi_lib/labeling/cpmi.py``, ``cpmi_lib.lm.load``) and every test,
  notebook or benchmark file the pages name exists, so a moved module cannot leave a stale map.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def _rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _code_lines(page: Path) -> list[str]:
    blocks = FENCE.findall(page.read_text())
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_readme_fits_in_10000_characters():
    n = len(README.read_text())
    assert n <= 10_000, f"README.md has {n:,} characters; move detail to docs/"


def test_readme_links_every_docs_page_it_names_and_they_exist():
    links = [m[1] for m in LINK.finditer(README.read_text())]
    docs = {link.split("#")[0] for link in links if link.startswith("docs/")}
    assert docs, "the README links its docs/ pages"
    for link in docs:
        assert (REPO / link).is_file(), f"README.md links {link}, which does not exist"
    unlinked = {_rel(p) for p in DOCS} - docs
    assert not unlinked, f"docs pages the README does not link: {sorted(unlinked)}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_exists(page):
    text = FENCE.sub("", page.read_text())
    for link in (m[1] for m in LINK.finditer(text)):
        if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{_rel(page)} links {link}: no such file"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{_rel(page)} links {link}: no such heading"


@cache
def _cli_commands() -> frozenset[str]:
    """The subcommands `python -m cpmi_lib --help` lists."""
    run = subprocess.run(
        [sys.executable, "-m", "cpmi_lib", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert run.returncode == 0, run.stderr
    choices = re.search(r"\{([a-z,\-]+)\}", run.stdout)
    assert choices, run.stdout
    return frozenset(choices[1].split(","))


def _readme_commands() -> list[str]:
    found = [re.match(r"python -m cpmi_lib ([a-z][a-z\-]*)", line) for line in _code_lines(README)]
    return sorted({m[1] for m in found if m})


def test_the_readme_shows_its_commands():
    assert {"grid", "seeds", "prm-experiment", "label"} <= set(_readme_commands())
    lines = _code_lines(README)
    assert "make reproduce" in " ".join(lines) and "make test" in " ".join(lines)


@pytest.mark.parametrize("command", _readme_commands())
def test_every_readme_command_answers_help(command):
    run = subprocess.run(
        [sys.executable, "-m", "cpmi_lib", command, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert run.returncode == 0, f"python -m cpmi_lib {command} --help: {run.stderr[-2000:]}"
    assert "usage" in run.stdout.lower()


def test_every_make_target_in_the_readme_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w\-]*):", makefile, re.M))
    shown = {m[1] for line in _code_lines(README) if (m := re.match(r"make ([a-z][\w\-]*)", line))}
    shown |= set(re.findall(r"`make ([a-z][\w\-]*)`", README.read_text()))
    assert {"reproduce", "test"} <= shown
    assert shown <= targets, f"make targets the Makefile lacks: {sorted(shown - targets)}"


@pytest.mark.parametrize("page", DOCS, ids=_rel)
def test_docs_name_only_existing_commands(page):
    text = page.read_text()
    for sub in re.findall(r"python -m cpmi_lib ([a-z][a-z\-]*)", text):
        assert sub in _cli_commands(), f"{_rel(page)} shows `python -m cpmi_lib {sub}`"
    for module in re.findall(r"python -m ((?:cpmi_lib|benchmarks)\.[\w.]+)", text):
        assert importlib.util.find_spec(module) is not None, f"{_rel(page)}: no module {module}"


def _module_exists(dotted: str) -> bool:
    """`cpmi_lib.a.b.attr`: walk packages until a module file; what follows are attributes."""
    path = REPO / "cpmi_lib"
    for part in dotted.split(".")[1:]:
        if (path / f"{part}.py").is_file():
            return True
        if not (path / part / "__init__.py").is_file():
            return False
        path = path / part
    return True


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_module_and_file_named_exists(page):
    text = page.read_text()
    files = re.findall(r"\b((?:cpmi_lib|tests|notebooks|benchmarks|examples)/[\w/]+\.py)\b", text)
    missing = sorted({f for f in files if not (REPO / f).is_file()})
    assert not missing, f"{_rel(page)} names files that do not exist: {missing}"
    dotted = re.findall(r"`(cpmi_lib(?:\.\w+)+)", text)
    stale = sorted({d for d in dotted if not _module_exists(d)})
    assert not stale, f"{_rel(page)} names modules that do not exist: {stale}"
