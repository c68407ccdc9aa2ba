"""The shape of the package's imports: no cycles between modules, no function-level import
that only hides one, and a reason beside every function-level import that stays.

The graph is read from the source (``ast``), so a cycle is caught whether or not anything
imports the modules involved in this test run. Imports under ``if TYPE_CHECKING:`` are left
out: they never run.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import modelyard

ROOT = Path(modelyard.__file__).parent
# The packages whose modules must form no cycle, even through function-level imports.
ACYCLIC = ("modelyard.jobs", "modelyard.registry", "modelyard.client")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {
        _module_name(path): ast.parse(path.read_text())
        for path in ROOT.rglob("*.py")
        if "_pb2" not in path.name
    }


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    """Line numbers of the imports under ``if TYPE_CHECKING:``."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        lines.add(sub.lineno)
    return lines


def _imports(name: str, tree: ast.Module, known: set[str]) -> Iterator[str]:
    """The project modules ``name`` imports, at any level, outside TYPE_CHECKING blocks."""
    skip = _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.lineno not in skip:
            base = node.module or ""
            if node.level:
                package = name.split(".")[: -node.level] if node.level else []
                base = ".".join([*package, base]) if base else ".".join(package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in known else base
        elif isinstance(node, ast.Import) and node.lineno not in skip:
            for alias in node.names:
                yield alias.name


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: {target for target in _imports(name, tree, known) if target in known}
        for name, tree in modules.items()
    }


def _cycle_from(start: str, graph: dict[str, set[str]], within: tuple[str, ...]) -> list[str]:
    """A shortest cycle through ``start`` among modules under ``within``, or []."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in sorted(graph.get(node, ())):
                if not target.startswith(within):
                    continue
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    return []


def test_no_import_cycle_in_jobs_registry_and_client() -> None:
    graph = _graph()
    cycles = []
    for name in sorted(graph):
        if name.startswith(ACYCLIC):
            cycle = _cycle_from(name, graph, ACYCLIC)
            if cycle:
                cycles.append(" -> ".join(cycle))
    assert not cycles, "\n".join(cycles)


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function_level_import() -> None:
    """The check above can fail: a cycle closed by an import inside a function is found, and
    one through a ``TYPE_CHECKING`` import is not (it never runs)."""
    kinds = ast.parse(
        "from modelyard.jobs.context import JobContext\n"
        "def load():\n"
        "    from modelyard.jobs import worker\n"
    )
    worker = ast.parse("from modelyard.jobs.kinds import KINDS\n")
    context = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from modelyard.jobs.worker import main\n"
    )
    modules = {
        "modelyard.jobs.kinds": kinds,
        "modelyard.jobs.worker": worker,
        "modelyard.jobs.context": context,
    }
    known = set(modules)
    graph = {name: set(_imports(name, tree, known)) & known for name, tree in modules.items()}
    assert _cycle_from("modelyard.jobs.kinds", graph, ACYCLIC) == [
        "modelyard.jobs.kinds",
        "modelyard.jobs.worker",
        "modelyard.jobs.kinds",
    ]
    assert _cycle_from("modelyard.jobs.context", graph, ACYCLIC) == []


def test_every_function_level_import_in_jobs_registry_and_client_says_why() -> None:
    """A function-level import loads something heavy (PyTorch, Ray) or optional only where it
    is used; a comment on its line, or just above the block of imports it belongs to, says so."""
    unexplained = []
    packages = ("jobs", "registry", "client")
    paths = [p for package in packages for p in (ROOT / package).rglob("*.py")]
    for path in sorted(paths):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            block_reason = False
            previous: ast.stmt | None = None
            for statement in node.body:
                if not isinstance(statement, ast.Import | ast.ImportFrom):
                    previous = statement
                    continue
                if not isinstance(previous, ast.Import | ast.ImportFrom):
                    above = lines[statement.lineno - 2].strip()
                    block_reason = above.startswith("#")
                line = lines[statement.lineno - 1]
                if not block_reason and "#" not in line:
                    where = path.relative_to(ROOT)
                    unexplained.append(f"{where}:{statement.lineno}: {line.strip()}")
                previous = statement
    assert not unexplained, "\n".join(unexplained)


def test_no_lazy_export_is_shadowed_by_a_submodule_of_the_same_name() -> None:
    """Importing ``pkg.name`` sets ``pkg.name`` to the submodule, hiding a lazily exported
    function of that name; such a function is imported from its module instead."""
    shadowed = []
    for init in sorted(ROOT.rglob("__init__.py")):
        if "lazy_exports" not in init.read_text():
            continue
        package = importlib.import_module(_module_name(init))
        submodules = {module.name for module in pkgutil.iter_modules(package.__path__)}
        shadowed += [f"{package.__name__}.{name}" for name in package.__all__ if name in submodules]
    assert not shadowed, shadowed
