"""/healthz compares what each worker applied with the end of the store's change log."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from matcher.embedded_redis import EmbeddedRedis, start_or_reuse
from matcher.process_name import WORKER
from matcher.store import RedisCollectionStore
from tests.cluster.nodes import add
from tests.conftest import RunningServer, wait_until


@pytest.fixture
def shared_store(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    store = start_or_reuse(tmp_path / "shared")
    yield store
    store.stop()


def health(node: RunningServer) -> tuple[int, dict[str, Any]]:
    reply = httpx.get(f"{node.url}/healthz", timeout=10)
    return reply.status_code, reply.json()


def test_a_paused_worker_is_reported_behind_with_its_backlog_then_current_again(
    shared_store: EmbeddedRedis, start_server: Callable[..., RunningServer]
) -> None:
    node = start_server(env={"REDIS_URL": shared_store.url, "CATCHLIGHT_DEMO_COLLECTION": ""})
    assert add(node.url, "lag", "Coffee", "coffee.png").status_code == 201
    wait_until(lambda: health(node)[1]["status"] == "ok", 10)
    workers = [p for p in psutil.Process(node.pid).children() if p.name() == WORKER]
    assert len(workers) == 2
    store = RedisCollectionStore.from_url(shared_store.url)
    reference = next(store.references("lag"))
    paused = workers[0]
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        # Three changes the paused worker cannot apply (written straight to the store, as another node would).
        for number in range(3):
            store.put_item("lag", f"copy {number}", {}, reference.features, 1.0, b"", item=f"copy{number}")

        def reported_behind() -> dict[str, Any] | None:
            code, body = health(node)
            lagging = [w for w in body["change_log"]["workers"] if w["state"] == "behind"]
            return body if code == 503 and body["status"] == "behind" and len(lagging) == 1 else None

        body = wait_until(reported_behind, 10, interval=0.1)
        assert isinstance(body, dict)
        lagging = next(w for w in body["change_log"]["workers"] if w["state"] == "behind")
        assert lagging["behind"]["changes"] == 3 and lagging["behind"]["seconds"] > 1.0
        current = next(w for w in body["change_log"]["workers"] if w["state"] != "behind")
        assert current["behind"] == {"changes": 0, "seconds": 0.0}
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    wait_until(lambda: health(node)[1]["status"] == "ok", 10, interval=0.1)
    code, body = health(node)
    assert code == 200 and {w["position"] for w in body["change_log"]["workers"]} == {store.last_change()}
    assert body["collections"] == {"lag": 4}
