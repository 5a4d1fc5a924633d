"""Console sessions in cookies: who the browser is, and the CSRF check on every form.

Signing in is the staff password grant (:mod:`core.accounts`): it opens a refresh-token
family, the server-side record of the session (eight hours at most, revoked at sign-out, at
the next sign-in in the same browser, or when the account is disabled). The browser keeps
the family's refresh token in one HttpOnly, SameSite=Strict cookie (Secure over https)
scoped to ``/console``, ``cs_refresh``. It never leaves the cookie, so it is not rotated (a
live page polling every few seconds never races itself), and every console request checks
it against the database (one indexed read): signing out or disabling the account ends the
session at the very next request. No access JWT is kept in a cookie: it would stay valid
for its whole lifetime after either, and would work on the JSON API too.

Forms carry a double-submit token (``csrf_token`` field = ``cs_csrf`` cookie, compared in
constant time) and, when the browser sends one, an ``Origin`` that must be the console's own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select
from sqlmodel import Session
from starlette.datastructures import FormData

from core.accounts import staff_actor
from core.auth import Actor
from core.db import utcnow
from core.errors import AppError, Forbidden, PayloadTooLarge, UnsupportedMediaType
from core.models import RefreshToken, StaffUser
from core.settings import Settings

COOKIE_PATH = "/console"
REFRESH_COOKIE = "cs_refresh"
CSRF_COOKIE = "cs_csrf"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 1000
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,100}")


class SignInRequired(Exception):
    """No live console session: the browser is sent to the sign-in page."""


def _secure(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return request.url.scheme == "https" or settings.public_base.startswith("https://")


def queue_cookie(request: Request, name: str, value: str | None, *, max_age: int | None = None,
                 http_only: bool = True) -> None:
    """Set (or, with ``value`` None, delete) a console cookie on the response to ``request``."""
    pending: list[dict[str, Any]] | None = getattr(request.state, "console_cookies", None)
    if pending is None:
        pending = request.state.console_cookies = []
    pending.append({"key": name, "value": value, "max_age": max_age, "path": COOKIE_PATH,
                    "httponly": http_only, "samesite": "strict", "secure": _secure(request)})


def apply_cookies(request: Request, response: Any) -> None:
    """Write the cookies queued while handling ``request`` onto ``response``."""
    for cookie in getattr(request.state, "console_cookies", None) or []:
        if cookie["value"] is None:
            response.delete_cookie(cookie["key"], path=cookie["path"], secure=cookie["secure"],
                                   httponly=cookie["httponly"], samesite=cookie["samesite"])
        else:
            response.set_cookie(**cookie)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def live_session_user(session: Session, refresh_token: str, now: dt.datetime | None = None) -> StaffUser | None:
    """The active staff user whose console session ``refresh_token`` names, if that session
    is still live: not revoked (sign-out, account disabled), not expired, and not used at the
    token endpoint (which would mean it left the cookie)."""
    now = now or utcnow()
    row = session.execute(
        select(StaffUser).join(RefreshToken, RefreshToken.user_id == StaffUser.id)  # type: ignore[arg-type]
        .where(RefreshToken.token_hash == _token_digest(refresh_token))
        .where(RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))  # type: ignore[union-attr]
        .where(RefreshToken.expires_at > now)  # type: ignore[arg-type,operator]
    ).scalar_one_or_none()
    return row if row is not None and row.active else None


def session_token(request: Request) -> str | None:
    """The browser's session (refresh) token, if it has one of the right shape."""
    token = request.cookies.get(REFRESH_COOKIE)
    return token if token and _TOKEN_SHAPE.fullmatch(token) else None


def start_session(request: Request, refresh_token: str, refresh_expires_at: dt.datetime) -> None:
    """Queue the cookie of a fresh sign-in, with a new CSRF token (no fixation)."""
    lifetime = max(0, int((refresh_expires_at - utcnow()).total_seconds()))
    queue_cookie(request, REFRESH_COOKIE, refresh_token, max_age=lifetime)
    new_csrf_token(request)


def end_session(request: Request) -> None:
    """Queue the removal of the session cookie."""
    queue_cookie(request, REFRESH_COOKIE, None)


