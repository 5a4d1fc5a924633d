"""Brokers and enrolment: submit an identity-proofed investor, approve, issue the code.

Tenant rule: an RA officer acts for the broker named in their token; an operator acts for
any broker. An investor is visible to a broker only through that broker's account links,
and anything outside the caller's tenant answers exactly like something that does not exist.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core import audit
from core.auth import Actor, Role
from core.db import utcnow
from core.errors import BadRequest, CommittedRefusal, Conflict, Forbidden, NotFound
from hsm_sim.base import KeyAlgorithm, KeyStore
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
MAX_CODE_ATTEMPTS = 5
RA_ROLES = (Role.RA_OFFICER, Role.OPERATOR)
# Key types an investor credential may have: P-256 by default, RSA for order apps that need it.
INVESTOR_KEY_ALGORITHMS = tuple(a.value for a in (KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_3072))


# Brokers ------------------------------------------------------------------------------------

def create_broker(session: Session, *, actor: Actor, code: str, name: str, dual_control: bool = False) -> Broker:
    """Register a broker (a tenant); 400 ``invalid_broker`` for a bad code or name,
    409 ``broker_exists`` if the code is taken."""
    if not re.fullmatch(r"[A-Z0-9]{2,16}", code):
        raise BadRequest("a broker code is 2 to 16 upper-case letters or digits", code="invalid_broker")
    name = name.strip()
    if not 1 <= len(name) <= 200 or not name.isprintable():
        raise BadRequest("a broker name is 1 to 200 printable characters", code="invalid_broker")
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
    accounts: list[str], proofing: str, key_algorithm: str = KeyAlgorithm.EC_P256.value,
) -> Enrolment:
    """Record an identity-proofed investor for approval. Nothing shared changes yet: the
    investor identity is created (or matched) only when an officer approves.

    400 ``invalid_identity`` for a bad number or check digit, 404 ``unknown_broker``,
    409 ``duplicate_account_link`` when an account number is already linked at this broker,
    400 ``unsupported_key_algorithm`` for a key type investors cannot have.
    """
    if key_algorithm not in INVESTOR_KEY_ALGORITHMS:
        raise BadRequest(f"investor keys are one of {', '.join(INVESTOR_KEY_ALGORITHMS)}",
                         code="unsupported_key_algorithm")
    broker = acting_broker(session, actor, broker_code)
    try:
        identity = parse_identity(IdentityKind(id_kind), id_number)
    except (InvalidIdentity, ValueError) as exc:
        raise BadRequest(str(exc), code="invalid_identity") from exc
    accounts = sorted({a.strip() for a in accounts if a.strip()})
    if not accounts:
        raise BadRequest("at least one broker account number is needed", code="accounts_required")
    _refuse_linked_accounts(session, broker.code, accounts)
    enrolment = Enrolment(
        broker_code=broker.code, accounts=json.dumps(accounts), proofing=proofing, submitted_by=actor.label,
        submitted_at=utcnow(), id_kind=identity.kind.value,
        id_hmac=ra_secrets.identity_hmac(keystore, identity.kind.value, identity.number),
        id_masked=identity.masked, name=name, birth_date=birth_date, contact_channel=contact_channel,
        key_algorithm=key_algorithm,
    )
    session.add(enrolment)
    session.flush()
    audit.record(session, actor=actor.label, tenant=broker.code, action="enrolment.submit", object_type="enrolment",
                 object_id=str(enrolment.id), details={"identity": identity.masked, "accounts": accounts})
    return enrolment


def _refuse_linked_accounts(session: Session, broker_code: str, accounts: list[str]) -> None:
    taken = session.execute(
        select(BrokerAccount.account_number).where(BrokerAccount.broker_code == broker_code)
        .where(BrokerAccount.account_number.in_(accounts))  # type: ignore[attr-defined]
    ).scalars().all()
    if taken:
        raise Conflict(f"account(s) {', '.join(taken)} already linked at {broker_code}", code="duplicate_account_link")


def request_device_replacement(session: Session, *, actor: Actor, investor_id: int, proofing: str) -> Enrolment:
    """Start replacing an investor's device: approved like an enrolment, then redeemed."""
    investor = visible_investor(session, actor, investor_id)
    broker = acting_broker(session, actor, None if actor.role is Role.RA_OFFICER else _any_broker_of(session, investor.id))
    if current_credential(session, investor.id) is None:
        raise Conflict("the investor has no credential to move to a new device", code="no_credential")
    enrolment = Enrolment(investor_id=investor.id, broker_code=broker.code, purpose="device_replacement",
                          accounts="[]", proofing=proofing, submitted_by=actor.label, submitted_at=utcnow(),
                          contact_channel=investor.contact_channel)
    session.add(enrolment)
    session.flush()
    audit.record(session, actor=actor.label, tenant=broker.code, action="device.replacement_requested",
                 object_type="investor", object_id=investor.reference)
    return enrolment


