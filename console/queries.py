"""Read-only views the console shows and no service returns yet: the brokers and API
clients, the CA's state, a certificate search and a page of the audit log.

Each checks the caller's role first, like the services; none changes anything. The rules
(what a CRL's next update is, which signer answers OCSP, which seal signs) stay in ``ca``:
these only read what they decided.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlmodel import Session

from ca import crl, ocsp
from ca import service as ca_service
from ca.bootstrap import current_seal
from ca.context import Pki
from ca.models import IssuedCertificate
from core.auth import Actor, Role, require_role
from core.errors import AppError
from core.models import ApiClient, AuditEvent
from ra.models import Broker

CA_NAMES = ("root", "issuing")
CERTIFICATE_STATUSES = ("good", "revoked", "on_hold")
PAGE_SIZE = 50


@dataclass(frozen=True)
class AuthorityState:
    """One CA: its certificate's end and its newest CRL."""

    name: str
    subject: str
    not_after: dt.datetime
    crl_number: int | None
    crl_this_update: dt.datetime | None
    crl_next_update: dt.datetime | None
    crl_overdue: bool


@dataclass(frozen=True)
class ServiceCertificate:
    """A service certificate the platform signs with (OCSP signer, seal)."""

    serial: str
    subject: str
    not_after: dt.datetime


@dataclass(frozen=True)
class CaStatus:
    """What an operator checks at a glance."""

    authorities: list[AuthorityState]
    issued_total: int
    issued_by_status: dict[str, int]
    issued_by_profile: list[tuple[str, int]]
    ocsp_signer: ServiceCertificate | None
    seal: ServiceCertificate | None
    checked_at: dt.datetime


def _service_certificate(row: IssuedCertificate | None) -> ServiceCertificate | None:
    return None if row is None else ServiceCertificate(row.serial_hex, row.subject, row.not_after)


def ca_status(session: Session, pki: Pki, actor: Actor) -> CaStatus:
    """Certificates issued (by status and profile), each CA's CRL, the OCSP signer and seal."""
    require_role(actor, Role.OPERATOR, Role.AUDITOR)
    now = pki.clock()
    authorities = []
    for name in CA_NAMES:
        certificate = pki.ca_certificate(pki.load_ca(session, name))
        record = crl.current_crl(session, name)
        authorities.append(AuthorityState(
            name=name, subject=certificate.subject.rfc4514_string(), not_after=certificate.not_valid_after_utc,
            crl_number=record.crl_number if record else None, crl_this_update=record.this_update if record else None,
            crl_next_update=record.next_update if record else None,
            crl_overdue=record is None or record.next_update <= now))
    by_status = {status: number for status, number in session.execute(
        select(IssuedCertificate.status, func.count()).group_by(IssuedCertificate.status))}
    by_profile = [(profile, number) for profile, number in session.execute(
        select(IssuedCertificate.profile, func.count()).group_by(IssuedCertificate.profile)
        .order_by(IssuedCertificate.profile))]
    return CaStatus(authorities=authorities, issued_total=sum(by_status.values()),
                    issued_by_status={status: by_status.get(status, 0) for status in CERTIFICATE_STATUSES},
                    issued_by_profile=by_profile,
                    ocsp_signer=_service_certificate(ocsp.current_ocsp_signer(session, pki)),
                    seal=_service_certificate(current_seal(session, pki)), checked_at=now)


def search_certificates(session: Session, actor: Actor, *, text: str | None, status: str | None,
                        before_id: int | None = None, limit: int = PAGE_SIZE) -> list[IssuedCertificate]:
    """Certificates, newest first: by serial (any usual spelling) or by words of the subject."""
    require_role(actor, Role.OPERATOR, Role.AUDITOR)
    if status is not None and status not in CERTIFICATE_STATUSES:
        raise AppError("unknown certificate status", code="invalid_status", status_code=400)
    statement = select(IssuedCertificate)
    if text:
        conditions = [IssuedCertificate.subject.contains(text, autoescape=True)]  # type: ignore[attr-defined]
        try:
            conditions.append(IssuedCertificate.serial_hex == ca_service.normalise_serial(text))
        except AppError:
            pass
        statement = statement.where(or_(*conditions))
    if status:
        statement = statement.where(IssuedCertificate.status == status)
    if before_id:
        statement = statement.where(IssuedCertificate.id < before_id)  # type: ignore[operator]
    return list(session.execute(statement.order_by(IssuedCertificate.id.desc()).limit(limit)).scalars())  # type: ignore[union-attr]


def list_brokers(session: Session, actor: Actor) -> list[Broker]:
    """Every broker (operators only), by code."""
    require_role(actor, Role.OPERATOR)
    return list(session.execute(select(Broker).order_by(Broker.code)).scalars())


def list_api_clients(session: Session, actor: Actor) -> list[ApiClient]:
    """Every broker API client (operators only), by broker then creation."""
    require_role(actor, Role.OPERATOR)
    return list(session.execute(select(ApiClient).order_by(ApiClient.tenant, ApiClient.id)).scalars())


@dataclass(frozen=True)
class AuditPage:
    """A page of the audit log, newest first, and where the next (older) page starts."""

    events: list[AuditEvent]
    older_than: int | None


def audit_page(session: Session, actor: Actor, *, before: int | None, action: str | None,
               limit: int = PAGE_SIZE) -> AuditPage:
    """Audit entries with ``seq`` below ``before`` (operators only), optionally of one action
    or family of actions (``enrolment`` matches ``enrolment.approve`` …)."""
    require_role(actor, Role.OPERATOR)
    statement = select(AuditEvent)
    if before:
        statement = statement.where(AuditEvent.seq < before)
    if action:
        statement = statement.where(or_(AuditEvent.action == action,
                                        AuditEvent.action.startswith(action + ".", autoescape=True)))  # type: ignore[attr-defined]
    events = list(session.execute(statement.order_by(AuditEvent.seq.desc()).limit(limit + 1)).scalars())  # type: ignore[attr-defined]
    older = events[limit - 1].seq if len(events) > limit else None
    return AuditPage(events=events[:limit], older_than=older)


def details_text(event: AuditEvent, limit: int = 160) -> str:
    """An entry's details as short ``key=value`` text."""
    try:
        details = json.loads(event.details)
    except ValueError:
        return event.details[:limit]
    text = ", ".join(f"{key}={value}" for key, value in details.items()) if isinstance(details, dict) else str(details)
    return text if len(text) <= limit else text[: limit - 1] + "…"
