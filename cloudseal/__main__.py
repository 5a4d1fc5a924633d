"""``python -m cloudseal`` runs the CLI."""

from cloudseal.cli import app

app()
