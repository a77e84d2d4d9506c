"""ASGI entry of the realtime listener (WebSocket gateway): gunicorn runtime.realtime:app."""

from runtime.realtime_app import create_realtime_app

app = create_realtime_app()
