"""Brokers and enrolment: submit an identity-proofed investor, approve, issue the code.

Tenant rule: an RA officer acts for the broker named in their token; an operator acts for
any broker. An investor is visible to a broker only through that broker's account links,
and anything outside the caller's tenant answers exactly like something that does not exist.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core import audit
from core.auth import Actor, Role
from core.db import utcnow
from core.errors import BadRequest, Conflict, Forbidden, NotFound
from hsm_sim.base import KeyStore
from ra import secrets as ra_secrets
from ra.identity import IdentityKind, InvalidIdentity, parse_identity
from ra.models import (
    ActivationCode,
    Broker,
    BrokerAccount,
    Credential,
    Enrolment,
    Investor,
    OutboxMessage,
)

ACTIVATION_TTL = dt.timedelta(minutes=15)
RA_ROLES = (Role.RA_OFFICER, Role.OPERATOR)


# Brokers ------------------------------------------------------------------------------------

def create_broker(session: Session, *, actor: Actor, code: str, name: str, dual_control: bool = False) -> Broker:
    """Register a broker (a tenant); 409 ``broker_exists`` if the code is taken."""
    if session.get(Broker, code) is not None:
        raise Conflict(f"broker {code} already exists", code="broker_exists")
    broker = Broker(code=code, name=name, dual_control=dual_control, created_at=utcnow())
    session.add(broker)
    session.flush()
    audit.record(session, actor=actor.label, tenant=code, action="broker.create", object_type="broker",
                 object_id=code, details={"name": name, "dual_control": dual_control})
    return broker


def get_broker(session: Session, code: str) -> Broker:
    """An active broker, or 404 ``unknown_broker``."""
    broker = session.get(Broker, code)
    if broker is None or not broker.active:
        raise NotFound(f"no broker {code!r}", code="unknown_broker")
    return broker


def acting_broker(session: Session, actor: Actor, broker_code: str | None) -> Broker:
    """The broker an RA action is for: the officer's own, or the one an operator names."""
    if actor.role is Role.RA_OFFICER:
        if broker_code is not None and broker_code != actor.tenant:
            raise NotFound(f"no broker {broker_code!r}", code="unknown_broker")
        return get_broker(session, actor.tenant or "")
    if actor.role is Role.OPERATOR:
        if broker_code is None:
            raise BadRequest("operators must name the broker", code="broker_required")
        return get_broker(session, broker_code)
    raise Forbidden("this operation needs an RA officer or an operator", code="forbidden_role")


# Investors -------------------------------------------------------------------------------------

def _insert_investor_once(session: Session, values: dict[str, object]) -> int:
    """Insert unless an investor with the same identity HMAC exists; return the id either way.

    ON CONFLICT DO NOTHING makes two brokers enrolling the same person at the same moment
    end with one identity.
    """
    connection = session.connection()
    table = Investor.__table__  # type: ignore[attr-defined]
    insert = sqlite_insert if connection.dialect.name == "sqlite" else pg_insert
    connection.execute(insert(table).values(**values).on_conflict_do_nothing(index_elements=["id_hmac"]))
    return connection.execute(select(table.c.id).where(table.c.id_hmac == values["id_hmac"])).scalar_one()


def visible_investor(session: Session, actor: Actor, investor_id: int) -> Investor:
    """The investor if the caller's tenant may see it; 404 ``unknown_investor`` otherwise."""
    investor = session.get(Investor, investor_id)
    if investor is None:
        raise NotFound("no such investor", code="unknown_investor")
    if actor.role in (Role.OPERATOR, Role.AUDITOR):
        return investor
    if actor.role is Role.RA_OFFICER and actor.tenant and session.execute(
        select(BrokerAccount.id).where(BrokerAccount.investor_id == investor_id)
        .where(BrokerAccount.broker_code == actor.tenant).limit(1)
    ).first():
        return investor
    raise NotFound("no such investor", code="unknown_investor")


def current_credential(session: Session, investor_id: int) -> Credential | None:
    """The investor's credential in use, if any."""
    return session.execute(
        select(Credential).where(Credential.investor_id == investor_id).where(Credential.current == 1)
    ).scalar_one_or_none()


# Enrolment -------------------------------------------------------------------------------------

def submit_enrolment(
    session: Session, keystore: KeyStore, *, actor: Actor, broker_code: str | None,
    id_kind: str, id_number: str, name: str, birth_date: dt.date | None, contact_channel: str,
    accounts: list[str], proofing: str,
) -> Enrolment:
    """Record an identity-proofed investor for approval; the investor is created once.

    400 ``invalid_identity`` for a bad number or check digit, 404 ``unknown_broker``,
    409 ``duplicate_account_link`` when an account number is already linked at this broker.
    """
    broker = acting_broker(session, actor, broker_code)
    try:
        identity = parse_identity(IdentityKind(id_kind), id_number)
    except (InvalidIdentity, ValueError) as exc:
        raise BadRequest(str(exc), code="invalid_identity") from exc
    accounts = sorted({a.strip() for a in accounts if a.strip()})
    if not accounts:
        raise BadRequest("at least one broker account number is needed", code="accounts_required")
    taken = session.execute(
        select(BrokerAccount.account_number).where(BrokerAccount.broker_code == broker.code)
        .where(BrokerAccount.account_number.in_(accounts))  # type: ignore[attr-defined]
    ).scalars().all()
    if taken:
        raise Conflict(f"account(s) {', '.join(taken)} already linked at {broker.code}", code="duplicate_account_link")
    now = utcnow()
    investor_id = _insert_investor_once(session, {
        "reference": ra_secrets.new_reference(), "id_kind": identity.kind.value,
        "id_hmac": ra_secrets.identity_hmac(keystore, identity.kind.value, identity.number),
        "id_masked": identity.masked, "name": name, "birth_date": birth_date,
        "contact_channel": contact_channel, "created_at": now,
    })
    enrolment = Enrolment(
        investor_id=investor_id, broker_code=broker.code, accounts=json.dumps(accounts), proofing=proofing,
        submitted_by=actor.label, submitted_at=now,
    )
    session.add(enrolment)
    session.flush()
    audit.record(session, actor=actor.label, tenant=broker.code, action="enrolment.submit", object_type="enrolment",
                 object_id=str(enrolment.id), details={"investor": investor_id, "accounts": accounts})
    return enrolment


