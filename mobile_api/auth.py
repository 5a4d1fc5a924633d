"""Device-bound sign-in for the app: no password, the enrolled device key signs a challenge.

* An access token is a short-lived JWT (ES256, platform key in the HSM) for
  ``Role.INVESTOR``: subject the investor reference, plus the credential (``cid``), the
  SHA-256 of the device key (``dev``) and the session (``sid``, the refresh family). Its
  audience is the platform's with ``/mobile`` appended, so other routers refuse it.
* Every request re-reads the credential and the session in one indexed query: a revoked
  credential, a replaced device or a closed session stops the token at once.
* Refresh tokens rotate (single use, stored as SHA-256); presenting a used one revokes its
  whole family (:class:`core.errors.CommittedRefusal`, the revocation is committed).
* A session is closed as soon as any token of its family is revoked. Revocations are
  always of whole families, but a sign-out racing a refresh cannot see (PostgreSQL, READ
  COMMITTED) the token the refresh is inserting; it does revoke the one being rotated,
  and that is enough to end the session and the token that replaced it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import and_, bindparam, insert, select, update
from sqlmodel import Session

from core import audit
from core.auth import ALLOWED_ALGORITHMS, Actor, Role
from core.db import UTCDateTime, utcnow
from core.errors import CommittedRefusal, Forbidden, Unauthorized
from ra import credentials as ra_credentials
from ra import devices
from ra.models import Credential, Investor
from mobile_api.models import MobileRefreshToken

ACCESS_TOKEN_TTL = dt.timedelta(minutes=10)
SESSION_LIFETIME = dt.timedelta(days=30)
LOGIN_ACTION = "mobile_login"
AUDIENCE_SUFFIX = "/mobile"
USABLE_CREDENTIAL = ("active", "suspended")  # a suspended holder still sees their status
_CREDENTIAL_ID = re.compile(r"[0-9a-f]{1,64}")

_TOKENS = MobileRefreshToken.__table__  # type: ignore[attr-defined]
_INSERT_TOKEN = insert(_TOKENS)
_CLOSED = _TOKENS.alias("closed")


def _family_closed(family: Any) -> Any:
    """Whether any token of ``family`` (a bound value or column) was revoked."""
    return select(_CLOSED.c.id).where(_CLOSED.c.family_id == family).where(_CLOSED.c.revoked_at.is_not(None)).exists()


_LIVE_FAMILY = and_(
    select(_TOKENS.c.id).where(_TOKENS.c.family_id == bindparam("family"))
    .where(_TOKENS.c.expires_at > bindparam("now", type_=UTCDateTime())).exists(),
    ~_family_closed(bindparam("family")))
# Built once: every request of the app runs it.
_CALLER = (
    select(Credential.status, Credential.device_public_key, Investor.id, Investor.reference, Investor.id_hmac,
           _LIVE_FAMILY.label("session_live"))
    .join(Investor, Investor.id == Credential.investor_id)
    .where(Credential.credential_id == bindparam("credential_id"))
)


def device_sha256(device_key_der: bytes) -> str:
    """The device's identifier: SHA-256 (hex) of its SubjectPublicKeyInfo."""
    return hashlib.sha256(device_key_der).hexdigest()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class MobileCaller:
    """The investor an access token names, as checked against the database just now."""

    reference: str
    investor_id: int
    id_hmac: str
    credential_id: str
    device_sha256: str
    family_id: str

    @property
    def actor(self) -> Actor:
        """The caller as services and the audit log see it."""
        return Actor(subject=self.reference, role=Role.INVESTOR)


