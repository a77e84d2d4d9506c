"""WSGI entry of the internal listener (control center): gunicorn runtime.internal:app."""

from runtime.app import create_app
from runtime.boot import frozen

app = frozen(create_app("internal"))
