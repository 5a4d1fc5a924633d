"""The web console for meeting hosts, RA officers and operators (server-rendered pages)."""

from console.router import console_router

__all__ = ["console_router"]
