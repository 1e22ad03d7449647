"""The server loads no training code (STYLE.md: data -> training -> model <- serve)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import tonewatch.serve
from tonewatch.model import Classifier
from tonewatch.serve.app import create_app
from tonewatch.serve.config import ServeConfig
from fastapi.testclient import TestClient

after_import = sorted(name for name in sys.modules if name.startswith("tonewatch.training"))
classifier = Classifier.from_pretrained(sys.argv[1])
with TestClient(create_app(ServeConfig(), classifier=classifier), base_url='http://localhost') as client:
    turn = client.post("/v1/conversations/c/turns", json={"speaker": "customer", "text": "опять!!!"})
    assert turn.status_code == 200, turn.text
print(json.dumps({
    "after_import": after_import,
    "after_serving": sorted(name for name in sys.modules if name.startswith("tonewatch.training")),
    "serve_loaded": "tonewatch.serve.app" in sys.modules,
}))
"""


def test_importing_and_running_the_server_does_not_import_training(tiny_model_dir):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model_dir)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["serve_loaded"]
    assert report["after_import"] == [] and report["after_serving"] == []


def test_importing_tonewatch_serve_builds_nothing():
    # No app, no config, no model at import time: the package import is cheap and side-effect free.
    script = "import sys, tonewatch.serve; print('torch' in sys.modules, 'fastapi' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"]
