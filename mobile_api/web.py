"""HTTP plumbing of the mobile API: localised errors, a tighter body limit, the caller.

Every route of the mobile router is a :class:`MobileRoute`: errors raised while parsing,
authorising or handling keep the platform's envelope ``{"error": {"code", "message"}}`` and
stable codes, with the message in the language ``Accept-Language`` asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import AppError, Unauthorized, error_body
from hsm_sim.facade import hsm_private_key
from mobile_api import i18n
from mobile_api.auth import MobileCaller, TokenIssuer, authenticate
from mobile_api.inbox import NO_PUSH, PushProvider

# The platform's access-token key in the HSM (label, owner): ``cloudseal.platform.JWT_KEY``,
# named here because nothing below the composition root imports it (a test keeps them equal).
JWT_KEY = ("platform/jwt", "platform:jwt")
MAX_BODY_BYTES = 64 * 1024  # the app's largest body (a ballot's choices) is a few kilobytes
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


def localised_error(code: str, status: int, message: str, language: str,
                    details: dict[str, Any] | None = None) -> JSONResponse:
    """The error envelope with the message in ``language`` (the code never changes)."""
    body = error_body(code, i18n.error_message(code, language, message, status), details)
    return JSONResponse(body, status, headers={"Content-Language": language, "Vary": "Accept-Language"})


def _validation_error(exc: RequestValidationError, language: str) -> JSONResponse:
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return localised_error("malformed_json", 400, "the body is not valid JSON", language)
    fields = [{"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))} for err in errors]
    return localised_error("validation_error", 422, "the request is not valid", language, {"fields": fields})


class MobileRoute(APIRoute):
    """A route whose refusals are localised and whose body is at most :data:`MAX_BODY_BYTES`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def localised(request: Request) -> Response:
            language = i18n.negotiate(request.headers.get("accept-language"))
            request.state.language = language
            try:
                if len(await request.body()) > MAX_BODY_BYTES:
                    return localised_error("body_too_large", 413, f"the request body exceeds {MAX_BODY_BYTES} bytes",
                                           language)
                response = await handler(request)
            except AppError as exc:
                return localised_error(exc.code, exc.status_code, exc.message, language, exc.details)
            except RequestValidationError as exc:
                return _validation_error(exc, language)
            except StarletteHTTPException as exc:
                if exc.status_code == 400 and isinstance(exc.__cause__, (ValueError, RecursionError)):
                    # FastAPI's "error parsing the body": not UTF-8, nested too deep, a number too long.
                    return localised_error("malformed_json", 400, "the body is not valid JSON", language)
                code = _STATUS_CODES.get(exc.status_code, "http_error")
                return localised_error(code, exc.status_code, str(exc.detail), language)
            response.headers["Content-Language"] = language
            response.headers["Vary"] = "Accept-Language"
            return response

        return localised


def get_language(request: Request) -> str:
    """The language negotiated for this request (``en`` or ``zh-TW``)."""
    return getattr(request.state, "language", i18n.DEFAULT)


def token_issuer(app: FastAPI) -> TokenIssuer:
    """The app's token issuer, built once per application from the platform's JWT key."""
    issuer: TokenIssuer | None = getattr(app.state, "mobile_token_issuer", None)
    if issuer is None:
        platform = app.state.platform
        issuer = TokenIssuer(
            signing_key=hsm_private_key(platform.keystore, *JWT_KEY),  # type: ignore[arg-type]
            public_key=app.state.jwt_public_key, issuer=platform.token_issuer,
            staff_audience=app.state.settings.jwt_audience)
        app.state.mobile_token_issuer = issuer
    return issuer


def get_token_issuer(request: Request) -> TokenIssuer:
    """Dependency form of :func:`token_issuer`."""
    return token_issuer(request.app)


def push_provider(request: Request) -> PushProvider:
    """The push provider the application was given (``app.state.mobile_push``), or none."""
    return getattr(request.app.state, "mobile_push", None) or NO_PUSH


_bearer = HTTPBearer(auto_error=False, description="the app's access token (POST /mobile/v1/auth/login)")


def get_caller(request: Request,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> MobileCaller:
    """The investor calling, checked against the credential and session on every request;
    401 ``missing_token`` without a bearer token."""
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("a bearer access token is required", code="missing_token")
    with Session(request.app.state.read_engine, expire_on_commit=False) as reader:
        return authenticate(reader, token_issuer(request.app), credentials.credentials.strip())


LanguageDep = Annotated[str, Depends(get_language)]
CallerDep = Annotated[MobileCaller, Depends(get_caller)]
IssuerDep = Annotated[TokenIssuer, Depends(get_token_issuer)]
