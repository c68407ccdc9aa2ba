"""The package's public face and its place in the layers."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import modelyard.runtimes

PACKAGE = Path(modelyard.runtimes.__file__).parent


def test_all_names_exist_and_public_callables_are_documented() -> None:
    for name in modelyard.runtimes.__all__:
        value = getattr(modelyard.runtimes, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name


def test_importing_the_package_loads_neither_torch_nor_onnxruntime() -> None:
    code = (
        "import sys, modelyard.runtimes; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_runtimes_import_nothing_above_the_ml_core() -> None:
    allowed = ("modelyard.errors", "modelyard.nn", "modelyard.training", "modelyard.runtimes")
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
                    assert name.startswith(allowed), f"{path.name} imports {name}"
