"""The console's router: every page under ``/console``, mounted by the app factory."""

from __future__ import annotations

from fastapi import APIRouter

from console import meetings, ops_pages, ra_pages, signin
from console.web import ConsoleRoute
from core.errors import NotFound

console_router = APIRouter(prefix="/console", include_in_schema=False)
for pages in (signin, meetings, ra_pages, ops_pages):
    console_router.include_router(pages.router)
# "/console" itself (the pages' home link) answers at once, not with a redirect to "/console/"
# (whose absolute URL would name the scheme the server sees, http behind a TLS proxy).
console_router.add_api_route("", signin.home, methods=["GET"], route_class_override=ConsoleRoute)

_fallback = APIRouter(route_class=ConsoleRoute)


@_fallback.api_route("/{rest:path}", methods=["GET", "POST"])
def not_found(rest: str) -> None:
    """Any other console address: a readable 404 page."""
    raise NotFound("there is no such page", code="not_found")


console_router.include_router(_fallback)
