"""WSGI entry of the internal listener (control center): gunicorn runtime.internal:app."""

from runtime.app import served

app = served("internal")
