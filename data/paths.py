"""Where the third-party datasets live: the configurable data root."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "TONEWATCH_DATA"
"""Environment variable naming the data root."""

_DEFAULT_RELATIVE = Path("..") / "shared" / "datasets"


class DataRootNotFoundError(FileNotFoundError):
    """No data root was given and none of the default places exists."""


def default_data_root_candidates() -> list[Path]:
    """Places tried, in order, when neither ``--data-root`` nor ``$TONEWATCH_DATA`` is set.

    ``../shared/datasets`` from the working directory first (the project's
    layout), then the same path beside a source checkout of tonewatch.
    """
    checkout = Path(__file__).resolve().parent.parent
    return [Path.cwd() / _DEFAULT_RELATIVE, checkout / _DEFAULT_RELATIVE]


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The data root: the argument, else ``$TONEWATCH_DATA``, else ``../shared/datasets`` if it exists.

    Raises :class:`DataRootNotFoundError` naming the path when an explicitly
    given root does not exist or no default exists.
    """
    given = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV) or None
    if given is not None:
        root = Path(given).expanduser()
        if not root.is_dir():
            raise DataRootNotFoundError(f"data root {root} does not exist (from --data-root or ${DATA_ROOT_ENV})")
        return root.resolve()
    for candidate in default_data_root_candidates():
        if candidate.is_dir():
            return candidate.resolve()
    tried = ", ".join(str(path) for path in default_data_root_candidates())
    raise DataRootNotFoundError(f"no data root: pass --data-root or set ${DATA_ROOT_ENV} (tried {tried})")
