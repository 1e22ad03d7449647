"""Fixtures of the server tests: a scripted classifier, the tiny real model, a fake clock, API keys."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import pytest

from tonewatch.labels import EMOTION_LABELS
from tonewatch.model.inputs import InputLimits
from tonewatch.model.types import Calibration, ModelConfig, Prediction, TurnInput

SCRIPT_PATTERN = re.compile(r"\[(calm|frustrated|angry|abusive) ([01](?:\.\d+)?)\]")

EVENT_TIMEOUT_S = 10.0
"""How long a test waits for something that should happen at once (a bound on a hang, never a measured duration)."""


def scripted_prediction(label: str, escalate_score: float, threshold: float = 0.5) -> Prediction:
    """A prediction with ``label`` on top (probability 0.7) and the given escalation score."""
    rest = 0.3 / (len(EMOTION_LABELS) - 1)
    scores = {name: (0.7 if name == label else rest) for name in EMOTION_LABELS}
    return Prediction(label, scores, escalate_score >= threshold, escalate_score)


class ScriptedClassifier:
    """A stand-in for :class:`Classifier`: the label and score come from the text.

    A text holding ``[angry 0.8]`` is ``angry`` with escalation score 0.8; ``script`` maps whole
    texts to ``(label, score)``; anything else is ``calm`` with 0.05. Counts model calls and
    records every input, so tests can check batching and the context the tracker sends.
    With a ``gate``, every call waits until the test opens it: a slow model whose pace the test sets.
    """

    backend_name = "scripted"
    signal_names: tuple[str, ...] = ()

    def __init__(self, script: dict[str, tuple[str, float]] | None = None, gate: threading.Event | None = None):
        self.script = dict(script or {})
        self.gate = gate
        self.config = ModelConfig(
            base_model="scripted",
            num_hidden_layers=1,
            hidden_size=8,
            limits=InputLimits(max_length=64, max_turn_tokens=32, max_context_turns=3),
            calibration=Calibration(escalation_threshold=0.5, escalation_thresholds={"zh": 0.6}),
            name="scripted",
            version="test",
        )
        self.calls: list[list[TurnInput]] = []
        self._called = threading.Condition()

    def classify(self, items: Sequence[TurnInput | str], batch_size: int = 64) -> list[Prediction]:
        turns = [item if isinstance(item, TurnInput) else TurnInput(item) for item in items]
        with self._called:
            self.calls.append(turns)
            self._called.notify_all()
        if self.gate is not None and not self.gate.wait(EVENT_TIMEOUT_S):
            raise TimeoutError("the test never opened the gate")
        predictions = []
        for turn in turns:
            label, score = self.script.get(turn.text, ("calm", 0.05))
            match = SCRIPT_PATTERN.search(turn.text)
            if match:
                label, score = match.group(1), float(match.group(2))
            predictions.append(scripted_prediction(label, score, self.config.calibration.threshold(turn.lang)))
        return predictions

    def window_count(self, item: TurnInput | str) -> int:
        """What a turn costs a batch: one row (the server's batcher asks)."""
        return 1

    def wait_for_calls(self, count: int) -> bool:
        """Whether ``count`` model calls have started, waiting for them up to :data:`EVENT_TIMEOUT_S`."""
        with self._called:
            return self._called.wait_for(lambda: len(self.calls) >= count, EVENT_TIMEOUT_S)


class FakeClock:
    """Monotonic seconds that move only when a test says so. Safe to read from other threads, and a test can
    wait until the code under test has read it (that is, has reached the point where it looks at the time)."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.reads = 0
        self._read = threading.Condition()

    def __call__(self) -> float:
        with self._read:
            self.reads += 1
            self._read.notify_all()
            return self.now

    def advance(self, seconds: float) -> None:
        with self._read:
            self.now += seconds

    def wait_for_reads(self, count: int) -> bool:
        """Whether the clock has been read ``count`` times in all, waiting up to :data:`EVENT_TIMEOUT_S`."""
        with self._read:
            return self._read.wait_for(lambda: self.reads >= count, EVENT_TIMEOUT_S)


@pytest.fixture
def scripted() -> ScriptedClassifier:
    return ScriptedClassifier()


@pytest.fixture
def make_scripted():
    """``make_scripted(script=None, gate=None)``: a :class:`ScriptedClassifier` of one's own."""
    return ScriptedClassifier


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def event_timeout() -> float:
    """:data:`EVENT_TIMEOUT_S`, for tests that wait on a future or an event of their own."""
    return EVENT_TIMEOUT_S


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_dir):
    """The tiny random model on PyTorch (exact scores whatever the batch), loaded once for the whole session."""
    from tonewatch.model.classifier import Classifier

    return Classifier.from_pretrained(tiny_model_dir, backend="torch")


class LiveServer:
    """A real uvicorn server for an app, in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, app):
        import socket

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10)
        self._settled = threading.Event()  # set once the server has started, or has failed to
        settled = self._settled

        from tonewatch.serve.app import StoppingServer

        class Server(StoppingServer):
            async def startup(self, sockets=None) -> None:
                try:
                    await super().startup(sockets=sockets)
                finally:
                    settled.set()

        self.server = Server(config)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self._socket])
        finally:
            self._settled.set()

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._settled.wait(20) or not self.server.started:
            raise RuntimeError("the test server did not start")
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._socket.close()


@pytest.fixture
def live_server():
    """``with live_server(app) as server: server.url``: the app served by uvicorn on loopback."""
    return LiveServer


class RedisServer:
    """A real ``redis-server`` on loopback and a free port, with its append-only file in ``directory`` (fsynced on
    every write), so that it can be killed and started again without losing what it acknowledged."""

    def __init__(self, directory):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = directory
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import subprocess

        import redis

        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory)]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--loglevel", "warning"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        # Waits for the server to answer (an event), bounded so that a broken install fails rather than hangs.
        for _ in range(int(EVENT_TIMEOUT_S / 0.05)):
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}") from None
                threading.Event().wait(0.05)
        raise RuntimeError("redis-server did not answer")

    def kill(self) -> None:
        """SIGKILL: Redis gets no chance to save anything more than it already has."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path):
    """A fresh ``redis-server`` for one test (killed after it); skipped without Debian's redis-server, except in
    CI, where .ci/run installs it and its absence is a failure."""
    import os
    import shutil

    if shutil.which("redis-server") is None:
        message = "Debian's redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("redis", reason="the redis package is not installed (pip install -e '.[serve]')")
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.kill()
