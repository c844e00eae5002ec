"""The Tornado application: routes and shared services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tornado.web

from server.access import Access
from server.catalog import Catalog
from server.config import Config
from server.handlers import api, pages, stream
from server.handlers import scans as scan_handlers
from server.handlers import usage as usage_api
from server.handlers.base import NotFoundHandler, log_request
from server.pool import WorkerPool
from server.scans import Scans
from server.scheduler import Scheduler
from server.usage import UsageStats

ROOT = Path(__file__).resolve().parent.parent
ITEM = r"/v1/collections/([^/]+)/items/([^/]+)"


# Third-party browser libraries, installed by npm at setup (package.json) and served as our own assets.
VENDOR = {
    "msgpack": ROOT / "node_modules" / "@msgpack" / "msgpack" / "dist.umd",
    "uplot": ROOT / "node_modules" / "uplot" / "dist",
}


def make_app(
    config: Config,
    catalog: Catalog,
    scheduler: Scheduler,
    pool: WorkerPool,
    usage: UsageStats | None = None,
    access: Access | None = None,
    scans: Scans | None = None,
) -> tornado.web.Application:
    routes: list[Any] = [
        (r"/", pages.CameraPage),
        (r"/collection", pages.CollectionPage),
        (r"/healthz", api.HealthHandler),
        (r"/v1/collections", api.CollectionsHandler),
        (r"/v1/collections/([^/]+)", api.CollectionHandler),
        (r"/v1/collections/([^/]+)/items", api.ItemsHandler),
        (ITEM, api.ItemHandler),
        (ITEM + r"/thumbnail", api.ThumbnailHandler),
        (ITEM + r"/keypoints", api.KeypointsHandler),
        (r"/v1/collections/([^/]+)/stats", usage_api.CollectionStatsHandler),
        (r"/v1/stats", usage_api.StatsHandler),
        (r"/metrics", usage_api.MetricsHandler),
        (r"/console", pages.ConsolePage),
        (r"/console/collections/([^/]+)", pages.ConsoleCollectionPage),
        (r"/console/try", pages.TryPhotoPage),
        (r"/console/stats", pages.DashboardPage),
        (r"/v1/recognize", api.RecognizeHandler),
        (r"/v1/openapi.json", api.OpenApiHandler, {"document": api.OpenApiHandler.load()}),
        (r"/v1/stream", stream.StreamHandler),
        (r"/v1/streams", api.StreamsHandler),
        (r"/v1/scans", scan_handlers.ScansHandler),
        (r"/v1/scans/([^/]+)", scan_handlers.ScanHandler),
        (r"/scans", pages.ScansPage),
        (r"/scans/([^/]+)", pages.ScanPage),
    ]
    for name, folder in VENDOR.items():
        routes.append((rf"/vendor/{name}/(.*)", tornado.web.StaticFileHandler, {"path": str(folder)}))
    return tornado.web.Application(
        routes,
        template_path=str(ROOT / "templates"),
        static_path=str(ROOT / "static"),
        config=config,
        catalog=catalog,
        scheduler=scheduler,
        pool=pool,
        access=access,
        streams=set(),  # open StreamHandlers, closed with 1001 when the server stops
        log_function=log_request,
        usage=usage,
        scans=scans,
        websocket_max_message_size=config.server.max_message_bytes * 4,
        websocket_ping_interval=config.server.websocket_ping_seconds,
        websocket_ping_timeout=config.server.websocket_ping_seconds,
        compress_response=True,
        default_handler_class=NotFoundHandler,
    )
