"""`tonewatch label` against the backend's batch throughput, with and without the local engine's pipeline.

    python benchmarks/label_pipeline.py [--repeats 4] [--threads 2] [--input CONVERSATIONS.jsonl]

In one process, one loaded model: the batch (``classify`` of every customer turn of the input, calls of 64, as
``benchmarks/speed.py`` times it), ``label_file`` with the pipelined local engine, and ``label_file`` one batch
at a time, alternately ``--repeats`` times, so that all three see the same load on a busy machine. Prints each
round and the medians: turns per second (wall) and CPU seconds of the process per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

MODES = ("batch", "label_pipelined", "label_one_at_a_time")


def main() -> None:
    from tonewatch.conversations import read_conversations
    from tonewatch.data.sources.callcenter import PACKAGE_DATA
    from tonewatch.labelling import label_file
    from tonewatch.labelling.archive import LocalEngine
    from tonewatch.model.classifier import Classifier
    from tonewatch.model.types import conversation_turn_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=PACKAGE_DATA / "callcenter_dev" / "dialogues.jsonl")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    turns = [turn for c in read_conversations(arguments.input) for turn in conversation_turn_inputs(c)]
    classifier = Classifier.from_pretrained(threads=arguments.threads)
    classifier.classify(turns[:64])  # warm-up
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "labelled.jsonl"
        for _ in range(arguments.repeats):
            for mode in MODES:
                begun, cpu_begun = time.perf_counter(), time.process_time()
                if mode == "batch":
                    classifier.classify(turns, batch_size=64)
                else:
                    output.unlink(missing_ok=True)
                    engine = LocalEngine(classifier, pipeline=mode == "label_pipelined")
                    label_file(engine, arguments.input, output, progress=False)
                rates[mode].append(len(turns) / (time.perf_counter() - begun))
                cpu[mode].append(time.process_time() - cpu_begun)
            print(json.dumps({mode: round(values[-1], 1) for mode, values in rates.items()}), flush=True)
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    summary = {
        "turns": len(turns),
        "turns_per_s": {mode: round(value, 1) for mode, value in medians.items()},
        "vs_batch": {mode: round(value / medians["batch"], 3) for mode, value in medians.items()},
        "cpu_s": {mode: round(statistics.median(values), 2) for mode, values in cpu.items()},
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
