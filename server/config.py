"""Settings: declared once here with a default and help, read from config.yaml, overridden by the environment.

Precedence: defaults < config.yaml < environment < command line.
Environment names: CATCHLIGHT_<NAME> for `server` settings, CATCHLIGHT_MATCHER_<NAME>
for `matcher` settings, and REDIS_URL for the store.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from matcher.settings import MatcherSettings


class ConfigError(ValueError):
    pass


def setting(default: Any, help: str, minimum: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "minimum": minimum})


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("127.0.0.1", "Address to listen on.")
    port: int = setting(8080, "Port to listen on.", minimum=0)
    data_dir: str = setting("var", "Where the embedded store keeps its files.")
    pool_size: int = setting(0, "Matcher worker processes; 0 means one per CPU core.", minimum=0)
    redis_url: str = setting("", "Redis-protocol server to use; empty starts the embedded one under data_dir.")
    redis_prefix: str = setting("cl", "Prefix of every key this server writes.")
    redis_sentinels: tuple[str, ...] = setting(
        (), "host:port of each Sentinel watching the store; when set, the primary they name is used, not redis_url."
    )
    redis_sentinel_master: str = setting("catchlight", "Name the Sentinels monitor the store's primary under.")
    redis_min_replicas: int = setting(
        0, "Replicas that must confirm a collection change (WAIT) before it is acknowledged; 0: do not wait.", 0
    )
    redis_replica_timeout_seconds: float = setting(2.0, "How long a change waits for those replicas before 503.", 0.01)
    node_group: str = setting(
        "", "Node group this node serves: its workers hold only the collections placed in it; empty: every collection."
    )
    behind_after_seconds: float = setting(
        1.0, "/healthz says behind (503) once a worker has not applied a change this much older than the newest.", 0.05
    )
    max_message_bytes: int = setting(4 << 20, "Largest websocket message answered; larger ones get an error.", 1024)
    max_upload_bytes: int = setting(20 << 20, "Largest HTTP request body (reference upload, recognize).", 1024)
    max_image_bytes: int = setting(8 << 20, "Largest image (stream frame, recognize, reference), in bytes.", 64)
    max_metadata_bytes: int = setting(16 << 10, "Largest item metadata, as JSON.", 2)
    max_name_length: int = setting(200, "Longest item name.", 1)
    max_queued_requests: int = setting(64, "HTTP jobs waiting for a worker before new ones get 503.", 1)
    job_timeout_seconds: float = setting(30.0, "A job not answered by then fails with a timeout.", 1)
    thumbnail_side: int = setting(320, "Longer side of generated thumbnails.", 32)
    max_items_per_collection: int = setting(100_000, "Items a collection may hold; uploads past it get 409.", 1)
    max_frames_per_second: float = setting(30.0, "Frames per second per credential (a token may set fewer).", 0.1)
    max_streams_per_credential: int = setting(16, "Streams one credential may have open at once.", 1)
    max_unsent_bytes: int = setting(1 << 20, "Replies queued for a client that does not read; past it: close.", 4096)
    require_credentials: bool = setting(False, "Ask for credentials even on a loopback address with none made.")
    credentials_refresh_seconds: float = setting(1.0, "How often credential changes (revocations) are picked up.", 0.05)
    auth_timeout_seconds: float = setting(10.0, "Time a stream has to send its auth message.", 0.5)
    shutdown_grace_seconds: float = setting(5.0, "On SIGTERM, time in-flight frames get to finish.", 0)
    allowed_origins: tuple[str, ...] = setting((), "Other origins allowed to open the stream websocket.")
    cors_origins: tuple[str, ...] = setting((), "Origins whose pages may call the HTTP API (CORS); '*' for any.")
    websocket_ping_seconds: float = setting(20.0, "Ping interval that detects dead websocket peers.", 1)
    max_scan_bytes: int = setting(512 << 20, "Largest video accepted by POST /v1/scans.", 1024)
    scan_sample_rate: float = setting(2.0, "Frames per second a video scan looks at, unless the request says.", 0.01)
    scan_max_gap: int = setting(1, "Missed samples bridged inside one appearance of an item in a video scan.", 0)
    scan_webhook_url: str = setting("", "URL called (POST, JSON summary) when a video scan ends; empty: none.")
    demo_collection: str = setting("demo", "Collection filled with the demo images on first start; empty: none.")
    demo_images: str = setting(".cache/demo", "Folder with the demo images (made by the setup script).")


@dataclass(frozen=True)
class Config:
    server: ServerSettings = field(default_factory=ServerSettings)
    matcher: MatcherSettings = field(default_factory=MatcherSettings)


def _coerce(value: Any, kind: Any, name: str) -> Any:
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return "" if value is None else str(value)
        if origin is tuple:
            (item_kind, *_rest) = typing.get_args(kind)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return tuple(_coerce(v, item_kind, name) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a valid {getattr(kind, '__name__', kind)}") from None
    raise ConfigError(f"setting {name}: unsupported type {kind}")


def _build(cls: Any, values: Mapping[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {section}: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in values.items():
        coerced = _coerce(value, hints[name], f"{section}.{name}")
        minimum = known[name].metadata.get("minimum")
        if minimum is not None and coerced < minimum:
            raise ConfigError(f"setting {section}.{name}: {coerced} is below the minimum {minimum}")
        kwargs[name] = coerced
    return cls(**kwargs)


def _from_env(cls: Any, prefix: str, env: Mapping[str, str]) -> dict[str, str]:
    return {
        f.name: env[prefix + f.name.upper()] for f in dataclasses.fields(cls) if prefix + f.name.upper() in env
    }


def load_config(
    path: Path | None = None, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Read `path` (if any), apply environment and `overrides` (server settings), validate."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections")
    unknown = set(data) - {"server", "matcher"}
    if unknown:
        raise ConfigError(f"unknown section(s) in {path}: {', '.join(sorted(unknown))}")
    server_values = dict(data.get("server") or {})
    server_values.update(_from_env(ServerSettings, "CATCHLIGHT_", env))
    if env.get("REDIS_URL"):
        server_values["redis_url"] = env["REDIS_URL"]
    server_values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    matcher_values = dict(data.get("matcher") or {})
    matcher_values.update(_from_env(MatcherSettings, "CATCHLIGHT_MATCHER_", env))
    return Config(
        server=_build(ServerSettings, server_values, "server"),
        matcher=_build(MatcherSettings, matcher_values, "matcher"),
    )


def describe_settings() -> list[tuple[str, str, Any, str]]:
    """(section, name, default, help) of every setting, for docs and the config test."""
    rows = []
    for section, cls in (("server", ServerSettings), ("matcher", MatcherSettings)):
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            rows.append((section, f.name, default, f.metadata.get("help", "")))
    return rows
