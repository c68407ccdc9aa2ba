"""The package's public face and its place in the layers."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import modelyard.nn

PACKAGE = Path(modelyard.nn.__file__).parent


def test_all_names_exist_and_public_callables_are_documented() -> None:
    for name in modelyard.nn.__all__:
        value = getattr(modelyard.nn, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name


def test_nn_imports_nothing_above_the_ml_core() -> None:
    allowed_modelyard = ("modelyard.errors", "modelyard.lazy", "modelyard.nn")
    forbidden = ("fastapi", "sqlalchemy", "starlette", "uvicorn", "httpx")
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
                if name.startswith("modelyard"):
                    assert name.startswith(allowed_modelyard), f"{path.name} imports {name}"
