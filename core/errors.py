"""The JSON error envelope and the application errors that map onto it.

Every error leaves the API as ``{"error": {"code": "...", "message": "..."}}``. Codes are
stable: clients branch on them, people read the message.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error the caller can act on; carries an HTTP status and a stable code."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The JSON envelope for this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "body_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class Unprocessable(AppError):
    status_code = 422
    code = "validation_error"


class CommittedRefusal(AppError):
    """A refusal whose bookkeeping (a failure counter, a burned attempt, an audit entry)
    must be committed before the error reaches the caller; see
    :func:`core.db.committing_refusals`."""

    status_code = 400
    code = "refused"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the envelope for errors raised outside :class:`AppError`."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}
