"""Talking to nodes in the cluster tests: add an item, recognize a photo, judge propagation."""

from __future__ import annotations

import time

import httpx

from tests.images import photo_bytes


def recognized(url: str, collection: str, photo: str) -> list[str]:
    """Names found in `photo` through the node (or balancer) at `url`; [] on any refusal."""
    reply = httpx.post(f"{url}/v1/recognize", params={"collection": collection}, content=photo_bytes(photo), timeout=30)
    return [m["name"] for m in reply.json()["items"]] if reply.status_code == 200 else []


def add(url: str, collection: str, name: str, photo: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/collections/{collection}/items",
        files={"image": (photo, photo_bytes(photo))},
        data={"name": name},
        timeout=30,
    )


def every_frame_sent_a_second_later_sees(url: str, collection: str, photo: str, names: list[str]) -> None:
    """The change acknowledged just now has propagated within 1 s: every frame sent 1 s or more
    after now finds `names`. A frame is judged by when it was sent, so slow processing on a busy
    machine does not count against propagation (frames sent earlier may go either way)."""
    deadline = time.monotonic() + 1.0
    judged = 0
    while judged < 3:
        sent = time.monotonic()
        found = recognized(url, collection, photo)
        if sent >= deadline:
            assert found == names, f"a frame sent {sent - deadline + 1.0:.2f} s after the change found {found}"
            judged += 1
