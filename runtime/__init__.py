"""Discovery, app factories, gunicorn configs and the CLI (python -m runtime)."""
