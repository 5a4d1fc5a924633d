"""Rendering and error handling shared by every console page.

Console routes use :class:`ConsoleRoute`: whatever a service refuses (an
:class:`core.errors.AppError`), a malformed request or a missing session becomes a readable
page in the reader's language with the same 4xx status the JSON API gives; a JSON poll gets
the JSON envelope instead. Every answer carries a strict Content-Security-Policy (scripts and
styles from ``/console/static`` only) and is never cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from console.i18n import LANGUAGES, error_text, grouped, language_of, taipei, translator
from console.messages import DONE_KEYS, MESSAGES
from console.session import CSRF_FIELD, SignInRequired, apply_cookies, csrf_token
from core.auth import Actor, Role
from core.errors import AppError, error_body

log = logging.getLogger("cloudseal.console")

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters["taipei"] = taipei
TEMPLATES.env.filters["grouped"] = grouped
SIGN_IN = "/console/sign-in"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# (key, path): the pages each role has, in the order of the navigation bar.
_PAGES = {
    "meetings": "/console/meetings", "enrolments": "/console/ra/enrolments", "investors": "/console/ra/investors",
    "brokers": "/console/ops/brokers", "ca": "/console/ops/ca", "certificates": "/console/ops/certificates",
    "audit": "/console/ops/audit",
}
_NAVIGATION = {
    Role.OPERATOR: ("meetings", "enrolments", "investors", "brokers", "ca", "certificates", "audit"),
    Role.ISSUER_HOST: ("meetings",),
    Role.RA_OFFICER: ("enrolments", "investors"),
    Role.AUDITOR: ("meetings", "ca", "certificates"),
}


def navigation(actor: Actor | None) -> list[tuple[str, str]]:
    """The (key, path) of each page ``actor``'s role may open."""
    if actor is None:
        return []
    return [(key, _PAGES[key]) for key in _NAVIGATION.get(actor.role, ())]


def home_of(actor: Actor) -> str:
    """Where a staff member lands after signing in."""
    pages = navigation(actor)
    return pages[0][1] if pages else "/console/none"


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a console path of this site (no open redirect), else None."""
    if not target or len(target) > 500 or not target.startswith("/console") or "//" in target or "\\" in target:
        return None
    if any(ord(c) < 0x21 for c in target):
        return None
    return target


def _here(request: Request) -> str:
    """This page's address for the language switch: a form's answer goes back home instead."""
    if request.method != "GET":
        return "/console"
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def page(request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200) -> Response:
    """Render template ``name`` with what every page needs (language, actor, CSRF token, flash)."""
    language = language_of(request)
    actor: Actor | None = getattr(request.state, "console_actor", None)
    done = request.query_params.get("done")
    values = {
        "t": translator(language), "lang": language, "languages": LANGUAGES, "actor": actor,
        "nav": navigation(actor), "csrf_field": CSRF_FIELD, "csrf_token": csrf_token(request),
        "here": _here(request),
        "flash": done if done in DONE_KEYS else None, "known": MESSAGES.__contains__, **(context or {}),
    }
    return TEMPLATES.TemplateResponse(request, name, values, status_code=status)


def see_other(url: str, done: str | None = None) -> RedirectResponse:
    """Post/redirect/get: back to ``url``, with a flash message key."""
    if done:
        url += ("&" if "?" in url else "?") + "done=" + quote(done)
    return RedirectResponse(url, status_code=303)


def confirm_page(request: Request, form: FormData, question: str, **values: object) -> Response:
    """Ask before a destructive action: the same form again, with ``confirmed=yes``.

    The pages' script asks in a dialog first and sends ``confirmed=yes`` itself; this page is
    what a browser without scripts (or a direct post) sees instead of the action happening."""
    fields = [(key, value) for key, value in form.multi_items()
              if key not in (CSRF_FIELD, "confirmed") and isinstance(value, str)]
    return page(request, "confirm.html", {"action": request.url.path, "fields": fields,
                                          "question": question, "question_values": values})


def error_page(request: Request, status: int, code: str, message: str,
               details: dict[str, Any] | None = None) -> Response:
    """A refusal as a page (or, for a JSON poll, the JSON envelope)."""
    if request.url.path.endswith(".json"):
        return JSONResponse(error_body(code, message, details), status)
    language = language_of(request)
    return page(request, "error.html", {"status": status, "code": code,
                                        "message": error_text(language, code, message),
                                        "field": (details or {}).get("field")}, status=status)


def _sign_in_redirect(request: Request) -> Response:
    if request.url.path.endswith(".json"):
        return JSONResponse(error_body("sign_in_required", "the console session has ended: sign in again"), 401)
    target = SIGN_IN
    if request.method == "GET":
        here = safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        target += f"?next={quote(here, safe='')}" if here else ""
    return RedirectResponse(target, status_code=303)


class ConsoleRoute(APIRoute):
    """An API route whose refusals are pages, with the console's cookies and security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                response = _sign_in_redirect(request)
            except AppError as exc:
                response = error_page(request, exc.status_code, exc.code, exc.message, exc.details)
            except RequestValidationError:
                response = error_page(request, 422, "validation_error", "the request is not valid")
            except StarletteHTTPException as exc:
                detail = exc.detail if isinstance(exc.detail, str) else "the request was refused"
                response = error_page(request, exc.status_code, "http_error", detail)
            except Exception:
                log.exception("console page failed: %s %s", request.method, request.url.path)
                response = error_page(request, 500, "internal_error", "internal error")
            apply_cookies(request, response)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return console_handler
