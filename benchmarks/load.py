"""Load test of the live service: a fixed request rate on many concurrent conversations, over loopback.

    python benchmarks/load.py [--model DIR] [--rate 50] [--duration 60] [--conversations 200] [--backend auto] [--json]

Starts its own server (``tonewatch.serve.app.run_server``) in a subprocess on
127.0.0.1 and a free port, waits until it is ready, then sends turns of the
callcenter_dev conversations (customer and agent, in order, each replayed
conversation under a fresh id, ended with DELETE when its turns run out) at a
fixed rate, open loop: request *i* is due at ``i / rate`` seconds whatever the
earlier ones are doing. Latency is measured from when a request was due, so a
slow client or server cannot hide its queueing. Reports p50/p90/p99/max
latency, throughput, errors by kind, alerts raised and the server's mean model
batch size, then stops the server.

Bounded: loopback only (no option to target another host), at most
``--max-requests`` requests and ``--duration`` <= 600 s, at most
``--max-in-flight`` requests open at once (a request beyond that is counted as
an error, not queued), each with a timeout.

    python benchmarks/load.py --bulk 0,1,8 [--live-probes 5] [--model DIR] [--json]

instead measures what bulk work does to live turns: for each number N in
``--bulk``, it sends N concurrent ``/v1/classify`` requests of 256 texts (the
first 256 customer turns of callcenter_dev, without context), and while they
run, ``--live-probes`` live turns one after another (each the first customer
turn of a fresh conversation), and reports each live turn's latency and how
long the bulk requests took. N = 0 is a live turn alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

from _machine import machine, percentile

HOST = "127.0.0.1"  # loopback only, by design

SERVER_SCRIPT = """
import sys
from tonewatch.serve.app import run_server
from tonewatch.serve.config import ServeConfig

model_dir, port, threads, wait_ms = sys.argv[1] or None, int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
run_server(ServeConfig(model_dir=model_dir, host="127.0.0.1", port=port, torch_threads=threads,
                       batch_max_wait_ms=wait_ms, log_level="warning", idle_timeout_s=600, backend=sys.argv[5]))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def load_conversations() -> list[list[dict]]:
    """The turns of every callcenter_dev conversation, with the conversation's language on each."""
    from tonewatch.conversations import read_conversations
    from tonewatch.data.sources.callcenter import PACKAGE_DATA

    conversations = read_conversations(PACKAGE_DATA / "callcenter_dev" / "dialogues.jsonl")
    return [
        [
            {"speaker": turn["speaker"], "text": turn["text"], "lang": conversation.get("lang")}
            for turn in conversation["turns"]
        ]
        for conversation in conversations
    ]


class Workload:
    """Which request comes next: ``concurrent`` live conversations, each replaying a dev conversation."""

    def __init__(self, conversations: list[list[dict]], concurrent: int):
        self.conversations = conversations
        self.started = 0
        self.live = [self._new() for _ in range(concurrent)]
        self.position = 0

    def _new(self) -> dict:
        turns = self.conversations[self.started % len(self.conversations)]
        self.started += 1
        return {"id": f"load-{self.started}", "turns": turns, "next": 0, "queue": f"q{self.started % 4}"}

    def next_request(self) -> tuple[str, str, dict | None]:
        """``(method, path, json)`` of the next request, round-robin over the live conversations."""
        slot = self.position % len(self.live)
        self.position += 1
        conversation = self.live[slot]
        if conversation["next"] >= len(conversation["turns"]):
            self.live[slot] = self._new()
            return "DELETE", f"/v1/conversations/{conversation['id']}", None
        turn = conversation["turns"][conversation["next"]]
        conversation["next"] += 1
        body = {"speaker": turn["speaker"], "text": turn["text"], "queue": conversation["queue"]}
        if turn["lang"]:
            body["lang"] = turn["lang"]
        return "POST", f"/v1/conversations/{conversation['id']}/turns", body


