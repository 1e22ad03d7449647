"""The distribution installs the code folders as tonewatch.* subpackages and nothing bare."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: builds with the installed setuptools, offline.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (wheel,) = out.glob("tonewatch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_holds_only_the_tonewatch_package(wheel_names):
    top_levels = {name.split("/")[0] for name in wheel_names}
    assert top_levels == {"tonewatch", next(t for t in top_levels if t.endswith(".dist-info"))}
    for package in ("model", "training", "data", "tracking", "labelling", "serve"):
        assert f"tonewatch/{package}/__init__.py" in wheel_names
    for module in ("cli.py", "labels.py", "conversations.py"):
        assert f"tonewatch/{module}" in wheel_names
    assert not any(name.startswith(("tonewatch/tests/", "tonewatch/.venv/")) for name in wheel_names)


def test_wheel_ships_the_in_domain_data_and_the_console_script(wheel_names):
    assert "tonewatch/data/callcenter_dev/dialogues.jsonl" in wheel_names
    assert "tonewatch/data/callcenter_train/zh.jsonl" in wheel_names
    assert "tonewatch/data/callcenter_train/ru-escalation-triggers.jsonl" in wheel_names  # every *.jsonl ships
    assert "tonewatch/data/probes/escalation_triggers.jsonl" in wheel_names  # read by `tonewatch evaluate`
    assert "tonewatch/serve/static/index.html" in wheel_names
    assert "tonewatch/serve/routes/__init__.py" in wheel_names  # the server's routers, a subpackage
    for bundled in ("default", "fast"):  # the shipped models, loadable by name without the repository
        assert f"tonewatch/model/{bundled}/model.safetensors" in wheel_names
        assert f"tonewatch/model/{bundled}/config.json" in wheel_names
        assert f"tonewatch/model/{bundled}/card.toml" in wheel_names  # its card's hand-written notes
    assert "tonewatch/model/default/signal_ngrams.safetensors" in wheel_names  # its turn-signal reader
    entry_points = next(name for name in wheel_names if name.endswith("entry_points.txt"))
    assert entry_points


def test_installed_subpackages_resolve_inside_tonewatch():
    import tonewatch.data
    import tonewatch.labelling
    import tonewatch.model
    import tonewatch.serve
    import tonewatch.tracking
    import tonewatch.training

    for module in (
        tonewatch.data,
        tonewatch.training,
        tonewatch.model,
        tonewatch.tracking,
        tonewatch.labelling,
        tonewatch.serve,
    ):
        assert Path(module.__file__).parent.parent == Path(tonewatch.__file__).parent
    assert "model" not in sys.modules and "data" not in sys.modules
