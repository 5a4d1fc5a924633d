"""Receiving ballots over HTTP: the one coroutine both ways in share, and the fast path.

``POST /voting/ballots`` is the platform's busiest write. :class:`BallotFastPath` is an
ASGI layer in front of the framework that answers a well-formed submission itself (JSON
body, the :class:`voting.schemas.SignedSubmission` fields) and hands every other request on
unchanged, with the body it read, to the framework route; that route gives malformed JSON,
a wrong content type, missing or extra fields and oversize bodies their usual answers. The
framework's routing, dependency and middleware layers cost about a tenth of a ballot's
server time (measured with py-spy under bench/ballots.py).

Both ways call :func:`receive_ballot`, and a refusal is the same JSON envelope with the
same status and code (:meth:`core.errors.AppError.to_body`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from starlette.datastructures import State
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ca.context import Pki
from core.errors import AppError, error_body
from core.web import exceeds, read_body
from voting import ballots
from voting.ballots import Receipt
from voting.schemas import SignedSubmission

BALLOTS_PATH = "/voting/ballots"
log = logging.getLogger("cloudseal.web")


class CheckReader:
    """The connection a worker's ballot checks read through, kept open between ballots.

    The checks run on the event loop one at a time, so one connection serves them all; a
    pooled one per ballot cost a checkout and, on PostgreSQL, a pre-ping round trip each.
    A connection that breaks is replaced and the (read-only) check is run once more.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def check(self, pki: Pki, payload: bytes, cms: bytes) -> ballots.CheckedBallot:
        """:func:`voting.ballots.check_ballot` through the kept connection."""
        try:
            return self._check(pki, payload, cms)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            self.close()
        return self._check(pki, payload, cms)

    def _check(self, pki: Pki, payload: bytes, cms: bytes) -> ballots.CheckedBallot:
        if self._connection is None or self._connection.invalidated or self._connection.closed:
            self._connection = self._engine.connect()
        with Session(bind=self._connection, expire_on_commit=False) as reader:
            return ballots.check_ballot(reader, pki, payload=payload, cms=cms)

    def close(self) -> None:
        """Give the connection back (at shutdown)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def receive_ballot(state: State, submission: SignedSubmission) -> Receipt:
    """Check a submitted ballot on the event loop and have it recorded with the others that
    arrive meanwhile (:class:`voting.intake.BallotIntake`); its receipt, or its refusal raised."""
    payload, cms = ballots.require_known_payload(submission.payload, submission.cms)
    checked = state.check_reader.check(state.pki, payload, cms)
    return await state.ballot_intake.submit(checked)


class BallotFastPath:
    """ASGI layer answering well-formed ballot submissions; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, state: State, max_body_bytes: int) -> None:
        self.app = app
        self.state = state
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != BALLOTS_PATH or scope["method"] != "POST" \
                or not self._json_within_limit(scope):
            await self.app(scope, receive, send)
            return
        read = await read_body(receive, self.max_body_bytes)
        if read is None:  # the client went away
            return
        body, complete = read
        submission = _submission(body) if complete else None
        if submission is None:  # the framework answers it (413 when too long), from the same bytes
            await self.app(scope, _replay(body, complete, receive), send)
            return
        await self._answer(submission, send)

    def _json_within_limit(self, scope: Scope) -> bool:
        """One JSON Content-Type and at most one Content-Length within the limit (a header
        given twice is left to the framework, which reads the first)."""
        content_types = [value for name, value in scope.get("headers", []) if name == b"content-type"]
        lengths = [value for name, value in scope.get("headers", []) if name == b"content-length"] or [b"0"]
        if len(content_types) != 1 or len(lengths) != 1:
            return False
        length = lengths[0]
        return (content_types[0].split(b";", 1)[0].strip().lower() == b"application/json"
                and length.isdigit() and not exceeds(length, self.max_body_bytes))

    async def _answer(self, submission: SignedSubmission, send: Send) -> None:
        content: dict[str, Any]
        try:
            receipt = await receive_ballot(self.state, submission)
            status, content = 201, receipt.to_json()
        except AppError as exc:
            status, content = exc.status_code, exc.to_body()
        except Exception as exc:  # as the framework's last-resort handler answers it
            log.exception("unhandled error", exc_info=exc)
            status, content = 500, error_body("internal_error", "internal error")
        response = JSONResponse(content, status)
        await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def _submission(body: bytes) -> SignedSubmission | None:
    """The submission when ``body`` is exactly one; None for anything the framework should answer."""
    try:
        return SignedSubmission.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError):  # not JSON (or nested too deep), not the fields
        return None


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` first, then whatever ``receive`` has left."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": not complete}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
