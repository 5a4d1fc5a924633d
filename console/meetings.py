"""Meeting hosts' pages: their issuer's meetings, one meeting live, the room's entries,
freezing, and the downloads (the same service calls as ``voting.api``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from sqlmodel import Session

from console.forms import room_choices, validated
from console.i18n import taipei
from console.session import ActorDep, FormDep
from console.web import ConsoleRoute, confirm_page, page, see_other
from core.auth import Actor
from core.db import utcnow
from core.validation import DB_ID_MAX
from core.web import ClosingStreamingResponse, ReadSessionDep, SessionDep
from voting import attendance, exports, reports, results, service
from voting import bundle as auditor_bundle
from voting.access import MEETING_ROLES, READ_ROLES, visible_meeting
from voting.calendar import last_moment_display
from voting.models import Meeting
from voting.schemas import AgendaItemModel, AttendanceIn, ProxyIn

router = APIRouter(route_class=ConsoleRoute)
MeetingId = Annotated[int, Path(ge=1, le=DB_ID_MAX)]
ROOM_ITEM_KINDS = ("amendment", "extempore")


def agenda_json(session: Session, meeting_id: int) -> list[dict[str, Any]]:
    """The agenda as the live page shows it: key, kind, title, candidates with names."""
    return [{"key": row.item_key, "kind": row.kind, "title": row.title, "seats": row.seats,
             "candidates": json.loads(row.candidates)} for row in service.agenda_rows(session, meeting_id)]


def live_figures(session: Session, actor: Actor, meeting: Meeting) -> dict[str, Any]:
    """What the live page polls: the running (or frozen) tally, the agenda and the register size."""
    return {"tally": results.tally_for(session, actor, meeting.id or 0), "status": meeting.status,
            "register_holders": meeting.register_holders, "agenda": agenda_json(session, meeting.id or 0),
            "as_of": taipei(utcnow(), with_seconds=True)}


@router.get("/meetings")
def meetings(request: Request, session: ReadSessionDep, actor: ActorDep) -> Response:
    """The meetings the member may see (a host: their issuer's)."""
    issuers = {issuer.code: issuer.name for issuer in service.list_issuers(session, actor)}
    rows = service.list_meetings(session, actor)
    return page(request, "meetings.html", {"meetings": rows, "issuers": issuers})


@router.get("/meetings/{meeting_id}")
def meeting_page(meeting_id: MeetingId, request: Request, session: ReadSessionDep, actor: ActorDep) -> Response:
    """One meeting live: turnout, running results, the room's forms, freezing, downloads."""
    meeting = visible_meeting(session, actor, meeting_id, roles=READ_ROLES)
    agenda = agenda_json(session, meeting.id or 0)
    at_meeting = utcnow() >= meeting.closes_at
    return page(request, "meeting.html", {
        "meeting": meeting, "agenda": agenda, "issuer_name": _issuer_name(session, actor, meeting),
        "last_moment": last_moment_display(meeting.meeting_date), "at_meeting": at_meeting,
        "can_run": actor.role in MEETING_ROLES and meeting.status == "published",
        "initial": live_figures(session, actor, meeting),
        "room_codes": ("CFOR", "CAGS", "ABST", "NOAC"), "room_item_kinds": ROOM_ITEM_KINDS})


def _issuer_name(session: Session, actor: Actor, meeting: Meeting) -> str:
    names = {issuer.code: issuer.name for issuer in service.list_issuers(session, actor)}
    return names.get(meeting.issuer_code, meeting.issuer_code)


@router.get("/meetings/{meeting_id}/live.json")
def live(meeting_id: MeetingId, session: ReadSessionDep, actor: ActorDep) -> dict[str, Any]:
    """The live page's poll (cheap: running totals plus the room's entries)."""
    return live_figures(session, actor, visible_meeting(session, actor, meeting_id, roles=READ_ROLES))


def _back(meeting_id: int) -> str:
    return f"/console/meetings/{meeting_id}"


@router.post("/meetings/{meeting_id}/attendance")
def record_attendance(meeting_id: MeetingId, request: Request, session: SessionDep, post: FormDep) -> Response:
    """A holder in the room (or a proxy) with their in-room votes."""
    meeting = visible_meeting(session, post.actor, meeting_id)
    choices = room_choices(post, service.agenda_rows(session, meeting.id or 0))
    entry = validated(AttendanceIn, {"holder_no": post.text("holder_no", max_length=32),
                                     "mode": post.text("mode", max_length=16), "choices": choices})
    if not post.confirmed:
        return confirm_page(request, post.form, "confirm.attendance", holder=entry.holder_no)
    attendance.record_attendance(session, actor=post.actor, meeting_id=meeting_id, holder_no=entry.holder_no,
                                 mode=entry.mode, choices=entry.choices)
    session.commit()
    return see_other(_back(meeting_id), "attendance_recorded")


@router.post("/meetings/{meeting_id}/proxies")
def register_proxy(meeting_id: MeetingId, request: Request, session: SessionDep, post: FormDep) -> Response:
    """A proxy for a holder: it overrides the holder's e-vote."""
    visible_meeting(session, post.actor, meeting_id)
    entry = validated(ProxyIn, {"holder_no": post.text("holder_no", max_length=32),
                                "proxy_name": post.text("proxy_name", max_length=200)})
    if not post.confirmed:
        return confirm_page(request, post.form, "confirm.proxy", holder=entry.holder_no)
    attendance.register_proxy(session, actor=post.actor, meeting_id=meeting_id, holder_no=entry.holder_no,
                              proxy_name=entry.proxy_name)
    session.commit()
    return see_other(_back(meeting_id), "proxy_registered")


@router.post("/meetings/{meeting_id}/items")
def add_item(meeting_id: MeetingId, request: Request, session: SessionDep, post: FormDep) -> Response:
    """An amendment or extempore motion, at the meeting."""
    visible_meeting(session, post.actor, meeting_id)
    item = validated(AgendaItemModel, {"key": post.text("key", max_length=16),
                                       "kind": post.text("kind", max_length=16),
                                       "title": post.text("title", max_length=500)})
    if not post.confirmed:
        return confirm_page(request, post.form, "confirm.item", key=item.key)
    service.add_items_at_meeting(session, actor=post.actor, meeting_id=meeting_id,
                                 items=[service.AgendaItemIn(item.key, item.kind, item.title)])
    session.commit()
    return see_other(_back(meeting_id), "item_added")


@router.post("/meetings/{meeting_id}/freeze")
def freeze(meeting_id: MeetingId, request: Request, session: SessionDep, post: FormDep) -> Response:
    """Freeze the final tally and seal the report: nothing about the meeting changes afterwards."""
    meeting = visible_meeting(session, post.actor, meeting_id)
    if not post.confirmed:
        return confirm_page(request, post.form, "confirm.freeze", title=meeting.title)
    service.freeze_meeting(session, request.app.state.pki, actor=post.actor, meeting_id=meeting_id)
    session.commit()
    return see_other(_back(meeting_id), "meeting_frozen")


def _attachment(meeting: Meeting, name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{meeting.issuer_code}-{meeting.public_id}-{name}"'}


@router.get("/meetings/{meeting_id}/report.pdf")
def report_pdf(meeting_id: MeetingId, session: ReadSessionDep, actor: ActorDep) -> Response:
    """The sealed PDF report of a frozen meeting."""
    meeting, report = reports.report_for(session, actor, meeting_id)
    return Response(report.pdf, media_type="application/pdf", headers=_attachment(meeting, "report.pdf"))


@router.get("/meetings/{meeting_id}/exports/tally.csv")
def tally_csv(meeting_id: MeetingId, session: ReadSessionDep, actor: ActorDep) -> Response:
    """The tally as CSV (the running one before freezing, and its name says so)."""
    meeting, text = exports.tally_csv(session, actor, meeting_id)
    status = "frozen" if meeting.status == "frozen" else "running"
    return Response(text.encode(), media_type="text/csv; charset=utf-8",
                    headers={**_attachment(meeting, f"tally-{status}.csv"), "X-Tally-Status": status})


@router.get("/meetings/{meeting_id}/exports/ballots.csv")
def ballots_csv(meeting_id: MeetingId, request: Request, session: ReadSessionDep, actor: ActorDep) -> Response:
    """Every ballot received (holder, time, status, hash, log index), streamed."""
    meeting = exports.exportable_meeting(session, actor, meeting_id)
    chunks = exports.encoded(exports.ballots_csv(request.app.state.read_engine, meeting.id or 0))
    return ClosingStreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                                    headers=_attachment(meeting, "ballots.csv"))


@router.get("/meetings/{meeting_id}/bundle.zip")
def bundle_zip(meeting_id: MeetingId, request: Request, session: ReadSessionDep, actor: ActorDep) -> Response:
    """The sealed auditor bundle of a frozen meeting, streamed."""
    meeting = auditor_bundle.bundle_meeting(session, actor, meeting_id)
    stream = auditor_bundle.bundle_file(session, request.app.state.pki, meeting)
    return ClosingStreamingResponse(auditor_bundle.iter_file(stream), release=stream.close,
                                    media_type="application/zip", headers=_attachment(meeting, "bundle.zip"))
