"""Start-up as a checklist: every step names what to fix when it fails.

python -m server [--port PORT] [--data-dir DIR] [--config FILE] [--host HOST]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import tornado.web

from matcher.embedded_redis import EmbeddedRedis, RedisStartError, start_or_reuse
from matcher.redis_client import display, sentinel_url
from matcher.scan_store import ScanStore
from matcher.store import InvalidName, RedisCollectionStore, StoreUnavailable, check_group_name
from server.access import Access
from server.app import ROOT, VENDOR, make_app
from server.catalog import Catalog
from server.config import Config, ConfigError, load_config
from server.credentials import CredentialStore
from server.pool import WorkerPool
from server.scans import ScanProcess, Scans
from server.scheduler import Scheduler
from server.usage import UsageStats

log = logging.getLogger("catchlight")


class StartupError(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server", description="Run the Catchlight recognition server.")
    parser.add_argument("--config", type=Path, default=None, help="settings file (default: ./config.yaml if present)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default=None, help="address to listen on")
    parser.add_argument("--data-dir", default=None, help="where the embedded store keeps its data (default ./var)")
    parser.add_argument("--pool-size", type=int, default=None, help="matcher worker processes")
    return parser.parse_args(argv)


def step_load_config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and (ROOT / "config.yaml").exists():
        path = ROOT / "config.yaml"
    try:
        config = load_config(
            path,
            overrides={"port": args.port, "host": args.host, "data_dir": args.data_dir, "pool_size": args.pool_size},
        )
    except ConfigError as exc:
        raise StartupError(f"configuration: {exc}") from None
    if config.server.node_group:
        try:
            check_group_name(config.server.node_group)
        except InvalidName as exc:
            raise StartupError(f"configuration: node_group {config.server.node_group!r}: {exc}") from None
    return config


def step_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("CATCHLIGHT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def step_check_assets() -> None:
    for name, folder in VENDOR.items():
        if not folder.is_dir():
            raise StartupError(f"browser library {name} is missing from {folder}: run `npm ci` (the setup script does)")


def step_store(config: Config) -> tuple[str, EmbeddedRedis | None]:
    if config.server.redis_sentinels:
        url, embedded = sentinel_url(config.server.redis_sentinels, config.server.redis_sentinel_master), None
        log.info("store: the primary Sentinel knows as %r", config.server.redis_sentinel_master)
    elif config.server.redis_url:
        url, embedded = config.server.redis_url, None
    else:
        try:
            embedded = start_or_reuse(Path(config.server.data_dir))
        except RedisStartError as exc:
            raise StartupError(f"embedded store: {exc}") from None
        url = embedded.url
        log.info("embedded store at %s (data in %s)", url, embedded.directory)
    store = RedisCollectionStore.from_url(url, config.server.redis_prefix)
    try:
        store.redis.ping()
    except Exception as exc:
        raise StartupError(
            f"cannot reach the store at {display(url)}: {exc}; check REDIS_URL (or redis_sentinels)"
        ) from None
    return url, embedded


def step_credentials(config: Config, redis_url: str) -> Access:
    """Load the credentials; refuse to listen on a network address (or when asked to) without any."""
    settings = config.server
    access = Access(
        CredentialStore.from_url(redis_url, settings.redis_prefix),
        settings.host,
        settings.max_frames_per_second,
        settings.max_streams_per_credential,
    )
    access.refresh()
    if access.credential_count == 0 and (settings.require_credentials or not access.loopback):
        why = "require_credentials is set" if settings.require_credentials else f"it listens on {settings.host}"
        raise StartupError(
            f"no credentials exist and {why}: anyone who reaches the port could change the collections. "
            "Create a management key first: python -m server.credentials create management --name admin "
            "(or listen on 127.0.0.1 only)"
        )
    if access.open:
        log.warning(
            "OPEN: no credentials exist, so anyone on this machine may use the API unauthenticated "
            "(listening on %s only). Create one with `python -m server.credentials create ...` to require them.",
            settings.host,
        )
    else:
        log.info("credentials required (%d known)", access.credential_count)
    return access


async def keep_credentials_fresh(access: Access, interval: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        await loop.run_in_executor(None, access.refresh)


async def shut_down(
    server: tornado.httpserver.HTTPServer, app: tornado.web.Application, pool: WorkerPool, grace: float
) -> None:
    """Stop accepting, answer or fail every in-flight frame, close streams with 1001."""
    server.stop()
    streams = app.settings["streams"]
    for handler in list(streams):
        handler.shut_down()  # waiting frames: shutting_down; new frames: shutting_down
    await pool.drain(grace)  # frames in a worker get their real answer
    await pool.close()  # anything still running: shutting_down
    await asyncio.sleep(0)  # let the answers be written before the close frames
    for handler in list(streams):
        handler.close(1001, "the server is stopping")
    deadline = time.monotonic() + 5
    while streams and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await server.close_all_connections()


async def serve(config: Config, redis_url: str, access: Access) -> None:
    store = RedisCollectionStore.from_url(
        redis_url,
        config.server.redis_prefix,
        min_replicas=config.server.redis_min_replicas,
        replica_timeout=config.server.redis_replica_timeout_seconds,
    )
    scheduler = Scheduler(config.server.max_queued_requests)
    size = config.server.pool_size or os.cpu_count() or 1
    pool = WorkerPool(
        size,
        config.matcher,
        redis_url,
        config.server.redis_prefix,
        config.server.job_timeout_seconds,
        scheduler.dispatch,
        config.server.node_group,
    )
    scheduler.attach(pool)
    served = f"node group {config.server.node_group!r}" if config.server.node_group else "every collection"
    log.info("starting %d matcher workers (%s)", size, served)
    await pool.start()
    catalog = Catalog(store, scheduler, config.server)
    try:
        added = await catalog.load_demo(config.server.demo_collection, ROOT / config.server.demo_images)
    except StoreUnavailable as exc:
        raise StartupError(f"store: {exc}") from None
    if added:
        log.info("demo collection %r created with %d items", config.server.demo_collection, added)

    usage = UsageStats(store.redis, config.server.redis_prefix)
    usage.active_streams = lambda: len(scheduler.streams)
    usage.start()
    scan_store = ScanStore.from_url(redis_url, config.server.redis_prefix)
    scans = Scans(scan_store, catalog, config.server)
    scan_process = ScanProcess(config.matcher, redis_url, config.server.redis_prefix, scans.runner, config.server.scan_webhook_url)
    scan_process.start()
    app = make_app(config, catalog, scheduler, pool, usage, access, scans)
    refresher = asyncio.ensure_future(keep_credentials_fresh(access, config.server.credentials_refresh_seconds))
    server = tornado.httpserver.HTTPServer(
        app, max_body_size=config.server.max_upload_bytes * 2, xheaders=False
    )
    try:
        sockets = tornado.netutil.bind_sockets(config.server.port, config.server.host)
    except OSError as exc:
        raise StartupError(f"cannot listen on {config.server.host}:{config.server.port}: {exc}") from None
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    host = config.server.host if config.server.host not in ("0.0.0.0", "::", "") else "localhost"
    print(f"Catchlight is ready: http://{host}:{port}/", flush=True)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("stopping")
    refresher.cancel()
    await shut_down(server, app, pool, config.server.shutdown_grace_seconds)
    await scan_process.close()
    await usage.close()
    catalog.close()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    embedded: EmbeddedRedis | None = None
    try:
        config = step_load_config(args)
        step_logging()
        step_check_assets()
        redis_url, embedded = step_store(config)
        access = step_credentials(config, redis_url)
        asyncio.run(serve(config, redis_url, access))
    except StartupError as exc:
        print(f"catchlight: cannot start: {exc}", file=sys.stderr)
        return 2
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
