"""The collection store on a primary + replicas + Sentinel: acknowledged changes survive losing the primary."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from matcher.model import Features
from matcher.redis_client import parse_sentinel_url, sentinel_url
from matcher.sentinel import ReplicatedStore, start_replicated
from matcher.store import RedisCollectionStore, StoreUnavailable
from tests.conftest import wait_until


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[ReplicatedStore]:
    store = start_replicated(tmp_path / "replicated", replicas=2, sentinels=1)
    yield store
    store.stop()


def features() -> Features:
    return Features(np.zeros((4, 2), np.float32), np.zeros((4, 32), np.uint8), 4, 4)


def test_sentinel_addresses_round_trip() -> None:
    url = sentinel_url(["10.0.0.1:26379", "10.0.0.2:26380"], "catchlight", 2)
    assert parse_sentinel_url(url) == ([("10.0.0.1", 26379), ("10.0.0.2", 26380)], "catchlight", 2)
    with_password = "redis+sentinel://:s3cret@10.0.0.1:26379/catchlight/0"
    assert parse_sentinel_url(with_password) == ([("10.0.0.1", 26379)], "catchlight", 0)


def test_changes_confirmed_by_a_replica_survive_killing_the_primary(replicated: ReplicatedStore) -> None:
    store = RedisCollectionStore.from_url(replicated.url, timeout=2, min_replicas=1)
    acknowledged = []
    for number in range(20):
        store.put_item("keep", f"item{number}", {}, features(), 1.0, b"", item=f"item{number}")
        acknowledged.append(f"item{number}")
    old_primary = replicated.primary_port()
    assert old_primary is not None
    replicated.node_on(old_primary).stop(signal.SIGKILL)  # no chance to flush or hand over anything

    def write_again() -> bool:
        try:
            store.put_item("keep", "after", {}, features(), 1.0, b"", item="after")
            return True
        except StoreUnavailable:
            return False

    wait_until(write_again, 60, interval=0.2)
    assert replicated.primary_port() not in (None, old_primary)
    assert {i.item for i in store.list_items("keep")} == {*acknowledged, "after"}


def test_a_change_no_replica_confirms_is_not_acknowledged(replicated: ReplicatedStore) -> None:
    store = RedisCollectionStore.from_url(replicated.url, timeout=2, min_replicas=3, replica_timeout=0.2)
    with pytest.raises(StoreUnavailable, match="confirmed"):
        store.put_item("keep", "x", {}, features(), 1.0, b"", item="x")
