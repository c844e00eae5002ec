"""Credentials: management keys and recognition tokens, kept hashed in the store.

A credential is a random secret shown once when it is made. The store keeps
only its SHA-256 (the secret has 256 bits of entropy, so a fast hash is enough:
there is nothing to brute-force) next to what it allows:

  cl:cred:{sha256}      HASH  meta (JSON: id, kind, name, collections, fps, expires, created)
  cl:credids            HASH  id -> sha256, to list and revoke by the public id
  cl:credversion        INT   bumped on every change, so servers reload only when it moved

Kinds:
  management   everything: collections and items, stats, recognition and streams
  recognition  read-only: recognize, stream and read the named collections, optionally
               limited to a frame rate and an expiry time

Command line (uses the same store as the server; see --help):
  python -m server.credentials create management --name ops
  python -m server.credentials create recognition --collections demo,shop --fps 10 --expires-days 30
  python -m server.credentials list
  python -m server.credentials revoke ID
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from matcher.redis_client import connect
from matcher.store import StoreUnavailable, as_text, call_redis, check_collection_name

MANAGEMENT = "management"
RECOGNITION = "recognition"
KINDS = (MANAGEMENT, RECOGNITION)
_SECRET_PREFIX = {MANAGEMENT: "clm_", RECOGNITION: "clr_"}


class CredentialError(ValueError):
    """A credential that cannot be made or found as asked."""


@dataclass(frozen=True)
class Credential:
    id: str
    """Public handle (12 hex digits) used to list and revoke; not a secret."""
    kind: str
    name: str
    collections: tuple[str, ...]
    """Collections a recognition token may use; empty for management keys (all)."""
    fps: float
    """Frames per second this credential may send; 0: the server's limit."""
    expires: float
    """Unix time after which it is refused; 0: never."""
    created: float

    def expired(self, now: float | None = None) -> bool:
        return bool(self.expires) and (time.time() if now is None else now) >= self.expires

    def may_use(self, collection: str) -> bool:
        return self.kind == MANAGEMENT or collection in self.collections

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "collections": list(self.collections),
            "fps": self.fps,
            "expires": self.expires,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Credential:
        return cls(
            str(data["id"]),
            str(data["kind"]),
            str(data.get("name", "")),
            tuple(data.get("collections") or ()),
            float(data.get("fps") or 0),
            float(data.get("expires") or 0),
            float(data.get("created") or 0),
        )


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogateescape")).hexdigest()


class CredentialStore:
    """Credentials in Redis, next to the collections (same prefix)."""

    def __init__(self, client: redis.Redis, prefix: str = "cl") -> None:
        self.redis = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "cl", timeout: float = 5.0) -> CredentialStore:
        return cls(connect(url, timeout), prefix)

    def _k_cred(self, digest: str) -> str:
        return f"{self.prefix}:cred:{digest}"

    def _k_ids(self) -> str:
        return f"{self.prefix}:credids"

    def _k_version(self) -> str:
        return f"{self.prefix}:credversion"

    def _run(self, fn: Any, *args: Any) -> Any:
        return call_redis("the credential store", fn, *args)

    def create(
        self,
        kind: str,
        name: str = "",
        collections: tuple[str, ...] = (),
        fps: float = 0.0,
        expires: float = 0.0,
    ) -> tuple[str, Credential]:
        """Make a credential; returns (secret, credential). The secret is not kept anywhere."""
        if kind not in KINDS:
            raise CredentialError(f"kind must be one of {', '.join(KINDS)}")
        if kind == RECOGNITION and not collections:
            raise CredentialError("a recognition token needs at least one collection")
        if kind == MANAGEMENT and collections:
            raise CredentialError("management keys apply to every collection; leave out --collections")
        for collection in collections:
            check_collection_name(collection)
        if fps < 0:
            raise CredentialError("fps must be positive (0: the server's limit)")
        credential = Credential(
            secrets.token_hex(6), kind, name, tuple(collections), float(fps), float(expires), round(time.time(), 3)
        )
        secret = _SECRET_PREFIX[kind] + secrets.token_urlsafe(32)
        digest = secret_hash(secret)

        def write() -> None:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._k_cred(digest), "meta", json.dumps(credential.to_json()))
                pipe.hset(self._k_ids(), credential.id, digest)
                pipe.incr(self._k_version())
                pipe.execute()

        self._run(write)
        return secret, credential

    def revoke(self, credential_id: str) -> None:
        def remove() -> None:
            digest = self.redis.hget(self._k_ids(), credential_id)
            if digest is None:
                raise CredentialError(f"no credential {credential_id}")
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._k_cred(as_text(digest)))
                pipe.hdel(self._k_ids(), credential_id)
                pipe.incr(self._k_version())
                pipe.execute()

        self._run(remove)

    def version(self) -> int:
        return int(self._run(self.redis.get, self._k_version()) or 0)

    def all(self) -> dict[str, Credential]:
        """Every credential by the hash of its secret."""

        def read() -> dict[str, Credential]:
            digests = [as_text(d) for d in self.redis.hvals(self._k_ids())]
            with self.redis.pipeline(transaction=False) as pipe:
                for digest in digests:
                    pipe.hget(self._k_cred(digest), "meta")
                metas = pipe.execute()
            return {d: Credential.from_json(json.loads(m)) for d, m in zip(digests, metas, strict=True) if m}

        result: dict[str, Credential] = self._run(read)
        return result



