"""Who may do what: credentials checked against a cache, frame rates and stream counts per credential.

The cache is reloaded from the store whenever its version moves (checked every
`server.credentials_refresh_seconds`), so a revoked credential stops working
within that time, and streams keep being authorised from memory while the
store is unreachable.

The server is open (no credential asked) only while it listens on a loopback
address and no credential exists. Once one exists, every API call and stream
needs one.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field

from matcher.store import StoreUnavailable
from server.credentials import MANAGEMENT, Credential, CredentialStore, secret_hash

log = logging.getLogger("catchlight.access")

# Actions a handler asks for.
MANAGE = "manage"  # create, change, delete
READ = "read"  # list collections and items, thumbnails
RECOGNIZE = "recognize"  # /v1/recognize and /v1/stream

ANONYMOUS = Credential("local", MANAGEMENT, "open local server", (), 0.0, 0.0, 0.0)


class Unauthorized(Exception):
    """No credential, or one that is unknown, revoked or expired: 401. Deliberately says which of these it was to nobody."""


class Forbidden(Exception):
    """A valid credential that does not allow this: 403."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Bucket:
    """Token bucket: `rate` per second, holding at most one second's worth."""

    rate: float
    tokens: float
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Access:
    def __init__(
        self,
        store: CredentialStore,
        host: str,
        max_fps: float,
        max_streams: int,
    ) -> None:
        self.store = store
        self.loopback = is_loopback(host)
        self.max_fps = max_fps
        self.max_streams = max_streams
        self._by_hash: dict[str, Credential] = {}
        self._version = -1
        self._buckets: dict[str, _Bucket] = {}
        self._streams: dict[str, int] = {}
        self._store_down = False

    # -- the cache ----------------------------------------------------------------

    def refresh(self) -> None:
        """Reload the credentials if they changed (blocking: run it off the event loop)."""
        try:
            version = self.store.version()
            if version != self._version:
                self._by_hash = self.store.all()
                self._version = version
            if self._store_down:
                log.info("credential store reachable again")
            self._store_down = False
        except StoreUnavailable as exc:
            if not self._store_down:
                log.warning("credential store unreachable, using the credentials known so far: %s", exc)
            self._store_down = True

    @property
    def open(self) -> bool:
        """True while anyone who reaches the server may use it (loopback, no credentials made)."""
        return self.loopback and not self._by_hash

    @property
    def credential_count(self) -> int:
        return len(self._by_hash)

    # -- checks -------------------------------------------------------------------

    def authenticate(self, secret: str | None) -> Credential:
        """The credential a request presents; raises Unauthorized."""
        if self.open:
            return ANONYMOUS
        if not secret:
            raise Unauthorized()
        # The lookup is by the hash of the secret, so its timing says nothing about the secret itself.
        credential = self._by_hash.get(secret_hash(secret))
        if credential is None or credential.expired():
            raise Unauthorized()
        return credential

    def authorize(self, credential: Credential, action: str, collection: str | None = None) -> None:
        """Raises Forbidden unless `credential` allows `action` (on `collection`)."""
        if credential.kind == MANAGEMENT:
            return
        if action == MANAGE:
            raise Forbidden()
        if collection is not None and not credential.may_use(collection):
            raise Forbidden()

    # -- limits -------------------------------------------------------------------

    def frame_allowed(self, credential: Credential) -> bool:
        """One frame of `credential` may go to the matcher now (frames per second per credential)."""
        if credential is ANONYMOUS:
            return True
        rate = min(credential.fps, self.max_fps) if credential.fps else self.max_fps
        bucket = self._buckets.get(credential.id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[credential.id] = _Bucket(rate, max(rate, 1.0))
        return bucket.take()

    def open_stream(self, credential: Credential) -> bool:
        """Count a new stream of `credential`; False when it already has the most allowed."""
        if credential is ANONYMOUS:
            return True
        count = self._streams.get(credential.id, 0)
        if count >= self.max_streams:
            return False
        self._streams[credential.id] = count + 1
        return True

    def close_stream(self, credential: Credential) -> None:
        if credential is ANONYMOUS:
            return
        count = self._streams.get(credential.id, 0) - 1
        if count > 0:
            self._streams[credential.id] = count
        else:
            self._streams.pop(credential.id, None)