def _any_broker_of(session: Session, investor_id: int | None) -> str | None:
    return session.execute(
        select(BrokerAccount.broker_code).where(BrokerAccount.investor_id == investor_id).limit(1)
    ).scalar_one_or_none()


def get_enrolment(session: Session, actor: Actor, enrolment_id: int) -> Enrolment:
    """An enrolment of the caller's broker; 404 ``unknown_enrolment`` otherwise."""
    if actor.role not in RA_ROLES:
        raise Forbidden("this operation needs an RA officer or an operator", code="forbidden_role")
    enrolment = session.get(Enrolment, enrolment_id)
    if enrolment is None or (actor.role is Role.RA_OFFICER and enrolment.broker_code != actor.tenant):
        raise NotFound("no such enrolment", code="unknown_enrolment")
    return enrolment


def _same_person(investor: Investor, enrolment: Enrolment) -> bool:
    def fold(text: str | None) -> str:
        return " ".join((text or "").split()).casefold()

    if fold(investor.name) != fold(enrolment.name):
        return False
    return investor.birth_date is None or enrolment.birth_date is None or investor.birth_date == enrolment.birth_date


def _resolve_investor(session: Session, enrolment: Enrolment) -> Investor:
    """The investor this enrolment proofed: created once (ON CONFLICT DO NOTHING makes two
    brokers approving the same person at the same moment end with one identity), or an
    existing one whose name and birth date must match what this broker proofed."""
    if enrolment.purpose == "device_replacement":
        investor = session.get(Investor, enrolment.investor_id)
        if investor is None:
            raise NotFound("no such investor", code="unknown_investor")
        return investor
    connection = session.connection()
    table = Investor.__table__  # type: ignore[attr-defined]
    insert = sqlite_insert if connection.dialect.name == "sqlite" else pg_insert
    connection.execute(insert(table).values(
        reference=ra_secrets.new_reference(), id_kind=enrolment.id_kind, id_hmac=enrolment.id_hmac,
        id_masked=enrolment.id_masked, name=enrolment.name, birth_date=enrolment.birth_date,
        contact_channel=enrolment.contact_channel, created_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["id_hmac"]))
    investor = session.execute(
        select(Investor).where(Investor.id_hmac == enrolment.id_hmac).execution_options(populate_existing=True)
    ).scalar_one()
    if not _same_person(investor, enrolment):
        raise Conflict("this identity number is enrolled under another name or birth date",
                       code="identity_mismatch")
    return investor


def _has_usable_code(session: Session, investor_id: int) -> bool:
    return session.execute(
        select(ActivationCode.id).join(Enrolment, Enrolment.id == ActivationCode.enrolment_id)
        .where(Enrolment.investor_id == investor_id).where(ActivationCode.used_at.is_(None))  # type: ignore[union-attr]
        .where(ActivationCode.expires_at > utcnow()).where(ActivationCode.attempts < MAX_CODE_ATTEMPTS).limit(1)
    ).first() is not None