def current_actor(request: Request) -> Actor | None:
    """The signed-in staff member, if the browser's session is live right now."""
    if hasattr(request.state, "console_actor"):
        return request.state.console_actor
    actor = None
    token = session_token(request)
    if token is not None:
        with Session(request.app.state.read_engine) as session:
            user = live_session_user(session, token)
        actor = staff_actor(user) if user is not None else None
    request.state.console_actor = actor
    return actor


def console_actor(request: Request) -> Actor:
    """Dependency: the signed-in staff member, or :class:`SignInRequired`."""
    actor = current_actor(request)
    if actor is None:
        raise SignInRequired()
    return actor


def new_csrf_token(request: Request) -> str:
    """A fresh CSRF token for this browser (queued as its cookie)."""
    token = secrets.token_urlsafe(32)
    request.state.csrf = token
    queue_cookie(request, CSRF_COOKIE, token)
    return token


def csrf_token(request: Request) -> str:
    """The CSRF token the forms of this page carry (made when the browser has none)."""
    token = getattr(request.state, "csrf", None) or request.cookies.get(CSRF_COOKIE)
    if not token or not _TOKEN_SHAPE.fullmatch(token):
        return new_csrf_token(request)
    request.state.csrf = token
    return token


def _check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    public = request.app.state.settings.public_base.lower()
    if origin.lower() not in (own, public):
        raise Forbidden("this form was sent from another site", code="csrf_origin")


async def read_form(request: Request) -> FormData:
    """A console form, size-limited and CSRF-checked; refusals are 4xx pages."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in FORM_TYPES:
        raise UnsupportedMediaType("the console accepts HTML forms only", code="unsupported_media_type")
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"a console form is at most {MAX_FORM_BYTES // 1024} KiB", code="form_too_large")
    if len(await request.body()) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"a console form is at most {MAX_FORM_BYTES // 1024} KiB", code="form_too_large")
    _check_origin(request)
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_BYTES)
    sent, expected = form.get(CSRF_FIELD), request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("the form's security token is missing or stale: reload the page and try again",
                        code="csrf_failed")
    return form


class SignedForm:
    """A checked form and who sent it, with typed access to single fields."""

    def __init__(self, actor: Actor, form: FormData) -> None:
        self.actor = actor
        self.form = form

    def text(self, name: str, *, max_length: int = 200, required: bool = True, multiline: bool = False) -> str:
        """The field's text (stripped); 400 when missing, repeated, too long or with control
        characters (line breaks allowed in a ``multiline`` field)."""
        return field_text(self.form, name, max_length=max_length, required=required, multiline=multiline)

    @property
    def confirmed(self) -> bool:
        """Whether the sender confirmed a destructive action (the dialog, or the confirmation page)."""
        return self.form.get("confirmed") == "yes"


async def actor_form(request: Request, actor: Annotated[Actor, Depends(console_actor)]) -> SignedForm:
    """Dependency for a signed-in form post: the actor first (no session → sign-in), then the form."""
    return SignedForm(actor, await read_form(request))


def field_text(form: FormData, name: str, *, max_length: int = 200, required: bool = True,
               multiline: bool = False) -> str:
    """One text field of ``form``; see :meth:`SignedForm.text`."""
    values = form.getlist(name)
    if len(values) > 1:
        raise AppError(f"the field {name!r} is repeated", code="invalid_form", status_code=400)
    value = values[0] if values else ""
    if not isinstance(value, str):
        raise AppError(f"the field {name!r} must be text", code="invalid_form", status_code=400)
    value = value.strip()
    if len(value) > max_length:
        raise AppError(f"the field {name!r} is longer than {max_length} characters", code="field_too_long",
                       status_code=400, details={"field": name})
    allowed = "\r\n\t" if multiline else ""
    if any((ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) and c not in allowed for c in value):
        raise AppError(f"the field {name!r} holds control characters", code="invalid_form", status_code=400)
    if required and not value:
        raise AppError(f"the field {name!r} is required", code="field_required", status_code=400,
                       details={"field": name})
    return value


ActorDep = Annotated[Actor, Depends(console_actor)]
FormDep = Annotated[SignedForm, Depends(actor_form)]
PlainFormDep = Annotated[FormData, Depends(read_form)]
