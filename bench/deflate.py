"""permessage-deflate's cost and gain on one chat message's frames, as the gateway's protocol class
compresses them (runtime/worker_class.py): bytes out and in, and CPU per message. Prints figures."""

from __future__ import annotations

import json
import time
import uuid
import zlib

from runtime.worker_class import BoundedWebSocketProtocol as Protocol

ROUNDS = 20_000
AT = "2026-12-06T02:30:00.123456Z"


def _frames() -> tuple[list[bytes], bytes]:
    """The four frames the gateway sends for one message (message.sent to the sender, message.new
    to the other party, two message.status receipts) and the message.send it receives."""
    session_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
    content = "Aku lagi bingung banget soal kerjaan, rasanya capek terus tiap hari dan nggak tahu harus cerita."
    message = {
        "id": message_id,
        "session_id": session_id,
        "seq": 42,
        "sender_type": "customer",
        "client_message_id": str(uuid.uuid4()),
        "content": content,
        "status": "sent",
        "created_at": AT,
    }
    receipt = {"session_id": session_id, "message_id": message_id, "status": "delivered", "at": AT}
    out = [
        {"type": "message.sent", "data": message, "at": AT},
        {"type": "message.new", "data": message, "at": AT},
        {"type": "message.status", "data": receipt, "at": AT},
        {"type": "message.status", "data": {**receipt, "status": "read"}, "at": AT},
    ]
    sent = {"type": "message.send", "client_message_id": message["client_message_id"], "content": content}
    return [json.dumps(f).encode() for f in out], json.dumps(sent).encode()


def _deflate(payload: bytes, level: int, wbits: int, mem_level: int = 8) -> bytes:
    deflater = zlib.compressobj(level, zlib.DEFLATED, -wbits, mem_level)
    return (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]


def main() -> None:
    out, incoming = _frames()
    threshold = Protocol.compress_from or 0
    started = time.process_time()
    for _ in range(ROUNDS):
        sizes = [
            len(_deflate(f, Protocol.compress_level, Protocol.compress_window_bits, Protocol.compress_mem_level))
            if len(f) >= threshold
            else len(f)
            for f in out
        ]
    compress_us = (time.process_time() - started) / ROUNDS * 1e6
    plain, packed = sum(len(f) for f in out), sum(sizes)
    # A client compresses with its own settings (zlib's defaults, as Chromium and Node's ws do).
    client_packed = _deflate(incoming, 6, 15)
    started = time.process_time()
    for _ in range(ROUNDS):
        zlib.decompressobj(-15).decompress(client_packed + b"\x00\x00\xff\xff", 16_385)
    inflate_us = (time.process_time() - started) / ROUNDS * 1e6
    print(f"frames out per message: {plain} B plain, {packed} B deflated ({1 - packed / plain:.0%} less)")
    print(f"frame in (message.send): {len(incoming)} B plain, {len(client_packed)} B deflated")
    print(f"CPU per message: {compress_us:.1f} us to compress, {inflate_us:.1f} us to inflate")


if __name__ == "__main__":
    main()
