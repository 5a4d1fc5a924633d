"""ASGI entry point for ``uvicorn cloudseal.asgi:app`` (one app per worker process)."""

from cloudseal.app import create_app

app = create_app()
