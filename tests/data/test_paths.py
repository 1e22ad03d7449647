"""The data root: ``--data-root`` (or a config's data_root), else ``$TONEWATCH_DATA``, else a clear error."""

from __future__ import annotations

import pytest

from tonewatch.data.paths import NO_DATA_ROOT, DataRootNotFoundError, resolve_data_root


def test_the_argument_wins_over_the_environment(tmp_path, monkeypatch):
    (tmp_path / "given").mkdir()
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("TONEWATCH_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "given") == (tmp_path / "given").resolve()
    assert resolve_data_root(str(tmp_path / "given")) == (tmp_path / "given").resolve()
    assert resolve_data_root() == (tmp_path / "env").resolve()


def test_without_either_there_is_no_default_folder(tmp_path, monkeypatch):
    # The project's own layout (../shared/datasets from the working directory) is no longer looked for.
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    (tmp_path / "clone").mkdir()
    monkeypatch.chdir(tmp_path / "clone")
    monkeypatch.delenv("TONEWATCH_DATA", raising=False)
    with pytest.raises(DataRootNotFoundError) as error:
        resolve_data_root()
    assert str(error.value) == NO_DATA_ROOT
    assert "--data-root DIR" in NO_DATA_ROOT and "$TONEWATCH_DATA" in NO_DATA_ROOT
    monkeypatch.setenv("TONEWATCH_DATA", "")
    with pytest.raises(DataRootNotFoundError, match=r"^no data root"):
        resolve_data_root()


def test_a_given_folder_that_does_not_exist_is_named_with_where_it_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("TONEWATCH_DATA", str(tmp_path / "from-env"))
    with pytest.raises(DataRootNotFoundError, match=r"from-env does not exist \(from \$TONEWATCH_DATA\)"):
        resolve_data_root()
    with pytest.raises(DataRootNotFoundError, match=r"from-option does not exist \(from --data-root"):
        resolve_data_root(tmp_path / "from-option")
