"""The HTTP API (docs/api.md): collections, items, one-off recognition. Thin: parse, call, serialize."""

from __future__ import annotations

from typing import Any

from matcher.store import (
    ChangeLag,
    StoreUnavailable,
    change_order,
    check_collection_name,
    check_group_name,
    check_item_id,
)
from server.access import MANAGE, READ, RECOGNIZE
from server.catalog import RequestRejected
from server.handlers.base import ApiHandler
from server.usage import collection_or_blank, token_of


def _collection(name: str) -> str:
    return check_collection_name(name)


class LimitedBodyHandler(ApiHandler):
    def prepare(self) -> None:
        limit = self.application.settings["config"].server.max_upload_bytes
        length = int(self.request.headers.get("Content-Length") or len(self.request.body or b""))
        if length > limit:
            raise RequestRejected("body_too_large", f"the request body is {length} bytes, the limit is {limit}")

    def image_from_request(self) -> bytes:
        """The image of a request: a multipart 'image' file, or the raw body."""
        files = self.request.files.get("image")
        if files:
            return files[0]["body"]
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            raise RequestRejected("invalid_request", "the multipart form needs an 'image' file")
        if not self.request.body:
            raise RequestRejected("invalid_request", "send the image as the body or as a multipart 'image' file")
        return self.request.body

    def checked_image(self) -> bytes:
        image = self.image_from_request()
        limit = self.application.settings["config"].server.max_image_bytes
        if len(image) > limit:
            raise RequestRejected("image_too_large", f"the image is {len(image)} bytes, the limit is {limit}")
        return image


class CollectionsHandler(ApiHandler):
    async def get(self) -> None:
        credential = self.allow(READ)
        summaries = await self.catalog.in_store(self.catalog.store.collections)
        visible = [s for s in summaries if credential.may_use(s.name)]
        self.send_json({"collections": [s.to_wire() for s in visible]})


class CollectionHandler(ApiHandler):
    async def get(self, collection: str) -> None:
        self.allow(READ, _collection(collection))
        for summary in await self.catalog.in_store(self.catalog.store.collections):
            if summary.name == collection:
                self.send_json(summary.to_wire())
                return
        self.send_error_code("not_found", f"no collection {collection}")

    async def put(self, collection: str) -> None:
        self.allow(MANAGE)
        group = self.group_of_body(allow_empty=True)
        created = await self.catalog.in_store(self.catalog.store.create_collection, _collection(collection), group)
        self.send_json({"collection": collection, "created": created}, 201 if created else 200)

    async def patch(self, collection: str) -> None:
        """Move a collection to another node group (docs/deploy.md, "Node groups")."""
        self.allow(MANAGE)
        group = self.group_of_body(allow_empty=False)
        assert group is not None
        await self.catalog.in_store(self.catalog.store.set_group, _collection(collection), group)
        for summary in await self.catalog.in_store(self.catalog.store.collections):
            if summary.name == collection:
                self.send_json(summary.to_wire())
                return
        self.send_error_code("not_found", f"no collection {collection}")

    def group_of_body(self, allow_empty: bool) -> str | None:
        """The 'group' of a JSON body {"group": NAME} (None: no body, when that is allowed)."""
        if allow_empty and not self.request.body:
            return None
        body = self.json_body()
        unknown = set(body) - {"group"}
        if unknown or "group" not in body:
            raise RequestRejected("invalid_request", 'the body is {"group": NAME}: the node group to place the collection in')
        return check_group_name(body["group"])

    async def delete(self, collection: str) -> None:
        self.allow(MANAGE)
        await self.catalog.in_store(self.catalog.store.delete_collection, _collection(collection))
        self.set_status(204)
        self.finish()


class ItemsHandler(LimitedBodyHandler):
    async def get(self, collection: str) -> None:
        self.allow(READ, _collection(collection))
        items = await self.catalog.in_store(self.catalog.store.list_items, _collection(collection))
        self.send_json({"collection": collection, "items": [i.to_wire() for i in items]})

    def field(self, name: str) -> str | None:
        """A form field of a multipart upload (as a field or a small file), or a query argument."""
        value = self.get_body_argument(name, None)
        if value is None and self.request.files.get(name):
            value = self.request.files[name][0]["body"].decode("utf-8", errors="replace")
        if value is None:
            value = self.get_query_argument(name, None)
        return value

    async def post(self, collection: str) -> None:
        self.allow(MANAGE)
        _collection(collection)
        item_id = self.field("item")
        if item_id is not None:
            check_item_id(item_id)
        image = self.checked_image()
        item = await self.catalog.add_item(collection, image, self.field("name"), self.field("metadata"), item_id)
        self.set_header("Location", f"/v1/collections/{collection}/items/{item.item}")
        self.send_json(item.to_wire(), 201)


