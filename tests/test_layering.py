"""The package's layers import one way: data -> model -> tracking -> (labelling, serve) -> CLI; training uses data and
model (STYLE.md; labelling reads tracking's escalation policy, docs/design.md). Checked statically over every module
file (lazy imports inside functions included) and by importing the light modules in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ABOVE_MODEL = ("data", "training", "tracking", "labelling", "serve", "cli")
"""What ``model/`` must not import: the data layer and everything built on the model."""
FORBIDDEN = {
    "model": ABOVE_MODEL,
    "tracking": ("data", "training", "labelling", "serve", "cli"),
    "labelling": ("data", "training", "serve", "cli"),
    "data": ("model", "training", "tracking", "labelling", "serve", "cli"),
    "serve": ("training",),
}
"""Subpackage -> the ``tonewatch.<name>`` packages its modules may not import."""
TOP_LEVEL_LEAVES = ("labels.py", "conversations.py", "configfile.py")
"""Shared by every layer, so they import no layer themselves."""


def tonewatch_imports(path: Path) -> set[str]:
    """Every ``tonewatch.*`` module a file imports, at any depth of its code (absolute imports, as the house uses)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module or "")
            if node.module == "tonewatch":  # `from tonewatch import data` imports a subpackage
                names.update(f"tonewatch.{alias.name}" for alias in node.names)
    return {name for name in names if name == "tonewatch" or name.startswith("tonewatch.")}


def layer_violations_of(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    """``"<path> imports <module>"`` for every import of ``tonewatch.<name>`` (or below it) with ``name`` forbidden."""
    bad = tuple(f"tonewatch.{name}" for name in forbidden)
    imports = sorted(tonewatch_imports(path))
    return [f"{path} imports {name}" for name in imports if any(name == b or name.startswith(b + ".") for b in bad)]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    assert [line for path in files for line in layer_violations_of(path, FORBIDDEN[package])] == []


@pytest.mark.parametrize("name", TOP_LEVEL_LEAVES)
def test_shared_top_level_modules_import_only_the_label_scheme(name):
    assert all(module.startswith("tonewatch.labels") for module in tonewatch_imports(ROOT / name))


def test_the_checker_sees_lazy_imports(tmp_path):
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from tonewatch.data.sources import SOURCES\n    import tonewatch.serve.app\n")
    assert tonewatch_imports(module) == {"tonewatch.data.sources", "tonewatch.serve.app"}
    module.write_text("if True:\n    from tonewatch import training\n")
    assert layer_violations_of(module, ("training",)) == [f"{module} imports tonewatch.training"]


def test_tracking_and_the_server_config_do_not_import_torch():
    script = (
        "import sys, tonewatch.tracking, tonewatch.serve.config, tonewatch.conversations, tonewatch.labelling; "
        "from tonewatch.model import TurnInput, Prediction; "
        "loaded = sorted(name for name in ('torch', 'transformers', 'onnxruntime') if name in sys.modules); "
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
