"""RA officers' pages: the enrolment queue (submit, approve under dual control, reject),
investor search, and a credential's revoke / suspend / resume / PIN unblock."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from console.forms import account_numbers, validated
from console.session import ActorDep, FormDep
from console.web import ConsoleRoute, confirm_page, page, see_other
from core.auth import Actor, Role, require_role
from core.db import committing_refusals
from core.errors import Conflict
from core.validation import DB_ID_MAX
from core.web import ReadSessionDep, SessionDep
from ra import credentials, queries, service
from ra.models import Broker, Credential, Enrolment, Investor
from ra.schemas import END_ENTITY_REASONS, EnrolmentIn, RejectIn, RevokeIn

router = APIRouter(route_class=ConsoleRoute)
DbId = Annotated[int, Path(ge=1, le=DB_ID_MAX)]
Offset = Annotated[int, Query(ge=0, le=DB_ID_MAX)]
ENROLMENT_STATUSES = ("pending", "approved", "linked", "activated", "rejected")
PAGE_SIZE = 50
QUEUE = "/console/ra/enrolments"


@router.get("/ra/enrolments")
def enrolments(request: Request, session: ReadSessionDep, actor: ActorDep,
               status: Annotated[str, Query(pattern=r"^(all|pending|approved|linked|activated|rejected)$")] = "pending",
               offset: Offset = 0) -> Response:
    """The broker's enrolments (all brokers' for operators), pending first by default."""
    rows = service.list_enrolments(session, actor, status=None if status == "all" else status, offset=offset,
                                   limit=PAGE_SIZE)
    dual_control = {b.code: b.dual_control for b in _brokers(session, rows)}
    return page(request, "ra_enrolments.html", {
        "enrolments": rows, "accounts": {e.id: json.loads(e.accounts) for e in rows}, "status": status,
        "statuses": ("all", *ENROLMENT_STATUSES), "offset": offset, "page_size": PAGE_SIZE,
        "dual_control": dual_control, "me": actor.label})


def _brokers(session: Session, rows: list[Enrolment]) -> list[Broker]:
    codes = {row.broker_code for row in rows}
    return [broker for code in sorted(codes) if (broker := session.get(Broker, code)) is not None]


@router.get("/ra/enrolments/new")
def new_enrolment(request: Request, actor: ActorDep) -> Response:
    """The form an officer fills in after proofing an investor's identity."""
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR)
    return page(request, "ra_enrol.html", {"needs_broker": actor.role is Role.OPERATOR})


@router.post("/ra/enrolments")
def submit_enrolment(request: Request, session: SessionDep, post: FormDep) -> Response:
    """Record an identity-proofed investor for approval (by another officer under dual control)."""
    require_role(post.actor, Role.RA_OFFICER, Role.OPERATOR)
    broker = post.text("broker_code", max_length=16, required=post.actor.role is Role.OPERATOR) or None
    body = validated(EnrolmentIn, {
        "broker_code": broker, "id_kind": post.text("id_kind", max_length=20),
        "id_number": post.text("id_number", max_length=10), "name": post.text("name"),
        "birth_date": post.text("birth_date", max_length=10, required=False) or None,
        "contact_channel": post.text("contact_channel"),
        "accounts": account_numbers(post.text("accounts", max_length=800, multiline=True)), "proofing": post.text("proofing"),
        "key_algorithm": post.text("key_algorithm", max_length=16, required=False) or "EC_P256"})
    service.submit_enrolment(
        session, request.app.state.pki.keystore, actor=post.actor, broker_code=body.broker_code,
        id_kind=body.id_kind.value, id_number=body.id_number, name=body.name, birth_date=body.birth_date,
        contact_channel=body.contact_channel, accounts=body.accounts, proofing=body.proofing,
        key_algorithm=body.key_algorithm)
    session.commit()
    return see_other(QUEUE, "enrolment_submitted")


