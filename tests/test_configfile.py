"""The one typed-TOML loader: type coercion by field types, errors naming file and key, ``extends`` chains."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tonewatch.configfile import ConfigError, build, coerce_fields, field_help, load, merge, parse_override


@dataclass
class Member:
    name: str = field(metadata={"help": "Required: a member without a name is refused."})
    weight: float = field(default=1.0, metadata={"help": "A float."})

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")


@dataclass
class Limits:
    low: float = field(default=0.0, metadata={"help": "Lower bound."})
    labels: tuple[str, ...] = field(default=("a",), metadata={"help": "A tuple of strings."})


@dataclass
class Example:
    """Every kind of annotation the project's configs use."""

    count: int = field(default=1, metadata={"help": "An int."})
    rate: float = field(default=0.5, metadata={"help": "A float."})
    label: str = field(default="x", metadata={"help": "A string."})
    enabled: bool = field(default=False, metadata={"help": "A bool."})
    note: str | None = field(default=None, metadata={"help": "An optional string."})
    tags: list[str] = field(default_factory=list, metadata={"help": "A list of strings."})
    pair: tuple[int, int] = field(default=(0, 0), metadata={"help": "A fixed-length tuple."})
    shares: dict[str, float] = field(default_factory=dict, metadata={"help": "A table of floats."})
    limits: Limits = field(default_factory=Limits, metadata={"help": "A nested table."})
    members: list[Member] = field(default_factory=list, metadata={"help": "An array of tables."})
    either: str | list[str] | None = field(default=None, metadata={"help": "A union."})

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


FULL = """
count = 3
rate = 2                     # an integer where a float is declared
label = "y"
enabled = true
note = "n"
tags = ["a", "b"]
pair = [4, 5]
either = ["p", "q"]

[shares]
one = 1
two = 0.5

[limits]
low = 1
labels = ["b", "c"]

[[members]]
name = "first"

[[members]]
name = "second"
weight = 3
"""


def test_values_are_converted_by_the_field_types(tmp_path):
    config = load(Example, write(tmp_path / "full.toml", FULL))
    assert config.count == 3 and config.rate == 2.0 and isinstance(config.rate, float)
    assert (config.label, config.enabled, config.note, config.tags) == ("y", True, "n", ["a", "b"])
    assert config.pair == (4, 5) and config.either == ["p", "q"]
    assert config.shares == {"one": 1.0, "two": 0.5} and all(isinstance(v, float) for v in config.shares.values())
    assert config.limits == Limits(low=1.0, labels=("b", "c")) and isinstance(config.limits.low, float)
    assert config.members == [Member("first", 1.0), Member("second", 3.0)]
    assert isinstance(config.members[1].weight, float)


def test_direct_construction_is_checked_the_same_way():
    config = Example(rate=1, limits={"low": 2}, members=[{"name": "m"}], pair=[1, 2])
    assert config.rate == 1.0 and isinstance(config.rate, float)
    assert config.limits == Limits(low=2.0) and config.members == [Member("m")] and config.pair == (1, 2)
    with pytest.raises(ConfigError, match=r"members\[0\]\.weight must be a number, got 'heavy'"):
        Example(members=[{"name": "m", "weight": "heavy"}])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("count = 2.5", "count must be an integer, got 2.5"),
        ("count = true", "count must be an integer, got True"),
        ("rate = true", "rate must be a number, got True"),
        ('rate = "fast"', "rate must be a number, got 'fast'"),
        ("label = 3", "label must be a string, got 3"),
        ('enabled = "yes"', "enabled must be true or false, got 'yes'"),
        ("note = 1", "note must be a string, got 1"),
        ('tags = "a"', "tags must be a list of strings, got 'a'"),
        ("tags = [1]", r"tags\[0\] must be a string, got 1"),
        ("pair = [1, 2, 3]", "pair must have 2 items, got 3"),
        ("either = 5", "either must be a string or a list of strings or none, got 5"),
        ("shares = { one = 'x' }", "shares.one must be a number, got 'x'"),
        ("shares = 1", "shares must be a table of numbers, got 1"),
        ("limits = 1", "limits must be a table of Limits keys, got 1"),
        ("limits = { low = 'x' }", "limits.low must be a number, got 'x'"),
        ("members = { name = 'x' }", "members must be a list of Member tables"),
        ("members = [{ weight = 1 }]", r"members\[0\] is missing the key 'name'"),
        ("members = [{ name = 'x', colour = 1 }]", r"members\[0\]: unknown key 'colour' in Member"),
        ("members = [{ name = 'x', weight = -1 }]", r"members\[0\]: weight must be >= 0, got -1.0"),
        ("cuont = 1", "unknown key 'cuont' in Example; did you mean 'count'"),
        ("count = -1", "count must be >= 0, got -1"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, line, message):
    path = write(tmp_path / "bad.toml", line + "\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: {message}"):
        load(Example, path)


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*missing.toml does not exist"):
        load(Example, tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"broken.toml is not valid TOML"):
        load(Example, write(tmp_path / "broken.toml", "count = \n"))
    with pytest.raises(ConfigError, match=r"broken.json is not valid JSON"):
        load(Example, write(tmp_path / "broken.json", "{"))


def test_a_saved_json_config_loads_back(tmp_path):
    config = load(Example, write(tmp_path / "full.toml", FULL))
    saved = write(tmp_path / "saved.json", json.dumps(dataclasses.asdict(config)))
    assert load(Example, saved) == config