class ItemHandler(ApiHandler):
    async def get(self, collection: str, item: str) -> None:
        self.allow(READ, _collection(collection))
        found = await self.catalog.in_store(self.catalog.store.get_item, _collection(collection), item)
        self.send_json(found.to_wire())

    async def patch(self, collection: str, item: str) -> None:
        self.allow(MANAGE)
        changed = await self.catalog.update_item(_collection(collection), item, self.json_body())
        self.send_json(changed.to_wire())

    async def delete(self, collection: str, item: str) -> None:
        self.allow(MANAGE)
        await self.catalog.in_store(self.catalog.store.delete_item, _collection(collection), item)
        self.set_status(204)
        self.finish()


class ThumbnailHandler(ApiHandler):
    async def get(self, collection: str, item: str) -> None:
        self.allow(READ, _collection(collection))
        data = await self.catalog.in_store(self.catalog.store.thumbnail, _collection(collection), item)
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Cache-Control", "private, max-age=60")
        self.finish(data)


class KeypointsHandler(ApiHandler):
    async def get(self, collection: str, item: str) -> None:
        self.allow(READ, _collection(collection))
        keypoints = await self.catalog.keypoints(_collection(collection), item)
        self.send_json(keypoints)


class RecognizeHandler(LimitedBodyHandler):
    async def post(self) -> None:
        credential = self.allow(RECOGNIZE)
        collection = self.get_query_argument("collection", None) or self.get_body_argument("collection", None)
        if not collection:
            raise RequestRejected("invalid_request", "name the collection: /v1/recognize?collection=NAME")
        self.allow(RECOGNIZE, _collection(collection))
        if not self.access.frame_allowed(credential):
            raise RequestRejected("rate_limited", "this credential sends more images per second than it may")
        image = self.checked_image()
        inliers = self.get_query_argument("inliers", "0") not in ("0", "false", "")
        result: dict[str, Any] = await self.catalog.recognize(collection, image, inliers)
        self.count_result(collection, result)
        self.send_json(result)

    def count_result(self, collection: str, result: dict[str, Any]) -> None:
        usage = self.application.settings.get("usage")
        if usage is not None:
            usage.count_result(collection, [m["item"] for m in result["items"]], token_of(self))

    def usage_collection(self) -> str:
        return collection_or_blank(self.get_query_argument("collection", None) or self.get_body_argument("collection", None))


class HealthHandler(ApiHandler):
    """200 when every worker is current with the change log; 503 while loading or behind.

    A worker is behind when it says so (applying a backlog, reloading) or when the change
    log holds a change it has not applied that is older than `behind_after_seconds`: the
    log's end is read here, so a worker that stopped reporting (hung, paused, cut off) is
    caught too. With the store unreachable the node still answers recognition from memory,
    so it stays in service (200) but says so: "store_unavailable", with the log position
    its collections are current to.
    """

    async def get(self) -> None:
        pool = self.application.settings["pool"]
        settings = self.application.settings["config"].server
        ready = pool.ready_count
        follow = pool.follow_states()
        lags: dict[str, ChangeLag] = {}
        store_reachable = True
        try:
            for position in {f["position"] for f in follow if f["state"] != "loading"}:
                lags[position] = await self.catalog.in_store(self.catalog.store.lag, position)
        except StoreUnavailable:
            store_reachable = False
        workers = []
        for reported in follow:
            worker = dict(reported)
            lag = lags.get(worker["position"])
            if lag is not None:
                worker["behind"] = {"changes": lag.changes, "seconds": round(lag.seconds, 3)}
                if worker["state"] == "current" and lag.changes and lag.seconds > settings.behind_after_seconds:
                    worker["state"] = "behind"
            workers.append(worker)
        states = {w["state"] for w in workers}
        if not ready or "loading" in states:
            status, code = "loading", 503
        elif "behind" in states:
            status, code = "behind", 503
        elif "disconnected" in states or not store_reachable:
            status, code = "store_unavailable", 200
        else:
            status, code = "ok", 200
        positions = [w["position"] for w in workers]
        held: dict[str, int] = next((w.get("collections", {}) for w in workers if w["state"] != "loading"), {})
        body = {
            "status": status,
            "node_group": settings.node_group or None,
            "collections": held,
            "workers": pool.size,
            "workers_ready": ready,
            "change_log": {"position": min(positions, key=change_order) if positions else "0-0", "workers": workers},
        }
        self.send_json(body, code)


class StreamsHandler(ApiHandler):
    def get(self) -> None:
        scheduler = self.application.settings["scheduler"]
        pool = self.application.settings["pool"]
        self.send_json({"streams": [s.to_wire() for s in scheduler.streams.values()], "workers": pool.size, "moves": scheduler.moves})


class OpenApiHandler(ApiHandler):
    """docs/openapi.yaml as JSON. `load` runs once, in make_app, so a broken document stops start-up."""

    @staticmethod
    def load() -> bytes:
        import json
        from pathlib import Path

        import yaml

        source = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
        return json.dumps(yaml.safe_load(source.read_text(encoding="utf-8")), separators=(",", ":")).encode()

    def initialize(self, document: bytes) -> None:
        self.document = document

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(self.document)
