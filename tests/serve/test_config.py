"""ServeConfig: defaults, validation, TOML loading, where the server binds."""

from __future__ import annotations

import re

import pytest

from tonewatch.serve.config import ApiKey, ServeConfig
from tonewatch.tracking import AlertPolicy

TOML = """
model_dir = "runs/default"
host = "0.0.0.0"
port = 9000
batch_max_wait_ms = 2
idle_timeout_s = 60

[[api_keys]]
name = "telephony"
key = "write-key-0123456789"
scopes = ["write"]

[[api_keys]]
name = "supervisors"
key = "read-key-0123456789a"
scopes = ["read"]

[alert]
hysteresis = 0.2
cooldown_turns = 4
escalation_thresholds = { zh = 0.55 }
"""


def test_toml_loads_into_typed_fields_and_overrides_win(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text(TOML)
    config = ServeConfig.from_toml(path, port=9100, model_dir=None)
    assert config.port == 9100 and config.model_dir == "runs/default"  # None overrides are ignored
    assert config.batch_max_wait_ms == 2.0 and isinstance(config.batch_max_wait_ms, float)
    assert [key.name for key in config.api_keys] == ["telephony", "supervisors"]
    assert isinstance(config.api_keys[0], ApiKey) and config.api_keys[1].scopes == ["read"]
    assert isinstance(config.alert, AlertPolicy) and config.alert.cooldown_turns == 4
    assert config.alert.escalation_thresholds == {"zh": 0.55}
    assert config.bind_host() == ("0.0.0.0", None)
    assert all(key["key"] == "***" for key in config.to_dict()["api_keys"])


def test_defaults_listen_on_localhost_without_keys():
    config = ServeConfig.from_toml()
    assert config.bind_host()[0] == "127.0.0.1" and "localhost only" in config.bind_host()[1]
    assert ServeConfig(host="::1").bind_host()[0] == "::1"
    assert ServeConfig(host="example.org").bind_host()[0] == "127.0.0.1"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"port": 70000}, "port"),
        ({"port": "8000"}, "port"),
        ({"max_text_chars": 0}, "max_text_chars"),
        ({"max_items": 2.5}, "max_items"),
        ({"batch_max_wait_ms": -1}, "batch_max_wait_ms"),
        ({"idle_timeout_s": 0}, "idle_timeout_s"),
        ({"log_level": "loud"}, "log_level"),
        ({"log_transcripts": "yes"}, "log_transcripts"),
        ({"api_keys": [{"key": "short", "scopes": ["read"]}]}, "16 characters"),
        ({"api_keys": [{"key": "k" * 20, "scopes": ["admin"]}]}, "scopes"),
        ({"api_keys": [{"key": "k" * 20, "scopes": []}]}, "scopes"),
        ({"api_keys": [{"key": "k" * 20, "role": "x"}]}, r"api_keys\[0\]: unknown key 'role'"),
        ({"api_keys": [{"key": "k" * 20}, {"key": "k" * 20}]}, "twice"),
        ({"api_keys": "k" * 20}, "list"),
        ({"alert": {"hysteresis": 2}}, "hysteresis"),
        ({"alert": {"hysteresis": "high"}}, "alert"),
        ({"alert": {"loudness": 1}}, "alert: unknown key 'loudness'"),
    ],
)
def test_invalid_settings_are_value_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        ServeConfig(**settings)


def test_unknown_fields_and_bad_files_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'prot' in ServeConfig; did you mean 'port'"):
        ServeConfig.from_toml(None, prot=1)
    with pytest.raises(ValueError, match="does not exist"):
        ServeConfig.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        ServeConfig.from_toml(bad)


def test_every_field_has_help():
    import dataclasses

    for cls in (ServeConfig, ApiKey, AlertPolicy):
        for item in dataclasses.fields(cls):
            assert item.metadata.get("help"), f"{cls.__name__}.{item.name} has no help"


def test_a_serve_config_extends_another_and_errors_name_the_file_and_key(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text(TOML)
    site = tmp_path / "site.toml"
    site.write_text('extends = "base.toml"\nport = 9200\n\n[alert]\ncooldown_turns = 6\n')
    config = ServeConfig.from_toml(site)
    assert config.port == 9200 and config.host == "0.0.0.0"
    assert config.alert.cooldown_turns == 6 and config.alert.hysteresis == 0.2  # [alert] merges key by key
    assert [key.name for key in config.api_keys] == ["telephony", "supervisors"]
    site.write_text(
        'extends = "base.toml"\n\n[[api_keys]]\nname = "only"\nkey = "only-key-0123456789"\nscopes = ["read"]\n'
    )
    assert [key.name for key in ServeConfig.from_toml(site).api_keys] == ["only"]  # arrays of tables are replaced
    site.write_text('extends = "base.toml"\n\n[[api_keys]]\nkey = "only-key-0123456789"\nscopes = "read"\n')
    with pytest.raises(ValueError, match=rf"^{re.escape(str(site))}: api_keys\[0\]\.scopes must be a list of strings"):
        ServeConfig.from_toml(site)
    with pytest.raises(ValueError, match=r"^command line: port must be an integer, got '80'"):
        ServeConfig.from_toml(site, port="80")
