"""Naive PyTorch vs tonewatch's PyTorch path vs tonewatch's ONNX Runtime paths, in one run on this machine.

    python benchmarks/speed.py [--model DIR] [--threads 2] [--turns 300] [--write docs/benchmarks.md]

Every path runs in its own process (so peak RSS is its own) on the customer
turns of callcenter_dev with their conversation context, as `tonewatch label`
and the live service see them:

- single turn: one turn per call, in conversation order, timed from text to
  calibrated prediction (tokenisation + model + calibration; loading
  excluded); p50 and p99;
- batch: every turn (810) in calls of 64, turns per second; and the same
  turns as bare texts without context (texts per second);
- label: `tonewatch label`'s library call (``label_file``, local engine) on the same
  conversations (callcenter_dev's JSONL, the same turns), reading to the finished output,
  turns per second; timed alternately with the batch (``--repeats`` times each, medians),
  so that both see the same load on a busy machine; and its ratio to the batch;
- peak RSS of the process (load included), and load time;
- agreement of each path's emotion labels and escalation decisions with
  tonewatch's PyTorch path (the reference).

Paths:

- ``naive``: what a user would write around the same merged weights: one
  ``network(**inputs)`` per turn under ``torch.no_grad()``, torch's default
  threads; batches in input order, padded to the longest.
- ``torch``: tonewatch's PyTorch path (inference mode, batches sorted by
  length).
- ``onnx-fp32``, ``onnx-int8-full``: ONNX Runtime, fused graph, fp32 / every
  MatMul int8 (smoothed, 8-bit weights on VNNI/AMX, 7-bit otherwise).
- ``onnx-int8``: the int8 graph with the fp32 re-check of close calls.
- ``onnx``: the default recipe ``auto``: what it measured and chose on this CPU at export.
- ``cuda``: only where a CUDA GPU is usable: ONNX Runtime's CUDA provider (fp32
  graph), else PyTorch on the GPU. The other paths are kept on the CPU.

Then, as a user runs it (``--label``, on by default):

- ``label``: ``tonewatch label`` on the callcenter_dev conversations (4 copies, 3,240
  customer turns) with the cache built, in its own process: turns per second
  once it has started (the wall time less that of the same command on one
  conversation), against the ``onnx`` path's batch throughput; its peak RSS;
- ``cold``: the README's first command, ``tonewatch label
  examples/conversations.jsonl``, on an empty cache: wall time (building the
  base encoder's directory and the ONNX export included), peak RSS, and the
  size of the cache it leaves.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine, percentile

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("naive", "torch", "onnx-fp32", "onnx-int8-full", "onnx-int8", "onnx")
RECIPE_OF = {"onnx-fp32": "fp32", "onnx-int8-full": "int8-full", "onnx-int8": "int8", "onnx": "auto"}
LABEL_COPIES = 4


def _dev_file() -> Path:
    from tonewatch.data.sources.callcenter import PACKAGE_DATA

    return PACKAGE_DATA / "callcenter_dev" / "dialogues.jsonl"


def _turns():
    from tonewatch.conversations import read_conversations
    from tonewatch.model.types import conversation_turn_inputs

    conversations = read_conversations(_dev_file())
    return [turn for conversation in conversations for turn in conversation_turn_inputs(conversation)]


def _timed_label(classifier, output: Path) -> tuple[int, float]:
    """``tonewatch label`` of callcenter_dev's conversations (the benchmark's turns) with the local engine: turns
    labelled and seconds, reading to the finished output."""
    from tonewatch.labelling import label_file

    output.unlink(missing_ok=True)
    begun = time.perf_counter()
    summary = label_file(classifier, _dev_file(), output, progress=False)
    return summary.labelled_turns, time.perf_counter() - begun


def _naive(classifier):
    """One plain forward per call; the same weights and inputs, none of tonewatch's batching or runtime."""
    import torch

    network, calibration = classifier.network, classifier.config.calibration

    def predict(turns):
        encoded = [classifier.encode(turn) for turn in turns]
        ids, mask, types = (torch.from_numpy(array) for array in classifier.pad(encoded))
        with torch.no_grad():
            emotion, escalation = network(input_ids=ids, attention_mask=mask, token_type_ids=types)
        bias = torch.tensor(calibration.emotion_bias)
        labels = (emotion / calibration.emotion_temperature + bias).argmax(-1).tolist()
        scores = torch.sigmoid(escalation / calibration.escalation_temperature).tolist()
        return [
            (label, score >= calibration.threshold(turn.lang))
            for label, score, turn in zip(labels, scores, turns, strict=True)
        ]

    return predict


