"""Single-turn latency and batch throughput of a tonewatch model on this machine.

    python benchmarks/latency.py [--model DIR] [--threads 2] [--turns 300]

Feeds the customer turns of callcenter_dev (with their conversation context,
as the live service and `tonewatch label` do) one at a time, timing the model
call only (tokenisation + forward + calibration; loading excluded), then in
batches of 64. Prints p50/p90/p99 latency, throughput and the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _machine import machine, percentile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model directory (default: the shipped model).")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    parser.add_argument("--turns", type=int, default=300, help="Turns timed one at a time.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    arguments = parser.parse_args()

    import torch

    torch.set_num_threads(arguments.threads)
    from tonewatch.data.conversations import read_conversations
    from tonewatch.data.sources.callcenter import PACKAGE_DATA
    from tonewatch.model.classifier import Classifier, conversation_turn_inputs

    classifier = Classifier.from_pretrained(arguments.model)
    conversations = read_conversations(PACKAGE_DATA / "callcenter_dev" / "dialogues.jsonl")
    turns = [turn for conversation in conversations for turn in conversation_turn_inputs(conversation)]
    timed = turns[: arguments.turns]
    for turn in timed[:10]:  # warm-up
        classifier.classify([turn])
    latencies = []
    for turn in timed:
        started = time.perf_counter()
        classifier.classify([turn])
        latencies.append((time.perf_counter() - started) * 1000)
    tokens = [len(classifier.encode(turn).input_ids) for turn in timed]
    started = time.perf_counter()
    classifier.classify(turns, batch_size=64)
    batch_seconds = time.perf_counter() - started
    result = {
        "machine": machine(),
        "threads": arguments.threads,
        "model": str(classifier.model_dir),
        "layers": classifier.config.num_hidden_layers,
        "turns_timed": len(latencies),
        "median_input_tokens": statistics.median(tokens),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p90": round(percentile(latencies, 90), 2),
            "p99": round(percentile(latencies, 99), 2),
        },
        "batch64_turns_per_second": round(len(turns) / batch_seconds, 1),
    }
    if arguments.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"machine: {result['machine']} ({arguments.threads} torch threads)")
        print(
            f"model: {result['model']} ({result['layers']} layers), median input {result['median_input_tokens']} tokens"
        )
        latency = result["latency_ms"]
        print(f"single turn (load excluded): p50 {latency['p50']} ms, p90 {latency['p90']} ms, p99 {latency['p99']} ms")
        print(f"batches of 64: {result['batch64_turns_per_second']} turns/s over {len(turns)} turns")


if __name__ == "__main__":
    main()