def start_server(
    model: str | None, port: int, threads: int, wait_ms: float, ready_timeout: float, log, backend: str = "auto"
):
    """The server subprocess, once ``/readyz`` answers; its output goes to ``log`` (a file, not a pipe nobody
    reads, which would fill up and block it)."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, model or "", str(port), str(threads), str(wait_ms), backend],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    import httpx

    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited with {server.returncode}:\n{log.read()[-3000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise SystemExit(f"the server was not ready within {ready_timeout} s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


async def drive(base_url: str, arguments: argparse.Namespace) -> dict:
    """Send the requests on schedule and collect latencies and errors."""
    import httpx

    total = min(arguments.max_requests, int(arguments.rate * arguments.duration))
    workload = Workload(load_conversations(), arguments.conversations)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    alerts = 0
    in_flight = 0
    limits = httpx.Limits(max_connections=arguments.max_in_flight, max_keepalive_connections=arguments.max_in_flight)
    timeout = httpx.Timeout(arguments.timeout)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:

        async def send(method: str, path: str, body: dict | None, due: float) -> None:
            nonlocal alerts, in_flight
            in_flight += 1
            try:
                response = await client.request(method, path, json=body)
                latencies.append((time.perf_counter() - due) * 1000)
                statuses[response.status_code] += 1
                if response.status_code >= 400:
                    errors[f"HTTP {response.status_code}"] += 1
                elif method == "POST" and response.json().get("alert"):
                    alerts += 1
            except httpx.HTTPError as error:
                errors[type(error).__name__] += 1
            finally:
                in_flight -= 1

        tasks = []
        started = time.perf_counter()
        for number in range(total):
            due = started + number / arguments.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= arguments.max_in_flight:
                errors["client over max in-flight"] += 1
                continue
            method, path, body = workload.next_request()
            tasks.append(asyncio.create_task(send(method, path, body, due)))
        _, pending = await asyncio.wait(tasks, timeout=arguments.timeout + 10) if tasks else (set(), set())
        for task in pending:  # cannot happen with per-request timeouts, but the run stays bounded regardless
            task.cancel()
            errors["unfinished at the end"] += 1
        elapsed = time.perf_counter() - started
        metrics = (await client.get("/metrics")).text

    return {
        "requests": total,
        "completed": len(latencies),
        "elapsed_s": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "alerts_raised": alerts,
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "p90": round(percentile(latencies, 90), 1) if latencies else None,
            "p99": round(percentile(latencies, 99), 1) if latencies else None,
            "max": round(max(latencies), 1) if latencies else None,
        },
        "mean_model_batch_turns": mean_batch(metrics),
    }


BULK_TEXTS = 256
"""Texts per bulk request: the server's default ``max_items``."""


async def live_behind_bulk(base_url: str, arguments: argparse.Namespace) -> list[dict]:
    """Per number of concurrent bulk requests: the latencies of live turns sent while they run."""
    import httpx

    conversations = load_conversations()
    customer_turns = [turn for turns in conversations for turn in turns if turn["speaker"] == "customer"]
    texts = [turn["text"] for turn in customer_turns[:BULK_TEXTS]]
    probes = [next(turn for turn in turns if turn["speaker"] == "customer") for turns in conversations]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    results = []
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(arguments.timeout)) as client:

        async def bulk_request() -> float:
            started = time.perf_counter()
            response = await client.post("/v1/classify", json={"texts": texts}, timeout=arguments.bulk_timeout)
            response.raise_for_status()
            return time.perf_counter() - started

        probe_number = 0
        for count in arguments.bulk:
            bulk = [asyncio.create_task(bulk_request()) for _ in range(count)]
            if bulk:
                await asyncio.sleep(arguments.bulk_head_start)  # the bulk requests are parsed and queued first
            latencies = []
            for _ in range(arguments.live_probes):
                turn = probes[probe_number % len(probes)]
                probe_number += 1
                body = {"speaker": "customer", "text": turn["text"], **({"lang": turn["lang"]} if turn["lang"] else {})}
                started = time.perf_counter()
                # As long as the bulk requests may take: the point is how long a live turn waits, however long.
                response = await client.post(
                    f"/v1/conversations/probe-{probe_number}/turns", json=body, timeout=arguments.bulk_timeout
                )
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            in_flight_after = sum(not task.done() for task in bulk)
            bulk_seconds = await asyncio.gather(*bulk)
            results.append(
                {
                    "bulk_requests": count,
                    "bulk_texts_each": len(texts) if count else 0,
                    "live_turns": len(latencies),
                    "live_ms": {
                        "p50": round(statistics.median(latencies), 1),
                        "max": round(max(latencies), 1),
                        "each": [round(latency, 1) for latency in latencies],
                    },
                    "bulk_still_running_after_the_live_turns": in_flight_after,
                    "bulk_s": {"mean": round(statistics.mean(bulk_seconds), 2), "max": round(max(bulk_seconds), 2)}
                    if bulk_seconds
                    else None,
                }
            )
    return results


