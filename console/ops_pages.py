"""Operators' pages: brokers and their API clients, the CA's state, certificate search,
and the audit log with the verification of its hash chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from console import queries
from console.forms import validated
from console.session import ActorDep, FormDep
from console.web import ConsoleRoute, confirm_page, page, see_other
from core import api_clients, audit
from core.auth import Role, require_role
from core.validation import DB_ID_MAX
from core.web import ReadSessionDep, SessionDep
from ra import service as ra_service
from ra.schemas import BrokerIn

router = APIRouter(route_class=ConsoleRoute)
BROKERS = "/console/ops/brokers"
SearchText = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
OlderThan = Annotated[int | None, Query(ge=1, le=2**62)]


@router.get("/ops/brokers")
def brokers(request: Request, session: ReadSessionDep, actor: ActorDep) -> Response:
    """Every broker and its API clients."""
    return page(request, "ops_brokers.html", {"brokers": queries.list_brokers(session, actor),
                                              "clients": queries.list_api_clients(session, actor)})


@router.post("/ops/brokers")
def create_broker(session: SessionDep, post: FormDep) -> Response:
    """Register a broker (a tenant of the RA)."""
    require_role(post.actor, Role.OPERATOR)
    body = validated(BrokerIn, {"code": post.text("code", max_length=16).upper(), "name": post.text("name"),
                                "dual_control": post.form.get("dual_control") == "yes"})
    ra_service.create_broker(session, actor=post.actor, code=body.code, name=body.name,
                             dual_control=body.dual_control)
    session.commit()
    return see_other(BROKERS, "broker_created")


@router.post("/ops/clients")
def create_client(request: Request, session: SessionDep, post: FormDep) -> Response:
    """A broker back-office client; its secret is shown on this page once and never again."""
    require_role(post.actor, Role.OPERATOR)
    broker = ra_service.get_broker(session, post.text("broker_code", max_length=16))
    created = api_clients.create_api_client(session, actor=post.actor, tenant=broker.code, name=post.text("name"))
    session.commit()
    return page(request, "ops_client_secret.html", {"client": created}, status=201)


@router.post("/ops/clients/{client_id}/revoke")
def revoke_client(client_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,64}$")], request: Request,
                  session: SessionDep, post: FormDep) -> Response:
    """Revoke an API client: its secret stops working at once."""
    require_role(post.actor, Role.OPERATOR)
    if not post.confirmed:
        return confirm_page(request, post.form, "confirm.revoke_client", client=client_id)
    api_clients.revoke_api_client(session, actor=post.actor, client_id=client_id)
    session.commit()
    return see_other(BROKERS, "client_revoked")


@router.get("/ops/ca")
def ca_status(request: Request, session: ReadSessionDep, actor: ActorDep) -> Response:
    """Certificates issued, each CA's CRL and its next update, the OCSP signer's and seal's expiry."""
    return page(request, "ops_ca.html", {"status": queries.ca_status(session, request.app.state.pki, actor)})


@router.get("/ops/certificates")
def certificates(request: Request, session: ReadSessionDep, actor: ActorDep, q: SearchText = None,
                 status: Annotated[str | None, Query(pattern=r"^(|good|revoked|on_hold)$")] = None,
                 before: Annotated[int | None, Query(ge=1, le=DB_ID_MAX)] = None) -> Response:
    """Certificate search by serial or subject, newest first."""
    rows = queries.search_certificates(session, actor, text=(q or "").strip() or None, status=status or None,
                                       before_id=before)
    return page(request, "ops_certificates.html", {
        "rows": rows, "q": q or "", "status": status or "", "statuses": queries.CERTIFICATE_STATUSES,
        "older": rows[-1].id if len(rows) == queries.PAGE_SIZE else None})


@router.get("/ops/audit")
def audit_log(request: Request, session: ReadSessionDep, actor: ActorDep, before: OlderThan = None,
              action: Annotated[str | None, Query(max_length=100, pattern=r"^[a-z0-9_.]*$")] = None,
              verify: Annotated[bool, Query()] = False) -> Response:
    """The audit log, newest first; with ``verify`` the whole hash chain is re-checked."""
    found = queries.audit_page(session, actor, before=before, action=action or None)
    report = audit.verify_chain(session) if verify else None
    return page(request, "ops_audit.html", {
        "events": found.events, "older": found.older_than, "action": action or "", "report": report,
        "details": {event.seq: queries.details_text(event) for event in found.events}})
