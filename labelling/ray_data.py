"""The Ray engine's dataset: the input read by a Ray Data read task, labelled by a pool of Ray Data actors.

One row of the dataset is one model batch, as :func:`~tonewatch.labelling.archive.input_batches` cuts it:

- :class:`ArchiveDatasource` reads the input with the local engine's own code (``read_records``, then the
  batches of ``input_batches``) in one read task, and yields each batch as a row of its own (``seq``, its
  position; ``batch``, its records);
- :class:`LabelBatches`, a callable class run by ``map_batches`` in an actor pool, holds one loaded model
  and labels each row's batch with ``label_records``;
- the driver iterates the rows in order and writes them (:func:`~tonewatch.labelling.archive.label_file`).

Ray Data's own readers do not fit: ``read_json`` types every field by Arrow's inference (a record gains the
other records' keys as nulls, an integer column becomes float beside a float), ``read_text`` numbers no lines,
and both cut the input into blocks whose sizes, not the local engine's turn counts, would set the model
batches. A record's scores depend (within the fp32 graph's tolerance, which the written six decimals do not
always hide) on the batch it is labelled in, so the batches are cut by the local engine's code, and each
travels as one row, which Ray Data never splits; ``map_batches`` takes one row a call. The dataset's
``target_max_block_size`` of one byte keeps each row in a block of its own, so that the rows spread over the
actors as they are read (Ray Data would otherwise buffer them into blocks of up to 128 MiB, one actor's work).
"""

from __future__ import annotations

import functools
import os
import pickle
import resource
import socket
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, Dataset, Datasource, ReadTask
from ray.data.block import BlockMetadata

from tonewatch.labelling.archive import InputPlan, LabelInputError, input_batches, label_records
from tonewatch.tracking.policy import EscalationPolicy

READ_SCHEMA = pa.schema([("seq", pa.int64()), ("batch", pa.binary()), ("stop", pa.string())])
"""A read row: the batch's position, its records pickled (Ray's own serialisation: Parquet cells may be dates,
decimals or bytes, which JSON would not give back), or ``stop``: the strict-mode error that ends the input."""
LABELLED_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("batch", pa.binary()),
        ("stop", pa.string()),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("backend", pa.string()),
        ("peak_rss_mb", pa.int64()),
        ("actor_batches_before", pa.int64()),
    ]
)
"""A labelled row: ``batch`` pickles the batch's records (without their values) and its labelled records; the
rest says which actor labelled it and how many batches that actor had labelled before."""


def _read_row(seq: int, batch: bytes | None, stop: str | None) -> pa.Table:
    return pa.Table.from_pylist([{"seq": seq, "batch": batch, "stop": stop}], schema=READ_SCHEMA)


def read_batches(plan: InputPlan) -> Iterator[pa.Table]:
    """The read task: one single-row block per model batch, in input order."""
    seq = 0
    try:
        for batch in input_batches(plan):
            yield _read_row(seq, pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL), None)
            seq += 1
    except LabelInputError as error:
        # strict mode: the batches before the bad record are labelled and written, then the run stops, as on
        # the local engine; raised here, the error would fail the dataset before they are
        yield _read_row(seq, None, str(error))


class ArchiveDatasource(Datasource):
    """One read task over ``plan``'s input. ``on_driver_node``: the task runs on the driver's node (Ray Data's
    rule for ``local://`` paths), so the input only has to exist there; else on any node, which must all read
    it at the same path (a shared file system)."""

    def __init__(self, plan: InputPlan, on_driver_node: bool):
        super().__init__()
        self.plan = plan
        self.on_driver_node = on_driver_node

    @property
    def supports_distributed_reads(self) -> bool:
        return not self.on_driver_node

    def get_name(self) -> str:
        return "ReadArchive"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None):
        # One task: batches are cut by counting turns from the first record on, a sequential scan.
        metadata = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=[str(self.plan.source)])
        return [
            ReadTask(
                functools.partial(read_batches, self.plan),
                metadata,
                schema=READ_SCHEMA,
                per_task_row_limit=per_task_row_limit,
            )
        ]


class LabelBatches:
    """A Ray Data actor: one loaded model (ONNX Runtime on the default ``auto`` backend), labelling the rows'
    batches exactly as the local engine labels them."""

    def __init__(
        self,
        model: str | None,
        backend: str | None,
        threads: int,
        recipe: str | None,
        kind: str,
        policy: EscalationPolicy,
    ):
        from tonewatch.model.classifier import Classifier

        self.classifier = Classifier.from_pretrained(model, backend=backend, threads=threads, recipe=recipe)
        self.kind, self.policy = kind, policy
        self.batches_labelled = 0

    def __call__(self, rows: pa.Table) -> pa.Table:
        labelled_rows = []
        for row in rows.to_pylist():
            payload = None
            if row["stop"] is None:
                batch = pickle.loads(row["batch"])
                values = [record.value for record in batch if record.error is None]
                labelled = label_records(self.classifier, self.policy, self.kind, values) if values else []
                # the driver needs each record's place and problems; its value is in `labelled` already
                places = [replace(record, value=None) for record in batch]
                payload = pickle.dumps((places, labelled), protocol=pickle.HIGHEST_PROTOCOL)
            labelled_rows.append({**row, "batch": payload, **self._whoami()})
            self.batches_labelled += 1
        return pa.Table.from_pylist(labelled_rows, schema=LABELLED_SCHEMA)

    def _whoami(self) -> dict[str, Any]:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: kB
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "backend": self.classifier.backend_name,
            "peak_rss_mb": round(peak_kb / 1024),
            "actor_batches_before": self.batches_labelled,
        }


def labelled_dataset(
    plan: InputPlan,
    policy: EscalationPolicy,
    *,
    model: str | None,
    backend: str | None,
    threads: int,
    recipe: str | None,
    actors: int,
    on_driver_node: bool,
    max_restarts: int,
) -> Dataset:
    """The input read, batched and labelled, one row per batch, in input order (``preserve_order``)."""
    dataset = ray.data.read_datasource(
        ArchiveDatasource(plan, on_driver_node),
        # No CPU reserved: the actors take every CPU by default, and the read task, mostly parsing JSON, is
        # far lighter than the model (the driver read the input with none before). A CPU count unlike the
        # actors' also keeps Ray Data from fusing the read into the actors, which would run it all in one.
        num_cpus=0,
        override_num_blocks=1,  # else Ray Data splits the one task's blocks to reach its default parallelism
    )
    context = dataset.context  # this dataset's own copy of the DataContext, shared by those derived from it
    context.execution_options.preserve_order = True
    context.target_max_block_size = 1  # every block one row: one model batch per block, sent on as soon as read
    context.enable_progress_bars = False  # the command line has its own, in records
    context.print_on_execution_start = False
    with warnings.catch_warnings():
        # Ray 2.60 deprecates remote arguments passed as keywords, but has no named parameter for these yet
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", category=DeprecationWarning)
        return dataset.map_batches(
            LabelBatches,
            batch_size=1,
            batch_format="pyarrow",
            fn_constructor_kwargs={
                "model": model,
                "backend": backend,
                "threads": threads,
                "recipe": recipe,
                "kind": plan.kind,
                "policy": policy,
            },
            compute=ActorPoolStrategy(size=actors),
            num_cpus=threads,
            # labelling is a pure function of the batch: a lost actor is restarted and its batches labelled
            # again; Ray Data's default restarts forever, which a batch that kills its actor would never end
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
        )


def labelled_rows(dataset: Dataset) -> Iterator[dict[str, Any]]:
    """The dataset's rows, in order, each block as it comes."""
    for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield from block.to_pylist()
