"""Usage statistics over HTTP: /v1/stats (JSON for the dashboard), per-item counts, /metrics (Prometheus)."""

from __future__ import annotations

from matcher.store import InvalidName, NotFound, check_collection_name
from server.access import MANAGE
from server.catalog import RequestRejected
from server.handlers.base import ApiHandler
from server.usage import RANGES, UsageStats


class UsageHandler(ApiHandler):
    """Statistics are for the operators: a management key reads them."""

    def prepare(self) -> None:
        self.allow(MANAGE)

    @property
    def usage(self) -> UsageStats:
        usage: UsageStats = self.application.settings["usage"]
        return usage

    def range_argument(self, default: str) -> str:
        name = self.get_query_argument("range", default)
        if name not in RANGES:
            raise RequestRejected("invalid_request", f"range must be one of {', '.join(RANGES)}")
        return name


class StatsHandler(UsageHandler):
    async def get(self) -> None:
        range_name = self.range_argument("24h")
        collection = self.get_query_argument("collection", None)
        if collection is not None:
            check_collection_name(collection)
        await self.usage.flush()  # what was just counted is in the answer
        summary = await self.usage.run(self.usage.summary, range_name, collection, self.item_name)
        self.send_json(summary)

    def item_name(self, collection: str, item: str) -> str | None:
        """(Blocking, in the statistics thread.) The item's name, None when it no longer exists."""
        try:
            return self.catalog.store.get_item(collection, item).name
        except (NotFound, InvalidName):
            return None


class CollectionStatsHandler(UsageHandler):
    async def get(self, collection: str) -> None:
        range_name = self.range_argument("24h")
        check_collection_name(collection)
        items = await self.catalog.in_store(self.catalog.store.list_items, collection)
        await self.usage.flush()
        totals = await self.usage.run(self.usage.item_totals, collection)
        recent = await self.usage.run(self.usage.item_counts, collection, range_name)
        self.send_json(
            {
                "collection": collection,
                "range": range_name,
                "items": [
                    {"item": i.item, "name": i.name, "total": totals.get(i.item, 0), "recent": recent.get(i.item, 0)}
                    for i in items
                ],
            }
        )


class MetricsHandler(UsageHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.usage.metrics())
