"""Collections and recognition as services: what the HTTP and websocket handlers call.

Feature work goes to the pool; store calls (blocking redis-py) go to a small
thread pool, so the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from matcher.store import CollectionStore, Item, NotFound, StoreUnavailable, check_item_id, unpack_features
from server.config import ServerSettings
from server.pool import Job, JobFailed
from server.scheduler import Scheduler, timing

log = logging.getLogger("catchlight.catalog")

T = TypeVar("T")

DEMO_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class RequestRejected(Exception):
    """A request the engine or the rules refused; `code` names why (see docs/api.md)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class Catalog:
    def __init__(self, store: CollectionStore, scheduler: Scheduler, settings: ServerSettings) -> None:
        self.store = store
        self.scheduler = scheduler
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store")

    async def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    # -- validation -----------------------------------------------------------

    def check_name(self, name: Any) -> str:
        if not isinstance(name, str) or not name.strip():
            raise RequestRejected("invalid_name", "'name' is required: a short text naming the item")
        if len(name) > self.settings.max_name_length:
            raise RequestRejected("invalid_name", f"'name' is longer than {self.settings.max_name_length} characters")
        return name.strip()

    def check_metadata(self, metadata: Any) -> dict[str, Any]:
        if isinstance(metadata, (str, bytes)):
            try:
                metadata = json.loads(metadata) if metadata else {}
            except ValueError:
                raise RequestRejected("invalid_metadata", "'metadata' must be a JSON object") from None
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise RequestRejected("invalid_metadata", "'metadata' must be a JSON object")
        size = len(json.dumps(metadata, separators=(",", ":")).encode())
        if size > self.settings.max_metadata_bytes:
            raise RequestRejected(
                "metadata_too_large", f"'metadata' is {size} bytes, the limit is {self.settings.max_metadata_bytes}"
            )
        return metadata

    # -- jobs -----------------------------------------------------------------

    async def _run_job(self, request: dict[str, Any]) -> tuple[Job, dict[str, Any]]:
        job = self.scheduler.submit_request(request)
        try:
            reply = await job.future
        except JobFailed as exc:
            raise RequestRejected(exc.code, exc.message) from None
        if reply is None:  # only stream frames are ever replaced
            raise RequestRejected("internal", "the job was dropped")
        if not reply.get("ok"):
            extra = {k: v for k, v in reply.items() if k not in ("ok", "code", "message")}
            raise RequestRejected(reply.get("code", "internal"), reply.get("message", "failed"), **extra)
        return job, reply

    async def add_item(
        self, collection: str, image: bytes, name: Any, metadata: Any, item: str | None = None
    ) -> Item:
        """Describe a reference image in the pool and store it as a new item."""
        name = self.check_name(name)
        metadata = self.check_metadata(metadata)
        await self.check_room(collection, item)
        _, reply = await self._run_job(
            {"op": "describe", "image": image, "thumbnail_side": self.settings.thumbnail_side}
        )
        features = unpack_features(reply["features"])
        return await self.in_store(
            self.store.put_item, collection, name, metadata, features, reply["quality"], reply["thumbnail"], item
        )

    async def check_room(self, collection: str, item: str | None) -> None:
        """Refuse a new item when the collection holds `max_items_per_collection` already (replacing one is fine)."""
        limit = self.settings.max_items_per_collection
        count, replacing = await self.in_store(self.store.item_count, collection, item)
        if count >= limit and not replacing:
            raise RequestRejected(
                "collection_full", f"collection {collection} holds {count} items, the limit is {limit}"
            )

    async def update_item(self, collection: str, item: str, changes: dict[str, Any]) -> Item:
        unknown = set(changes) - {"name", "metadata"}
        if unknown:
            raise RequestRejected("invalid_request", f"only 'name' and 'metadata' can be changed, not {sorted(unknown)}")
        name = self.check_name(changes["name"]) if "name" in changes else None
        metadata = self.check_metadata(changes["metadata"]) if "metadata" in changes else None
        return await self.in_store(self.store.update_item, collection, item, name, metadata)

    async def check_served(self, collection: str) -> None:
        """Refuse a collection that does not exist, or that this node's group does not hold.

        The workers of a node group hold only that group's collections (`node_group`); a
        recognition for another group's collection names the group it should go to.
        """
        try:
            group = await self.in_store(self.store.collection_group, collection)
        except StoreUnavailable:
            return  # recognition goes on from the workers' memory; they know which collections they hold
        if group is None:
            raise RequestRejected("unknown_collection", f"no collection {collection}")
        served = self.settings.node_group
        if served and group != served:
            raise RequestRejected(
                "collection_not_served",
                f"collection {collection} is placed in node group {group!r}; this node serves group {served!r}: "
                f"send it to a node of group {group!r}",
                group=group,
            )

    async def recognize(self, collection: str, image: bytes, inliers: bool = False) -> dict[str, Any]:
        """Recognize one image; the same shape as a stream result, without type and id.

        `inliers`: each match also gives `inlier_points`, the frame positions of its inliers.
        """
        await self.check_served(collection)
        request: dict[str, Any] = {"op": "recognize", "collection": collection, "image": image}
        if inliers:
            request["inliers"] = True
        job, reply = await self._run_job(request)
        return {
            "width": reply["width"],
            "height": reply["height"],
            "items": reply["items"],
            "timing": timing(job, reply),
        }

    async def keypoints(self, collection: str, item: str) -> dict[str, Any]:
        """An item's keypoints in pixels of its uploaded image, for drawing over its thumbnail."""
        check_item_id(item)
        reference = await self.in_store(self.store.reference, collection, item)
        if reference is None:
            raise NotFound(f"no item {item} in collection {collection}")
        features = reference.features
        return {
            "collection": collection,
            "item": item,
            "width": features.width,
            "height": features.height,
            "points": [[round(float(x), 1), round(float(y), 1)] for x, y in features.points],
        }

    # -- demo -------------------------------------------------------------------

    async def load_demo(self, collection: str, folder: Path) -> int:
        """Fill `collection` from `folder` once (when it does not exist yet); returns items added."""
        if not collection or not folder.is_dir():
            return 0
        if await self.in_store(self.store.has_collection, collection):
            return 0
        added = 0
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in DEMO_IMAGE_SUFFIXES:
                continue
            sidecar = path.with_suffix(".json")
            info = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            name = info.pop("name", path.stem.replace("_", " "))
            try:
                await self.add_item(collection, path.read_bytes(), name, info)
                added += 1
            except RequestRejected as exc:
                log.warning("demo image %s skipped: %s", path.name, exc.message)
        return added
