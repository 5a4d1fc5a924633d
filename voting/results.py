"""The share-weighted tally of a meeting from what is stored: register, counted ballots,
host-entered attendance and recusals, through the pure :func:`voting.tally.tally_meeting`.

Hosts watch it live while ballots arrive; after the meeting it is frozen. The offline
auditor recomputes it from the signed ballots with the same pure functions.
"""

from __future__ import annotations

import json
from collections import defaultdict

from sqlalchemy import select
from sqlmodel import Session

from core.auth import Actor
from voting import service
from voting.access import READ_ROLES, visible_meeting
from voting.ballot import parse_ballot, typed_choices
from voting.models import AgendaItemRow, Attendance, BallotRow, Holder, Meeting, Recusal
from voting.tally import PresentHolder, RegisterEntry, TallyResult, tally_meeting


def meeting_tally(session: Session, meeting: Meeting) -> TallyResult:
    """The tally as of now (e-voters, then the room; a proxy's entry replaces the e-vote)."""
    rows = service.agenda_rows(session, meeting.id or 0)
    agenda = service.agenda_of(rows)
    elections = {item.item_id for item in agenda if item.is_election}
    holders = {h.id: h for h in session.execute(select(Holder).where(Holder.meeting_id == meeting.id)).scalars()}
    register = [RegisterEntry(h.holder_no, h.shares, h.non_voting_shares, h.nominee) for h in holders.values()]
    present: dict[str, PresentHolder] = {}
    for holder_id, payload in session.execute(
            select(BallotRow.holder_id, BallotRow.payload).where(BallotRow.meeting_id == meeting.id)
            .where(BallotRow.status == "counted")):
        holder = holders[holder_id]
        present[holder.holder_no] = PresentHolder(holder.holder_no, "evote",
                                                  typed_choices(parse_ballot(payload).choices, elections))
    for attendance in session.execute(select(Attendance).where(Attendance.meeting_id == meeting.id)).scalars():
        holder = holders[attendance.holder_id]
        if attendance.mode == "in_person" and holder.holder_no in present:
            continue  # the e-vote stands (Art. 177-2); the holder is present either way
        present[holder.holder_no] = PresentHolder(holder.holder_no, attendance.mode,  # type: ignore[arg-type]
                                                  typed_choices(json.loads(attendance.choices), elections))
    recusals: dict[str, set[str]] = defaultdict(set)
    item_keys = {r.id: r.item_key for r in rows}
    for item_id, holder_id in session.execute(
            select(Recusal.item_id, Recusal.holder_id).join(AgendaItemRow, AgendaItemRow.id == Recusal.item_id)
            .where(AgendaItemRow.meeting_id == meeting.id)):
        recusals[item_keys[item_id]].add(holders[holder_id].holder_no)
    return tally_meeting(register, agenda, list(present.values()), service.meeting_rules(meeting), recusals)


def tally_for(session: Session, actor: Actor, meeting_id: int) -> dict[str, object]:
    """The running (or frozen) tally of a meeting the caller may see, as JSON."""
    meeting = visible_meeting(session, actor, meeting_id, roles=READ_ROLES)
    return {"meeting": meeting.public_id, "status": meeting.status, **meeting_tally(session, meeting).as_dict()}
