"""Compare runs on the validation suite: the mean and spread (min-max) of each figure over several seeds.

    python scripts/compare_runs.py NAME=REPORT.json[,REPORT.json...] [NAME=...] [--markdown]

Each NAME is one recipe (or one shipped model); its reports are the seeds' ``report.json`` files (``tonewatch
train`` and ``tonewatch evaluate`` write them). Prints one row per validation-suite figure: per recipe, the mean
over its seeds and the spread, then the TF-IDF baseline's mean. A difference inside the seeds' spread is no
difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=REPORT.json[,REPORT.json...]")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args()
    recipes: dict[str, list[dict]] = {}
    for spec in args.runs:
        name, _, paths = spec.partition("=")
        recipes[name] = [json.loads(Path(path).read_text())["validation_suite"] for path in paths.split(",")]
    keys: list[str] = []
    for suites in recipes.values():
        for suite in suites:
            keys += [key for key in suite["model"] if key not in keys]
    header = ["figure", *[f"{name} (n={len(suites)})" for name, suites in recipes.items()], "TF-IDF baseline"]
    rows = []
    for key in keys:
        row = [key]
        baseline = []
        for suites in recipes.values():
            values = [suite["model"][key] for suite in suites if key in suite["model"]]
            baseline += [suite["baseline"][key] for suite in suites if key in suite.get("baseline", {})]
            if not values:
                row.append("-")
            elif len(values) == 1:
                row.append(f"{values[0]:.3f}")
            else:
                row.append(f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        row.append(f"{statistics.mean(baseline):.3f}" if baseline else "-")
        rows.append(row)
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
