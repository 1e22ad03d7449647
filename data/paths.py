"""Where the third-party datasets live: the data root, given by ``--data-root`` or ``$TONEWATCH_DATA``."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "TONEWATCH_DATA"
"""Environment variable naming the data root."""

NO_DATA_ROOT = f"no data root: pass --data-root DIR or set ${DATA_ROOT_ENV} (the folder holding cold/, cedr/, ...)"


class DataRootNotFoundError(FileNotFoundError):
    """No data root was given, or the given one does not exist."""


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The data root: the argument, else ``$TONEWATCH_DATA``; there is no default folder.

    Raises :class:`DataRootNotFoundError` when neither is set, or when the
    folder given does not exist (naming it and where it came from).
    """
    if data_root is not None and str(data_root) != "":
        given, origin = str(data_root), "--data-root or the config's data_root"
    else:
        given, origin = os.environ.get(DATA_ROOT_ENV, ""), f"${DATA_ROOT_ENV}"
    if not given:
        raise DataRootNotFoundError(NO_DATA_ROOT)
    root = Path(given).expanduser()
    if not root.is_dir():
        raise DataRootNotFoundError(f"data root {root} does not exist (from {origin})")
    return root.resolve()