def _refuse(session: Session, actor: Actor, enrolment_id: int, refusal: CommittedRefusal) -> CommittedRefusal:
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="enrolment.approve",
                 object_type="enrolment", object_id=str(enrolment_id), outcome="failure",
                 details={"reason": refusal.code})
    return refusal


def approve_enrolment(session: Session, *, actor: Actor, enrolment_id: int) -> tuple[Enrolment, str | None]:
    """Approve once; return the enrolment and the activation code (None when no code is sent).

    Under dual control the submitter cannot approve. The status moves with a conditional
    UPDATE, so two officers approving at once yield one approval and one code. An investor
    who already holds a credential, or has a usable code from another broker's enrolment, is
    only linked to this broker's accounts (and told so). Refusals are audited.
    """
    try:
        enrolment = get_enrolment(session, actor, enrolment_id)
    except NotFound as exc:
        raise _refuse(session, actor, enrolment_id, CommittedRefusal(exc.message, code=exc.code, status_code=404)) from exc
    broker = get_broker(session, enrolment.broker_code)
    if broker.dual_control and enrolment.submitted_by == actor.label:
        raise _refuse(session, actor, enrolment_id, CommittedRefusal(
            "under dual control the submitter cannot approve", code="self_approval", status_code=403))
    now = utcnow()
    moved = session.execute(
        update(Enrolment).where(Enrolment.id == enrolment_id).where(Enrolment.status == "pending")
        .values(status="approved", approved_by=actor.label, approved_at=now)
    )
    if moved.rowcount != 1:
        raise Conflict("the enrolment is not pending", code="not_pending")
    investor = _resolve_investor(session, enrolment)
    linking_only = enrolment.purpose == "enrolment" and (
        current_credential(session, investor.id or 0) is not None or _has_usable_code(session, investor.id or 0))
    session.execute(update(Enrolment).where(Enrolment.id == enrolment_id).values(
        investor_id=investor.id, status="linked" if linking_only else "approved"))
    for number in json.loads(enrolment.accounts):
        session.add(BrokerAccount(investor_id=investor.id, broker_code=enrolment.broker_code,
                                  account_number=number, linked_at=now))
    try:
        session.flush()
    except IntegrityError as exc:  # linked meanwhile by another enrolment: nothing is kept
        raise Conflict("an account number is already linked at this broker",
                       code="duplicate_account_link") from exc
    code = None
    if linking_only:
        session.add(OutboxMessage(enrolment_id=enrolment.id, recipient=investor.contact_channel, kind="broker_linked",
                                  payload=json.dumps({"broker": enrolment.broker_code}), created_at=now))
    else:
        if enrolment.purpose == "enrolment" and enrolment.contact_channel:
            investor.contact_channel = enrolment.contact_channel  # where the approving broker proofed it
            session.add(investor)
        code = _issue_code(session, enrolment, investor.contact_channel, now)
    session.flush()
    session.refresh(enrolment)
    audit.record(session, actor=actor.label, tenant=enrolment.broker_code, action="enrolment.approve",
                 object_type="enrolment", object_id=str(enrolment.id),
                 details={"linked_only": linking_only, "purpose": enrolment.purpose, "investor": investor.reference})
    return enrolment, code


def _issue_code(session: Session, enrolment: Enrolment, recipient: str, now: dt.datetime) -> str:
    """A fresh code for ``enrolment`` (replacing any earlier one) and its outbox message."""
    code = ra_secrets.new_activation_code()
    values = {"public_id": secrets.token_hex(16), "code_hash": ra_secrets.code_digest(code),
              "expires_at": now + ACTIVATION_TTL, "attempts": 0, "used_at": None}
    existing = session.execute(
        select(ActivationCode).where(ActivationCode.enrolment_id == enrolment.id)).scalar_one_or_none()
    if existing is None:
        session.add(ActivationCode(enrolment_id=enrolment.id, **values))
    else:
        for field, value in values.items():
            setattr(existing, field, value)
        session.add(existing)
    wipe_codes(session, enrolment.id or 0)
    session.add(OutboxMessage(
        enrolment_id=enrolment.id, recipient=recipient, kind="activation_code", created_at=now, secret=code,
        payload=json.dumps({"activation_id": values["public_id"], "expires_at": values["expires_at"].isoformat()}),
    ))
    session.flush()
    return code


