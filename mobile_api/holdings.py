"""The meetings an investor holds shares in, across every issuer and broker.

A register line (:class:`voting.models.Holder`) carries the RA's keyed hash of the holder's
identity number, the same hash the investor's identity is kept under: that is how an
investor finds their holdings whichever broker enrolled them. A meeting the caller holds
no shares in answers exactly like one that does not exist (404 ``unknown_meeting``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlmodel import Session

from core.db import utcnow
from core.errors import BadRequest, Conflict, NotFound
from mobile_api.auth import MobileCaller
from voting import service as voting_service
from voting.attendance import STANDING
from voting.calendar import TAIPEI
from voting.models import AgendaItemRow, Attendance, BallotRow, Holder, Issuer, Meeting, Recusal, RunningTally
from voting.results import shares_as_strings

# The caller's status on a meeting, from "still to do" to "nothing to do".
STATUSES = ("not_voted", "revoked", "voted", "overridden")


@dataclass
class MeetingView:
    """A meeting with the caller's register lines on it and their status on each."""

    meeting: Meeting
    issuer_name: str
    holders: list[Holder]
    statuses: dict[int, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The caller's status: with several register lines, the one still most to do."""
        found = [self.statuses.get(h.id or 0, "not_voted") for h in self.holders]
        return min(found, key=STATUSES.index) if found else "not_voted"

    @property
    def votable_shares(self) -> int:
        """Shares with voting rights over all the caller's lines (shares − non-voting shares)."""
        return sum(votable(h) for h in self.holders)

    def voting_open(self, now: dt.datetime) -> bool:
        """Whether a ballot (or a revocation) would be received now."""
        m = self.meeting
        return m.status == "published" and m.opens_at <= now < m.closes_at


def votable(holder: Holder) -> int:
    """A holder's shares with voting rights (Art. 179)."""
    return holder.shares - holder.non_voting_shares


def meetings_held(reader: Session, id_hmac: str, public_id: str | None = None) -> list[MeetingView]:
    """The meetings (not drafts) with a register line of the identity ``id_hmac``, each with
    those lines (only ``public_id``'s when given); statuses are left to :func:`with_statuses`."""
    statement = (select(Meeting, Issuer.name, Holder).join(Holder, Holder.meeting_id == Meeting.id)
                 .join(Issuer, Issuer.code == Meeting.issuer_code)
                 .where(Holder.id_hmac == id_hmac).where(Meeting.status != "draft"))
    if public_id is not None:
        statement = statement.where(Meeting.public_id == public_id)
    views: dict[int, MeetingView] = {}
    for meeting, issuer_name, holder in reader.execute(statement.order_by(Meeting.id, Holder.holder_no)):
        views.setdefault(meeting.id, MeetingView(meeting, issuer_name, [])).holders.append(holder)
    return list(views.values())


def holder_statuses(reader: Session, holder_ids: list[int]) -> dict[int, str]:
    """``not_voted``, ``voted`` (a standing e-vote), ``revoked`` (every e-vote revoked) or
    ``overridden`` (a proxy is registered) for each of ``holder_ids``."""
    if not holder_ids:
        return {}
    seen: dict[int, set[str]] = defaultdict(set)
    for holder_id, status in reader.execute(select(BallotRow.holder_id, BallotRow.status)
                                            .where(BallotRow.holder_id.in_(holder_ids))):  # type: ignore[attr-defined]
        seen[holder_id].add(status)
    proxies = set(reader.execute(select(Attendance.holder_id).where(Attendance.holder_id.in_(holder_ids))  # type: ignore[attr-defined]
                                 .where(Attendance.mode == "proxy")).scalars())
    statuses = {}
    for holder_id in holder_ids:
        found = seen.get(holder_id, set())
        if holder_id in proxies or "overridden_by_proxy" in found:
            statuses[holder_id] = "overridden"
        elif found & set(STANDING):
            statuses[holder_id] = "voted"
        elif "revoked" in found:
            statuses[holder_id] = "revoked"
        else:
            statuses[holder_id] = "not_voted"
    return statuses


def with_statuses(reader: Session, views: list[MeetingView]) -> list[MeetingView]:
    """``views`` with the status of each of their register lines filled in."""
    statuses = holder_statuses(reader, [h.id or 0 for v in views for h in v.holders])
    for view in views:
        view.statuses = {h.id or 0: statuses[h.id or 0] for h in view.holders}
    return views


def list_meetings(reader: Session, caller: MobileCaller, *, when: str, offset: int, limit: int,
                  now: dt.datetime | None = None) -> tuple[list[MeetingView], int | None]:
    """A page of the caller's meetings and the offset of the next page (None at the end).

    ``upcoming`` (the meeting day is today or later, Taipei) soonest first; ``past`` and
    ``all`` latest first.
    """
    today = (now or utcnow()).astimezone(TAIPEI).date()
    views = meetings_held(reader, caller.id_hmac)
    if when == "upcoming":
        views = sorted((v for v in views if v.meeting.meeting_date >= today),
                       key=lambda v: (v.meeting.meeting_date, v.meeting.id))
    else:
        if when == "past":
            views = [v for v in views if v.meeting.meeting_date < today]
        views = sorted(views, key=lambda v: (v.meeting.meeting_date, v.meeting.id or 0), reverse=True)
    page = views[offset:offset + limit]
    more = offset + limit if len(views) > offset + limit else None
    return with_statuses(reader, page), more


def meeting_view(reader: Session, caller: MobileCaller, public_id: str, *, statuses: bool = True) -> MeetingView:
    """One meeting the caller holds shares in (with the status of each line unless
    ``statuses`` is False); 404 ``unknown_meeting`` otherwise."""
    views = meetings_held(reader, caller.id_hmac, public_id)
    if not views:
        raise NotFound("no such meeting", code="unknown_meeting")
    return with_statuses(reader, views)[0] if statuses else views[0]


def holder_for(view: MeetingView, holder_no: str | None) -> Holder:
    """The caller's register line a ballot names: the only one, or the one asked for."""
    if holder_no is None:
        if len(view.holders) > 1:
            raise BadRequest("you hold shares under several holder numbers: name one", code="holder_required")
        return view.holders[0]
    for holder in view.holders:
        if holder.holder_no == holder_no:
            return holder
    raise NotFound("you are not this holder on the register", code="unknown_holder")


@dataclass(frozen=True)
class AgendaEntry:
    """One agenda item and the caller's register lines recused from it (Art. 178)."""

    row: AgendaItemRow
    candidates: list[dict[str, str]]
    recused: list[str]


def agenda(reader: Session, view: MeetingView) -> list[AgendaEntry]:
    """The meeting's agenda in order, with the candidates of each election."""
    rows = voting_service.agenda_rows(reader, view.meeting.id or 0)
    numbers = {h.id: h.holder_no for h in view.holders}
    recused: dict[int, list[str]] = defaultdict(list)
    if rows:
        for item_id, holder_id in reader.execute(
                select(Recusal.item_id, Recusal.holder_id).where(Recusal.holder_id.in_(list(numbers)))):  # type: ignore[attr-defined]
            recused[item_id].append(numbers[holder_id])
    return [AgendaEntry(r, json.loads(r.candidates), sorted(recused.get(r.id or 0, []))) for r in rows]


def frozen_result(reader: Session, caller: MobileCaller, public_id: str) -> tuple[MeetingView, dict[str, object]]:
    """The frozen tally of a meeting the caller holds shares in (share figures as strings);
    409 ``tally_not_final`` before the meeting is frozen."""
    view = meeting_view(reader, caller, public_id)
    row = reader.get(RunningTally, view.meeting.id)
    if view.meeting.status != "frozen" or row is None or row.frozen_tally is None:
        raise Conflict("the result is final once the tally is frozen", code="tally_not_final")
    return view, shares_as_strings(json.loads(row.frozen_tally))  # type: ignore[return-value]
