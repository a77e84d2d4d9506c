"""WSGI entry of the public listener (mobile apps): gunicorn runtime.public:app."""

from runtime.app import served

app = served("public")
