"""OCSP over HTTP (RFC 6960 appendix A, RFC 5019): the transport around the responder.

:class:`OcspFastPath` is a plain ASGI layer that answers ``POST /pki/ocsp`` and
``GET /pki/ocsp/{base64}`` before the web framework's routing and middleware run: the
responder is the busiest endpoint by far and its answers are pre-signed bytes. The same
functions back the documented FastAPI routes in :mod:`ca.api`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import email.utils
import json
import logging
import weakref
from urllib.parse import unquote

import anyio
import anyio.to_thread
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from starlette.types import ASGIApp, Receive, Scope, Send

from ca.ocsp import MALFORMED
from ca.responder import OcspAnswer, OcspService
from core.errors import error_body
from core.web import exceeds, read_body

log = logging.getLogger("cloudseal.ocsp")

OCSP_RESPONSE_TYPE = "application/ocsp-response"
POST_PATH = "/pki/ocsp"
GET_PREFIX = "/pki/ocsp/"
INTERNAL_ERROR = x509_ocsp.OCSPResponseBuilder.build_unsuccessful(
    x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR
).public_bytes(Encoding.DER)


_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


def _signing_limiter() -> anyio.CapacityLimiter:
    """Two signing threads per event loop (a limiter belongs to the loop it was made in)."""
    loop = asyncio.get_running_loop()
    limiter = _LIMITERS.get(loop)
    if limiter is None:
        limiter = _LIMITERS[loop] = anyio.CapacityLimiter(2)
    return limiter


async def answer(responder: OcspService, request_der: bytes) -> OcspAnswer:
    """Answer a request: stored answers on the event loop, signing in a worker thread."""
    parsed = responder.parse(request_der)
    if isinstance(parsed, OcspAnswer):
        return parsed
    stored = responder.stored(parsed)
    if stored is not None:
        return stored
    # Signing is ~1.5 ms of CPU under the GIL: a small dedicated limiter keeps dozens of
    # threads from thrashing over it (measured: 40 threads gave a third of the throughput).
    return await anyio.to_thread.run_sync(responder.generate, parsed, limiter=_signing_limiter())


def decode_get_path(encoded: str) -> bytes | None:
    """The DER request carried in a GET path (URL-encoded base64; base64url accepted)."""
    text = unquote(encoded).strip()
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def response_headers(result: OcspAnswer, *, http_cacheable: bool) -> dict[str, str]:
    """Headers of an OCSP answer; GET answers may be kept by HTTP caches (RFC 5019 §6)."""
    headers = {"content-type": OCSP_RESPONSE_TYPE}
    if http_cacheable and result.cacheable and result.this_update and result.next_update:
        headers["last-modified"] = email.utils.format_datetime(result.this_update.astimezone(dt.timezone.utc), usegmt=True)
        headers["expires"] = email.utils.format_datetime(result.next_update.astimezone(dt.timezone.utc), usegmt=True)
        # max-age=0: a cache may keep the bytes but must revalidate, so a revocation is seen
        # at once (the platform's promise), at the cost of a conditional request.
        headers["cache-control"] = "public, max-age=0, no-transform, must-revalidate"
    return headers


class OcspFastPath:
    """ASGI layer answering OCSP requests directly; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, responder: OcspService, max_body_bytes: int) -> None:
        self.app = app
        self.responder = responder
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if path == POST_PATH and method == "POST":
                await self._post(scope, receive, send)
                return
            if path.startswith(GET_PREFIX) and method == "GET":
                await self._get(scope, send)
                return
        await self.app(scope, receive, send)

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit():
                    await self._send(send, OcspAnswer(MALFORMED), response_headers(OcspAnswer(MALFORMED), http_cacheable=False))
                    return
                if exceeds(value, self.max_body_bytes):
                    await self._too_large(send)
                    return
        read = await read_body(receive, self.max_body_bytes)
        if read is None:  # the client went away
            return
        body, complete = read
        if not complete:
            await self._too_large(send)
            return
        await self._respond(send, body, http_cacheable=False)

    async def _get(self, scope: Scope, send: Send) -> None:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        encoded = raw_path.decode("latin-1")[len(GET_PREFIX):].split("?", 1)[0]
        der = decode_get_path(encoded)
        if der is None:
            await self._send(send, OcspAnswer(MALFORMED), response_headers(OcspAnswer(MALFORMED), http_cacheable=False))
            return
        await self._respond(send, der, http_cacheable=True)

    async def _respond(self, send: Send, request_der: bytes, *, http_cacheable: bool) -> None:
        try:
            result = await answer(self.responder, request_der)
            headers = response_headers(result, http_cacheable=http_cacheable)
        except Exception:  # an OCSP client gets an OCSP internalError, never an HTML 500
            log.exception("OCSP responder failed")
            result = OcspAnswer(INTERNAL_ERROR)
            headers = response_headers(result, http_cacheable=False)
        await self._send(send, result, headers)

    async def _send(self, send: Send, result: OcspAnswer, headers: dict[str, str]) -> None:
        headers["content-length"] = str(len(result.der))
        await send({
            "type": "http.response.start", "status": 200,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        })
        await send({"type": "http.response.body", "body": result.der})

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(error_body(
            "body_too_large", f"the request body exceeds {self.max_body_bytes} bytes")).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
