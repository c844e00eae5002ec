"""Collections in Redis: items, their features and thumbnails, and a change log.

Layout (prefix `cl` by default):
  cl:collections              SET   collection names
  cl:col:{c}:items            SET   item ids of collection c
  cl:col:{c}:item:{id}        HASH  meta (msgpack), features (msgpack), thumb (JPEG)
  cl:col:{c}:version          INT   bumped on every change of c
  cl:groups                   HASH  collection -> node group serving it (absent: DEFAULT_GROUP)
  cl:changes                  STREAM one entry per change: collection, item, op

Every change is one MULTI/EXEC transaction that writes the item and appends
to the change log together, so a reader never sees half an item and workers
following the log never miss a change that was stored.
"""

from __future__ import annotations

import abc
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import redis

from matcher.model import DESCRIPTOR_BYTES, Features, Reference
from matcher.redis_client import connect

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ITEM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHANGE_LOG_LENGTH = 100_000
CHANGE_BATCH = 1000
"""Changes read from the log at a time."""
DEFAULT_GROUP = "default"
"""Node group of a collection that was never placed in one."""


class StoreError(Exception):
    """Base of the store's domain errors."""


class InvalidName(StoreError, ValueError):
    pass


class NotFound(StoreError, LookupError):
    pass


class StoreUnavailable(StoreError):
    """Redis could not be reached or answered with an error."""


@dataclass(frozen=True)
class Item:
    """What a client sees of a stored reference."""

    collection: str
    item: str
    name: str
    metadata: dict[str, Any]
    width: int
    height: int
    keypoints: int
    quality: float
    created: float
    updated: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "collection": self.collection,
            "name": self.name,
            "metadata": self.metadata,
            "width": self.width,
            "height": self.height,
            "keypoints": self.keypoints,
            "quality": self.quality,
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class Change:
    """One entry of the change log."""

    id: str
    collection: str
    item: str
    op: str  # "put" | "delete" | "create" | "drop" | "group" (the collection moved to another node group)


@dataclass(frozen=True)
class ChangeLag:
    """How far a log position is from the end of the change log."""

    changes: int
    """Changes after the position (at most the number asked for)."""
    seconds: float
    """Age of the oldest of them, by the store's clock (0 when there are none)."""


@dataclass
class CollectionSummary:
    name: str
    items: int
    version: int
    group: str = DEFAULT_GROUP
    extra: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"collection": self.name, "items": self.items, "version": self.version, "group": self.group}


