"""The wire format alone, no server: what a client library author relies on."""

from __future__ import annotations

import json

import msgpack
import pytest

from server import protocol


def test_binary_frame_decodes_to_id_and_image() -> None:
    message = protocol.decode_client_message(msgpack.packb({"type": "frame", "id": 42, "image": b"\xff\xd8jpeg"}))
    assert message == protocol.FrameMessage(42, b"\xff\xd8jpeg")


def test_text_frame_carries_base64_image() -> None:
    message = protocol.decode_client_message(json.dumps({"type": "frame", "id": 1, "image": "/9hqcGVn"}))
    assert message.image == b"\xff\xd8jpeg"


@pytest.mark.parametrize(
    "raw,code,frame_id",
    [
        (b"\xc1", protocol.BAD_MESSAGE, None),
        (msgpack.packb("frame"), protocol.BAD_MESSAGE, None),
        (msgpack.packb({"id": 3}), protocol.UNKNOWN_TYPE, 3),
        (msgpack.packb({"type": "frame", "id": -1, "image": b"x"}), protocol.BAD_FRAME, None),
        (msgpack.packb({"type": "frame", "id": True, "image": b"x"}), protocol.BAD_FRAME, None),
        (msgpack.packb({"type": "frame", "id": 2**53, "image": b"x"}), protocol.BAD_FRAME, None),
        (msgpack.packb({"type": "frame", "id": 9, "image": b""}), protocol.BAD_FRAME, 9),
        (msgpack.packb({"type": "frame", "id": 9, "image": 5}), protocol.BAD_FRAME, 9),
        (json.dumps({"type": "frame", "id": 9, "image": "***"}), protocol.BAD_FRAME, 9),
        ("[]", protocol.BAD_MESSAGE, None),
    ],
)
def test_malformed_messages_raise_their_code_and_keep_the_id_when_known(raw: bytes | str, code: str, frame_id: int | None) -> None:
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_client_message(raw)
    assert caught.value.code == code
    assert caught.value.frame_id == frame_id


def test_replies_use_the_encoding_of_the_request() -> None:
    message = protocol.skipped(7)
    assert msgpack.unpackb(protocol.encode(message, binary=True)) == {"type": "skipped", "id": 7}
    assert json.loads(protocol.encode(message, binary=False)) == {"type": "skipped", "id": 7}


def test_error_without_frame_id_has_no_id_field() -> None:
    assert protocol.error("bad_message", "x") == {"type": "error", "code": "bad_message", "message": "x"}
    assert protocol.error("invalid_image", "x", 4)["id"] == 4
