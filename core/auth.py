"""Access tokens: JWTs with an explicit algorithm allow-list, audience and issuer checks.

Tokens are signed by a platform key held in the HSM (ES256). Verification accepts only the
algorithms in :data:`ALLOWED_ALGORITHMS`; ``alg: none`` and HMAC algorithms are refused, so a
token "signed" with the public key as an HMAC secret never verifies.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from core.db import utcnow
from core.errors import Forbidden, Unauthorized

ALLOWED_ALGORITHMS = ["ES256"]
TOKEN_ISSUER_SUFFIX = "/auth"


class Role(str, enum.Enum):
    """Who a caller is on the platform."""

    OPERATOR = "operator"
    RA_OFFICER = "ra_officer"
    BROKER_BACKOFFICE = "broker_backoffice"
    ISSUER_HOST = "issuer_host"
    AUDITOR = "auditor"
    INVESTOR = "investor"


@dataclass(frozen=True)
class Actor:
    """The authenticated caller, handed to services explicitly."""

    subject: str
    role: Role
    tenant: str | None = None

    @property
    def label(self) -> str:
        """How the actor appears in the audit log."""
        return f"{self.role.value}:{self.subject}"


SYSTEM_ACTOR = Actor(subject="system", role=Role.OPERATOR)


def issue_token(
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    actor: Actor,
    issuer: str,
    audience: str,
    ttl: dt.timedelta,
    now: dt.datetime | None = None,
) -> str:
    """Sign an access token for ``actor``."""
    issued = now or utcnow()
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": actor.subject,
        "role": actor.role.value,
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if actor.tenant is not None:
        claims["tenant"] = actor.tenant
    return jwt.encode(claims, signing_key, algorithm="ES256")


def verify_token(
    token: str, *, public_key: ec.EllipticCurvePublicKey, issuer: str, audience: str
) -> Actor:
    """Check signature, algorithm, expiry, audience and issuer; return the actor."""
    try:
        claims = jwt.decode(
            token,
            key=public_key,
            algorithms=ALLOWED_ALGORITHMS,
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the access token has expired", code="token_expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("the access token is not valid", code="invalid_token") from exc
    try:
        role = Role(claims.get("role"))
    except ValueError as exc:
        raise Unauthorized("the access token names no known role", code="invalid_token") from exc
    tenant = claims.get("tenant")
    return Actor(subject=str(claims["sub"]), role=role, tenant=tenant if tenant else None)


def require_role(actor: Actor, *roles: Role) -> Actor:
    """Refuse with 403 unless ``actor`` holds one of ``roles``."""
    if actor.role not in roles:
        raise Forbidden("this operation needs another role", code="forbidden_role")
    return actor
