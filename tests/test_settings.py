"""Settings precedence and validation (defaults < TOML < env < flags), and strict model configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servoscope.cli import main
from servoscope.models.config import ModelConfigError, load_config
from servoscope.settings import CONFIG_ENV, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SERVOSCOPE_* variable of the caller's leaks into these tests."""
    for key in [k for k in os.environ if k.startswith("SERVOSCOPE_")]:
        monkeypatch.delenv(key)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "servoscope.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert settings.port == 8000 and settings.default_top_k == 5 and settings.max_body_bytes == 20 * 1024 * 1024


def test_toml_over_defaults(tmp_path: Path) -> None:
    settings = load_settings(write_toml(tmp_path, "port = 9001\ndefault_top_k = 3\n"))
    assert settings.port == 9001 and settings.default_top_k == 3
    assert settings.max_pending == Settings().max_pending


def test_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVOSCOPE_PORT", "9002")
    settings = load_settings(write_toml(tmp_path, "port = 9001\ndefault_top_k = 3\n"))
    assert settings.port == 9002
    assert settings.default_top_k == 3  # TOML still wins over the default where env is silent


def test_flags_over_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVOSCOPE_PORT", "9002")
    monkeypatch.setenv("SERVOSCOPE_MAX_PENDING", "7")
    settings = load_settings(write_toml(tmp_path, "port = 9001\n"), port=9003, host=None)
    assert settings.port == 9003
    assert settings.max_pending == 7
    assert settings.host == "127.0.0.1"  # a flag of None is not given


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write_toml(tmp_path, "log_level = 'debug'\n")))
    assert load_settings().log_level == "debug"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_unknown_toml_key_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="max_body_byte"):
        load_settings(write_toml(tmp_path, "max_body_byte = 10\n"))


def test_unknown_flag_named() -> None:
    with pytest.raises(SettingsError, match="worker_count"):
        load_settings(worker_count=3)


def test_invalid_value_names_field(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="max_body_bytes") as info:
        load_settings(write_toml(tmp_path, "max_body_bytes = 0\n"))
    assert "0" in str(info.value)


def test_invalid_env_value_names_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVOSCOPE_PORT", "eighty")
    with pytest.raises(SettingsError, match="port"):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.port = 1  # type: ignore[misc]


def test_cli_reports_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_toml(tmp_path, "no_such_setting = 1\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "no_such_setting" in capsys.readouterr().err


# --- model config.toml -------------------------------------------------------------------------

MODEL_TOML = """\
name = "m"

[batching]
max_batch_size = 8
preferred_batch_sizes = [4, 8]
"""


def test_model_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MODEL_TOML)
    config = load_config(path)
    assert config.batching.max_batch_size == 8 and config.batching.preferred_batch_sizes == (4, 8)


def test_model_config_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MODEL_TOML + "max_queue_delay = 0.01\n")  # a typo of max_queue_delay_s
    with pytest.raises(ModelConfigError, match="max_queue_delay"):
        load_config(path)


def test_model_config_unknown_section(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MODEL_TOML + "\n[batcher]\nmax_batch_size = 4\n")
    with pytest.raises(ModelConfigError, match="batcher"):
        load_config(path)


def test_preferred_batch_size_above_max_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MODEL_TOML.replace("[4, 8]", "[4, 16]"))
    with pytest.raises(ModelConfigError, match="preferred_batch_sizes") as info:
        load_config(path)
    assert "16" in str(info.value)


def test_model_config_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("name = \n")
    with pytest.raises(ModelConfigError, match="cannot read"):
        load_config(path)


def test_model_overrides_replace_config_values() -> None:
    from servoscope.models.config import ModelConfig, ModelConfigError, ModelOverrides

    config = ModelConfig(name="m")
    changed = ModelOverrides(max_batch_size=4, max_queue_delay_s=0.0, instances=2, intra_op_threads=1).apply(config)
    assert changed.batching.max_batch_size == 4 and changed.batching.max_queue_delay_s == 0.0
    assert changed.instances.count == 2 and changed.instances.intra_op_threads == 1
    assert changed.batching.max_queue_size == config.batching.max_queue_size  # untouched
    assert ModelOverrides().apply(config) is config
    with_preferred = ModelConfig.model_validate({"name": "m", "batching": {"preferred_batch_sizes": [8, 16]}})
    with pytest.raises(ModelConfigError, match="exceed max_batch_size"):
        ModelOverrides(max_batch_size=4).apply(with_preferred)


def test_model_overrides_from_env_and_flags_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVOSCOPE_MODEL_OVERRIDES__MAX_BATCH_SIZE", "8")
    settings = load_settings(None, model_overrides={"instances": 2})
    assert settings.model_overrides.max_batch_size == 8
    assert settings.model_overrides.instances == 2


def test_instance_isolation_is_thread_unless_set_and_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MODEL_TOML)
    assert load_config(path).instances.isolation == "thread"
    path.write_text(MODEL_TOML + '\n[instances]\nisolation = "process"\n')
    config = load_config(path)
    assert config.instances.isolation == "process"
    path.write_text(MODEL_TOML + '\n[instances]\nisolation = "fork"\n')
    with pytest.raises(ModelConfigError, match="isolation") as info:
        load_config(path)
    assert "fork" in str(info.value)
    monkeypatch.setenv("SERVOSCOPE_MODEL_OVERRIDES__ISOLATION", "thread")
    overrides = load_settings(None).model_overrides
    assert overrides.isolation == "thread" and overrides.apply(config).instances.isolation == "thread"
    monkeypatch.setenv("SERVOSCOPE_MODEL_OVERRIDES__ISOLATION", "vm")
    with pytest.raises(SettingsError, match="isolation"):
        load_settings(None)