def list_enrolments(session: Session, actor: Actor, *, status: str | None, offset: int, limit: int) -> list[Enrolment]:
    """The caller's broker's enrolments (all brokers' for operators), newest first."""
    if actor.role not in RA_ROLES:
        raise Forbidden("this operation needs an RA officer or an operator", code="forbidden_role")
    statement = select(Enrolment)
    if actor.role is Role.RA_OFFICER:
        statement = statement.where(Enrolment.broker_code == actor.tenant)
    if status is not None:
        statement = statement.where(Enrolment.status == status)
    return list(session.execute(statement.order_by(Enrolment.id.desc()).offset(offset).limit(limit)).scalars())  # type: ignore[union-attr]


def reject_enrolment(session: Session, *, actor: Actor, enrolment_id: int, reason: str) -> Enrolment:
    """Refuse a pending enrolment (identity not proofed, wrong accounts …); nothing is linked."""
    enrolment = get_enrolment(session, actor, enrolment_id)
    moved = session.execute(update(Enrolment).where(Enrolment.id == enrolment_id).where(Enrolment.status == "pending")
                            .values(status="rejected", approved_by=actor.label, approved_at=utcnow()))
    if moved.rowcount != 1:
        raise Conflict("the enrolment is not pending", code="not_pending")
    session.refresh(enrolment)
    audit.record(session, actor=actor.label, tenant=enrolment.broker_code, action="enrolment.reject",
                 object_type="enrolment", object_id=str(enrolment.id), details={"reason": reason})
    return enrolment


def reissue_code(session: Session, *, actor: Actor, enrolment_id: int) -> Enrolment:
    """A new code for an approved enrolment whose code expired, was locked or got lost."""
    enrolment = get_enrolment(session, actor, enrolment_id)
    if enrolment.status != "approved":
        raise Conflict("only an approved, unredeemed enrolment gets a new code", code="not_awaiting_activation")
    investor = session.get(Investor, enrolment.investor_id)
    if investor is None:
        raise NotFound("no such investor", code="unknown_investor")
    _issue_code(session, enrolment, investor.contact_channel, utcnow())
    audit.record(session, actor=actor.label, tenant=enrolment.broker_code, action="enrolment.code_reissue",
                 object_type="enrolment", object_id=str(enrolment.id))
    return enrolment


def wipe_codes(session: Session, enrolment_id: int) -> None:
    """Drop the clear-text code from the outbox once it is redeemed or replaced."""
    session.execute(update(OutboxMessage).where(OutboxMessage.enrolment_id == enrolment_id)
                    .where(OutboxMessage.secret.is_not(None)).values(secret=None))  # type: ignore[union-attr]


def wipe_stale_codes(session: Session) -> int:
    """Drop clear-text codes of expired, spent or locked activations (the upkeep loop runs this)."""
    stale = select(ActivationCode.enrolment_id).where(
        (ActivationCode.expires_at <= utcnow()) | ActivationCode.used_at.is_not(None)  # type: ignore[union-attr]
        | (ActivationCode.attempts >= MAX_CODE_ATTEMPTS))
    return session.execute(
        update(OutboxMessage).where(OutboxMessage.secret.is_not(None))  # type: ignore[union-attr]
        .where(OutboxMessage.enrolment_id.in_(stale)).values(secret=None)  # type: ignore[union-attr]
    ).rowcount
