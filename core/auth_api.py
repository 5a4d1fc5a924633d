"""Sign-in endpoints: the OAuth2 token endpoint (RFC 6749), revocation (RFC 7009), "who am I".

Staff use the password grant and rotate refresh tokens; broker back offices use client
credentials (in the form or HTTP Basic). Errors keep the platform's JSON envelope with the
RFC 6749 codes (``invalid_request``, ``invalid_grant``, ``invalid_client``,
``unsupported_grant_type``) plus ``account_locked`` and ``account_disabled``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Literal
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from core import accounts, api_clients
from core.auth import Role
from core.db import committing_refusals
from core.errors import AppError, BadRequest, Unauthorized
from core.web import ActorDep, SessionDep

FORM_TYPE = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="cloudseal"'}

_ERRORS = {
    400: {"description": "Malformed request (invalid_request) or unknown grant "
                         "(unsupported_grant_type)"},
    401: {"description": "Refused: invalid_grant (wrong username or password; unknown, expired, "
                         "used or revoked refresh token), invalid_client, account_locked, "
                         "account_disabled"},
    422: {"description": "A form field exceeds its maximum length (validation_error)"},
}

auth_router = APIRouter(prefix="/auth", tags=["auth"])


class TokenResponse(BaseModel):
    """A successful grant (RFC 6749 §5.1) plus the role and tenant the token carries."""

    access_token: str = Field(description="JWT (ES256) for the Authorization: Bearer header")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str | None = Field(
        default=None, description="single-use; absent for client_credentials")
    role: Role
    tenant: str | None = Field(description="broker or issuer code; null for platform roles")


class MeResponse(BaseModel):
    """Who the bearer token names."""

    subject: str
    role: Role
    tenant: str | None


async def _single_valued_form(request: Request) -> None:
    """A urlencoded body with each parameter at most once (RFC 6749 §3.2)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise BadRequest(f"the body must be {FORM_TYPE}", code="invalid_request")
    form = await request.form()
    repeated = sorted({key for key in form if len(form.getlist(key)) > 1})
    if repeated:
        raise BadRequest("repeated form field(s): " + ", ".join(repeated), code="invalid_request")


