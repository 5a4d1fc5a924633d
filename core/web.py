"""HTTP plumbing shared by every router: error envelope, body limit, common dependencies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.auth import Actor, verify_token
from core.errors import AppError, Unauthorized, error_body
from core.settings import Settings

log = logging.getLogger("cloudseal.web")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    """Make every error leave the API in the JSON envelope with a stable code."""

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            return JSONResponse(error_body("malformed_json", "the body is not valid JSON"), 400)
        fields = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in errors
        ]
        return JSONResponse(
            error_body("validation_error", "the request is not valid", {"fields": fields}), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse(error_body(code, message), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal error"), 500)


def exceeds(declared_length: bytes, limit: int) -> bool:
    """Whether a Content-Length of digits ``declared_length`` is over ``limit`` (more than 18
    digits always is: int() of thousands of digits is refused, and slow)."""
    return len(declared_length) > 18 or int(declared_length) > limit


async def read_body(receive: Receive, limit: int) -> tuple[bytes, bool] | None:
    """The request body read up to just past ``limit`` bytes, and whether it is complete
    (False: it is longer than ``limit``); None when the client went away."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            return bytes(body), False
        if not message.get("more_body", False):
            return bytes(body), True


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit():
                    await _send_json(send, 400, error_body("bad_request", "Content-Length is not a number"))
                    return
                if exceeds(value, self.max_bytes):
                    await self._reject(send, self.max_bytes + 1)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._reject(send, received)

    async def _reject(self, send: Send, size: int) -> None:
        await _send_json(send, 413, error_body("body_too_large", f"the request body exceeds {self.max_bytes} bytes"))


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class _BodyTooLarge(BaseException):
    """Raised from ``receive`` mid-stream. A BaseException, so body parsers that catch
    Exception (and answer 400) let it through to :class:`BodyLimitMiddleware`."""


def get_settings_dep(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


def get_read_session(request: Request) -> Iterator[Session]:
    """A session on the read engine (no write lock on SQLite): for public, read-only GETs."""
    with Session(request.app.state.read_engine, expire_on_commit=False) as session:
        yield session


def get_session(request: Request) -> Iterator[Session]:
    """A database session per request; commits when the handler succeeds."""
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def request_sessions(request: Request) -> Iterator[tuple[Session, Session]]:
    """A write session (committed when the block succeeds) and a read session, opened in the
    handler's own thread.

    The hot signing endpoints use this instead of ``SessionDep`` + ``ReadSessionDep``: each
    generator dependency enters and exits in a thread-pool hop of its own, four extra hops
    per request that cost more than the handler's SQL under load.
    """
    engine, read_engine = request.app.state.engine, request.app.state.read_engine
    with Session(engine, expire_on_commit=False) as session:
        # One engine (PostgreSQL): the reads share the write session, so a request never
        # holds one pooled connection while it waits for a second.
        reader = Session(read_engine, expire_on_commit=False) if read_engine is not engine else session
        try:
            yield session, reader
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            if reader is not session:
                reader.close()


_bearer = HTTPBearer(auto_error=False)


def get_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The caller named by the bearer token; 401 when it is missing or invalid."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer access token is required", code="missing_token")
    settings: Settings = request.app.state.settings
    return verify_token(
        credentials.credentials,
        public_key=request.app.state.jwt_public_key,
        issuer=settings.public_base + "/auth",
        audience=settings.jwt_audience,
    )


# scope="function": the session closes (and commits) before the response is sent, so a
# client never sees success for a write that then fails to commit.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
ActorDep = Annotated[Actor, Depends(get_actor)]


def json_error(code: str, message: str, status: int, **details: Any) -> JSONResponse:
    """A JSON error response for handlers that answer directly."""
    return JSONResponse(error_body(code, message, details or None), status)


class ClosingStreamingResponse(StreamingResponse):
    """A streamed body that releases what it holds (a database session, a temporary file)
    as soon as the response ends: sent in full, failed, or abandoned by a client that hung up.

    Starlette leaves an abandoned sync generator suspended until the garbage collector finds
    it; this closes ``content`` and then calls ``release`` (if given) once the response is done.
    """

    def __init__(self, content: Generator[bytes, None, None], *, release: Callable[[], object] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._content, self._release = content, release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # No worker thread is inside the generator now: anyio lets a cancelled
            # thread call finish before the cancellation reaches this point.
            self._content.close()
            if self._release is not None:
                self._release()
