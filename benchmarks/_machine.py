"""What the benchmark scripts share: a description of the machine and a percentile."""

from __future__ import annotations

import platform


def machine() -> str:
    """The CPU (model, logical CPUs, the instruction-set features that choose kernels), the system and Python."""
    from tonewatch.model.cpu import cpu_info

    system = f"{platform.system()} {platform.release()}"
    return f"{cpu_info().describe()}, {system}, Python {platform.python_version()}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
