"""``tonewatch label --engine ray``: the input read with Ray Data, the model run in a pool of Ray Data actors
(``pip install 'tonewatch[ray]'``).

The dataset (:mod:`tonewatch.labelling.ray_data`) has one row per model batch. A Ray Data read task reads the
input with the local engine's own code and cuts it into the very batches the local engine cuts (a record's
scores depend, within the fp32 graph's tolerance, on the batch it is labelled in); ``map_batches`` sends each
batch to an actor of an ``ActorPoolStrategy`` pool, each actor holding one loaded model
(:meth:`Classifier.from_pretrained`, ONNX Runtime on the default ``auto`` backend) and labelling the batch with
:func:`~tonewatch.labelling.archive.label_records`; ``preserve_order`` brings the labelled batches back to the
driver, the process that runs ``tonewatch label``, in input order, and the driver writes them with
:func:`~tonewatch.labelling.archive.label_file`'s resumable output. So the output is the local engine's, byte
for byte, and a run interrupted on one engine can be resumed on the other.

The read task runs on the driver's node (the input is the driver's file, as for the local engine), or, through
Ray Client (``ray://``), on a node of the cluster, which then needs the input at the same path. Only the model
has to exist on every node (a bundled model is inside the installed package; a model directory must be at the
same path everywhere); the output is the driver's file.
"""

from __future__ import annotations

import logging
import pickle
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from tonewatch.labelling.archive import (
    Batch,
    EngineError,
    InputPlan,
    LabelInputError,
    LabellingEngine,
    MissingExtraError,
)
from tonewatch.model.types import read_model_config, resolve_model_dir
from tonewatch.tracking.policy import EscalationPolicy

ACTOR_MEMORY_BYTES = 2 * 1024**3
"""What an actor with the default model takes at its peak (1.9 GB measured, docs/ray.md): the default number of
actors leaves each that much of the cluster's memory."""
ACTOR_RESTARTS = 2
"""How often a lost actor is restarted (and its batches retried) before the run stops."""


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


def _quiet_ray_data() -> None:
    """Ray Data's logging at the level ``ray.init`` is given for Ray's: its line per finished dataset and its
    notice that its progress bars are off (the command line shows its own) are not for the command line."""
    from ray.util.debug import log_once

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    log_once("ray_data_progress_manager_disabled")  # marks the notice as given


class RayEngine(LabellingEngine):
    """Reads and labels the input with Ray Data; use as a context manager (or call :meth:`close`).

    ``address``: a running cluster (``auto``, ``HOST:6379`` or ``ray://HOST:10001``), passed to
    ``ray.init``; without it a Ray runtime already started in this process is used, else a local one is
    started (and stopped on close). ``actors``: how many (default: :func:`default_actors`, the available
    CPUs divided by ``threads``, fewer where memory is short); ``threads``: each actor's CPU threads
    (default 1). Ray starts lazily, when labelling starts, so bad input fails before it; a bad model
    directory fails here. Each labelling run (each :func:`label_file`) starts its own pool of actors.
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
        self.actor_count = 0
        self.labelled_by: dict[int, dict[str, Any]] = {}
        """The actors that labelled batches of the last run, by process id: host, backend, peak RSS (MB), how
        many batches, and for each the count of batches its actor had labelled before it."""
        self._started_ray = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        """Start (or join) Ray and size the pool of actors; done once."""
        if self.actor_count:
            return
        import ray

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
            _quiet_ray_data()
        total = ray.cluster_resources().get("CPU", 0.0)
        count = self.requested_actors or default_actors(ray.available_resources(), self.threads)
        if count * self.threads > total:
            raise EngineError(
                f"{count} actors of {self.threads} CPU each need {count * self.threads} CPUs; "
                f"the Ray cluster has {total:g} (ask for fewer with --ray-actors)"
            )
        self.actor_count = count

    def describe(self) -> str:
        actors = self.actor_count
        words = f"on {actors} Ray actor{'s' * (actors != 1)}"
        if not self.labelled_by:
            return words
        backends = sorted({info["backend"] for info in self.labelled_by.values()})
        hosts = len({info["host"] for info in self.labelled_by.values()})
        return f"{words} ({', '.join(backends)}) on {hosts} node{'s' * (hosts != 1)}"

    def label_input(self, plan: InputPlan, policy: EscalationPolicy) -> Iterator[tuple[Batch, list[dict]]]:
        import ray
        import ray.util.client

        from tonewatch.labelling.ray_data import labelled_dataset, labelled_rows

        self.start()
        self.labelled_by = {}
        # the read task's working directory is not this process's
        plan = replace(plan, source=plan.source.absolute(), shown_as=plan.shown_as or str(plan.source))
        dataset = labelled_dataset(
            plan,
            policy,
            model=self.model,
            backend=self.backend,
            threads=self.threads,
            recipe=self.recipe,
            actors=self.actor_count,
            # through Ray Client the driver is not a node of the cluster: the read runs on one that is
            on_driver_node=not ray.util.client.ray.is_connected(),
            max_restarts=ACTOR_RESTARTS,
        )
        rows = labelled_rows(dataset)
        expected = 0
        try:
            while True:
                try:
                    row = next(rows, None)
                except ray.exceptions.RayError as error:
                    raise EngineError(
                        f"Ray lost or failed a task ({_first_line(error)}); what is written so far is kept: "
                        "rerun with --resume"
                    ) from None
                if row is None:
                    return
                if row["seq"] != expected:  # preserve_order's promise, checked: no batch is written out of place
                    raise EngineError(f"Ray Data returned batch {row['seq']} where batch {expected} belongs")
                expected += 1
                self._note(row)
                if row["stop"] is not None:
                    raise LabelInputError(row["stop"])
                batch, labelled = pickle.loads(row["batch"])
                yield batch, labelled
        finally:
            rows.close()  # an interrupted run stops the dataset's execution: its actors go, its reading stops

    def _note(self, row: dict[str, Any]) -> None:
        info = self.labelled_by.setdefault(row["pid"], {"batches": 0, "actor_counts": []})
        info.update(host=row["host"], backend=row["backend"], peak_rss_mb=row["peak_rss_mb"])
        info["batches"] += 1
        info["actor_counts"].append(row["actor_batches_before"])

    def close(self) -> None:
        """Stop Ray if this engine started it."""
        self.actor_count = 0
        if not self._started_ray:
            return
        import ray

        ray.shutdown()
        self._started_ray = False
