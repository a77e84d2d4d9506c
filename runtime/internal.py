"""WSGI entry of the internal listener (control center): gunicorn runtime.internal:app."""

from runtime.app import create_app

app = create_app("internal")
