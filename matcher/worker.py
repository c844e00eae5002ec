"""A matcher worker process: holds every collection's index in memory and answers jobs.

The server sends msgpack requests over a pipe, one at a time per worker:
  {"op": "recognize", "collection": str, "image": bytes, "inliers"?: bool}
  {"op": "recognize", "collection": str, "image": bytes, "stream": int, "at"?: float}
                                              a camera stream's frame: tracked between recognitions;
                                              `at` is when it arrived (time.monotonic(), this machine's clock)
  {"op": "describe", "image": bytes}          features of a new reference + thumbnail
and gets one msgpack reply each: {"ok": true, ...} or {"ok": false, "code", "message"}.
One message gets no reply, so the server can send it at any time, even while a
job runs: {"op": "forget_stream", "stream": int} (the stream closed or moved).

A follower thread loads the collections from the store at start and then
applies the store's change log as it grows, so an item added, changed or
deleted anywhere reaches recognition within milliseconds, without pausing it.
A worker of a node group (`node_group`) loads and follows only the collections
placed in that group; it still reads the whole log, skipping the others' changes,
so its log position means the same as every other worker's.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import cv2
import faiss
import msgpack

from matcher.decode import ImageError, thumbnail_jpeg
from matcher.index import release_free_memory
from matcher.model import Features
from matcher.process_name import WORKER, set_process_name
from matcher.recognizer import PoorReference, Recognizer, UnknownCollection, describe_reference_image
from matcher.session import StreamSessions
from matcher.settings import MatcherSettings
from matcher.store import (
    CHANGE_BATCH,
    CollectionStore,
    RedisCollectionStore,
    StoreError,
    change_order,
    pack_features,
)

log = logging.getLogger("catchlight.worker")

_FOLLOW_BLOCK_MS = 1000
_RETRY_SECONDS = 0.5

# What a follower reports about itself (the server's /healthz sums them up).
LOADING = "loading"  # the first full load is not done
CURRENT = "current"  # the last read reached the end of the change log
BEHIND = "behind"  # applying a backlog, or reloading because the log no longer reaches back far enough
DISCONNECTED = "disconnected"  # the store is unreachable: answering from memory as of `position`


@dataclass(frozen=True)
class FollowStatus:
    state: str
    position: str
    """Id of the last change applied (the log position this process is current to)."""
    reloads: int
    collections: dict[str, int]
    """The collections this process holds, with their item counts."""


class NotServed(LookupError):
    """A collection placed in another node group than this worker's."""

    def __init__(self, collection: str, group: str, served: str) -> None:
        super().__init__(
            f"collection {collection} is placed in node group {group!r}; this node serves group {served!r}: "
            f"send it to a node of group {group!r}"
        )
        self.collection = collection
        self.group = group


