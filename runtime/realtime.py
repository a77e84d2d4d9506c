"""ASGI entry of the realtime listener (WebSocket gateway): gunicorn runtime.realtime:app."""

from runtime.boot import frozen
from runtime.realtime_app import create_realtime_app

app = frozen(create_realtime_app())
