"""WSGI entry of the public listener (mobile apps): gunicorn runtime.public:app."""

from runtime.app import create_app
from runtime.boot import frozen

app = frozen(create_app("public"))