class CollectionFollower:
    """Keeps a Recognizer equal to the store: full load, then the change log.

    After a disconnection it reads on from its position, so nothing changed
    meanwhile is missed. When the log was trimmed past that position (or the
    store was replaced by one whose log is shorter) the changes in between
    are gone, so it reloads every collection instead of serving a stale one.
    """

    def __init__(
        self,
        store: CollectionStore,
        recognizer: Recognizer,
        report: Callable[[FollowStatus], None] | None = None,
        group: str = "",
    ) -> None:
        self.store = store
        self.recognizer = recognizer
        self.group = group
        """The node group whose collections this process holds ("": every collection)."""
        self._group_of: dict[str, str] = {}
        """Node group of each collection seen, so most changes are judged without asking the store."""
        self.position = "0-0"
        self.applied = 0
        self.reloads = 0
        self.state = LOADING
        self._report = report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="collection-follower", daemon=True)

    def status(self) -> FollowStatus:
        return FollowStatus(self.state, self.position, self.reloads, self.recognizer.collections())

    def serves(self, group: str) -> bool:
        return not self.group or group == self.group

    def _served(self, collection: str, refresh: bool = False) -> bool:
        """Whether this process holds `collection` (False also when the store has no such collection)."""
        if refresh or collection not in self._group_of:
            group = self.store.collection_group(collection)
            if group is None:
                self._group_of.pop(collection, None)
                return False
            self._group_of[collection] = group
        return self.serves(self._group_of[collection])

    def _set(self, state: str) -> None:
        self.state = state
        if self._report is not None:
            self._report(self.status())

    def load_all(self) -> None:
        # Read the log position first: changes made during the load are applied again after it,
        # and applying a change twice is harmless.
        position = self.store.last_change()
        names = []
        summaries = self.store.collections()
        self._group_of = {summary.name: summary.group for summary in summaries}
        for summary in summaries:
            if not self.serves(summary.group):
                continue
            self.recognizer.load(summary.name, list(self.store.references(summary.name)))
            release_free_memory()  # the references just read are garbage now
            names.append(summary.name)
        for gone in set(self.recognizer.collections()) - set(names):
            self.recognizer.drop(gone)
        self.position = position

    def load(self, collection: str) -> None:
        """Load one collection if the store has it (it stays unknown otherwise); NotServed if another group holds it."""
        if self._served(collection, refresh=True):
            self.recognizer.load(collection, list(self.store.references(collection)))
            release_free_memory()
        elif collection in self._group_of:
            raise NotServed(collection, self._group_of[collection], self.group)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def log_lost_changes(self) -> bool:
        """Whether changes after `position` are no longer in the log (trimmed, or a different store)."""
        if self.position == "0-0":
            return False
        mine = change_order(self.position)
        first = self.store.first_change()
        if first != "0-0" and change_order(first) > mine:
            return True  # trimmed past us: the changes in between are gone
        last = self.store.last_change()
        return change_order(last) < mine  # the log ends before our position: not the store we followed

    def catch_up_once(self, block_ms: int | None = _FOLLOW_BLOCK_MS) -> int:
        """Apply the next batch of changes (reloading everything if the log lost some); returns how many.

        Waits up to `block_ms` for a change only when already current: otherwise it reads
        without waiting, so reaching "current" is reported at once.
        """
        if self.log_lost_changes():
            log.warning("the change log no longer reaches back to %s: reloading every collection", self.position)
            self._set(BEHIND)
            self.load_all()
            self.reloads += 1
        changes = self.store.changes_after(self.position, block_ms if self.state == CURRENT else None)
        for change in changes:
            self.apply(change.collection, change.item, change.op)
            self.position = change.id
            self.applied += 1
        self._set(BEHIND if len(changes) >= CHANGE_BATCH else CURRENT)
        return len(changes)

    def _follow(self) -> None:
        # FAISS's OpenMP thread count is per thread; this one adds to indexes, which must not take every core.
        faiss.omp_set_num_threads(1)
        while not self._stop.is_set():
            try:
                self.catch_up_once()
            except StoreError as exc:
                # Recognition goes on from memory; catch up when the store is back.
                if self.state != DISCONNECTED:
                    log.warning("change log unreachable, retrying: %s", exc)
                self._set(DISCONNECTED)
                self._stop.wait(_RETRY_SECONDS)
            except Exception:
                log.exception("could not apply a change; retrying")
                self._set(BEHIND)
                self._stop.wait(_RETRY_SECONDS)

    def apply(self, collection: str, item: str, op: str) -> None:
        if op == "drop":
            self._group_of.pop(collection, None)
            self.recognizer.drop(collection)
        elif op in ("create", "group"):
            # A collection created in (or moved to) this node's group is loaded; one moved away is dropped.
            if not self._served(collection, refresh=True):
                self.recognizer.drop(collection)
            elif not self.recognizer.has(collection):
                self.recognizer.load(collection, list(self.store.references(collection)))
                release_free_memory()
        elif not self._served(collection):
            return  # another group's collection: its items are not held here
        elif op == "delete":
            self.recognizer.collection(collection).remove(item)
        elif op == "put":
            reference = self.store.reference(collection, item)
            index = self.recognizer.collection(collection)
            if reference is None:
                index.remove(item)
            else:
                index.add(reference)


@dataclass(frozen=True)
class PreparedReference:
    """Everything the store needs of a new reference image, apart from its name and metadata."""

    features: Features
    quality: float
    thumbnail: bytes
    """A small JPEG for listings."""


def prepare_reference(image: bytes, settings: MatcherSettings, thumbnail_side: int = 320) -> PreparedReference:
    """Features, quality and thumbnail of a reference image; raises ImageError or PoorReference.

    The server's workers and the command line both go through here, so an image
    is refused (or stored) the same way whichever way it came in.
    """
    described = describe_reference_image(image, settings)
    thumbnail = thumbnail_jpeg(image, thumbnail_side, settings.max_image_pixels)
    return PreparedReference(described.features, described.quality, thumbnail)


