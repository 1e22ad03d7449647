"""``tonewatch label --engine ray``: the model runs in a pool of Ray actors (``pip install 'tonewatch[ray]'``).

Each actor loads the model once (:meth:`Classifier.from_pretrained`, ONNX Runtime on the default ``auto``
backend) and labels whole batches with :func:`~tonewatch.labelling.archive.label_records`. Everything else
stays in the driver, the process that runs ``tonewatch label``: reading the input, batching it, bad lines,
strict mode and the resumable output of :func:`~tonewatch.labelling.archive.label_file`. The driver forms the
very batches the local engine forms (a record's scores depend, within the int8 path's tolerance, on the
batch it is labelled in), sends each to the least busy actor, keeps a few per actor in flight, and writes
the results in input order as they come back. So the output is the local engine's, byte for byte, and a
run interrupted on one engine can be resumed on the other.

Only the model has to exist on every node (a bundled model is inside the installed package; a model
directory must be at the same path everywhere); the input and output are the driver's files.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tonewatch.labelling.archive import (
    Batch,
    EngineError,
    LabelInputError,
    LabellingEngine,
    MissingExtraError,
    label_records,
)
from tonewatch.model.types import read_model_config, resolve_model_dir
from tonewatch.tracking.policy import EscalationPolicy

IN_FLIGHT_PER_ACTOR = 3
"""Batches queued per actor: one running, the next ones already sent, so no actor waits for the driver."""
ACTOR_MEMORY_BYTES = 2 * 1024**3
"""What an actor with the default model takes at its peak (1.9 GB measured, docs/ray.md): the default number of
actors leaves each that much of the cluster's memory."""


class LabelActor:
    """A Ray actor: one loaded model, labelling the driver's batches."""

    def __init__(self, model: str | None, backend: str | None, threads: int, recipe: str | None):
        from tonewatch.model.classifier import Classifier

        self.classifier = Classifier.from_pretrained(model, backend=backend, threads=threads, recipe=recipe)

    def ready(self) -> dict[str, Any]:
        """Where the actor runs, its backend and its peak memory with the model loaded (Linux: kB)."""
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "backend": self.classifier.backend_name,
            "peak_rss_mb": round(peak_kb / 1024),
        }

    def label(self, kind: str, policy: EscalationPolicy, values: list[dict]) -> list[dict]:
        return label_records(self.classifier, policy, kind, values)


def _worker_model(model: str | Path | None) -> str | None:
    """The model as every node resolves it: a bundled name stays a name (each node's installed package has
    it), a directory becomes an absolute path (the workers' working directory is not the driver's)."""
    if model is None:
        return None
    path = Path(model)
    return str(path.resolve()) if path.exists() else str(model)


