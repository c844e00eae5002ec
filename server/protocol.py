"""The stream wire format (docs/protocol.md), as pure encode/decode functions.

Client messages arrive as binary msgpack maps or text JSON maps; replies go
back in the same encoding as the message they answer.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import msgpack

PROTOCOL_VERSION = 1

# Error codes; the table in docs/protocol.md says what each means.
BAD_MESSAGE = "bad_message"
BAD_FRAME = "bad_frame"
UNKNOWN_TYPE = "unknown_type"
MESSAGE_TOO_LARGE = "message_too_large"
INVALID_IMAGE = "invalid_image"
IMAGE_TOO_LARGE = "image_too_large"
UNKNOWN_COLLECTION = "unknown_collection"
COLLECTION_NOT_SERVED = "collection_not_served"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
RATE_LIMITED = "rate_limited"
TOO_MANY_STREAMS = "too_many_streams"
SHUTTING_DOWN = "shutting_down"
OVERLOADED = "overloaded"
TIMEOUT = "timeout"
WORKER_FAILED = "worker_failed"
INTERNAL = "internal"

_MAX_FRAME_ID = 2**53  # ids survive a round trip through JavaScript numbers


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, frame_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


@dataclass(frozen=True)
class FrameMessage:
    id: int
    image: bytes


@dataclass(frozen=True)
class AuthMessage:
    """A browser's credential, sent as the first message because browsers cannot set websocket headers."""

    token: str

    def __repr__(self) -> str:  # never print the secret
        return "AuthMessage(token=...)"


def decode_client_message(raw: bytes | str) -> FrameMessage | AuthMessage:
    """Parse one client message; raises ProtocolError with a code for anything malformed."""
    if isinstance(raw, bytes):
        try:
            message = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except Exception:
            raise ProtocolError(BAD_MESSAGE, "binary messages must be one msgpack map") from None
    else:
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):  # deeply nested arrays exhaust the parser's stack
            raise ProtocolError(BAD_MESSAGE, "text messages must be one JSON object") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_MESSAGE, "a message must be a map with a 'type'")
    frame_id = message.get("id")
    if not (isinstance(frame_id, int) and not isinstance(frame_id, bool) and 0 <= frame_id < _MAX_FRAME_ID):
        frame_id = None
    kind = message.get("type")
    if kind == "auth":
        token = message.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError(BAD_MESSAGE, "an auth message needs 'token': the credential as text")
        return AuthMessage(token)
    if kind != "frame":
        shown = repr(kind) if isinstance(kind, str | int | float | bool | None) else type(kind).__name__
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {shown[:40]}; clients send 'frame'", frame_id)
    if frame_id is None:
        raise ProtocolError(BAD_FRAME, "a frame needs an integer 'id' between 0 and 2^53", None)
    image = message.get("image")
    if isinstance(image, str):
        # JSON cannot carry bytes: text frames send the image base64-encoded.
        try:
            image = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(BAD_FRAME, "'image' in a text message must be base64", frame_id) from None
    if not isinstance(image, bytes) or not image:
        raise ProtocolError(BAD_FRAME, "a frame needs 'image': the JPEG, PNG or WebP bytes", frame_id)
    return FrameMessage(frame_id, image)


def encode(message: dict[str, Any], binary: bool) -> bytes | str:
    """A server message in the encoding the client used."""
    if binary:
        packed: bytes = msgpack.packb(message, use_bin_type=True)
        return packed
    return json.dumps(message, separators=(",", ":"))


def hello(collection: str, max_message_bytes: int, frame_max_side: int) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "collection": collection,
        "max_message_bytes": max_message_bytes,
        "frame_max_side": frame_max_side,
    }


def result(
    frame_id: int, reply: dict[str, Any], timing: dict[str, float], stream: dict[str, int] | None = None
) -> dict[str, Any]:
    out = {
        "type": "result",
        "id": frame_id,
        "width": reply["width"],
        "height": reply["height"],
        "items": reply["items"],
        "timing": timing,
    }
    if stream is not None:
        out["stream"] = stream  # frames received, processed and skipped on this connection so far
    return out


def skipped(frame_id: int) -> dict[str, Any]:
    return {"type": "skipped", "id": frame_id}


def error(code: str, message: str, frame_id: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        out["id"] = frame_id
    return out
