"""HTTP endpoints of the voting service (thin: parse, authorise, call one service function).

Hosts and operators manage meetings; ballots and revocations need no token (the holder's
signature is the authorisation, checked against the register); tree heads and proofs are
public, so a holder can check a receipt with nothing but the seal certificate.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlmodel import Session

from core.errors import NotFound
from core.validation import DB_ID_MAX
from core.web import ActorDep, ClosingStreamingResponse, ReadSessionDep, SessionDep, request_sessions
from voting import attendance, ballot_log, ballots, register, results, service
from voting import exports, reports
from voting import bundle as auditor_bundle
from voting.access import READ_ROLES, visible_meeting
from voting.ballot_http import receive_ballot
from voting.calendar import last_moment_display
from voting.models import Meeting
from voting.schemas import (
    AgendaItemModel,
    AgendaItemOut,
    AttendanceIn,
    ConfirmationOut,
    ConsistencyOut,
    IssuerIn,
    IssuerOut,
    ItemsIn,
    MeetingIn,
    MeetingOut,
    ProofOut,
    ProxyIn,
    ReceiptOut,
    RecusalIn,
    RegisterOut,
    RevocationOut,
    SignedSubmission,
    TreeHeadOut,
)

voting_router = APIRouter(prefix="/voting", tags=["voting"])
MeetingId = Annotated[int, Path(ge=1, le=DB_ID_MAX)]
PublicId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def _items(models: list[AgendaItemModel]) -> list[service.AgendaItemIn]:
    return [service.AgendaItemIn(m.key, m.kind, m.title, m.article, m.seats,
                                 tuple(service.CandidateIn(c.key, c.name) for c in m.candidates)) for m in models]


def _meeting_out(session: Session, meeting: Meeting, *, with_agenda: bool = False) -> MeetingOut:
    agenda = []
    if with_agenda:
        agenda = [AgendaItemOut(key=r.item_key, kind=r.kind, title=r.title, article=r.article, seats=r.seats,
                                candidates=json.loads(r.candidates))
                  for r in service.agenda_rows(session, meeting.id or 0)]
    return MeetingOut(
        id=meeting.id or 0, public_id=meeting.public_id, issuer_code=meeting.issuer_code, title=meeting.title,
        meeting_date=meeting.meeting_date, book_closure_date=meeting.book_closure_date,
        notice_published_on=meeting.notice_published_on, opens_at=meeting.opens_at, closes_at=meeting.closes_at,
        last_moment=last_moment_display(meeting.meeting_date), public_company=meeting.public_company,
        status=meeting.status, register_holders=meeting.register_holders, agenda=agenda)


@voting_router.post("/issuers", response_model=IssuerOut, status_code=201, summary="Register an issuer (operator)")
def create_issuer(body: IssuerIn, session: SessionDep, actor: ActorDep) -> IssuerOut:
    issuer = service.create_issuer(session, actor=actor, code=body.code, name=body.name)
    return IssuerOut(code=issuer.code, name=issuer.name)


@voting_router.get("/issuers", response_model=list[IssuerOut], summary="Issuers the caller may see")
def list_issuers(session: ReadSessionDep, actor: ActorDep) -> list[IssuerOut]:
    return [IssuerOut(code=i.code, name=i.name) for i in service.list_issuers(session, actor)]


@voting_router.post("/meetings", response_model=MeetingOut, status_code=201,
                    summary="A draft meeting with its agenda (host of the issuer, or operator)")
def create_meeting(body: MeetingIn, session: SessionDep, actor: ActorDep) -> MeetingOut:
    meeting = service.create_meeting(
        session, actor=actor, issuer_code=body.issuer_code, title=body.title, meeting_date=body.meeting_date,
        book_closure_date=body.book_closure_date, notice_published_on=body.notice_published_on,
        public_company=body.public_company, items=_items(body.items), thresholds=body.thresholds)
    return _meeting_out(session, meeting, with_agenda=True)


@voting_router.get("/meetings", response_model=list[MeetingOut], summary="Meetings the caller may see")
def list_meetings(session: ReadSessionDep, actor: ActorDep) -> list[MeetingOut]:
    return [_meeting_out(session, m) for m in service.list_meetings(session, actor)]


@voting_router.get("/meetings/{meeting_id}", response_model=MeetingOut, summary="A meeting and its agenda")
def get_meeting(meeting_id: MeetingId, session: ReadSessionDep, actor: ActorDep) -> MeetingOut:
    return _meeting_out(session, visible_meeting(session, actor, meeting_id, roles=READ_ROLES), with_agenda=True)


@voting_router.put("/meetings/{meeting_id}/register", response_model=RegisterOut,
                   summary="Upload the shareholder register (CSV body; all-or-nothing, idempotent)",
                   openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}})
async def upload_register(meeting_id: MeetingId, request: Request, actor: ActorDep,
                          replace: Annotated[bool, Query()] = False) -> RegisterOut:
    # Bodies up to CLOUDSEAL_MAX_BODY_BYTES; `cloudseal register import` streams registers of any size.
    body = await request.body()

    def run() -> register.RegisterImport:
        with request_sessions(request) as (session, _):
            return register.import_register(session, request.app.state.pki.keystore, actor=actor,
                                            meeting_id=meeting_id, stream=io.BytesIO(body), replace=replace)

    summary = await run_in_threadpool(run)
    return RegisterOut(holders=summary.holders, total_shares=str(summary.total_shares),
                       voting_shares=str(summary.voting_shares), non_voting_shares=str(summary.non_voting_shares),
                       sha256=summary.sha256, unchanged=summary.unchanged)


@voting_router.post("/meetings/{meeting_id}/publish", response_model=MeetingOut,
                    summary="Open the meeting for e-voting (needs the register)")
def publish(meeting_id: MeetingId, session: SessionDep, actor: ActorDep) -> MeetingOut:
    return _meeting_out(session, service.publish_meeting(session, actor=actor, meeting_id=meeting_id))


@voting_router.post("/meetings/{meeting_id}/freeze", response_model=MeetingOut,
                    summary="Freeze the final tally (no change afterwards)")
def freeze(meeting_id: MeetingId, request: Request, session: SessionDep, actor: ActorDep) -> MeetingOut:
    meeting = service.freeze_meeting(session, request.app.state.pki, actor=actor, meeting_id=meeting_id)
    return _meeting_out(session, meeting)


@voting_router.post("/meetings/{meeting_id}/items", status_code=201,
                    summary="Extempore motions and amendments, at the meeting")
def add_items(meeting_id: MeetingId, body: ItemsIn, session: SessionDep, actor: ActorDep) -> dict[str, int]:
    service.add_items_at_meeting(session, actor=actor, meeting_id=meeting_id, items=_items(body.items))
    return {"added": len(body.items)}


@voting_router.post("/meetings/{meeting_id}/proxies", status_code=201,
                    summary="Register a proxy for a holder (overrides the e-vote)")
def register_proxy(meeting_id: MeetingId, body: ProxyIn, session: SessionDep, actor: ActorDep) -> dict[str, str]:
    attendance.register_proxy(session, actor=actor, meeting_id=meeting_id, holder_no=body.holder_no,
                              proxy_name=body.proxy_name)
    return {"holder_no": body.holder_no}


@voting_router.post("/meetings/{meeting_id}/attendance", summary="Record a holder present, with in-room votes")
def record_attendance(meeting_id: MeetingId, body: AttendanceIn, session: SessionDep,
                      actor: ActorDep) -> dict[str, str]:
    attendance.record_attendance(session, actor=actor, meeting_id=meeting_id, holder_no=body.holder_no,
                                 mode=body.mode, choices=body.choices)
    return {"holder_no": body.holder_no}


@voting_router.post("/meetings/{meeting_id}/recusals", status_code=201,
                    summary="A holder out of one item's votes (Art. 178), present for the quorum")
def record_recusal(meeting_id: MeetingId, body: RecusalIn, session: SessionDep, actor: ActorDep) -> dict[str, str]:
    attendance.record_recusal(session, actor=actor, meeting_id=meeting_id, item_key=body.item_key,
                              holder_no=body.holder_no, reason=body.reason)
    return {"holder_no": body.holder_no, "item_key": body.item_key}


@voting_router.get("/meetings/{meeting_id}/tally", summary="The running (or frozen) share-weighted tally")
def tally(meeting_id: MeetingId, session: ReadSessionDep, actor: ActorDep) -> dict[str, Any]:
    return results.tally_for(session, actor, meeting_id)


@voting_router.post("/ballots", response_model=ReceiptOut, status_code=201,
                    summary="Submit a signed ballot; returns the sealed receipt")
async def submit_ballot(body: SignedSubmission, request: Request) -> JSONResponse:
    # Well-formed submissions are answered by voting.ballot_http.BallotFastPath before the
    # framework; this route answers the others (and documents the endpoint).
    receipt = await receive_ballot(request.app.state, body)
    # The receipt's shape is ReceiptOut's by construction: answered as is, not validated again.
    return JSONResponse(receipt.to_json(), status_code=201)


@voting_router.post("/revocations", response_model=RevocationOut,
                    summary="Revoke one's e-vote before the deadline (signed like a ballot)")
def revoke(body: SignedSubmission, request: Request, session: SessionDep) -> RevocationOut:
    payload, cms = ballots.require_known_payload(body.payload, body.cms)
    accepted = attendance.revoke_evote(session, request.app.state.pki, payload=payload, cms=cms)
    receipt = accepted.receipt
    return RevocationOut(revoked_ballots=accepted.revoked_ballots, receipt=receipt.statement,
                         signature=base64.b64encode(receipt.signature).decode(), seal_serial=receipt.seal_serial)


def _published(session: Session, public_id: str) -> Meeting:
    meeting = session.execute(select(Meeting).where(Meeting.public_id == public_id)).scalar_one_or_none()
    if meeting is None or meeting.status == "draft":
        raise NotFound("no such meeting", code="unknown_meeting")
    return meeting


@voting_router.get("/log/{public_id}/tree-head", response_model=TreeHeadOut,
                   summary="The newest sealed tree head of a meeting's ballot log")
def tree_head(public_id: PublicId, session: ReadSessionDep) -> TreeHeadOut:
    meeting = _published(session, public_id)
    head = ballot_log.latest_tree_head(session, meeting.id or 0)
    if head is None:
        raise NotFound("the ballot log is empty", code="empty_log")
    return TreeHeadOut(meeting=public_id, tree_size=head.tree_size, root_hash=base64.b64encode(head.root_hash).decode(),
                       issued_at=head.issued_at, signature=base64.b64encode(head.signature).decode())


@voting_router.get("/log/{public_id}/inclusion", response_model=ProofOut,
                   summary="RFC 9162 inclusion proof of a leaf in a tree of the given size")
def inclusion(public_id: PublicId, session: ReadSessionDep, leaf_index: Annotated[int, Query(ge=0, le=DB_ID_MAX)],
              tree_size: Annotated[int, Query(ge=1, le=DB_ID_MAX)]) -> ProofOut:
    meeting = _published(session, public_id)
    path = ballot_log.inclusion_proof(session, meeting.id or 0, leaf_index, tree_size)
    return ProofOut(leaf_index=leaf_index, tree_size=tree_size, path=[base64.b64encode(h).decode() for h in path])


@voting_router.get("/log/{public_id}/ballots/{ballot_sha256}", response_model=ConfirmationOut,
                   summary="After the deadline: was this ballot recorded and counted (or why not), with its proof")
def confirmation(public_id: PublicId, ballot_sha256: Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$")],
                 session: ReadSessionDep) -> ConfirmationOut:
    found = ballots.confirm_ballot(session, meeting_public_id=public_id, ballot_sha256=ballot_sha256)
    return ConfirmationOut(
        status=found.status, holder_no=found.holder_no, received_at=found.received_at, leaf_index=found.leaf_index,
        tree_size=found.tree_size, inclusion_proof=[base64.b64encode(h).decode() for h in found.inclusion_proof],
        root_hash=base64.b64encode(found.root_hash).decode(), voided_items=found.voided_items)


@voting_router.get("/log/{public_id}/consistency", response_model=ConsistencyOut,
                   summary="RFC 9162 consistency proof between two tree sizes")
def consistency(public_id: PublicId, session: ReadSessionDep, old_size: Annotated[int, Query(ge=1, le=DB_ID_MAX)],
                new_size: Annotated[int, Query(ge=1, le=DB_ID_MAX)]) -> ConsistencyOut:
    meeting = _published(session, public_id)
    path = ballot_log.consistency_proof(session, meeting.id or 0, old_size, new_size)
    return ConsistencyOut(old_size=old_size, new_size=new_size, path=[base64.b64encode(h).decode() for h in path])


def _attachment(meeting: Meeting, name: str) -> str:
    return f'attachment; filename="{meeting.issuer_code}-{meeting.public_id}-{name}"'


@voting_router.get("/meetings/{meeting_id}/report.pdf", response_class=Response,
                   responses={200: {"content": {"application/pdf": {}}}},
                   summary="The PAdES-sealed PDF report of a frozen meeting (409 before freezing)")
def report_pdf(meeting_id: MeetingId, session: ReadSessionDep, actor: ActorDep) -> Response:
    meeting, report = reports.report_for(session, actor, meeting_id)
    headers = {"Content-Disposition": _attachment(meeting, "report.pdf"), "ETag": f'"{report.pdf_sha256}"'}
    return Response(report.pdf, media_type="application/pdf", headers=headers)


@voting_router.get("/meetings/{meeting_id}/exports/tally.csv", response_class=Response,
                   responses={200: {"content": {"text/csv": {}}}},
                   summary="The tally as CSV: frozen, or the running tally before freezing (X-Tally-Status)")
def tally_csv(meeting_id: MeetingId, session: ReadSessionDep, actor: ActorDep) -> Response:
    """Allowed before freezing: the file is then the running tally, and says so in its name
    and in the ``X-Tally-Status`` header."""
    meeting, text = exports.tally_csv(session, actor, meeting_id)
    status = "frozen" if meeting.status == "frozen" else "running"
    return Response(text.encode(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": _attachment(meeting, f"tally-{status}.csv"), "X-Tally-Status": status})


@voting_router.get("/meetings/{meeting_id}/exports/ballots.csv", response_class=StreamingResponse,
                   responses={200: {"content": {"text/csv": {}}}},
                   summary="Every ballot received (holder, time, status, hash, log index), streamed")
def ballots_csv(meeting_id: MeetingId, request: Request, session: ReadSessionDep, actor: ActorDep) -> StreamingResponse:
    """For hosts of the issuer, operators and auditors (frozen meetings); allowed before
    freezing (the ballots received so far). Streamed in chunks read from the database."""
    meeting = exports.exportable_meeting(session, actor, meeting_id)
    chunks = exports.encoded(exports.ballots_csv(request.app.state.read_engine, meeting.id or 0))
    return ClosingStreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                                    headers={"Content-Disposition": _attachment(meeting, "ballots.csv")})


@voting_router.get("/meetings/{meeting_id}/bundle.zip", response_class=StreamingResponse,
                   responses={200: {"content": {"application/zip": {}}}},
                   summary="The auditor bundle of a frozen meeting (409 before freezing), streamed")
def bundle_zip(meeting_id: MeetingId, request: Request, session: ReadSessionDep, actor: ActorDep) -> StreamingResponse:
    """For hosts of the issuer, operators and auditors: every signed ballot and revocation,
    the certificates, CRLs and OCSP evidence, the sealed tree heads, the register, the room
    and the frozen tally, sealed by the platform (format: :mod:`voting.bundle`). Written to a
    temporary file, so memory stays flat whatever the meeting's size, then streamed.
    ``cloudseal audit verify BUNDLE --root root.crt`` re-checks it offline."""
    meeting = auditor_bundle.bundle_meeting(session, actor, meeting_id)
    stream = auditor_bundle.bundle_file(session, request.app.state.pki, meeting)
    return ClosingStreamingResponse(auditor_bundle.iter_file(stream), release=stream.close,
                                    media_type="application/zip",
                                    headers={"Content-Disposition": _attachment(meeting, "bundle.zip")})