def _describe(request: dict[str, Any], settings: MatcherSettings) -> dict[str, Any]:
    prepared = prepare_reference(request["image"], settings, int(request.get("thumbnail_side", 320)))
    return {
        "ok": True,
        "features": pack_features(prepared.features),
        "quality": prepared.quality,
        "keypoints": len(prepared.features),
        "width": prepared.features.width,
        "height": prepared.features.height,
        "thumbnail": prepared.thumbnail,
    }


def _recognize(
    request: dict[str, Any], recognizer: Recognizer, follower: CollectionFollower, sessions: StreamSessions | None
) -> dict[str, Any]:
    collection = request["collection"]
    if not recognizer.has(collection):
        # Created a moment ago and not yet seen in the change log: read it now.
        follower.load(collection)
    stream = request.get("stream")
    if sessions is not None and isinstance(stream, int):
        at = request.get("at")
        result = sessions.process(
            stream, collection, request["image"], float(at) if isinstance(at, (int, float)) else None
        )
    else:
        result = recognizer.recognize(collection, request["image"], bool(request.get("inliers")))
    return {
        "ok": True,
        "width": result.width,
        "height": result.height,
        "items": [m.to_wire() for m in result.matches],
        "timing": result.timing,
    }


def handle(
    request: dict[str, Any],
    recognizer: Recognizer,
    follower: CollectionFollower,
    sessions: StreamSessions | None = None,
) -> dict[str, Any]:
    """Answer one request; every failure becomes an error reply with a code."""
    op = request.get("op")
    try:
        if op == "recognize":
            return _recognize(request, recognizer, follower, sessions)
        if op == "describe":
            return _describe(request, recognizer.settings)
        if op == "ping":
            return {"ok": True, "collections": recognizer.collections()}
        return {"ok": False, "code": "bad_request", "message": f"unknown operation {op!r}"}
    except ImageError as exc:
        return {"ok": False, "code": exc.code, "message": exc.message}
    except StoreError as exc:
        return {"ok": False, "code": "store_unavailable", "message": str(exc)}
    except UnknownCollection as exc:
        return {"ok": False, "code": "unknown_collection", "message": f"no collection {exc}"}
    except NotServed as exc:
        return {"ok": False, "code": "collection_not_served", "message": str(exc), "group": exc.group}
    except PoorReference as exc:
        return {
            "ok": False,
            "code": "poor_reference",
            "message": str(exc),
            "keypoints": exc.keypoints,
            "quality": exc.quality,
        }
    except Exception as exc:
        log.exception("job failed")
        return {"ok": False, "code": "internal", "message": f"{type(exc).__name__}: {exc}"}


def run(conn: Connection, settings: MatcherSettings, redis_url: str, prefix: str, group: str = "") -> None:
    """Entry point of a worker process; it holds the collections of node `group` ("": all of them)."""
    set_process_name(WORKER)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(message)s")
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    recognizer = Recognizer(settings)
    sending = threading.Lock()  # the follower's reports and the replies share the pipe

    def send(message: dict[str, Any]) -> None:
        with sending:
            conn.send_bytes(msgpack.packb(message))

    def report(status: FollowStatus) -> None:
        try:
            send({"follow": asdict(status)})
        except (BrokenPipeError, OSError):
            pass

    follower = CollectionFollower(RedisCollectionStore.from_url(redis_url, prefix), recognizer, report, group)
    server = multiprocessing.parent_process()  # knows the server even if it died before this line
    while True:
        try:
            follower.load_all()
            break
        except StoreError as exc:
            if server is not None and not server.is_alive():  # nobody will ever send a job
                log.warning("server gone while waiting for the collection store; exiting")
                return
            log.warning("waiting for the collection store: %s", exc)
            time.sleep(_RETRY_SECONDS)
    sessions = StreamSessions(recognizer)
    send({"ok": True, "ready": True, "pid": os.getpid(), "collections": recognizer.collections()})
    follower.start()
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            break
        try:
            request = msgpack.unpackb(raw)
            if request.get("op") == "forget_stream":
                sessions.forget(int(request["stream"]))
                continue
            reply = handle(request, recognizer, follower, sessions)
        except Exception as exc:
            reply = {"ok": False, "code": "bad_request", "message": str(exc)}
        try:
            send(reply)
        except (BrokenPipeError, OSError):
            break
    follower.stop()
