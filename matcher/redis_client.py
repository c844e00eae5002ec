"""One way to open a Redis client for a store address, plain or behind Sentinel.

Addresses are strings so they pass unchanged to worker processes:
  redis://host:6379/0                                   one server
  redis+sentinel://s1:26379,s2:26379,s3:26379/NAME/0    the primary that Sentinel knows as NAME
  redis+sentinel://:PASSWORD@s1:26379,s2:26379/NAME/0   ... whose data nodes ask for a password (requirepass)

A Sentinel client asks the sentinels for the current primary on every new
connection, so after a failover the next command reaches the new primary; while
there is none, commands raise redis.ConnectionError (MasterNotFoundError), which
the stores turn into StoreUnavailable.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"


def sentinel_url(sentinels: tuple[str, ...] | list[str], master: str, db: int = 0) -> str:
    """The address of `master` as watched by `sentinels` ("host:port" each)."""
    return f"{SENTINEL_SCHEME}://{','.join(sentinels)}/{master}/{db}"


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """(sentinel addresses, master name, db) of a redis+sentinel:// address."""
    parts = urlsplit(url)
    hosts = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel address {address!r} in {url!r} is not host:port")
        hosts.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"{url!r} names no master: {SENTINEL_SCHEME}://host:port,.../NAME/DB")
    db = int(path[1]) if len(path) > 1 else 0
    return hosts, path[0], db


def connect(url: str, timeout: float = 5.0) -> redis.Redis:
    """A client for `url` (redis://, rediss://, unix:// or redis+sentinel://)."""
    if url.startswith(SENTINEL_SCHEME + "://"):
        hosts, master, db = parse_sentinel_url(url)
        password = unquote(urlsplit(url).password or "") or None
        sentinel = Sentinel(
            hosts,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            sentinel_kwargs={"socket_timeout": min(timeout, 1.0), "socket_connect_timeout": min(timeout, 1.0)},
        )
        client: redis.Redis = sentinel.master_for(
            master, db=db, password=password, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        return client
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def display(url: str) -> str:
    """`url` without a password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