def _first_line(error: BaseException) -> str:
    """Ray's errors run to many lines (tracebacks of the worker); the command line says one."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def default_actors(available: dict[str, float], threads: int) -> int:
    """As many actors as the available CPUs hold at ``threads`` each, and the available memory at
    :data:`ACTOR_MEMORY_BYTES` each; at least one."""
    by_cpu = int(available.get("CPU", 0.0) // threads)
    by_memory = int(available.get("memory", float(ACTOR_MEMORY_BYTES)) // ACTOR_MEMORY_BYTES)
    return max(1, min(by_cpu, by_memory))


def _check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """Fail fast on a ``HOST:PORT`` (or ``ray://HOST:PORT``) nobody listens on: ``ray.init`` would retry it for
    minutes."""
    if not address or address == "auto" or ":" not in address:
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise EngineError(f"could not reach the Ray cluster at {address}: {error}") from None


class RayEngine(LabellingEngine):
    """Labels batches in a pool of Ray actors; use as a context manager (or call :meth:`close`).

    ``address``: a running cluster (``auto``, ``HOST:6379`` or ``ray://HOST:10001``), passed to
    ``ray.init``; without it a Ray runtime already started in this process is used, else a local one is
    started (and stopped on close). ``actors``: how many (default: :func:`default_actors`, the available
    CPUs divided by ``threads``, fewer where memory is short); ``threads``: each actor's CPU threads
    (default 1). Ray starts lazily, at the first batch, so bad input fails before it; a bad model directory
    fails here.
    """

    name = "ray"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        backend: str | None = None,
        threads: int | None = None,
        actors: int | None = None,
        address: str | None = None,
        recipe: str | None = None,
        init_options: dict[str, Any] | None = None,
    ):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise MissingExtraError("--engine ray needs Ray: pip install 'tonewatch[ray]'") from None
        if actors is not None and actors < 1:
            raise LabelInputError("the Ray engine needs at least 1 actor")
        if threads is not None and threads < 1:
            raise LabelInputError("threads per actor must be >= 1")
        read_model_config(resolve_model_dir(model))  # not a model: fail before starting anything
        self.model = _worker_model(model)
        self.backend, self.recipe = backend, recipe
        self.threads = threads or 1
        self.requested_actors = actors
        self.address = address
        self.init_options = dict(init_options or {})
        self.actors: list = []
        self.ready_info: list[dict[str, Any]] = []
        self._started_ray = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        """Start (or join) Ray and the actors, each with its model loaded; done once."""
        if self.actors:
            return
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    **self.init_options,
                )
            except (ConnectionError, ValueError, RuntimeError) as error:
                where = self.address or "a new local runtime"
                raise EngineError(f"could not start or reach Ray ({where}): {error}") from None
            self._started_ray = True
        total = ray.cluster_resources().get("CPU", 0.0)
        count = self.requested_actors or default_actors(ray.available_resources(), self.threads)
        if count * self.threads > total:
            raise EngineError(
                f"{count} actors of {self.threads} CPU each need {count * self.threads} CPUs; "
                f"the Ray cluster has {total:g} (ask for fewer with --ray-actors)"
            )
        actor_class = ray.remote(num_cpus=self.threads, max_restarts=2, max_task_retries=2)(LabelActor)
        arguments = (self.model, self.backend, self.threads, self.recipe)
        nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0]
        # One actor per node first, alone on it: a node whose cache lacks the base encoder or the ONNX export
        # builds it once, instead of every actor building its own at the same time.
        first = [
            actor_class.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote(*arguments)
            for node in nodes[:count]
        ]
        self.actors = first
        self.ready_info = self._ready(first)
        rest = [actor_class.remote(*arguments) for _ in range(count - len(first))]
        self.actors = first + rest
        self.ready_info += self._ready(rest)

    def _ready(self, actors: list) -> list[dict[str, Any]]:
        import ray

        try:
            return ray.get([actor.ready.remote() for actor in actors])
        except ray.exceptions.RayActorError as error:
            raise EngineError(f"a Ray actor could not load the model: {_first_line(error)}") from None

    def describe(self) -> str:
        backends = sorted({info["backend"] for info in self.ready_info})
        hosts = len({info["host"] for info in self.ready_info})
        actors = len(self.actors)
        return f"on {actors} Ray actor{'s' * (actors != 1)} ({', '.join(backends)}) on {hosts} node{'s' * (hosts != 1)}"

    def label_batches(
        self, kind: str, policy: EscalationPolicy, batches: Iterator[Batch]
    ) -> Iterator[tuple[Batch, list[dict]]]:
        import ray

        self.start()
        policy_ref = ray.put(policy)
        load = [0] * len(self.actors)
        pending: deque[tuple[Batch, Any, int]] = deque()

        def oldest() -> tuple[Batch, list[dict]]:
            batch, reference, slot = pending.popleft()
            if reference is None:
                return batch, []
            try:
                labelled = ray.get(reference)
            except ray.exceptions.RayActorError as error:
                raise EngineError(
                    f"a Ray actor was lost ({_first_line(error)}); what is written so far is kept: rerun with --resume"
                ) from None
            load[slot] -= 1
            return batch, labelled

        try:
            for batch in batches:
                while len(pending) >= IN_FLIGHT_PER_ACTOR * len(self.actors):
                    yield oldest()
                values = [record.value for record in batch if record.error is None]
                if not values:  # unreadable records only: nothing for the model, but their place in the order
                    pending.append((batch, None, -1))
                    continue
                slot = min(range(len(load)), key=load.__getitem__)
                pending.append((batch, self.actors[slot].label.remote(kind, policy_ref, values), slot))
                load[slot] += 1
        except LabelInputError:
            # strict mode stopped at a bad record: write the batches before it, as the local engine has
            while pending:
                yield oldest()
            raise
        while pending:
            yield oldest()

    def close(self) -> None:
        """Stop the actors, and Ray if this engine started it."""
        if not (self.actors or self._started_ray):
            return
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
