"""permessage-deflate (RFC 7692) in the gateway's WebSocket protocol class, from a raw socket: what
each offer is answered, compressed messages both ways (whole and fragmented), and the failures (a
compressed frame that inflates past the 16 KiB bound, data that does not inflate, RSV1 where it may
not be). Whether the gateway process accepts the offer Node's ws and Chromium make is in
test_gateway_real_clients.py (it follows BoundedWebSocketProtocol.compress_from, 256); here the
class is served as gunicorn 26 serves it, compression on, behind an echo app, in this process.

When accepted, no compression context is kept between messages on either side (every offer is
answered with server_no_context_takeover and client_no_context_takeover): a socket costs no zlib
memory while idle. Only frames of at least `compress_from` bytes are compressed."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.worker_class import BoundedWebSocketProtocol
from tests.runtime.test_gateway_rfc6455 import CONTINUATION, TEXT, Raw, code, echo, in_process

DEFLATE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
RSV1 = 0x40
AUTH = json.dumps({"type": "auth", "token": "t"}).encode()  # any first message: the app echoes it


def deflate(data: bytes, wbits: int = 15) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflate(data: bytes, wbits: int = 15) -> bytes:
    return zlib.decompressobj(-wbits).decompress(data + b"\x00\x00\xff\xff")


class Deflating(BoundedWebSocketProtocol):
    compress_from = 256


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with in_process(Deflating, echo) as served:
        yield f"{served}/"


def _answer(url: str, offer: str) -> str | None:
    raw = Raw(url, offer)
    raw.sock.close()
    return raw.headers.get("sec-websocket-extensions")


def test_each_offer_is_answered_as_rfc_7692_says(url: str) -> None:
    offers = {
        "permessage-deflate": DEFLATE,
        "permessage-deflate; client_max_window_bits": DEFLATE,  # what Chromium and Node's ws offer
        "permessage-deflate; client_max_window_bits=15": DEFLATE,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover": DEFLATE,
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12": f"{DEFLATE}; server_max_window_bits=10",
        'permessage-deflate; server_max_window_bits="12"': f"{DEFLATE}; server_max_window_bits=12",
        # the first offer we can take, of several
        "permessage-deflate; server_max_window_bits=8, permessage-deflate": DEFLATE,
        # declined: another extension, an unknown or repeated parameter, a value out of range or
        # missing, a window zlib cannot compress with (8 bits, raw deflate)
        "x-webkit-deflate-frame": None,
        "permessage-deflate; mystery=1": None,
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover": None,
        "permessage-deflate; server_no_context_takeover=1": None,
        "permessage-deflate; server_max_window_bits": None,
        "permessage-deflate; server_max_window_bits=16": None,
        "permessage-deflate; server_max_window_bits=8": None,
        "permessage-deflate; client_max_window_bits=7": None,
    }
    assert {offer: _answer(url, offer) for offer in offers} == offers


def test_compressed_messages_both_ways(url: str) -> None:
    raw = Raw(url, "permessage-deflate; client_max_window_bits")  # what Chromium and ws offer
    with raw.sock:
        assert raw.headers["sec-websocket-extensions"] == DEFLATE
        # A compressed message under 256 bytes comes back uncompressed.
        raw.text(deflate(AUTH), rsv=RSV1)
        assert raw.frame() == (0x80 | TEXT, AUTH)
        # A compressed message in fragments (RSV1 on the first frame only), with a ping between them;
        # 10 KiB of text, so its echo is compressed.
        message = json.dumps({"type": "message.send", "content": "halo bestie, cerita aja ya " * 400}).encode()
        packed = deflate(message)
        raw.text(packed[:20], rsv=RSV1, fin=False)
        raw.send(0x9, b"between")
        raw.send(CONTINUATION, packed[20:])
        assert raw.frame() == (0x8A, b"between")
        frame = raw.frame()
        assert frame is not None
        assert frame[0] == 0x80 | RSV1 | TEXT
        assert inflate(frame[1]) == message
        assert len(frame[1]) < len(message) // 10
        # An uncompressed message on the same socket (compression is per message), echoed compressed.
        raw.text(message)
        frame = raw.frame()
        assert frame is not None
        assert frame[0] == 0x80 | RSV1 | TEXT
        assert inflate(frame[1]) == message
        # Several in a row: no context is carried from one message to the next.
        for n in range(3):
            text = json.dumps({"n": n, "content": "sama-sama " * 40}).encode()
            raw.text(text)
            frame = raw.frame()
            assert frame is not None
            assert inflate(frame[1]) == text
    # With the server's window limited by the client, it compresses within it (a 9-bit window
    # cannot inflate a stream that refers further back).
    raw = Raw(url, "permessage-deflate; server_max_window_bits=9")
    with raw.sock:
        assert raw.headers["sec-websocket-extensions"] == f"{DEFLATE}; server_max_window_bits=9"
        raw.text(message)
        frame = raw.frame()
        assert frame is not None
        assert frame[0] == 0x80 | RSV1 | TEXT
        assert inflate(frame[1], wbits=9) == message


def test_compressed_frames_that_break_the_rules(url: str) -> None:
    cases: dict[str, tuple[list[dict[str, Any]], int]] = {
        # 1 MiB of spaces is a 1 KiB frame: refused by its inflated size, which is never held whole
        "inflates past 16 KiB": ([{"payload": deflate(b'"' + b" " * 2**20 + b'"'), "rsv": RSV1}], 1009),
        "inflates to 16 KiB and one byte": ([{"payload": deflate(b"x" * (16 * 1024 + 1)), "rsv": RSV1}], 1009),
        "does not inflate": ([{"payload": b"\xff\xff\xff\xff", "rsv": RSV1}], 1007),
        "not UTF-8 once inflated": ([{"payload": deflate(b'{"type": "\xff"}'), "rsv": RSV1}], 1007),
        "RSV1 on a continuation": (
            [{"payload": deflate(b'{"type"'), "rsv": RSV1, "fin": False}, {"payload": b"x", "rsv": RSV1, "opcode": 0}],
            1002,
        ),
    }
    for name, (frames, expected) in cases.items():
        raw = Raw(url, "permessage-deflate")
        with raw.sock:
            for sent in frames:
                raw.send(sent.pop("opcode", TEXT), sent.pop("payload"), **sent)
            assert code(raw.closed_with()) == expected, name
    # Exactly 16 KiB once inflated is a message like any other.
    raw = Raw(url, "permessage-deflate")
    with raw.sock:
        raw.text(deflate(b"x" * 16 * 1024), rsv=RSV1)
        frame = raw.frame()
        assert frame is not None
        assert inflate(frame[1]) == b"x" * 16 * 1024


def test_without_an_offer_rsv1_is_a_protocol_error(url: str) -> None:
    raw = Raw(url)
    with raw.sock:
        assert "sec-websocket-extensions" not in raw.headers
        raw.text(deflate(AUTH), rsv=RSV1)
        assert code(raw.closed_with()) == 1002