def check_collection_name(name: str) -> str:
    if not isinstance(name, str) or not COLLECTION_NAME.match(name):
        raise InvalidName(
            "a collection name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def check_group_name(group: str) -> str:
    if not isinstance(group, str) or not COLLECTION_NAME.match(group):
        raise InvalidName("a node group name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return group


def check_item_id(item: str) -> str:
    if not isinstance(item, str) or not ITEM_ID.match(item):
        raise InvalidName("an item id is 1-64 letters, digits, '_' or '-'")
    return item


def pack_features(features: Features) -> bytes:
    return msgpack.packb(
        {
            "n": len(features),
            "points": np.ascontiguousarray(features.points, np.float32).tobytes(),
            "descriptors": np.ascontiguousarray(features.descriptors, np.uint8).tobytes(),
            "width": features.width,
            "height": features.height,
            **({} if features.angles is None else {"angles": np.ascontiguousarray(features.angles, np.uint8).tobytes()}),
            **({} if features.patch is None else {"patch": features.patch}),
        }
    )


def unpack_features(data: bytes) -> Features:
    raw = msgpack.unpackb(data)
    n = int(raw["n"])
    points = np.frombuffer(raw["points"], np.float32).reshape(n, 2)
    descriptors = np.frombuffer(raw["descriptors"], np.uint8).reshape(n, DESCRIPTOR_BYTES)
    # References stored before orientations were kept have none: they are matched without the rotation check.
    angles = np.frombuffer(raw["angles"], np.uint8) if "angles" in raw else None
    if angles is not None and len(angles) != n:
        angles = None
    # References stored before patches were kept have none: their poses are not aligned on their pixels.
    patch = raw.get("patch")
    return Features(points, descriptors, int(raw["width"]), int(raw["height"]), angles, bytes(patch) if patch else None)


class CollectionStore(abc.ABC):
    """Where collections live. Workers rebuild their indexes from it alone."""

    @abc.abstractmethod
    def put_item(
        self,
        collection: str,
        name: str,
        metadata: dict[str, Any],
        features: Features,
        quality: float,
        thumbnail: bytes,
        item: str | None = None,
    ) -> Item: ...

    @abc.abstractmethod
    def update_item(self, collection: str, item: str, name: str | None, metadata: dict[str, Any] | None) -> Item: ...

    @abc.abstractmethod
    def delete_item(self, collection: str, item: str) -> None: ...

    @abc.abstractmethod
    def item_count(self, collection: str, item: str | None = None) -> tuple[int, bool]: ...

    @abc.abstractmethod
    def get_item(self, collection: str, item: str) -> Item: ...

    @abc.abstractmethod
    def list_items(self, collection: str) -> list[Item]: ...

    @abc.abstractmethod
    def thumbnail(self, collection: str, item: str) -> bytes: ...

    @abc.abstractmethod
    def create_collection(self, collection: str, group: str | None = None) -> bool:
        """Create `collection` (placing it in node `group` when given); False if it existed (its group is still set)."""

    @abc.abstractmethod
    def set_group(self, collection: str, group: str) -> None:
        """Place an existing collection in node `group`; NotFound if there is no such collection."""

    @abc.abstractmethod
    def collection_group(self, collection: str) -> str | None:
        """The node group of `collection`, or None when there is no such collection."""

    @abc.abstractmethod
    def delete_collection(self, collection: str) -> None: ...

    @abc.abstractmethod
    def collections(self) -> list[CollectionSummary]: ...

    @abc.abstractmethod
    def has_collection(self, collection: str) -> bool: ...

    @abc.abstractmethod
    def references(self, collection: str) -> Iterator[Reference]: ...

    @abc.abstractmethod
    def reference(self, collection: str, item: str) -> Reference | None: ...

    @abc.abstractmethod
    def last_change(self) -> str: ...

    @abc.abstractmethod
    def first_change(self) -> str:
        """Id of the oldest change still in the log ("0-0" when the log is empty)."""

    @abc.abstractmethod
    def changes_after(self, change_id: str, block_ms: int | None) -> list[Change]:
        """Changes after `change_id`, waiting up to `block_ms` for one (None: do not wait)."""

    @abc.abstractmethod
    def lag(self, change_id: str, limit: int = CHANGE_BATCH) -> ChangeLag:
        """How many changes (up to `limit`) follow `change_id` in the log, and how old the first of them is."""


class RedisCollectionStore(CollectionStore):
    def __init__(self, client: redis.Redis, prefix: str = "cl", min_replicas: int = 0, replica_timeout: float = 2.0) -> None:
        self.redis = client
        self.prefix = prefix
        self.min_replicas = min_replicas
        """Replicas that must hold a change before it is acknowledged (0: the primary's word is enough)."""
        self.replica_timeout = replica_timeout

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "cl", timeout: float = 5.0, min_replicas: int = 0, replica_timeout: float = 2.0
    ) -> RedisCollectionStore:
        """A store at `url` (see matcher.redis_client) confirming each change on `min_replicas` replicas."""
        return cls(connect(url, timeout), prefix, min_replicas, replica_timeout)

    # -- keys ---------------------------------------------------------------

    def _k_collections(self) -> str:
        return f"{self.prefix}:collections"

    def _k_items(self, c: str) -> str:
        return f"{self.prefix}:col:{c}:items"

    def _k_item(self, c: str, item: str) -> str:
        return f"{self.prefix}:col:{c}:item:{item}"

    def _k_version(self, c: str) -> str:
        return f"{self.prefix}:col:{c}:version"

    def _k_changes(self) -> str:
        return f"{self.prefix}:changes"

    def _k_groups(self) -> str:
        return f"{self.prefix}:groups"

    def _log(self, pipe: Any, collection: str, item: str, op: str) -> None:
        pipe.incr(self._k_version(collection))
        pipe.xadd(
            self._k_changes(),
            {"collection": collection, "item": item, "op": op},
            maxlen=CHANGE_LOG_LENGTH,
            approximate=True,
        )

    def _replicated(self) -> None:
        """Return once `min_replicas` replicas hold every change made so far; StoreUnavailable if they don't in time.

        WAIT counts the replicas that have the calling connection's last write. The change
        went through another pooled connection, so this one writes a marker first: the
        replication stream is ordered, so a replica holding the marker holds the change.
        """
        if self.min_replicas <= 0:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(f"{self.prefix}:replication-marker")
            pipe.wait(self.min_replicas, int(self.replica_timeout * 1000))
            _, acknowledged = pipe.execute()
        if int(acknowledged) < self.min_replicas:
            raise StoreUnavailable(
                f"the change was stored on the primary but only {acknowledged} of {self.min_replicas} replica(s) "
                f"confirmed it within {self.replica_timeout} s; it may be lost in a failover, so retry it"
            )

    def _run(self, fn: Any, *args: Any) -> Any:
        return call_redis("the collection store", fn, *args)

    # -- items --------------------------------------------------------------

    def put_item(
        self,
        collection: str,
        name: str,
        metadata: dict[str, Any],
        features: Features,
        quality: float,
        thumbnail: bytes,
        item: str | None = None,
    ) -> Item:
        check_collection_name(collection)
        item = check_item_id(item) if item is not None else secrets.token_hex(6)
        now = round(time.time(), 3)
        record = Item(
            collection, item, name, metadata, features.width, features.height, len(features), quality, now, now
        )

        def write() -> None:
            key = self._k_item(collection, item)
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(
                    key,
                    mapping={
                        "meta": _pack_meta(record),
                        "features": pack_features(features),
                        "thumb": thumbnail,
                    },
                )
                pipe.sadd(self._k_items(collection), item)
                pipe.sadd(self._k_collections(), collection)
                self._log(pipe, collection, item, "put")
                pipe.execute()
            self._replicated()

        self._run(write)
        return record

    def update_item(self, collection: str, item: str, name: str | None, metadata: dict[str, Any] | None) -> Item:
        key = self._k_item(check_collection_name(collection), check_item_id(item))

        def update() -> Item:
            with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        raw = pipe.hget(key, "meta")
                        if raw is None:
                            pipe.unwatch()
                            raise NotFound(f"no item {item} in collection {collection}")
                        current = _unpack_meta(collection, raw)
                        changed = Item(
                            collection,
                            item,
                            current.name if name is None else name,
                            current.metadata if metadata is None else metadata,
                            current.width,
                            current.height,
                            current.keypoints,
                            current.quality,
                            current.created,
                            round(time.time(), 3),
                        )
                        pipe.multi()
                        pipe.hset(key, "meta", _pack_meta(changed))
                        self._log(pipe, collection, item, "put")
                        pipe.execute()
                        return changed
                    except redis.WatchError:
                        continue

        result: Item = self._run(update)
        self._run(self._replicated)
        return result

    def delete_item(self, collection: str, item: str) -> None:
        key = self._k_item(check_collection_name(collection), check_item_id(item))

        def delete() -> None:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.srem(self._k_items(collection), item)
                self._log(pipe, collection, item, "delete")
                deleted, *_ = pipe.execute()
            if not deleted:
                raise NotFound(f"no item {item} in collection {collection}")
            self._replicated()

        self._run(delete)

    def item_count(self, collection: str, item: str | None = None) -> tuple[int, bool]:
        """Items in `collection`, and whether `item` is one of them."""

        def read() -> tuple[int, bool]:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.scard(self._k_items(collection))
                pipe.sismember(self._k_items(collection), item or "")
                count, member = pipe.execute()
            return int(count), bool(member)

        result: tuple[int, bool] = self._run(read)
        return result

    def get_item(self, collection: str, item: str) -> Item:
        key = self._k_item(check_collection_name(collection), check_item_id(item))
        raw = self._run(self.redis.hget, key, "meta")
        if raw is None:
            raise NotFound(f"no item {item} in collection {collection}")
        return _unpack_meta(collection, raw)

    def list_items(self, collection: str) -> list[Item]:
        check_collection_name(collection)
        if not self.has_collection(collection):
            raise NotFound(f"no collection {collection}")

        def read() -> list[Item]:
            ids = sorted(as_text(i) for i in self.redis.smembers(self._k_items(collection)))
            with self.redis.pipeline(transaction=False) as pipe:
                for item in ids:
                    pipe.hget(self._k_item(collection, item), "meta")
                metas = pipe.execute()
            items = [_unpack_meta(collection, m) for m in metas if m is not None]
            items.sort(key=lambda i: (i.created, i.item))
            return items

        result: list[Item] = self._run(read)
        return result

    def thumbnail(self, collection: str, item: str) -> bytes:
        key = self._k_item(check_collection_name(collection), check_item_id(item))
        data = self._run(self.redis.hget, key, "thumb")
        if data is None:
            raise NotFound(f"no item {item} in collection {collection}")
        return bytes(data)

    # -- collections --------------------------------------------------------

    def create_collection(self, collection: str, group: str | None = None) -> bool:
        check_collection_name(collection)
        if group is not None:
            check_group_name(group)

        def create() -> bool:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.sadd(self._k_collections(), collection)
                if group is not None:
                    pipe.hset(self._k_groups(), collection, group)
                self._log(pipe, collection, "", "create")
                added, *_ = pipe.execute()
            self._replicated()
            return bool(added)

        result: bool = self._run(create)
        return result

    def delete_collection(self, collection: str) -> None:
        check_collection_name(collection)

        def drop() -> None:
            ids = [as_text(i) for i in self.redis.smembers(self._k_items(collection))]
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.srem(self._k_collections(), collection)
                for item in ids:
                    pipe.delete(self._k_item(collection, item))
                pipe.delete(self._k_items(collection))
                pipe.hdel(self._k_groups(), collection)
                self._log(pipe, collection, "", "drop")
                removed, *_ = pipe.execute()
            if not removed:
                raise NotFound(f"no collection {collection}")
            self._replicated()

        self._run(drop)

    def set_group(self, collection: str, group: str) -> None:
        check_collection_name(collection)
        check_group_name(group)

        def place() -> None:
            with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(self._k_collections())
                        if not pipe.sismember(self._k_collections(), collection):
                            pipe.unwatch()
                            raise NotFound(f"no collection {collection}")
                        pipe.multi()
                        pipe.hset(self._k_groups(), collection, group)
                        self._log(pipe, collection, "", "group")
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue
            self._replicated()

        self._run(place)

    def collection_group(self, collection: str) -> str | None:
        def read() -> str | None:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.sismember(self._k_collections(), collection)
                pipe.hget(self._k_groups(), collection)
                member, group = pipe.execute()
            if not member:
                return None
            return DEFAULT_GROUP if group is None else as_text(group)

        result: str | None = self._run(read)
        return result

    def collections(self) -> list[CollectionSummary]:
        def read() -> list[CollectionSummary]:
            names = sorted(as_text(n) for n in self.redis.smembers(self._k_collections()))
            with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.scard(self._k_items(name))
                    pipe.get(self._k_version(name))
                pipe.hgetall(self._k_groups())
                *counts, groups = pipe.execute()
            group_of = {as_text(k): as_text(v) for k, v in groups.items()}
            return [
                CollectionSummary(name, int(counts[2 * i]), int(counts[2 * i + 1] or 0), group_of.get(name, DEFAULT_GROUP))
                for i, name in enumerate(names)
            ]

        result: list[CollectionSummary] = self._run(read)
        return result

    def has_collection(self, collection: str) -> bool:
        return bool(self._run(self.redis.sismember, self._k_collections(), collection))

    # -- what workers read ----------------------------------------------------

    def references(self, collection: str, batch: int = 256) -> Iterator[Reference]:
        ids = sorted(as_text(i) for i in self._run(self.redis.smembers, self._k_items(collection)))
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]

            def read(chunk: list[str] = chunk) -> list[Any]:
                with self.redis.pipeline(transaction=False) as pipe:
                    for item in chunk:
                        pipe.hmget(self._k_item(collection, item), "meta", "features")
                    replies: list[Any] = pipe.execute()
                    return replies

            for meta, features in self._run(read):
                if meta is not None and features is not None:
                    yield _reference(collection, meta, features)

    def reference(self, collection: str, item: str) -> Reference | None:
        meta, features = self._run(self.redis.hmget, self._k_item(collection, item), "meta", "features")
        if meta is None or features is None:
            return None
        return _reference(collection, meta, features)

    def last_change(self) -> str:
        entries = self._run(self.redis.xrevrange, self._k_changes(), "+", "-", 1)
        return entries[0][0].decode() if entries else "0-0"

    def first_change(self) -> str:
        entries = self._run(self.redis.xrange, self._k_changes(), "-", "+", 1)
        return entries[0][0].decode() if entries else "0-0"

    def lag(self, change_id: str, limit: int = CHANGE_BATCH) -> ChangeLag:
        def read() -> ChangeLag:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.xrange(self._k_changes(), f"({change_id}", "+", limit)
                pipe.time()
                entries, (seconds, micros) = pipe.execute()
            if not entries:
                return ChangeLag(0, 0.0)
            oldest_ms, _ = change_order(as_text(entries[0][0]))
            age = max(0.0, seconds + micros / 1e6 - oldest_ms / 1000.0)
            return ChangeLag(len(entries), age)

        result: ChangeLag = self._run(read)
        return result

    def changes_after(self, change_id: str, block_ms: int | None) -> list[Change]:
        reply = self._run(self.redis.xread, {self._k_changes(): change_id}, CHANGE_BATCH, block_ms)
        changes = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                changes.append(
                    Change(
                        as_text(entry_id),
                        fields[b"collection"].decode(),
                        fields[b"item"].decode(),
                        fields[b"op"].decode(),
                    )
                )
        return changes


