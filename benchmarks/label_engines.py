"""`tonewatch label` on one archive with the local engine and with the Ray engine, in one run on this machine.

    python benchmarks/label_engines.py ARCHIVE.jsonl [--model default] [--ray 2x1 --ray 1x2] [--write FILE.md]

Each configuration runs in a fresh process of its own (`--ray AxT`: A actors of T threads each; the local
engine uses the model runtime's default threads), and is timed in two parts: start (loading the model; for
Ray starting a local runtime) and labelling (label_file, reading to the finished output; for Ray this includes
starting the dataset's actors, each loading its model, since Ray Data starts them for each run). The outputs
are compared byte for byte with the local engine's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine


def run_one(engine: str, archive: Path, output: Path, model: str | None) -> dict:
    from tonewatch.labelling import label_file
    from tonewatch.model.classifier import Classifier

    started = time.perf_counter()
    if engine == "local":
        runner = Classifier.from_pretrained(model)
        detail = f"{runner.backend_name}, 1 process"
    else:
        from tonewatch.labelling.ray_engine import RayEngine

        actors, threads = (int(part) for part in engine.split("x"))
        runner = RayEngine(model, actors=actors, threads=threads)
        runner.start()
        detail = runner.describe().removeprefix("on ")
    loaded, cpu_before = time.perf_counter(), time.process_time()
    summary = label_file(runner, archive, output)
    done, driver_cpu = time.perf_counter(), time.process_time() - cpu_before
    peaks = [info["peak_rss_mb"] for info in getattr(runner, "labelled_by", {}).values()]
    if engine != "local":
        runner.close()
    return {
        "engine": engine,
        "detail": detail,
        "records": summary.records,
        "turns": summary.labelled_turns,
        "start_s": round(loaded - started, 1),
        "label_s": round(done - loaded, 1),
        "turns_per_s": round(summary.labelled_turns / (done - loaded), 1),
        "driver_cpu_s": round(driver_cpu, 1),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "actor_peak_rss_mb": max(peaks) if peaks else None,
    }


def markdown(results: list[dict], archive: Path, identical: dict[str, bool], load: float) -> str:
    lines = [
        f"Archive: `{archive.name}`, {results[0]['records']} conversations, {results[0]['turns']} customer turns. "
        f"Machine: {machine()}; load average before the runs {load:.1f}.",
        "",
        "| engine | runs as | start (s) | labelling (s) | turns/s labelling | end to end (s) | "
        "driver CPU while labelling (s) | peak RSS (MB) | output = local |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        rss = f"{result['driver_peak_rss_mb']}"
        if result["actor_peak_rss_mb"] is not None:
            rss = f"driver {rss}, each actor {result['actor_peak_rss_mb']}"
        lines.append(
            f"| {result['engine']} | {result['detail']} | {result['start_s']} | {result['label_s']} | "
            f"{result['turns_per_s']} | {result['start_s'] + result['label_s']:.1f} | {result['driver_cpu_s']} | "
            f"{rss} | "
            f"{'yes' if identical[result['engine']] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path)
    parser.add_argument("--model", default=None)
    parser.add_argument("--ray", action="append", default=None, help="AxT: A actors of T threads (repeatable)")
    parser.add_argument("--write", type=Path, default=None, help="also write the Markdown table here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one configuration
    parser.add_argument("--output", type=Path, default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(run_one(arguments.one, arguments.archive, arguments.output, arguments.model)))
        return
    engines = ["local", *(arguments.ray or ["2x1", "1x2"])]
    load = os.getloadavg()[0]  # other work on the machine slows every configuration
    results, outputs = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for engine in engines:
            outputs[engine] = Path(scratch) / f"{engine}.jsonl"
            command = [sys.executable, __file__, str(arguments.archive), "--one", engine]
            command += ["--output", str(outputs[engine])] + (["--model", arguments.model] if arguments.model else [])
            completed = subprocess.run(command, check=True, capture_output=True, text=True)
            results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr)
        reference = outputs["local"].read_bytes()
        identical = {engine: outputs[engine].read_bytes() == reference for engine in engines}
    table = markdown(results, arguments.archive, identical, load)
    print(table)
    if arguments.write:
        arguments.write.write_text(table)


if __name__ == "__main__":
    main()
