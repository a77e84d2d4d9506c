"""WSGI entry of the public listener (mobile apps): gunicorn runtime.public:app."""

from runtime.app import create_app

app = create_app("public")
