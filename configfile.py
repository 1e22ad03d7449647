"""Typed configuration files: TOML recipes with inheritance, and one type check for every config dataclass.

Every stage's config (``DataConfig``, ``TrainConfig``, ``ServeConfig``) is a
dataclass; :func:`load` builds one from a TOML file plus ``key=value``
overrides, and :func:`coerce_fields` (called from their ``__post_init__``)
checks and converts the field values the same way whether they came from a
file or from Python. The field's annotation drives it: ``int``, ``float``
(an integer is accepted), ``str``, ``bool``, ``X | None``, ``list[X]``,
``tuple[X, ...]``, ``dict[K, V]`` and nested dataclasses (a TOML table, or
an array of tables such as ``[[api_keys]]``).

A file may start from another one::

    extends = "default.toml"     # relative to this file; chains allowed, cycles refused
    num_hidden_layers = 3        # a value here wins over the parent's

Tables merge key by key (a child's value wins); arrays, arrays of tables
included, replace the parent's whole.

Every error is a :class:`ConfigError` (a ``ValueError``) that names the file
(or the ``--set`` override) and the key.

This module imports neither torch nor numpy: the server, the trainer and the
data layer all use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

EXTENDS_KEY = "extends"
"""The key of a TOML file that names the file it starts from."""

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration that cannot be used: a missing or malformed file, an unknown key, a wrong type, or a value
    its dataclass refuses. The message names the file and the key."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# ----------------------------------------------------------------------------- files


@dataclasses.dataclass
class ConfigValues:
    """The merged values of a config file and where each came from (dotted key -> file or override)."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    origins: dict[str, str] = dataclasses.field(default_factory=dict)

    def origin(self, key: str | None, default: str | None) -> str | None:
        """The file (or override) that set ``key`` or the table holding it; ``default`` when none did."""
        if key is None:
            return default
        parts = key.replace("[", ".[").split(".")
        for length in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:length]).replace(".[", "["))
            if found is not None:
                return found
        return default


def read_config_file(path: str | Path) -> ConfigValues:
    """The values of a TOML file with its ``extends`` chain resolved, or of a JSON file (a saved config)."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            values = json.loads(_read_text(path))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(values).__name__}")
        return ConfigValues(values, _origins(values, str(path)))
    return _read_toml(path, chain=())


def _read_toml(path: Path, chain: tuple[Path, ...]) -> ConfigValues:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(item) for item in (*chain, resolved))
        raise ConfigError(f"{chain[-1]}: '{EXTENDS_KEY}' makes a cycle: {cycle}", key=EXTENDS_KEY)
    try:
        values = tomllib.loads(_read_text(path))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    parent = values.pop(EXTENDS_KEY, None)
    own = ConfigValues(values, _origins(values, str(path)))
    if parent is None:
        return own
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: {EXTENDS_KEY} must be a file name (a string), got {parent!r}", key=EXTENDS_KEY)
    # Relative to the file that says it, so a recipe works from any working directory.
    base = _read_toml(path.parent / parent, (*chain, resolved))
    return ConfigValues(merge(base.values, own.values), {**base.origins, **own.origins})


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror or error}") from None


def merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: tables merge key by key (the child's value wins), anything else is replaced."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _origins(values: Mapping[str, Any], origin: str, prefix: str = "") -> dict[str, str]:
    """Every key and table of ``values`` (dotted) -> ``origin``."""
    found = {}
    for key, value in values.items():
        found[prefix + key] = origin
        if isinstance(value, Mapping):
            found.update(_origins(value, origin, f"{prefix}{key}."))
    return found


# ----------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as TOML (numbers, booleans, lists, quoted strings) or a bare string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    try:
        return key, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw


def apply_overrides(config: ConfigValues, overrides: Iterable[str]) -> ConfigValues:
    """``config`` with ``key=value`` overrides set; ``table.key=value`` sets one key of a table."""
    values = dict(config.values)  # copied along each overridden path below
    origins = dict(config.origins)
    for override in overrides:
        key, value = parse_override(override)
        *tables, last = key.split(".")
        target = values
        for depth, table in enumerate(tables):
            if not isinstance(target.setdefault(table, {}), dict):
                raise ConfigError(
                    f"--set {override}: {'.'.join(tables[: depth + 1])} is not a table", key=".".join(tables)
                )
            target[table] = dict(target[table])
            target = target[table]
        target[last] = value
        origins[key] = f"--set {override}"
    return ConfigValues(values, origins)


# ----------------------------------------------------------------------------- building


def load(cls: type[C], path: str | Path | None = None, overrides: Iterable[str] = ()) -> C:
    """``cls`` from a TOML (or JSON) file, its ``extends`` chain and ``key=value`` overrides, checked and validated."""
    config = read_config_file(path) if path is not None else ConfigValues()
    config = apply_overrides(config, overrides)
    return build(cls, config.values, origins=config, source=str(path) if path is not None else None)


def build(
    cls: type[C], values: Mapping[str, Any], *, origins: ConfigValues | None = None, source: str | None = None
) -> C:
    """``cls(**values)`` after checking the keys and converting the values by the field types.

    Every error, the dataclass's own validation included, becomes a
    :class:`ConfigError` whose message starts with the file (or override)
    that set the offending key; ``source`` names where unattributed errors
    come from (none: no prefix).
    """
    try:
        return _build(cls, values, "")
    except ConfigError as error:
        where = origins.origin(error.key, source) if origins is not None else source
        if where is None:
            raise
        raise ConfigError(f"{where}: {error}", key=error.key) from None


def _build(cls: type[C], values: Any, prefix: str) -> C:
    name = cls.__name__
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"{prefix.rstrip('.') or name} must be a table, got {values!r}", key=prefix.rstrip(".") or None
        )
    fields = {item.name: item for item in dataclasses.fields(cls) if item.init}  # type: ignore[arg-type]
    unknown = [key for key in values if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(fields)}"
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        # A nested table names itself first ("extra_data[0]: unknown key 'file'"), as its other errors do.
        where = f"{prefix.rstrip('.')}: " if prefix else ""
        raise ConfigError(f"{where}unknown key '{key}'{more} in {name}{hint}", key=f"{prefix}{key}")
    missing = [
        key
        for key, item in fields.items()
        if key not in values and item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"{prefix.rstrip('.') or name} is missing the key {missing[0]!r}", key=prefix.rstrip(".") or None
        )
    hints = _type_hints(cls)
    converted = {key: coerce(hints[key], value, f"{prefix}{key}") for key, value in values.items()}
    try:
        return cls(**converted)
    except ConfigError as error:
        raise _within(error, prefix) from None
    except ValueError as error:  # the dataclass's own validation (__post_init__)
        message = f"{prefix.rstrip('.')}: {error}" if prefix else str(error)
        raise ConfigError(message, key=prefix.rstrip(".") or None) from None


def _within(error: ConfigError, prefix: str) -> ConfigError:
    """A nested dataclass's error, its key made relative to the outer config."""
    if not prefix or (error.key or "").startswith(prefix):
        return error
    key = prefix + error.key if error.key else prefix.rstrip(".")
    return ConfigError(f"{prefix.rstrip('.')}: {error}", key=key)


