"""The shape issue #20 asks of the command line: one `mjave` entry point that lists every command
group, standalone entry points that delegate to it, and no module reaching into another's
private (`_name`) helpers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mjave
from mjave.cli import build_parser

SRC = Path(mjave.__file__).parent
COMMAND_GROUPS = ["data", "train", "features", "evaluate", "demo", "predict", "serve",
                  "complete", "review", "experiment", "export", "encoders"]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def private_imports(path: Path) -> list[str]:
    """Each place `path` uses a private name of another mjave module, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.level or
                                                 (node.module or "").startswith("mjave")):
            module = "." * node.level + (node.module or "")
            found += [f"{node.lineno}: from {module} import {a.name}"
                      for a in node.names if _private(a.name)
                      or any(_private(p) for p in module.split(".") if p)]
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.startswith("mjave") and any(map(_private, a.name.split(".")))]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node)
            if dotted and dotted.startswith("mjave."):
                found.append(f"{node.lineno}: {dotted}")
    return found


def test_the_check_sees_private_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from mjave.serving.config import _x, DEFAULTS\nimport mjave.cli._y\n"
                   "from ._z import a\nimport mjave.data\nmjave.data._rows()\n"
                   "from mjave import __version__\nfrom mjave.data import errors\n")
    assert private_imports(bad) == ["1: from mjave.serving.config import _x",
                                    "2: import mjave.cli._y", "3: from ._z import a",
                                    "5: mjave.data._rows"]


def test_no_module_imports_another_modules_private_names():
    found = {str(p.relative_to(SRC)): hits for p in sorted(SRC.rglob("*.py"))
             if (hits := private_imports(p))}
    assert found == {}


def test_help_lists_every_command_group():
    out = subprocess.run([sys.executable, "-m", "mjave", "--help"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    listed = [line.split()[0] for line in out.splitlines()
              if line.startswith("    ") and not line.startswith("     ")]
    assert listed == COMMAND_GROUPS
    assert list(build_parser().commands.choices) == COMMAND_GROUPS


@pytest.mark.parametrize("module,prog", [("mjave.serving", "python -m mjave.serving"),
                                         ("mjave.review", "mjave review"),
                                         ("mjave.cli", "mjave")])
def test_standalone_entry_points_delegate_to_the_cli(module, prog):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.startswith(f"usage: {prog}")


def test_standalone_serve_reports_errors_like_mjave(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mjave.serving", str(tmp_path),
                          "--max-batch-size", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.startswith("error: ") and "max_batch_size" in run.stderr


def test_is_loopback_is_shared_by_serve_and_review():
    from mjave.serving.config import is_loopback
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