def child(path: str, model: str | None, threads: int, n_turns: int, repeats: int = 1) -> dict:
    """Measure one path in this process."""
    from tonewatch.labels import ID2LABEL
    from tonewatch.model.classifier import Classifier

    started = time.perf_counter()
    if path == "cuda":  # ONNX Runtime's CUDA provider (fp32 graph), else PyTorch on the GPU
        classifier = Classifier.from_pretrained(model, device="cuda", threads=threads)
    elif path in ("naive", "torch"):
        classifier = Classifier.from_pretrained(
            model, backend="torch", threads=None if path == "naive" else threads, device="cpu"
        )
    else:
        classifier = Classifier.from_pretrained(
            model, backend="onnx", recipe=RECIPE_OF[path], threads=threads, device="cpu"
        )
    load_seconds = time.perf_counter() - started
    turns = _turns()
    if path == "naive":
        predict = _naive(classifier)
    else:

        def predict(items, batch_size=64):
            return [(p.emotion, p.escalate) for p in classifier.classify(items, batch_size=batch_size)]

    timed = turns[:n_turns]
    for turn in timed[:10]:  # warm-up
        predict([turn])
    latencies = []
    for turn in timed:
        begun = time.perf_counter()
        predict([turn])
        latencies.append((time.perf_counter() - begun) * 1000)

    def timed_batch(items) -> tuple[list, float]:
        begun = time.perf_counter()
        if path == "naive":
            decisions = [
                decision for start in range(0, len(items), 64) for decision in predict(items[start : start + 64])
            ]
        else:
            decisions = predict(items)
        return decisions, time.perf_counter() - begun

    decisions, batch_seconds = timed_batch(turns)
    texts = [type(turn)(turn.text, (), turn.lang) for turn in turns]
    _, texts_seconds = timed_batch(texts)
    label_rates, batch_rates = [], [len(turns) / batch_seconds]
    if path != "naive":
        with tempfile.TemporaryDirectory() as scratch:
            for repeat in range(repeats):  # alternately, so that both see the same load
                if repeat:
                    batch_rates.append(len(turns) / timed_batch(turns)[1])
                labelled, label_seconds = _timed_label(classifier, Path(scratch) / "labelled.jsonl")
                label_rates.append(labelled / label_seconds)
    backend = getattr(classifier, "backend", None)
    result = {
        "path": path,
        "load_s": round(load_seconds, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "turns_per_s": round(statistics.median(batch_rates), 1),
        "label_turns_per_s": round(statistics.median(label_rates), 1) if label_rates else None,
        "label_vs_batch": round(statistics.median(label_rates) / statistics.median(batch_rates), 3)
        if label_rates
        else None,
        "texts_per_s": round(len(texts) / texts_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "decisions": [[label if isinstance(label, str) else ID2LABEL[label], bool(esc)] for label, esc in decisions],
    }
    if getattr(backend, "margins", None):
        result["rechecked_share"] = round(backend.rechecked / max(backend.turns, 1), 3)
    if getattr(backend, "meta", None):
        result["chosen"] = backend.meta["recipe"].get("chosen")
        result["ms_per_turn_at_export"] = backend.meta["recipe"].get("ms_per_turn")
    return result


def _measured_run(command: list[str], env: dict | None = None) -> tuple[float, int]:
    """Run ``command`` in a child process: its wall time (s) and its peak RSS (MB), measured by a wrapper process
    whose only child it is."""
    wrapper = (
        "import json, resource, subprocess, sys, time; started = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(json.dumps([time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
    )
    output = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True, text=True,
                            env=env or os.environ).stdout  # fmt: skip
    seconds, rss_kb = json.loads(output.strip().splitlines()[-1])
    return seconds, round(rss_kb / 1024)


def _directory_mb(path: Path) -> float:
    seen, total = set(), 0
    for item in path.rglob("*"):
        if item.is_file() and not item.is_symlink():
            stat = item.stat()
            if (stat.st_dev, stat.st_ino) not in seen:  # a hard-linked file counts once, as on disk
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return round(total / 1e6, 1)


def label_runs(model: str | None, threads: int, work: Path) -> dict:
    """``tonewatch label`` as a user runs it: throughput with the cache built, and the first run on an empty one."""
    import shutil

    from tonewatch.data.sources.callcenter import PACKAGE_DATA

    dev = (PACKAGE_DATA / "callcenter_dev" / "dialogues.jsonl").read_text(encoding="utf-8").strip().splitlines()
    big, one = work / "dev-copies.jsonl", work / "one.jsonl"
    big.write_text("\n".join(dev * LABEL_COPIES) + "\n", encoding="utf-8")
    one.write_text(dev[0] + "\n", encoding="utf-8")
    turns = len(_turns()) * LABEL_COPIES
    base = [sys.executable, "-m", "tonewatch", "label", "--threads", str(threads)]
    base += ["--model", model] if model else []
    startup, _ = _measured_run([*base, str(one), "-o", str(work / "one.out.jsonl")])
    runs = [_measured_run([*base, str(big), "-o", str(work / "big.out.jsonl")]) for _ in range(2)]
    seconds, rss = min(runs)
    cold_cache = work / "cold-cache"
    shutil.rmtree(cold_cache, ignore_errors=True)
    env = {**os.environ, "TONEWATCH_CACHE": str(cold_cache)}
    example = ROOT / "examples" / "conversations.jsonl"
    cold_command = [sys.executable, "-m", "tonewatch", "label", str(example), "-o", str(work / "cold.out.jsonl")]
    cold_seconds, cold_rss = _measured_run(cold_command + (["--model", model] if model else []), env)
    return {
        "label_turns": turns,
        "label_seconds": round(seconds, 2),
        "label_startup_seconds": round(startup, 2),
        "label_turns_per_s": round(turns / max(seconds - startup, 1e-9), 1),
        "label_peak_rss_mb": rss,
        "cold_seconds": round(cold_seconds, 1),
        "cold_peak_rss_mb": cold_rss,
        "cold_cache_mb": _directory_mb(cold_cache),
    }


def write_markdown(results: list[dict], settings: dict, path: Path) -> None:
    naive = next((r for r in results if r["path"] == "naive"), None)  # absent when --paths leaves it out
    lines = [
        "# Inference speed: naive PyTorch vs tonewatch's paths",
        "",
        f"Measured by `python benchmarks/speed.py` in one run on {settings['machine']}; "
        f"{settings['threads']} runtime threads; model `{settings['model']}` "
        f"({settings['layers']} encoder layers); inputs are the {settings['turns']} customer turns of "
        f"callcenter_dev with their context ({settings['tokens']}). Single turn: {settings['timed']} turns one "
        "at a time in conversation order, text to calibrated prediction, load excluded. Batch: all turns in calls "
        "of 64; texts: the same turns without context. Label: `tonewatch label` (local engine) of the same "
        f"conversations, reading to the finished output; batch and label timed alternately, median of "
        f"{settings.get('repeats', 1)} each. Agreement: share of emotion labels / escalation decisions "
        "equal to tonewatch's PyTorch path. Each path ran in its own process.",
        "",
        "| path | single turn p50 (ms) | p99 (ms) | speed-up vs naive (p50) | batch (turns/s) "
        "| texts/s | label (turns/s) | label / batch | peak RSS (MB) | load (s) | emotion agreement "
        "| escalation agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        speed_up = f"{naive['p50_ms'] / result['p50_ms']:.1f}×" if naive else "-"
        lines.append(
            f"| {result['path']} | {result['p50_ms']} | {result['p99_ms']} | "
            f"{speed_up} | {result['turns_per_s']} | {result['texts_per_s']} | "
            f"{result.get('label_turns_per_s') or '-'} | "
            f"{'-' if not result.get('label_vs_batch') else format(result['label_vs_batch'], '.0%')} | "
            f"{result['peak_rss_mb']} | "
            f"{result['load_s']} | {100 * result['emotion_agreement']:.2f} % | "
            f"{100 * result['escalation_agreement']:.2f} % |"
        )
    for result in results:
        if result.get("rechecked_share") is not None:
            lines += [
                "",
                f"`{result['path']}` re-ran {100 * result['rechecked_share']:.1f} % of the batch turns through "
                "the fp32 "
                "graph (their int8 decision was within the measured int8 error of a boundary).",
            ]
    onnx = next((r for r in results if r["path"] == "onnx"), None)
    if onnx and onnx.get("chosen"):
        measured = ", ".join(f"{name} {ms} ms" for name, ms in (onnx.get("ms_per_turn_at_export") or {}).items())
        lines += ["", f"`onnx` is recipe `auto`, which chose `{onnx['chosen']}` at export on this CPU ({measured})."]
    label = settings.get("label")
    if label and onnx:
        ratio = label["label_turns_per_s"] / onnx["turns_per_s"]
        lines += [
            "",
            "`tonewatch label` as a user runs it:",
            "",
            "| figure | value |",
            "|---|---|",
            f"| `label`, cache built: {label['label_turns']} turns (callcenter_dev × {LABEL_COPIES}) | "
            f"{label['label_seconds']} s ({label['label_startup_seconds']} s of it start-up, measured on one "
            "conversation) |",
            f"| `label` turns/s once started | {label['label_turns_per_s']} ({100 * ratio:.0f} % of the `onnx` "
            f"path's batch {onnx['turns_per_s']}) |",
            f"| `label` peak RSS | {label['label_peak_rss_mb']} MB |",
            f"| first `label` on an empty cache (README's first command) | {label['cold_seconds']} s |",
            f"| its peak RSS | {label['cold_peak_rss_mb']} MB |",
            f"| the cache it leaves | {label['cold_cache_mb']} MB |",
        ]
    lines += ["", "Paths: see the docstring of `benchmarks/speed.py`; the levers and why: `docs/design.md`.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model directory (default: the shipped model).")
    parser.add_argument("--threads", type=int, default=2, help="Runtime threads (naive: torch's default).")
    parser.add_argument("--turns", type=int, default=300, help="Turns timed one at a time.")
    parser.add_argument("--paths", default=",".join(PATHS), help="Comma-separated subset of " + ",".join(PATHS))
    parser.add_argument("--write", type=Path, default=None, help="Write the markdown table here.")
    parser.add_argument("--no-label", action="store_true", help="Skip the `tonewatch label` runs (warm and cold).")
    parser.add_argument("--repeats", type=int, default=3, help="Batch and label runs, alternately (medians).")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        result = child(arguments.child, arguments.model, arguments.threads, arguments.turns, arguments.repeats)
        print(json.dumps(result))
        return

    paths = [path for path in arguments.paths.split(",") if path]
    from tonewatch.model.cpu import pick_device

    if pick_device(None) != "cpu" and "cuda" not in paths:
        paths.append("cuda")  # a GPU is usable here: its row too
    if "torch" not in paths:
        paths.insert(0, "torch")  # the reference of the agreement columns
    for path in paths:  # build the ONNX exports first, each in its own process, so no measurement includes one
        if path in RECIPE_OF:
            # the loader builds the export on first use, as `tonewatch label` or the server would
            build = "from tonewatch.model import Classifier; import sys; "
            build += "Classifier.from_pretrained(sys.argv[1] or None, backend='onnx', recipe=sys.argv[2], device='cpu')"
            subprocess.run([sys.executable, "-c", build, arguments.model or "", RECIPE_OF[path]], check=True)
    results = []
    for path in paths:
        command = [sys.executable, __file__, "--child", path, "--threads", str(arguments.threads)]
        command += ["--turns", str(arguments.turns), "--repeats", str(arguments.repeats)]
        command += ["--model", arguments.model] if arguments.model else []
        print(f"measuring {path} ...", file=sys.stderr, flush=True)
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    reference = next(r for r in results if r["path"] == "torch")["decisions"]
    for result in results:
        pairs = list(zip(result.pop("decisions"), reference, strict=True))
        result["emotion_agreement"] = sum(a[0] == b[0] for a, b in pairs) / len(pairs)
        result["escalation_agreement"] = sum(a[1] == b[1] for a, b in pairs) / len(pairs)

    from transformers import AutoTokenizer

    from tonewatch.model.encoder import resolve_base_model
    from tonewatch.model.inputs import encode_turn
    from tonewatch.model.types import read_model_config, resolve_model_dir

    config = read_model_config(resolve_model_dir(arguments.model))
    turns = _turns()
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(config.base_model))
    lengths = sorted(len(encode_turn(tokenizer, t.text, t.context, config.limits).input_ids) for t in turns)
    tokens = f"median {lengths[len(lengths) // 2]} tokens"
    settings = {
        "machine": machine(),
        "threads": arguments.threads,
        "model": config.name,
        "layers": config.num_hidden_layers,
        "turns": len(turns),
        "timed": min(arguments.turns, len(turns)),
        "tokens": tokens,
        "repeats": arguments.repeats,
    }
    if not arguments.no_label:
        import tempfile

        print("measuring tonewatch label (cache built, then an empty cache) ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as work:
            settings["label"] = label_runs(arguments.model, arguments.threads, Path(work))
    print(json.dumps({"settings": settings, "results": results}, indent=2))
    if arguments.write:
        write_markdown(results, settings, arguments.write)
        print(f"wrote {arguments.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
