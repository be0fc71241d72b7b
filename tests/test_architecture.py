"""The folder tree is the architecture: packages by role, imports only downward, no cycles, small
modules and classes. Read from the source's imports (every `import` anywhere in a module, lazy ones
included), so a shortcut taken inside a function counts like one at the top."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "cpmi_lib"
#: Bottom to top: a package may import only packages listed before it (and itself).
LAYERS = ("core", "data", "lm", "labeling", "prm", "eval", "experiment", "report", "studies")
TOP = "top"  # the cli package, grid, seeds, __main__: may import everything
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


def _modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(LIB.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in LIB.rglob("*.py")
    }


def _imports(path: Path, module: str) -> set[str]:
    """The cpmi_lib modules `module` imports, anywhere in its source."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cpmi_lib")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = (
                    module.split(".")[: -node.level]
                    if path.name != "__init__.py"
                    else (module.split(".")[: len(module.split(".")) - node.level + 1])
                )
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if not name.startswith("cpmi_lib"):
                continue
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names}  # `from pkg import module`
    mods = _modules()
    return {n for n in found if n in mods}


def _package(module: str) -> str:
    """The layer of a module: its package's, or the top (cli, grid, seeds, the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else TOP


def test_every_package_has_a_docstring_saying_what_it_may_import():
    for pkg in LAYERS:
        doc = importlib.import_module(f"cpmi_lib.{pkg}").__doc__
        assert doc and "May import" in doc, f"cpmi_lib/{pkg}/__init__.py"


def test_the_library_is_the_listed_packages_and_a_thin_top():
    top = {p.stem for p in LIB.glob("*.py")}
    assert top <= {"__init__", "__main__", "grid", "seeds"}, top
    packages = {p.name for p in LIB.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS) | {"cli"}


def test_imports_go_only_downward():
    rank = {pkg: i for i, pkg in enumerate(LAYERS)} | {TOP: len(LAYERS)}
    upward = []
    for module, path in _modules().items():
        src = _package(module)
        for target in _imports(path, module):
            dst = _package(target)
            if rank[dst] > rank[src]:
                upward.append(f"{module} -> {target}")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = {m: _imports(p, m) - {m} for m, p in _modules().items()}
    # a package's __init__ is not an edge into its modules (they only share a folder)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


def test_no_module_or_class_is_too_long():
    long_modules, long_classes = [], []
    for module, path in _modules().items():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            long_modules.append(f"{module}: {lines}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_CLASS_LINES:
                    long_classes.append(f"{module}.{node.name}: {n}")
    assert not long_modules and not long_classes, (long_modules, long_classes)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The graph reader is not vacuous: a lazy upward import inside a function is found."""
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from cpmi_lib.studies import instrument\n")
    assert "cpmi_lib.studies.instrument" in _imports(src, "cpmi_lib.core.x")
    assert _package("cpmi_lib.core.x") == "core" and _package("cpmi_lib.grid") == TOP
    assert _package("cpmi_lib.cli.label") == TOP and _package("cpmi_lib.studies") == "studies"
