"""The WebSocket gateway (API.md, WebSocket section; docs/realtime.md): authenticates each socket,
forwards the events that lib/chat/events.py publishes on `user:<type>:<id>` to that user's live
sockets, and runs the client frames of functions/realtime/ on a bounded thread pool.

Per socket: one task reading its frames in order, and a bounded outgoing queue drained by a task
that exists only while there is something to send, so an idle socket costs no CPU. A socket whose
queue overflows (a reader that cannot keep up) is closed with 4008; the others never wait for it.

One concern a module: server.py (the process and each socket: auth, reading, frame handling),
discovery.py (the frame handlers), batching.py (group commit of `handle_batch` frames),
connections.py (the registry, outgoing queues, close codes), delivery.py (bus events to sockets)
and presence.py (sockets in Valkey for pushes, a mitra offline after the grace).
"""

from runtime.gateway.batching import FAILED, Batches
from runtime.gateway.connections import Connection, Connections
from runtime.gateway.delivery import Delivery
from runtime.gateway.discovery import FrameModule, discover_frames
from runtime.gateway.server import Gateway

__all__ = ["FAILED", "Batches", "Connection", "Connections", "Delivery", "FrameModule", "Gateway", "discover_frames"]