def _require(**fields: str | None) -> None:
    missing = sorted(name for name, value in fields.items() if not value)
    if missing:
        raise BadRequest("missing form field(s): " + ", ".join(missing), code="invalid_request")


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """Client id and secret from an HTTP Basic header (form-encoded first, RFC 6749 §2.3.1)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credentials", code="invalid_client") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise Unauthorized("malformed Basic credentials", code="invalid_client")
    return unquote_plus(client_id), unquote_plus(secret)


def _client_credentials(basic: tuple[str, str] | None, client_id: str | None,
                        client_secret: str | None) -> tuple[str, str]:
    if basic is None:
        _require(client_id=client_id, client_secret=client_secret)
        return client_id, client_secret  # type: ignore[return-value]
    if client_secret or (client_id and client_id != basic[0]):
        raise BadRequest("authenticate the client one way only: HTTP Basic or the form",
                         code="invalid_request")
    return basic


def _token_response(issued: accounts.IssuedTokens) -> TokenResponse:
    fields: dict[str, object] = {
        "access_token": issued.access_token, "token_type": "Bearer",
        "expires_in": issued.expires_in, "role": issued.actor.role, "tenant": issued.actor.tenant,
    }
    if issued.refresh_token is not None:
        fields["refresh_token"] = issued.refresh_token
    return TokenResponse(**fields)  # type: ignore[arg-type]


def _grant(session: Session, request: Request, grant_type: str | None, *,
           username: str | None, password: str | None, refresh_token: str | None,
           client_id: str | None, client_secret: str | None) -> accounts.IssuedTokens:
    mint: accounts.Mint = request.app.state.mint_token
    ttl = dt.timedelta(seconds=request.app.state.settings.jwt_ttl_seconds)
    for value in (username, refresh_token, client_id):
        if value is not None and not value.isprintable():
            raise BadRequest("parameters must not contain control characters", code="invalid_request")
    if grant_type == "password":
        _require(username=username, password=password)
        user = accounts.authenticate_password(session, username=username, password=password)  # type: ignore[arg-type]
        return accounts.issue_token_pair(session, user=user, mint=mint, access_ttl=ttl)
    if grant_type == "refresh_token":
        _require(refresh_token=refresh_token)
        return accounts.rotate_refresh_token(session, refresh_token=refresh_token,  # type: ignore[arg-type]
                                             mint=mint, access_ttl=ttl)
    if grant_type == "client_credentials":
        client_id, client_secret = _client_credentials(_basic_credentials(request), client_id,
                                                       client_secret)
        actor = api_clients.authenticate_client(session, client_id=client_id, client_secret=client_secret)
        return accounts.issue_access_token(actor, mint=mint, access_ttl=ttl)
    raise BadRequest(f"unsupported grant_type {grant_type!r}", code="unsupported_grant_type")


_FormText = Annotated[str | None, Form(max_length=512)]


@auth_router.post(
    "/token", response_model=TokenResponse, response_model_exclude_unset=True,
    responses=_ERRORS, dependencies=[Depends(_single_valued_form)],
    summary="OAuth2 token endpoint: password, refresh_token, client_credentials",
)
def token(
    request: Request,
    response: Response,
    session: SessionDep,
    grant_type: Annotated[str | None, Form(max_length=64, description=(
        "password, refresh_token or client_credentials"))] = None,
    username: Annotated[str | None, Form(max_length=256)] = None,
    password: Annotated[str | None, Form(max_length=accounts.PASSWORD_MAX_LENGTH,
                                         json_schema_extra={"format": "password"})] = None,
    refresh_token: _FormText = None,
    client_id: _FormText = None,
    client_secret: Annotated[str | None, Form(max_length=512,
                                              json_schema_extra={"format": "password"})] = None,
    scope: _FormText = None,
) -> TokenResponse | JSONResponse:
    """Issue tokens. Staff: ``grant_type=password`` (username, password) gives an access
    token and a single-use refresh token; ``grant_type=refresh_token`` exchanges it for a new
    pair (presenting a used one revokes the whole session). Broker clients:
    ``grant_type=client_credentials`` with client_id and client_secret in the form or as HTTP
    Basic; no refresh token. ``scope`` is accepted and ignored."""
    _require(grant_type=grant_type)
    try:
        with committing_refusals(session):
            issued = _grant(session, request, grant_type, username=username, password=password,
                            refresh_token=refresh_token, client_id=client_id,
                            client_secret=client_secret)
    except AppError as exc:
        # RFC 6749 §5.2: a client that tried HTTP Basic gets the challenge back.
        if exc.code == "invalid_client" and "authorization" in request.headers:
            return JSONResponse(exc.to_body(), exc.status_code, headers=_BASIC_CHALLENGE)
        raise
    # Durable before the client sees the tokens (the session dependency commits only after
    # the response is sent).
    session.commit()
    response.headers.update(_NO_STORE)
    return _token_response(issued)


@auth_router.post(
    "/revoke", status_code=200, response_class=Response, responses={400: _ERRORS[400]},
    dependencies=[Depends(_single_valued_form)],
    summary="Sign out: revoke a refresh token and its session (RFC 7009)",
)
def revoke(
    session: SessionDep,
    token: _FormText = None,
    token_type_hint: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    """Revoke the session a refresh token belongs to. Answers 200 whether or not the token
    was known (RFC 7009 §2.2); access tokens are short-lived and simply expire."""
    _require(token=token)
    accounts.revoke_refresh_token(session, refresh_token=token)  # type: ignore[arg-type]
    session.commit()
    return Response(status_code=200, headers=_NO_STORE)


@auth_router.get("/me", response_model=MeResponse, responses={401: {"description": (
    "Missing, expired or invalid access token (missing_token, token_expired, invalid_token)")}},
    summary="The caller named by the bearer token")
def me(actor: ActorDep) -> MeResponse:
    """Subject, role and tenant of the access token."""
    return MeResponse(subject=actor.subject, role=actor.role, tenant=actor.tenant)
