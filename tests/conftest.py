"""Shared fixtures: the real data root (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonewatch.data.paths import DataRootNotFoundError, resolve_data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root (``../shared/datasets`` or ``$TONEWATCH_DATA``); skips the test when there is none."""
    try:
        return resolve_data_root()
    except DataRootNotFoundError as error:
        pytest.skip(f"real datasets not available: {error}")