def coerce_fields(instance: Any) -> None:
    """Check every field of a dataclass instance against its annotation and convert it in place (a TOML
    integer to ``float``, a list to a ``tuple``, a table to a nested dataclass); :class:`ConfigError` names the
    field. Configs call it first thing in ``__post_init__``."""
    hints = _type_hints(type(instance))
    for item in dataclasses.fields(instance):
        setattr(instance, item.name, coerce(hints[item.name], getattr(instance, item.name), item.name))


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(hint: Any, value: Any, key: str) -> Any:
    """``value`` as the type ``hint`` describes, or a :class:`ConfigError` naming ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [option for option in args if option is not type(None)]
        if len(options) == 1:  # X | None: X's own error says more than "X or none"
            return coerce(options[0], value, key)
        for option in options:
            try:
                return coerce(option, value, key)
            except ConfigError:
                continue
        raise _wrong_type(hint, value, key)
    if hint is type(None):
        if value is not None:
            raise _wrong_type(hint, value, key)
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise _wrong_type(hint, value, key)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(hint, value, key)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type(hint, value, key)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _wrong_type(hint, value, key)
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise _wrong_type(hint, value, key)
        return _build(hint, value, f"{key}.")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}, got {value!r}", key=key)
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _wrong_type(hint, value, key)
        return [coerce(args[0], item, f"{key}[{index}]") for index, item in enumerate(value)] if args else list(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _wrong_type(hint, value, key)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], item, f"{key}[{index}]") for index, item in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{key} must have {len(args)} items, got {len(value)}: {value!r}", key=key)
        return tuple(
            coerce(arg, item, f"{key}[{index}]") for index, (arg, item) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong_type(hint, value, key)
        key_type, value_type = args or (Any, Any)
        return {
            coerce(key_type, name, f"{key}.{name}"): coerce(value_type, item, f"{key}.{name}")
            for name, item in value.items()
        }
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise _wrong_type(hint, value, key)
        return value
    return value


def _wrong_type(hint: Any, value: Any, key: str) -> ConfigError:
    return ConfigError(f"{key} must be {describe(hint)}, got {value!r}", key=key)


def describe(hint: Any) -> str:
    """A type annotation in words, for error messages (``list[str] | None`` -> "a list of strings or none")."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "none"}
    if hint in names:
        return names[hint]
    plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
    if origin in (list, tuple):
        item = args[0] if args else Any
        if dataclasses.is_dataclass(item):
            return f"a list of {item.__name__} tables"
        return f"a list of {plural.get(item, describe(item))}"
    if origin is dict:
        value = args[1] if args else Any
        return f"a table of {plural.get(value, describe(value))}"
    if dataclasses.is_dataclass(hint):
        return f"a table of {hint.__name__} keys"
    return getattr(hint, "__name__", str(hint))


def field_help(cls: type) -> list[tuple[str, str, str]]:
    """``(name, default, help)`` of every field of a config dataclass, for ``--show-fields``."""
    rows = []
    for item in dataclasses.fields(cls):
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = "(required)"
        if dataclasses.is_dataclass(default):
            default = dataclasses.asdict(default)
        rows.append((item.name, json.dumps(default, ensure_ascii=False, default=str), item.metadata.get("help", "")))
    return rows
