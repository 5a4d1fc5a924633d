"""Signing in and out, the language switch, the landing page and the static files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from console.i18n import LANG_COOKIE, LANGUAGES
from console.session import (
    ActorDep,
    PlainFormDep,
    current_actor,
    end_session,
    field_text,
    queue_cookie,
    session_token,
    start_session,
)
from console.web import ConsoleRoute, home_of, page, safe_next, see_other
from core import accounts
from core.db import committing_refusals
from core.errors import AppError, NotFound
from core.web import SessionDep

router = APIRouter(route_class=ConsoleRoute)
STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
NextPath = Annotated[str | None, Query(max_length=500)]


@router.get("/")
def home(actor: ActorDep) -> Response:
    """The signed-in member's first page."""
    return RedirectResponse(home_of(actor), status_code=303)


@router.get("/none")
def no_pages(request: Request, actor: ActorDep) -> Response:
    """For roles the console has no page for (broker back offices use the API)."""
    return page(request, "none.html")


@router.get("/sign-in")
def sign_in_form(request: Request, next: NextPath = None) -> Response:
    """The sign-in form (or, already signed in, the member's first page)."""
    actor = current_actor(request)
    if actor is not None:
        return RedirectResponse(safe_next(next) or home_of(actor), status_code=303)
    return page(request, "signin.html", {"next": safe_next(next) or ""})


@router.post("/sign-in")
def sign_in(request: Request, form: PlainFormDep, session: SessionDep) -> Response:
    """The staff password grant; the session lives in an HttpOnly cookie. A session this
    browser still held (another member's, or an earlier one) is revoked, not just forgotten."""
    username = field_text(form, "username", max_length=256)
    password = form.get("password")
    target = safe_next(field_text(form, "next", max_length=500, required=False))
    if not isinstance(password, str) or not password or len(password) > accounts.PASSWORD_MAX_LENGTH:
        return page(request, "signin.html", {"next": target or "", "username": username,
                                             "error": "invalid_grant"}, status=400)
    ttl = dt.timedelta(seconds=request.app.state.settings.jwt_ttl_seconds)
    try:
        with committing_refusals(session):
            user = accounts.authenticate_password(session, username=username, password=password)
            issued = accounts.issue_token_pair(session, user=user, mint=request.app.state.mint_token,
                                               access_ttl=ttl)  # only its refresh token is kept
    except AppError as exc:
        return page(request, "signin.html", {"next": target or "", "username": username, "error": exc.code},
                    status=exc.status_code)
    previous = session_token(request)
    if previous is not None:
        accounts.revoke_refresh_token(session, refresh_token=previous)
    session.commit()
    assert issued.refresh_token is not None and issued.refresh_expires_at is not None
    start_session(request, issued.refresh_token, issued.refresh_expires_at)
    request.state.console_actor = issued.actor
    return RedirectResponse(target or home_of(issued.actor), status_code=303)


@router.post("/sign-out")
def sign_out(request: Request, form: PlainFormDep, session: SessionDep) -> Response:
    """End the session here and on the server (its refresh family is revoked)."""
    refresh = session_token(request)
    if refresh is not None:
        accounts.revoke_refresh_token(session, refresh_token=refresh)
        session.commit()
    end_session(request)
    return see_other("/console/sign-in", "signed_out")


@router.get("/lang/{language}")
def switch_language(request: Request, language: str, next: NextPath = None) -> Response:
    """Remember the reader's language for a year; back to where they were."""
    if language not in LANGUAGES:
        raise NotFound("no such language", code="unknown_language")
    queue_cookie(request, LANG_COOKIE, language, max_age=365 * 24 * 3600)
    return RedirectResponse(safe_next(next) or "/console", status_code=303)


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """The console's stylesheet and script (no build step)."""
    media_type = _STATIC_TYPES.get(name)
    if media_type is None:
        raise NotFound("no such file", code="not_found")
    return FileResponse(STATIC / name, media_type=media_type, headers={"Cache-Control": "no-cache"})
