"""The change-log follower against a real valkey-server: catch-up after a gap, reload when the log lost changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from matcher.embedded_redis import EmbeddedRedis, start_or_reuse
from matcher.model import Features, Reference
from matcher.store import RedisCollectionStore, StoreUnavailable
from matcher.worker import BEHIND, CURRENT, DISCONNECTED, CollectionFollower, FollowStatus


class FakeIndex:
    def __init__(self) -> None:
        self.items: set[str] = set()

    def add(self, reference: Reference) -> None:
        self.items.add(reference.item)

    def remove(self, item: str) -> None:
        self.items.discard(item)


class FakeRecognizer:
    """What the follower needs of a Recognizer, keeping only item ids."""

    def __init__(self) -> None:
        self.indexes: dict[str, FakeIndex] = {}

    def collection(self, name: str) -> FakeIndex:
        return self.indexes.setdefault(name, FakeIndex())

    def load(self, name: str, references: list[Reference]) -> None:
        self.indexes[name] = FakeIndex()
        for reference in references:
            self.indexes[name].add(reference)

    def drop(self, name: str) -> None:
        self.indexes.pop(name, None)

    def has(self, name: str) -> bool:
        return name in self.indexes

    def collections(self) -> dict[str, int]:
        return {name: len(index.items) for name, index in self.indexes.items()}

    def items(self, name: str) -> set[str]:
        return set(self.indexes[name].items) if name in self.indexes else set()


def features() -> Features:
    rng = np.random.default_rng(1)
    return Features(rng.random((4, 2), dtype=np.float32), rng.integers(0, 255, (4, 32), dtype=np.uint8), 64, 64)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = start_or_reuse(tmp_path)
    yield server
    server.stop()


def put(store: RedisCollectionStore, collection: str, item: str) -> None:
    store.put_item(collection, item, {}, features(), 1.0, b"", item=item)


def test_follower_catches_up_with_changes_made_while_it_was_away(valkey: EmbeddedRedis) -> None:
    store = RedisCollectionStore.from_url(valkey.url)
    put(store, "shop", "a")
    reports: list[FollowStatus] = []
    follower = CollectionFollower(RedisCollectionStore.from_url(valkey.url), FakeRecognizer(), reports.append)  # type: ignore[arg-type]
    follower.load_all()
    put(store, "shop", "b")
    store.delete_item("shop", "a")
    store.create_collection("new")
    put(store, "new", "c")
    assert follower.catch_up_once(block_ms=None) == 4
    recognizer = follower.recognizer
    assert recognizer.items("shop") == {"b"} and recognizer.items("new") == {"c"}  # type: ignore[attr-defined]
    assert reports[-1].state == CURRENT and reports[-1].position == store.last_change()
    assert follower.reloads == 0


def test_follower_reloads_everything_when_the_log_was_trimmed_past_its_position(valkey: EmbeddedRedis) -> None:
    store = RedisCollectionStore.from_url(valkey.url)
    put(store, "shop", "a")
    put(store, "gone", "x")
    follower = CollectionFollower(RedisCollectionStore.from_url(valkey.url), FakeRecognizer())  # type: ignore[arg-type]
    follower.load_all()
    for item in ("b", "c", "d"):
        put(store, "shop", item)
    store.delete_collection("gone")
    store.redis.xtrim(store._k_changes(), maxlen=1, approximate=False)  # the log forgets most of the gap
    follower.catch_up_once(block_ms=None)
    assert follower.reloads == 1
    assert follower.recognizer.items("shop") == {"a", "b", "c", "d"}  # type: ignore[attr-defined]
    assert "gone" not in follower.recognizer.collections()  # type: ignore[attr-defined]
    assert follower.state == CURRENT


def test_follower_reloads_when_the_store_log_ends_before_its_position(valkey: EmbeddedRedis) -> None:
    """A store replaced by one with a shorter history (restored backup, failover to a lagging replica)."""
    store = RedisCollectionStore.from_url(valkey.url)
    put(store, "shop", "a")
    follower = CollectionFollower(RedisCollectionStore.from_url(valkey.url), FakeRecognizer())  # type: ignore[arg-type]
    follower.load_all()
    store.redis.flushdb()
    put(store, "other", "z")
    follower.position = "99999999999999-0"  # ahead of anything the new log holds
    follower.catch_up_once(block_ms=None)
    assert follower.reloads == 1
    assert set(follower.recognizer.collections()) == {"other"}  # type: ignore[attr-defined]


def test_follower_reports_disconnected_and_resumes_from_its_position(tmp_path: Path) -> None:
    server = start_or_reuse(tmp_path)
    try:
        store = RedisCollectionStore.from_url(server.url)
        put(store, "shop", "a")
        reports: list[FollowStatus] = []
        follower = CollectionFollower(RedisCollectionStore.from_url(server.url, timeout=1), FakeRecognizer(), reports.append)  # type: ignore[arg-type]
        follower.load_all()
        follower.state = BEHIND
        server.stop()
        with pytest.raises(StoreUnavailable):
            follower.catch_up_once(block_ms=None)
        assert follower.recognizer.items("shop") == {"a"}  # type: ignore[attr-defined]  # still answers from memory
        server = start_or_reuse(tmp_path)  # same directory: the append-only file brings the data back
        store = RedisCollectionStore.from_url(server.url)
        put(store, "shop", "b")
        follower.store = RedisCollectionStore.from_url(server.url)
        follower.catch_up_once(block_ms=None)
        assert follower.recognizer.items("shop") == {"a", "b"} and follower.reloads == 0  # type: ignore[attr-defined]
        assert follower.state == CURRENT and DISCONNECTED not in {r.state for r in reports[-1:]}
    finally:
        server.stop()