@dataclass(frozen=True)
class IssuedTokens:
    """An access token and the refresh token that continues the session."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_at: dt.datetime
    credential_id: str
    investor_reference: str


@dataclass(frozen=True)
class TokenIssuer:
    """Signs and checks app access tokens with the platform's HSM-held JWT key."""

    signing_key: ec.EllipticCurvePrivateKey
    public_key: ec.EllipticCurvePublicKey
    issuer: str
    staff_audience: str

    @property
    def audience(self) -> str:
        """The audience of app tokens (distinct from staff tokens')."""
        return self.staff_audience + AUDIENCE_SUFFIX

    def access_token(self, *, reference: str, credential_id: str, device: str, family_id: str,
                     now: dt.datetime | None = None, ttl: dt.timedelta = ACCESS_TOKEN_TTL) -> str:
        """An ES256 access token for one investor, credential, device and session."""
        issued = now or utcnow()
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": reference, "role": Role.INVESTOR.value,
            "iat": int(issued.timestamp()), "nbf": int(issued.timestamp()), "exp": int((issued + ttl).timestamp()),
            "jti": uuid.uuid4().hex, "cid": credential_id, "dev": device, "sid": family_id,
        }
        return jwt.encode(claims, self.signing_key, algorithm="ES256")

    def claims(self, token: str) -> dict[str, Any]:
        """The checked claims of an app token: 401 ``invalid_token`` / ``token_expired``,
        403 ``forbidden_role`` for a valid platform token of another role (a staff token)."""
        try:
            claims = jwt.decode(token, key=self.public_key, algorithms=ALLOWED_ALGORITHMS,
                                audience=[self.audience, self.staff_audience], issuer=self.issuer,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"]}, leeway=5)
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the access token has expired", code="token_expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("the access token is not valid", code="invalid_token") from exc
        if claims.get("role") != Role.INVESTOR.value:
            raise Forbidden("the shareholder app is for investors", code="forbidden_role")
        if claims.get("aud") != self.audience or not all(
                isinstance(claims.get(name), str) and claims[name] for name in ("cid", "dev", "sid")):
            raise Unauthorized("the access token was not issued to the app", code="invalid_token")
        return claims


def authenticate(reader: Session, issuer: TokenIssuer, token: str, now: dt.datetime | None = None) -> MobileCaller:
    """The caller of an app request, or 401: the token must verify and its credential, device
    and session must still be live (one query)."""
    claims = issuer.claims(token)
    credential_id = claims["cid"]
    if not _CREDENTIAL_ID.fullmatch(credential_id) or len(claims["sid"]) > 32:
        raise Unauthorized("the access token is not valid", code="invalid_token")
    row = reader.connection().execute(_CALLER, {"credential_id": credential_id, "family": claims["sid"],
                                                "now": now or utcnow()}).first()
    if row is None or row.reference != claims["sub"]:
        raise Unauthorized("the access token is not valid", code="invalid_token")
    if row.status not in USABLE_CREDENTIAL:
        raise Unauthorized(f"the credential is {row.status}", code="credential_revoked")
    if device_sha256(row.device_public_key) != claims["dev"]:
        raise Unauthorized("the device was replaced", code="device_replaced")
    if not row.session_live:
        raise Unauthorized("the session was closed", code="session_revoked")
    return MobileCaller(row.reference, row.id, row.id_hmac, credential_id, claims["dev"], claims["sid"])


def _store_refresh(session: Session, *, investor_id: int, credential_id: str, device: str, family_id: str,
                   now: dt.datetime, expires_at: dt.datetime) -> str:
    token = secrets.token_urlsafe(32)
    session.connection().execute(_INSERT_TOKEN, {
        "investor_id": investor_id, "credential_id": credential_id, "device_sha256": device, "family_id": family_id,
        "token_hash": _sha256(token), "issued_at": now, "expires_at": expires_at})
    return token


def open_session(session: Session, issuer: TokenIssuer, *, investor: Investor, credential: Credential,
                 now: dt.datetime | None = None) -> IssuedTokens:
    """A new app session (refresh family) for a device whose possession was just proven."""
    now = now or utcnow()
    device = device_sha256(credential.device_public_key)
    family_id, expires_at = uuid.uuid4().hex, now + SESSION_LIFETIME
    refresh = _store_refresh(session, investor_id=investor.id or 0, credential_id=credential.credential_id,
                             device=device, family_id=family_id, now=now, expires_at=expires_at)
    audit.record(session, actor=f"investor:{investor.reference}", action="mobile.session.open",
                 object_type="credential", object_id=credential.credential_id, details={"session": family_id})
    access = issuer.access_token(reference=investor.reference, credential_id=credential.credential_id,
                                 device=device, family_id=family_id, now=now)
    return IssuedTokens(access, int(ACCESS_TOKEN_TTL.total_seconds()), refresh, expires_at,
                        credential.credential_id, investor.reference)


def login(session: Session, issuer: TokenIssuer, *, credential_id: str, challenge_id: str,
          device_signature: str) -> IssuedTokens:
    """Sign in: the enrolled device's signature over a fresh challenge (action ``mobile_login``)."""
    credential = ra_credentials.get_credential(session, credential_id)
    devices.consume_challenge(session, challenge_id=challenge_id, credential_id=credential.credential_id,
                              action=LOGIN_ACTION, device_key=credential.device_public_key,
                              signature_b64=device_signature)
    if credential.status not in USABLE_CREDENTIAL:
        raise Unauthorized(f"the credential is {credential.status}", code="credential_revoked")
    investor = session.get(Investor, credential.investor_id)
    if investor is None:
        raise Unauthorized("no such credential", code="unknown_credential")
    return open_session(session, issuer, investor=investor, credential=credential)


def _revoke_family(session: Session, family_id: str, now: dt.datetime) -> int:
    return session.execute(
        update(MobileRefreshToken).where(MobileRefreshToken.family_id == family_id)
        .where(MobileRefreshToken.revoked_at.is_(None))  # type: ignore[union-attr]
        .values(revoked_at=now).execution_options(synchronize_session=False)).rowcount


def rotate(session: Session, issuer: TokenIssuer, *, refresh_token: str, now: dt.datetime | None = None) -> IssuedTokens:
    """Exchange a refresh token for a new pair; each works once.

    Claimed by a conditional UPDATE (the token unused, unexpired, its family not closed), so
    of concurrent presentations exactly one wins. A used token revokes its family (401
    ``refresh_token_reused``, committed); unknown, expired or revoked ones, or those of a
    closed session, answer 401 ``invalid_refresh_token``; a credential revoked or a device
    replaced since the login ends the session (401 ``credential_revoked`` / ``device_replaced``).
    """
    now = now or utcnow()
    found = session.execute(
        select(MobileRefreshToken, Credential, Investor)
        .join(Credential, Credential.credential_id == MobileRefreshToken.credential_id)  # type: ignore[arg-type]
        .join(Investor, Investor.id == MobileRefreshToken.investor_id)  # type: ignore[arg-type]
        .where(MobileRefreshToken.token_hash == _sha256(refresh_token))).first()
    if found is None:
        raise Unauthorized("the refresh token is not valid", code="invalid_refresh_token")
    token, credential, investor = found
    claimed = session.execute(
        update(MobileRefreshToken).where(MobileRefreshToken.id == token.id)
        .where(MobileRefreshToken.used_at.is_(None), MobileRefreshToken.revoked_at.is_(None))  # type: ignore[union-attr]
        .where(MobileRefreshToken.expires_at > now)  # type: ignore[operator]
        .where(~_family_closed(token.family_id))
        .values(used_at=now).execution_options(synchronize_session=False)).rowcount
    if not claimed:
        state = session.execute(select(MobileRefreshToken.used_at, MobileRefreshToken.revoked_at)
                                .where(MobileRefreshToken.id == token.id)).one()
        if state.used_at is None:  # expired, or its session was closed (signed out, credential revoked)
            raise Unauthorized("the session has ended: sign in again", code="invalid_refresh_token")
        revoked = _revoke_family(session, token.family_id, now)
        audit.record(session, actor="anonymous", action="mobile.session.refresh", object_type="credential",
                     object_id=token.credential_id, outcome="failure",
                     details={"reason": "reuse", "session": token.family_id, "tokens_revoked": revoked})
        raise CommittedRefusal("the refresh token was already used: the session is closed",
                               code="refresh_token_reused", status_code=401)
    if credential.status not in USABLE_CREDENTIAL:
        raise Unauthorized(f"the credential is {credential.status}", code="credential_revoked")
    if device_sha256(credential.device_public_key) != token.device_sha256:
        raise Unauthorized("the device was replaced", code="device_replaced")
    refresh = _store_refresh(session, investor_id=investor.id, credential_id=credential.credential_id,
                             device=token.device_sha256, family_id=token.family_id, now=now,
                             expires_at=token.expires_at)
    access = issuer.access_token(reference=investor.reference, credential_id=credential.credential_id,
                                 device=token.device_sha256, family_id=token.family_id, now=now)
    return IssuedTokens(access, int(ACCESS_TOKEN_TTL.total_seconds()), refresh, token.expires_at,
                        credential.credential_id, investor.reference)


def close_session(session: Session, caller: MobileCaller, now: dt.datetime | None = None) -> int:
    """Sign out: revoke the caller's session (its refresh family); its access tokens stop at once."""
    revoked = _revoke_family(session, caller.family_id, now or utcnow())
    audit.record(session, actor=caller.actor.label, action="mobile.session.close", object_type="credential",
                 object_id=caller.credential_id, details={"session": caller.family_id})
    return revoked


def close_credential_sessions(session: Session, credential_id: str, now: dt.datetime | None = None) -> int:
    """Revoke every app session of a credential (after it was revoked)."""
    return session.execute(
        update(MobileRefreshToken).where(MobileRefreshToken.credential_id == credential_id)
        .where(MobileRefreshToken.revoked_at.is_(None))  # type: ignore[union-attr]
        .values(revoked_at=now or utcnow()).execution_options(synchronize_session=False)).rowcount