# ----------------------------------------------------------------------------- extends


def test_a_child_extends_a_parent_tables_merge_and_arrays_are_replaced(tmp_path):
    write(tmp_path / "base.toml", FULL)
    child = write(
        tmp_path / "child.toml",
        """
extends = "base.toml"
count = 7
tags = ["z"]

[shares]
two = 0.25
three = 3

[limits]
labels = ["d"]

[[members]]
name = "only"
""",
    )
    config = load(Example, child)
    assert config.count == 7 and config.label == "y" and config.pair == (4, 5)  # the parent's, where not set
    assert config.tags == ["z"]  # arrays are replaced, not appended
    assert config.shares == {"one": 1.0, "two": 0.25, "three": 3.0}  # tables merge key by key
    assert config.limits == Limits(low=1.0, labels=("d",))
    assert config.members == [Member("only")]  # an array of tables is an array: replaced


def test_extends_chains_are_relative_to_the_file_that_says_it(tmp_path):
    write(tmp_path / "recipes" / "base" / "root.toml", 'label = "root"\ncount = 1\nrate = 0.1\n')
    write(tmp_path / "recipes" / "middle.toml", 'extends = "base/root.toml"\ncount = 2\nrate = 0.2\n')
    leaf = write(tmp_path / "elsewhere" / "leaf.toml", 'extends = "../recipes/middle.toml"\nrate = 0.3\n')
    assert (load(Example, leaf).label, load(Example, leaf).count, load(Example, leaf).rate) == ("root", 2, 0.3)


def test_extends_cycles_and_missing_parents_are_refused(tmp_path):
    write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load(Example, tmp_path / "a.toml")
    with pytest.raises(ConfigError, match="cycle"):
        load(Example, write(tmp_path / "self.toml", 'extends = "self.toml"\n'))
    with pytest.raises(ConfigError, match=r"config file .*nowhere.toml does not exist"):
        load(Example, write(tmp_path / "orphan.toml", 'extends = "nowhere.toml"\n'))
    with pytest.raises(ConfigError, match="extends must be a file name"):
        load(Example, write(tmp_path / "odd.toml", "extends = 3\n"))


def test_an_error_in_a_parent_names_the_parent_file(tmp_path):
    parent = write(tmp_path / "parent.toml", 'count = "three"\n[shares]\none = "x"\n')
    child = write(tmp_path / "child.toml", 'extends = "parent.toml"\nrate = 0.1\n[shares]\ntwo = 2\n')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(parent))}: count must be an integer"):
        load(Example, child)
    write(tmp_path / "parent.toml", '[shares]\none = "x"\n')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(parent))}: shares.one must be a number"):
        load(Example, child)
    write(tmp_path / "child.toml", 'extends = "parent.toml"\n[shares]\none = 1\ntwo = "y"\n')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(child))}: shares.two must be a number"):
        load(Example, child)


def test_merge_is_key_by_key_for_tables_only():
    base = {"a": 1, "t": {"x": 1, "y": {"deep": 1, "keep": 2}}, "arr": [1, 2]}
    merged = merge(base, {"t": {"y": {"deep": 9}}, "arr": [3]})
    assert merged == {"a": 1, "t": {"x": 1, "y": {"deep": 9, "keep": 2}}, "arr": [3]}
    assert base["t"]["y"]["deep"] == 1  # the parent is not modified


# ----------------------------------------------------------------------------- overrides


def test_overrides_set_values_and_single_keys_of_tables(tmp_path):
    path = write(tmp_path / "full.toml", FULL)
    config = load(Example, path, ["count=9", "label=bare words", "shares.two=4", "limits.labels=['e']"])
    assert config.count == 9 and config.label == "bare words"
    assert config.shares == {"one": 1.0, "two": 4.0} and config.limits.labels == ("e",)
    assert load(Example, path, ["shares={ only = 1 }"]).shares == {"only": 1.0}  # a whole table replaces
    assert load(Example, None, ["count=2"]).count == 2
    with pytest.raises(ConfigError, match=r"^--set count=x: count must be an integer, got 'x'"):
        load(Example, path, ["count=x"])
    with pytest.raises(ConfigError, match="not key=value"):
        load(Example, path, ["count"])
    with pytest.raises(ConfigError, match=r"--set count.sub=1: count is not a table"):
        load(Example, path, ["count.sub=1"])


def test_parse_override_reads_toml_values_or_bare_strings():
    assert parse_override("a = 1") == ("a", 1)
    assert parse_override('a="q"') == ("a", "q")
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=runs/x") == ("a", "runs/x")


def test_build_without_a_file_gives_unprefixed_config_errors():
    assert build(Example, {"count": 2}).count == 2
    with pytest.raises(ConfigError, match=r"^count must be >= 0"):
        build(Example, {"count": -1})


def test_field_help_lists_every_field_with_its_default():
    rows = {name: (default, text) for name, default, text in field_help(Example)}
    assert list(rows) == [item.name for item in dataclasses.fields(Example)]
    assert rows["rate"] == ("0.5", "A float.") and json.loads(rows["limits"][0]) == {"low": 0.0, "labels": ["a"]}
    assert field_help(Member)[0][1] == '"(required)"'


def test_the_loader_imports_neither_torch_nor_numpy():
    script = (
        "import sys, tonewatch.configfile\n"
        "print(sorted(n for n in ('torch', 'numpy', 'tonewatch.training', 'tonewatch.model') if n in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
