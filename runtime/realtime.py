"""ASGI entry of the realtime listener (WebSocket gateway): gunicorn runtime.realtime:app."""

from runtime.boot import frozen, long_lived_sockets
from runtime.realtime_app import create_realtime_app

app = long_lived_sockets(frozen(create_realtime_app()))
