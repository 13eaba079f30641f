"""No import cycles among the modules of ``ecac_bench`` and ``trainers``, counting every import: module level,
inside functions, and under ``TYPE_CHECKING``.

An import is an edge to the module it names: ``from pkg import sub`` (a submodule) is an edge to ``pkg.sub``,
``from pkg import name`` (anything else) an edge to ``pkg`` itself, i.e. to its ``__init__``. The implicit import of
a module's parent package is not an edge: every submodule has it, and it is no choice of the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ecac_bench", "trainers")


def module_files(root: Path) -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_files(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # "ecac_bench.llm.x.y" -> the module that holds it
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    assert cycles(import_graph(REPO)) == []


def test_the_check_counts_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    """The cycles the tree had before (data <-> matching through TYPE_CHECKING, predictions <-> lmms_samples
    through a function-level import) are found by this check."""
    package = tmp_path / "ecac_bench"
    package.mkdir()
    (tmp_path / "trainers").mkdir()
    (package / "__init__.py").write_text("")
    (package / "data.py").write_text("from ecac_bench.matching import match_plan\n")
    (package / "matching.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ecac_bench.data import ToyAnnotation\n"
    )
    (package / "predictions.py").write_text("from ecac_bench.lmms_samples import sample_entry\n")
    (package / "lmms_samples.py").write_text("def load():\n    from ecac_bench.predictions import load_predictions\n")
    (package / "metrics.py").write_text("from ecac_bench import data\n")  # a submodule: no edge to __init__
    assert cycles(import_graph(tmp_path)) == [
        ["ecac_bench.data", "ecac_bench.matching"],
        ["ecac_bench.lmms_samples", "ecac_bench.predictions"],
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_seen(package: str) -> None:
    names = module_files(REPO)
    assert f"{package}" in names and any(n.startswith(f"{package}.") for n in names)
