"""Broker API clients: client-credentials authentication for back offices and order apps.

A client's secret is shown once at creation and stored only as SHA-256 (it is 256 random
bits, so a slow hash adds nothing); comparisons are constant-time.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlmodel import Session

from core import audit
from core.accounts import ANONYMOUS, LoginRefused, _sha256, _tenant_for
from core.auth import Actor, Role, require_role
from core.db import utcnow
from core.errors import BadRequest, Conflict, NotFound
from core.models import ApiClient

_NO_SECRET_HASH = "0" * 64  # compared against when the client is unknown


@dataclass(frozen=True)
class NewApiClient:
    """A just-created API client. The secret exists only here: show it once."""

    client_id: str
    client_secret: str
    tenant: str
    name: str



def create_api_client(session: Session, *, actor: Actor, tenant: str, name: str,
                      now: dt.datetime | None = None) -> NewApiClient:
    """Create a broker back-office client (operators only); returns its secret, once."""
    require_role(actor, Role.OPERATOR)
    tenant_code = _tenant_for(Role.BROKER_BACKOFFICE, tenant) or ""
    label = name.strip()
    if not 1 <= len(label) <= 200:
        raise BadRequest("a client name is 1 to 200 characters", code="invalid_name")
    client_id = "bc_" + secrets.token_hex(12)
    secret = secrets.token_urlsafe(32)
    session.add(ApiClient(client_id=client_id, secret_hash=_sha256(secret), tenant=tenant_code,
                          role=Role.BROKER_BACKOFFICE.value, name=label, created_at=now or utcnow()))
    session.flush()
    audit.record(session, actor=actor.label, tenant=tenant_code, action="api_client.create",
                 object_type="api_client", object_id=client_id, details={"name": label})
    return NewApiClient(client_id=client_id, client_secret=secret, tenant=tenant_code, name=label)


def authenticate_client(session: Session, *, client_id: str, client_secret: str) -> Actor:
    """Check an API client's secret; the actor is ``client:<client_id>`` of its broker."""
    client = session.execute(select(ApiClient).where(ApiClient.client_id == client_id)).scalar_one_or_none()
    # Hash and compare even for unknown clients, so the answer takes the same time.
    secret_ok = hmac.compare_digest(_sha256(client_secret),
                                    client.secret_hash if client else _NO_SECRET_HASH)
    if client is None or not secret_ok or client.revoked_at is not None:
        reason = ("unknown_client" if client is None else "wrong_secret" if not secret_ok
                  else "revoked")
        audit.record(session, actor=ANONYMOUS, tenant=client.tenant if client else None,
                     action="api_client.authenticate", object_type="api_client",
                     object_id=client_id[:64], outcome="failure", details={"reason": reason})
        message = ("this API client was revoked" if reason == "revoked"
                   else "the client credentials are not valid")
        raise LoginRefused(message, code="invalid_client")
    actor = Actor(subject=f"client:{client.client_id}", role=Role(client.role), tenant=client.tenant)
    audit.record(session, actor=actor.label, tenant=client.tenant, action="api_client.authenticate",
                 object_type="api_client", object_id=client.client_id)
    return actor


def revoke_api_client(session: Session, *, actor: Actor, client_id: str,
                      now: dt.datetime | None = None) -> ApiClient:
    """Revoke an API client (operators only): its secret stops working at once."""
    require_role(actor, Role.OPERATOR)
    client = session.execute(select(ApiClient).where(ApiClient.client_id == client_id)).scalar_one_or_none()
    if client is None:
        raise NotFound(f"no API client {client_id!r}", code="unknown_client")
    changed = session.execute(
        update(ApiClient).where(ApiClient.id == client.id, ApiClient.revoked_at.is_(None))  # type: ignore[union-attr]
        .values(revoked_at=now or utcnow()).execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        raise Conflict(f"the API client {client_id!r} is already revoked", code="already_revoked")
    audit.record(session, actor=actor.label, tenant=client.tenant, action="api_client.revoke",
                 object_type="api_client", object_id=client_id)
    session.refresh(client)
    return client