def mean_batch(metrics: str) -> float | None:
    """Mean turns per model call, from the server's Prometheus histogram."""
    found = dict(re.findall(r"^tonewatch_model_batch_turns_(sum|count) ([0-9.e+]+)$", metrics, re.MULTILINE))
    if not found or float(found.get("count", 0)) == 0:
        return None
    return round(float(found["sum"]) / float(found["count"]), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model directory (default: the shipped model).")
    parser.add_argument("--rate", type=float, default=50.0, help="Requests per second (open loop).")
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load (at most 600).")
    parser.add_argument("--conversations", type=int, default=200, help="Concurrent live conversations.")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the server's model runtime.")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"), help="Model runtime.")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="Server micro-batch wait (ms).")
    parser.add_argument("--timeout", type=float, default=10.0, help="Per-request timeout (s).")
    parser.add_argument("--max-requests", type=int, default=30_000, help="Hard cap on requests sent.")
    parser.add_argument("--max-in-flight", type=int, default=256, help="Most requests open at once.")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="Seconds to wait for the model to load.")
    parser.add_argument(
        "--bulk",
        type=lambda value: [int(number) for number in value.split(",")],
        default=None,
        help="Instead of the fixed-rate load: live turns behind this many concurrent 256-text /v1/classify "
        "requests, each number in turn (e.g. 0,1,8).",
    )
    parser.add_argument("--live-probes", type=int, default=5, help="Live turns sent per --bulk number.")
    parser.add_argument("--bulk-head-start", type=float, default=0.3, help="Seconds between bulk and live turns.")
    parser.add_argument(
        "--bulk-timeout", type=float, default=300.0, help="Per-request timeout with --bulk, bulk and live (s)."
    )
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    arguments = parser.parse_args()
    if arguments.bulk is not None:
        if any(count < 0 or count > 16 for count in arguments.bulk) or not 1 <= arguments.live_probes <= 100:
            parser.error("--bulk numbers must be in [0, 16] and --live-probes in [1, 100]")
        bulk_main(arguments)
        return
    if not 0 < arguments.duration <= 600:
        parser.error("--duration must be in (0, 600]")
    if not 0 < arguments.rate <= 2000:
        parser.error("--rate must be in (0, 2000]")
    if arguments.conversations < 1 or arguments.max_requests < 1 or arguments.max_in_flight < 1:
        parser.error("--conversations, --max-requests and --max-in-flight must be >= 1")

    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        server = start_server(
            arguments.model,
            port,
            arguments.threads,
            arguments.batch_wait_ms,
            arguments.ready_timeout,
            log,
            arguments.backend,
        )
        try:
            result = asyncio.run(drive(f"http://{HOST}:{port}", arguments))
        finally:
            stop_server(server)
    result = {
        "machine": machine(),
        "model": arguments.model or "(shipped default)",
        "server_threads": arguments.threads,
        "backend": arguments.backend,
        "rate_rps": arguments.rate,
        "duration_s": arguments.duration,
        "conversations": arguments.conversations,
        **result,
    }
    if arguments.json:
        print(json.dumps(result, indent=2))
        return
    latency = result["latency_ms"]
    print(f"machine: {result['machine']} (server: {arguments.threads} threads, backend {arguments.backend})")
    print(f"model: {result['model']}")
    print(
        f"load: {arguments.rate:g} req/s for {arguments.duration:g} s over {arguments.conversations} live conversations"
    )
    print(
        f"completed {result['completed']}/{result['requests']} in {result['elapsed_s']} s: "
        f"{result['throughput_rps']} req/s; errors {result['errors']} {result['errors_by_kind'] or ''}"
    )
    print(
        f"latency: p50 {latency['p50']} ms, p90 {latency['p90']} ms, p99 {latency['p99']} ms, max {latency['max']} ms"
    )
    print(f"alerts raised: {result['alerts_raised']}; mean model batch: {result['mean_model_batch_turns']} turns")


def bulk_main(arguments: argparse.Namespace) -> None:
    """``--bulk``: live turns behind concurrent bulk requests, printed as a table or JSON."""
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        server = start_server(
            arguments.model, port, arguments.threads, arguments.batch_wait_ms, arguments.ready_timeout, log,
            arguments.backend,
        )  # fmt: skip
        try:
            results = asyncio.run(live_behind_bulk(f"http://{HOST}:{port}", arguments))
        finally:
            stop_server(server)
    report = {
        "machine": machine(),
        "model": arguments.model or "(shipped default)",
        "server_threads": arguments.threads,
        "backend": arguments.backend,
        "results": results,
    }
    if arguments.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']} (server: {arguments.threads} threads, backend {arguments.backend})")
    print(f"model: {report['model']}")
    print("| concurrent 256-text requests | first live turn (ms) | p50 (ms) | max (ms) | bulk mean / max (s) |")
    print("|---|---|---|---|---|")
    for row in results:
        live = row["live_ms"]
        bulk = f"{row['bulk_s']['mean']} / {row['bulk_s']['max']}" if row["bulk_s"] else "-"
        print(f"| {row['bulk_requests']} | {live['each'][0]} | {live['p50']} | {live['max']} | {bulk} |")


if __name__ == "__main__":
    main()