def change_order(change_id: str) -> tuple[int, int]:
    """A change log id ("<ms>-<seq>") as a tuple that sorts like the log."""
    ms, _, seq = change_id.partition("-")
    return int(ms), int(seq or 0)


def as_text(value: Any) -> str:
    """A Redis reply value (bytes or str) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def call_redis(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one Redis call; an unreachable or refusing server becomes StoreUnavailable naming `what`."""
    try:
        return fn(*args)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"{what} is unreachable: {exc}") from None
    except redis.ResponseError as exc:
        raise StoreUnavailable(f"{what} refused: {exc}") from None


def _pack_meta(item: Item) -> bytes:
    return msgpack.packb(
        {
            "item": item.item,
            "name": item.name,
            "metadata": item.metadata,
            "width": item.width,
            "height": item.height,
            "keypoints": item.keypoints,
            "quality": item.quality,
            "created": item.created,
            "updated": item.updated,
        }
    )


def _unpack_meta(collection: str, data: bytes | str) -> Item:
    m = msgpack.unpackb(data)
    return Item(
        collection,
        m["item"],
        m["name"],
        m["metadata"],
        m["width"],
        m["height"],
        m["keypoints"],
        m["quality"],
        m["created"],
        m["updated"],
    )


def _reference(collection: str, meta: bytes, features: bytes) -> Reference:
    item = _unpack_meta(collection, meta)
    return Reference(item.item, item.name, item.metadata, unpack_features(features))
