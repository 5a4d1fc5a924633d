"""Issuers, meetings and their agendas: what a host prepares before the e-voting window opens.

A meeting's window follows from its dates (Art. 177-2, :mod:`voting.calendar`). The agenda
is fixed when the meeting is published; extempore motions and amendments are added by the
host at the meeting itself (electronic voters are deemed to abstain on them).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import bindparam, func, select
from sqlmodel import Session

from ca.context import Pki
from core import audit
from core.auth import Actor, Role, require_role
from core.db import utcnow
from core.errors import BadRequest, Conflict, NotFound
from voting import calendar, running
from voting.access import MEETING_ROLES, can_see_issuer, visible_meeting
from voting.agenda import ITEM_KINDS, NOT_ELECTRONICALLY_VOTABLE, AgendaItem
from voting.models import AgendaItemRow, Issuer, Meeting
from voting.thresholds import MeetingRules, configured_rules

_ISSUER_CODE = re.compile(r"[0-9A-Z]{2,16}")
_ITEM_KEY = re.compile(r"[0-9A-Za-z._-]{1,16}")
_THRESHOLD = re.compile(r">?\s*[0-9]{1,6}\s*/\s*[0-9]{1,6}")
THRESHOLD_NAMES = ("ordinary_quorum", "ordinary_majority", "special_quorum", "special_majority")


@dataclass(frozen=True)
class CandidateIn:
    key: str
    name: str


@dataclass(frozen=True)
class AgendaItemIn:
    """An agenda item as the host submits it."""

    key: str
    kind: str
    title: str
    article: str | None = None
    seats: int = 0
    candidates: tuple[CandidateIn, ...] = ()


def create_issuer(session: Session, *, actor: Actor, code: str, name: str) -> Issuer:
    """An operator registers a listed company (its code is the hosts' tenant)."""
    require_role(actor, Role.OPERATOR)
    code = code.strip().upper()
    if not _ISSUER_CODE.fullmatch(code):
        raise BadRequest("an issuer code is 2 to 16 letters or digits", code="invalid_issuer_code")
    if session.get(Issuer, code) is not None:
        raise Conflict(f"issuer {code} exists", code="issuer_exists")
    issuer = Issuer(code=code, name=name, created_at=utcnow())
    session.add(issuer)
    session.flush()
    audit.record(session, actor=actor.label, action="issuer.create", object_type="issuer", object_id=code)
    return issuer


def list_issuers(session: Session, actor: Actor) -> list[Issuer]:
    """Every issuer for operators and auditors; a host's own."""
    require_role(actor, Role.OPERATOR, Role.AUDITOR, Role.ISSUER_HOST)
    rows = session.execute(select(Issuer).order_by(Issuer.code)).scalars()
    return [issuer for issuer in rows if can_see_issuer(actor, issuer.code)]


def parse_thresholds(thresholds: dict[str, str] | None) -> dict[str, str] | None:
    """Stricter thresholds from the articles of incorporation, as fractions ("2/3", ">1/2").

    A leading ``>`` means "more than"; otherwise "at least". 400 ``invalid_thresholds``.
    """
    if not thresholds:
        return None
    parsed = {}
    for name, value in thresholds.items():
        if name not in THRESHOLD_NAMES:
            raise BadRequest(f"unknown threshold {name!r}", code="invalid_thresholds")
        if not _THRESHOLD.fullmatch(value):
            raise BadRequest(f"{name} is a fraction like 2/3 or >1/2", code="invalid_thresholds")
        try:
            fraction = Fraction(value.lstrip(">").replace(" ", ""))
        except (ValueError, ZeroDivisionError) as exc:
            raise BadRequest(f"{name} is not a fraction like 2/3", code="invalid_thresholds") from exc
        if not 0 < fraction <= 1:
            raise BadRequest(f"{name} must be above 0 and at most 1", code="invalid_thresholds")
        parsed[name] = (">" if value.strip().startswith(">") else "") + str(fraction)
    return parsed


def meeting_rules(meeting: Meeting) -> MeetingRules:
    """The thresholds the tally applies: the statute's, or the articles' where stricter."""
    return configured_rules(meeting.public_company, json.loads(meeting.thresholds or "{}"))


def _check_items(items: list[AgendaItemIn], *, at_meeting: bool) -> None:
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise BadRequest("agenda item keys must differ", code="invalid_agenda")
    for item in items:
        if not _ITEM_KEY.fullmatch(item.key):
            raise BadRequest(f"item key {item.key!r}: 1 to 16 letters, digits, . _ -", code="invalid_agenda")
        if item.kind not in ITEM_KINDS:
            raise BadRequest(f"item {item.key}: unknown kind {item.kind!r}", code="invalid_agenda")
        if (item.kind in NOT_ELECTRONICALLY_VOTABLE) != at_meeting:
            where = "at the meeting" if item.kind in NOT_ELECTRONICALLY_VOTABLE else "in the notice"
            raise BadRequest(f"item {item.key}: a {item.kind} item is added {where}", code="invalid_agenda")
        try:
            AgendaItem(item.key, item.kind, item.title, seats=item.seats,  # type: ignore[arg-type]
                       candidates=tuple(c.key for c in item.candidates), article=item.article)
        except ValueError as exc:
            raise BadRequest(f"item {item.key}: {exc}", code="invalid_agenda") from exc
        if item.kind == "election" and len(item.candidates) < item.seats:
            raise BadRequest(f"item {item.key}: fewer candidates than seats", code="invalid_agenda")
        if item.kind != "election" and (item.seats or item.candidates):
            raise BadRequest(f"item {item.key}: only elections have seats and candidates", code="invalid_agenda")


def _add_items(session: Session, meeting: Meeting, items: list[AgendaItemIn], actor: Actor, start: int) -> None:
    now = utcnow()
    for position, item in enumerate(items, start=start):
        session.add(AgendaItemRow(
            meeting_id=meeting.id or 0, item_key=item.key, position=position, kind=item.kind, title=item.title,
            article=item.article, seats=item.seats, added_by=actor.label, added_at=now,
            candidates=json.dumps([{"key": c.key, "name": c.name} for c in item.candidates], ensure_ascii=False)))


def create_meeting(
    session: Session, *, actor: Actor, issuer_code: str, title: str, meeting_date: dt.date,
    book_closure_date: dt.date, notice_published_on: dt.date, public_company: bool,
    items: list[AgendaItemIn], thresholds: dict[str, str] | None = None,
) -> Meeting:
    """A draft meeting with its agenda; the e-voting window follows from the dates."""
    require_role(actor, *MEETING_ROLES)
    if session.get(Issuer, issuer_code) is None or not can_see_issuer(actor, issuer_code):
        raise NotFound("no such issuer", code="unknown_issuer")
    if not book_closure_date < meeting_date or not notice_published_on < meeting_date:
        raise BadRequest("book closure and notice come before the meeting", code="invalid_dates")
    opens_at, closes_at = calendar.evoting_opens_at(notice_published_on), calendar.evoting_closes_at(meeting_date)
    if opens_at >= closes_at:
        raise BadRequest("the notice leaves no e-voting window before the deadline", code="invalid_dates")
    if not items:
        raise BadRequest("a meeting needs an agenda", code="invalid_agenda")
    _check_items(items, at_meeting=False)
    meeting = Meeting(
        public_id=uuid.uuid4().hex, issuer_code=issuer_code, title=title, meeting_date=meeting_date,
        book_closure_date=book_closure_date, notice_published_on=notice_published_on, opens_at=opens_at,
        closes_at=closes_at, public_company=public_company,
        thresholds=json.dumps(parse_thresholds(thresholds)) if thresholds else None,
        created_by=actor.label, created_at=utcnow())
    session.add(meeting)
    session.flush()
    _add_items(session, meeting, items, actor, start=1)
    session.flush()
    audit.record(session, actor=actor.label, tenant=issuer_code, action="meeting.create", object_type="meeting",
                 object_id=meeting.public_id, details={"meeting_date": meeting_date.isoformat(), "items": len(items)})
    return meeting


def list_meetings(session: Session, actor: Actor) -> list[Meeting]:
    """The meetings the caller may see, soonest first."""
    require_role(actor, Role.OPERATOR, Role.AUDITOR, Role.ISSUER_HOST)
    statement = select(Meeting).order_by(Meeting.meeting_date, Meeting.id)
    if actor.role is Role.ISSUER_HOST:
        statement = statement.where(Meeting.issuer_code == (actor.tenant or ""))
    if actor.role is Role.AUDITOR:
        statement = statement.where(Meeting.status == "frozen")
    return list(session.execute(statement).scalars())


_AGENDA = (select(AgendaItemRow).where(AgendaItemRow.meeting_id == bindparam("meeting_id"))
           .order_by(AgendaItemRow.position))  # built once: every ballot reads the agenda


def agenda_rows(session: Session, meeting_id: int) -> list[AgendaItemRow]:
    """The agenda in its order."""
    return list(session.execute(_AGENDA, {"meeting_id": meeting_id}).scalars())


def agenda_of(rows: list[AgendaItemRow]) -> list[AgendaItem]:
    """The agenda as the pure rules see it."""
    return [AgendaItem(r.item_key, r.kind, r.title, seats=r.seats,  # type: ignore[arg-type]
                       candidates=tuple(c["key"] for c in json.loads(r.candidates)), article=r.article)
            for r in rows]


def publish_meeting(session: Session, *, actor: Actor, meeting_id: int) -> Meeting:
    """Open the meeting for e-voting (from its window's start): needs the register."""
    meeting = visible_meeting(session, actor, meeting_id, for_update=True)
    if meeting.status != "draft":
        raise Conflict(f"the meeting is {meeting.status}", code="meeting_not_draft")
    if not meeting.register_sha256:
        raise Conflict("import the shareholder register first", code="register_missing")
    meeting.status = "published"
    session.add(meeting)
    session.flush()
    running.start(session, meeting.id or 0)
    audit.record(session, actor=actor.label, tenant=meeting.issuer_code, action="meeting.publish",
                 object_type="meeting", object_id=meeting.public_id)
    return meeting


def add_items_at_meeting(session: Session, *, actor: Actor, meeting_id: int, items: list[AgendaItemIn]) -> None:
    """Extempore motions and amendments, entered by the host once the e-voting window closed."""
    meeting = visible_meeting(session, actor, meeting_id, for_update=True)
    if meeting.status != "published":
        raise Conflict(f"the meeting is {meeting.status}", code="meeting_not_published")
    if utcnow() < meeting.closes_at:
        raise Conflict("extempore items are added at the meeting, after e-voting closed", code="meeting_not_started")
    _check_items(items, at_meeting=True)
    existing = {r.item_key for r in agenda_rows(session, meeting.id or 0)}
    if existing & {item.key for item in items}:
        raise Conflict("an agenda item with that key exists", code="item_exists")
    last = session.execute(select(func.max(AgendaItemRow.position))
                           .where(AgendaItemRow.meeting_id == meeting.id)).scalar_one() or 0
    _add_items(session, meeting, items, actor, start=last + 1)
    session.flush()
    audit.record(session, actor=actor.label, tenant=meeting.issuer_code, action="meeting.add_items",
                 object_type="meeting", object_id=meeting.public_id, details={"items": [i.key for i in items]})


def freeze_meeting(session: Session, pki: Pki, *, actor: Actor, meeting_id: int) -> Meeting:
    """Freeze the final tally once the meeting has voted: nothing about it changes afterwards
    (ballots, revocations, attendance, recusals, register and agenda all refuse a frozen meeting).

    The PDF report of the frozen tally is rendered, sealed by the platform (PAdES) and stored
    in the same transaction: 409 ``report_not_sealed`` (nothing frozen) when it cannot be sealed."""
    meeting = visible_meeting(session, actor, meeting_id, for_update=True)
    if meeting.status != "published":
        raise Conflict(f"the meeting is {meeting.status}", code="meeting_not_published")
    if utcnow() < meeting.closes_at:
        raise Conflict("the tally is frozen at the meeting, after e-voting closed", code="meeting_not_started")
    from voting.reports import store_report  # the report and the tally read the service's agenda: imported late
    from voting.results import freeze_tally

    frozen_at = utcnow()
    result = freeze_tally(session, meeting)
    meeting.status, meeting.frozen_at = "frozen", frozen_at
    session.add(meeting)
    session.flush()
    store_report(session, pki, meeting, result.as_dict(), frozen_at)
    audit.record(session, actor=actor.label, tenant=meeting.issuer_code, action="meeting.freeze",
                 object_type="meeting", object_id=meeting.public_id)
    return meeting
