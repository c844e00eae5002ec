"""The shipped config.yaml stays in step with the settings the code declares."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server.config import Config, ConfigError, describe_settings, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_lists_every_setting_with_its_default() -> None:
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    declared = {(section, name): default for section, name, default, _ in describe_settings()}
    listed = {(section, name): value for section in shipped for name, value in shipped[section].items()}
    assert set(listed) == set(declared)
    assert load_config(ROOT / "config.yaml", env={}) == Config()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 9000\nmatcher:\n  min_inliers: 20\n")
    config = load_config(path, env={"CATCHLIGHT_PORT": "9100", "CATCHLIGHT_MATCHER_RATIO": "0.7", "REDIS_URL": "redis://x:1/0"})
    assert (config.server.port, config.server.redis_url) == (9100, "redis://x:1/0")
    assert (config.matcher.min_inliers, config.matcher.ratio) == (20, 0.7)


@pytest.mark.parametrize(
    "text,complaint",
    [
        ("server:\n  prot: 1\n", "unknown setting"),
        ("server:\n  port: eighty\n", "not a valid int"),
        ("server:\n  pool_size: -1\n", "below the minimum"),
        ("serve: {}\n", "unknown section"),
        ("server: [\n", "not valid YAML"),
    ],
)
def test_bad_settings_are_refused_with_a_message_naming_them(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=complaint):
        load_config(path, env={})