def request_device_replacement(session: Session, *, actor: Actor, investor_id: int, proofing: str) -> Enrolment:
    """Start replacing an investor's device: approved like an enrolment, then redeemed."""
    investor = visible_investor(session, actor, investor_id)
    broker = acting_broker(session, actor, None if actor.role is Role.RA_OFFICER else _any_broker_of(session, investor.id))
    if current_credential(session, investor.id) is None:
        raise Conflict("the investor has no credential to move to a new device", code="no_credential")
    enrolment = Enrolment(investor_id=investor.id, broker_code=broker.code, purpose="device_replacement",
                          accounts="[]", proofing=proofing, submitted_by=actor.label, submitted_at=utcnow())
    session.add(enrolment)
    session.flush()
    audit.record(session, actor=actor.label, tenant=broker.code, action="device.replacement_requested",
                 object_type="investor", object_id=investor.reference)
    return enrolment


def _any_broker_of(session: Session, investor_id: int) -> str | None:
    return session.execute(
        select(BrokerAccount.broker_code).where(BrokerAccount.investor_id == investor_id).limit(1)
    ).scalar_one_or_none()


def get_enrolment(session: Session, actor: Actor, enrolment_id: int) -> Enrolment:
    """An enrolment of the caller's broker; 404 ``unknown_enrolment`` otherwise."""
    enrolment = session.get(Enrolment, enrolment_id)
    if enrolment is None or (actor.role is Role.RA_OFFICER and enrolment.broker_code != actor.tenant):
        raise NotFound("no such enrolment", code="unknown_enrolment")
    if actor.role not in RA_ROLES:
        raise Forbidden("this operation needs an RA officer or an operator", code="forbidden_role")
    return enrolment


def approve_enrolment(session: Session, *, actor: Actor, enrolment_id: int) -> tuple[Enrolment, str | None]:
    """Approve once; return the enrolment and the activation code (None when no code is needed).

    Under dual control the submitter cannot approve. The status moves with a conditional
    UPDATE, so two officers approving at once yield one approval and one code. An investor
    who already holds a credential is simply linked to this broker's accounts.
    """
    enrolment = get_enrolment(session, actor, enrolment_id)
    broker = get_broker(session, enrolment.broker_code)
    if broker.dual_control and enrolment.submitted_by == actor.label:
        raise Forbidden("under dual control the submitter cannot approve", code="self_approval")
    existing = current_credential(session, enrolment.investor_id)
    linking_only = enrolment.purpose == "enrolment" and existing is not None
    now = utcnow()
    moved = session.execute(
        update(Enrolment).where(Enrolment.id == enrolment_id).where(Enrolment.status == "pending")
        .values(status="linked" if linking_only else "approved", approved_by=actor.label, approved_at=now)
    )
    if moved.rowcount != 1:
        raise Conflict("the enrolment is not pending", code="not_pending")
    for number in json.loads(enrolment.accounts):
        session.add(BrokerAccount(investor_id=enrolment.investor_id, broker_code=enrolment.broker_code,
                                  account_number=number, linked_at=now))
    try:
        session.flush()
    except IntegrityError as exc:  # linked meanwhile by another enrolment: nothing is kept
        raise Conflict("an account number is already linked at this broker",
                       code="duplicate_account_link") from exc
    code = None
    if not linking_only:
        code = ra_secrets.new_activation_code()
        activation = ActivationCode(public_id=secrets.token_hex(16), enrolment_id=enrolment.id,
                                    code_hash=ra_secrets.code_digest(code), expires_at=now + ACTIVATION_TTL)
        session.add(activation)
        investor = session.get(Investor, enrolment.investor_id)
        session.add(OutboxMessage(
            recipient=investor.contact_channel if investor else "", kind="activation_code",
            payload=json.dumps({"activation_id": activation.public_id, "code": code,
                                "expires_at": activation.expires_at.isoformat()}),
            created_at=now,
        ))
        session.flush()
    session.refresh(enrolment)
    audit.record(session, actor=actor.label, tenant=enrolment.broker_code, action="enrolment.approve",
                 object_type="enrolment", object_id=str(enrolment.id),
                 details={"linked_only": linking_only, "purpose": enrolment.purpose})
    return enrolment, code