# -- command line ---------------------------------------------------------------------


@contextmanager
def _open_store(args: argparse.Namespace) -> Iterator[CredentialStore]:
    from matcher.embedded_redis import RedisStartError, start_or_reuse
    from server.config import ConfigError, load_config

    root = Path(__file__).resolve().parent.parent
    path = args.config if args.config is not None else (root / "config.yaml" if (root / "config.yaml").exists() else None)
    try:
        config = load_config(path, overrides={"data_dir": args.data_dir})
    except ConfigError as exc:
        raise CredentialError(f"configuration: {exc}") from None
    embedded = None
    url = config.server.redis_url
    if not url:
        try:
            embedded = start_or_reuse(Path(config.server.data_dir))
        except (RedisStartError, OSError) as exc:
            raise CredentialError(f"could not start the local store under {config.server.data_dir}/redis: {exc}") from None
        url = embedded.url
    try:
        yield CredentialStore.from_url(url, config.server.redis_prefix)
    finally:
        if embedded is not None:
            embedded.stop()


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else "never"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.credentials", description="Create, list and revoke Catchlight credentials."
    )
    parser.add_argument("--config", type=Path, default=None, help="settings file (default: ./config.yaml)")
    parser.add_argument("--data-dir", default=None, help="data directory of the local store (default: var)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a credential and print its secret (shown only once)")
    create.add_argument("kind", choices=KINDS)
    create.add_argument("--name", default="", help="a note saying who or what uses it")
    create.add_argument("--collections", default="", help="recognition tokens: comma-separated collections")
    create.add_argument("--fps", type=float, default=0.0, help="frames per second allowed (0: the server's limit)")
    create.add_argument("--expires-days", type=float, default=0.0, help="valid for this many days (0: no expiry)")
    commands.add_parser("list", help="list credentials (never their secrets)")
    revoke = commands.add_parser("revoke", help="revoke a credential by its id")
    revoke.add_argument("id")
    args = parser.parse_args(argv)
    try:
        with _open_store(args) as store:
            if args.command == "create":
                collections = tuple(c.strip() for c in args.collections.split(",") if c.strip())
                expires = time.time() + args.expires_days * 86400 if args.expires_days else 0.0
                secret, credential = store.create(args.kind, args.name, collections, args.fps, expires)
                print(f"created {credential.kind} credential {credential.id}; its secret (shown only this once):")
                print(secret)
            elif args.command == "list":
                for credential in sorted(store.all().values(), key=lambda c: c.created):
                    scope = ",".join(credential.collections) or "all collections"
                    fps = f"{credential.fps:g} fps" if credential.fps else "server fps limit"
                    print(
                        f"{credential.id}  {credential.kind:<11}  {scope}  {fps}  "
                        f"expires {_when(credential.expires)}  {credential.name}"
                    )
            else:
                store.revoke(args.id)
                print(f"revoked {args.id}")
    except (CredentialError, StoreUnavailable, ValueError) as exc:
        print(f"credentials: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
