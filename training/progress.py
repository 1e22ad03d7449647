"""Progress bars of the long phases of training and evaluation (tokenising shows ``datasets``' own bar)."""

from __future__ import annotations

import sys


def progress_bar(total: int, description: str, unit: str = "turn"):
    """A tqdm bar on stderr that stays quiet when stderr is not a terminal (logs, CI, tests), as
    ``tonewatch label``'s does; use as a context manager and pass its ``update`` as ``on_batch``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, disable=None, leave=False)