@router.post("/ra/enrolments/{enrolment_id}/approve")
def approve(enrolment_id: DbId, request: Request, session: SessionDep, post: FormDep) -> Response:
    """Approve: the investor gets an activation code (or is linked); never by the submitter
    when the broker works under dual control."""
    require_role(post.actor, Role.RA_OFFICER, Role.OPERATOR)
    enrolment = service.get_enrolment(session, post.actor, enrolment_id)
    if not post.confirmed:
        return confirm_page(request, post.form, "confirm.approve", id=enrolment_id, name=enrolment.name or "")
    with committing_refusals(session):
        _, code = service.approve_enrolment(session, actor=post.actor, enrolment_id=enrolment_id)
    session.commit()
    return see_other(QUEUE, "enrolment_approved" if code is not None else "enrolment_linked")


@router.post("/ra/enrolments/{enrolment_id}/reject")
def reject(enrolment_id: DbId, request: Request, session: SessionDep, post: FormDep) -> Response:
    """Refuse a pending enrolment, with the reason."""
    require_role(post.actor, Role.RA_OFFICER, Role.OPERATOR)
    body = validated(RejectIn, {"reason": post.text("reason")})
    service.get_enrolment(session, post.actor, enrolment_id)
    if not post.confirmed:
        return confirm_page(request, post.form, "confirm.reject", id=enrolment_id)
    service.reject_enrolment(session, actor=post.actor, enrolment_id=enrolment_id, reason=body.reason)
    session.commit()
    return see_other(QUEUE, "enrolment_rejected")


@router.get("/ra/investors")
def investors(request: Request, session: ReadSessionDep, actor: ActorDep,
              q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
              offset: Offset = 0) -> Response:
    """Search by name, reference, account number, masked or whole identity number."""
    found = queries.search_investors(session, request.app.state.pki.keystore, actor, query=q or None,
                                     offset=offset, limit=PAGE_SIZE)
    return page(request, "ra_investors.html", {"found": found, "q": q or "", "offset": offset,
                                               "page_size": PAGE_SIZE})


@router.get("/ra/investors/{investor_id}")
def investor(investor_id: DbId, request: Request, session: ReadSessionDep, actor: ActorDep) -> Response:
    """An investor as the member's broker sees them, with the credential's actions."""
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR, Role.AUDITOR)
    view = queries.investor_view(session, actor, service.visible_investor(session, actor, investor_id))
    return page(request, "ra_investor.html", {"investor": view, "reasons": END_ENTITY_REASONS,
                                              "can_act": actor.role in service.RA_ROLES})


def _credential(session: Session, actor: Actor, investor_id: int) -> tuple[Investor, Credential]:
    require_role(actor, *service.RA_ROLES)
    found = service.visible_investor(session, actor, investor_id)
    current = service.current_credential(session, found.id or 0)
    if current is None:
        raise Conflict("the investor holds no credential", code="no_credential")
    return found, credentials.get_credential(session, current.credential_id)


@router.post("/ra/investors/{investor_id}/{action}")
def credential_action(investor_id: DbId, action: Annotated[str, Path(pattern=r"^(revoke|suspend|resume|unblock)$")],
                      request: Request, session: SessionDep, post: FormDep) -> Response:
    """Revoke (with an RFC 5280 reason), suspend, resume, or unblock a locked PIN."""
    found, credential = _credential(session, post.actor, investor_id)
    reason = validated(RevokeIn, {"reason": post.text("reason", max_length=32)}).reason if action == "revoke" else None
    if not post.confirmed:
        return confirm_page(request, post.form, f"confirm.{action}", name=found.name, reason=reason or "")
    pki = request.app.state.pki
    if action == "revoke":
        credentials.revoke_credential(session, pki, actor=post.actor, credential=credential, reason=reason or "")
    elif action == "suspend":
        credentials.suspend_credential(session, pki, actor=post.actor, credential=credential)
    elif action == "resume":
        credentials.resume_credential(session, pki, actor=post.actor, credential=credential)
    else:
        credentials.unblock_pin(session, actor=post.actor, credential=credential)
    session.commit()
    return see_other(f"/console/ra/investors/{investor_id}", f"credential_{action}")
