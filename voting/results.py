"""The share-weighted tally of a meeting from what is stored: register, counted ballots,
host-entered attendance and recusals, decided by the pure functions of :mod:`voting.tally`.

Two ways, one result:

* :func:`live_tally` while ballots arrive: the e-voters' running totals (one row, see
  :mod:`voting.running`) plus the room's entries, so a host can poll it cheaply;
* :func:`recount` from every stored ballot, which freezing records as the figure of record
  and the offline auditor repeats from the signed ballots.

Share figures leave the API as decimal strings (like the register's), counts of holders,
seats and ballots as numbers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy import select
from sqlmodel import Session

from core.auth import Actor
from voting import running, service
from voting.access import READ_ROLES, visible_meeting
from voting.agenda import AgendaItem, Choice
from voting.ballot import parse_ballot, typed_choices
from voting.models import AgendaItemRow, Attendance, BallotRow, Holder, Meeting, Recusal, RunningTally
from voting.running import hour_key
from voting.tally import (
    ATTENDANCE_MODES,
    PresentHolder,
    TallyCounts,
    TallyInputError,
    TallyResult,
    decide,
    votable_of,
)

# Figures in shares (or votes weighted by shares), sent as strings: they may exceed 2**53.
SHARE_FIELDS = frozenset({"outstanding_shares", "present_shares", "shares", "recused_shares", "denominator",
                          "for_votes", "against_votes", "abstain_votes", "not_voted", "votes_available",
                          "votes_cast", "votes", "shares_voted"})


# Rows per fetch when a recount streams the register and the ballots.
_BATCH = 5000
# What counting a holder needs, and the meeting whose register the holder is on.
_HOLDER_FIGURES = (Holder.holder_no, Holder.shares, Holder.non_voting_shares, Holder.nominee,
                   Holder.meeting_id.label("register_of"))  # type: ignore[attr-defined]


class _HolderFigures(Protocol):
    holder_no: str
    shares: int
    non_voting_shares: int
    nominee: bool
    register_of: int


def recount(session: Session, meeting: Meeting) -> TallyResult:
    """The tally counted afresh from every stored ballot and room entry (e-voters, then the
    room; a proxy's entry replaces the e-vote, an in-person entry leaves it standing).

    The register and the ballots are read in batches and counted as they come: a meeting of
    millions of holders needs memory for its room entries and recusals only. The figures and
    the refusals (``TallyInputError``; ``BallotError`` for a stored ballot that does not
    parse) are those of :func:`voting.tally.tally_meeting` over the same holders; when the
    data holds several faults, the one named may differ.
    """
    meeting_id = meeting.id or 0
    agenda = service.agenda_of(service.agenda_rows(session, meeting_id))
    items = {item.item_id: item for item in agenda}
    elections = {item.item_id for item in agenda if item.is_election}
    recused: dict[int, list[str]] = defaultdict(list)
    for row in session.execute(
            select(AgendaItemRow.item_key, Recusal.holder_id, *_HOLDER_FIGURES)
            .join(AgendaItemRow, AgendaItemRow.id == Recusal.item_id).join(Holder, Holder.id == Recusal.holder_id)
            .where(AgendaItemRow.meeting_id == meeting_id)):
        _check_registered(row, meeting_id)
        recused[row.holder_id].append(row.item_key)
    room = {row.holder_id: row for row in session.execute(
        select(Attendance.holder_id, Attendance.mode, Attendance.choices, *_HOLDER_FIGURES)
        .join(Holder, Holder.id == Attendance.holder_id).where(Attendance.meeting_id == meeting_id))}
    counts = TallyCounts()
    evoted_in_room: set[int] = set()
    with session.execute(
            select(BallotRow.holder_id, BallotRow.payload, *_HOLDER_FIGURES)
            .join(Holder, Holder.id == BallotRow.holder_id)
            .where(BallotRow.meeting_id == meeting_id).where(BallotRow.status == "counted")
            .execution_options(yield_per=_BATCH)) as ballots:  # closed (a cursor on the server) if counting fails
        for row in ballots:
            entry = room.get(row.holder_id)
            if entry is not None:
                if entry.mode != "in_person":
                    continue  # the proxy's entry replaces the e-vote
                evoted_in_room.add(row.holder_id)
            voter = PresentHolder(row.holder_no, "evote", stored_choices(row.payload, elections))
            _count(counts, items, voter, row, recused.get(row.holder_id, ()), meeting_id)
    for holder_id, entry in room.items():
        if entry.mode == "in_person" and holder_id in evoted_in_room:
            continue  # the e-vote stands (Art. 177-2); the holder is present either way
        if entry.mode not in ATTENDANCE_MODES:
            raise TallyInputError(f"unknown attendance mode {entry.mode!r}")
        voter = PresentHolder(entry.holder_no, entry.mode, typed_choices(json.loads(entry.choices), elections))
        _count(counts, items, voter, entry, recused.get(holder_id, ()), meeting_id)
    return decide(agenda, counts, _outstanding(session, meeting_id), service.meeting_rules(meeting))


def _count(counts: TallyCounts, items: Mapping[str, AgendaItem], voter: PresentHolder, holder: _HolderFigures,
           recused: Sequence[str], meeting_id: int) -> None:
    """Count one present holder in, after the checks ``tally_meeting`` makes of one holder."""
    _check_registered(holder, meeting_id)
    if not voter.choices.keys() <= items.keys():
        unknown = sorted(set(voter.choices) - set(items))
        raise TallyInputError(f"holder {voter.holder_no!r} chose on unknown items {unknown}")
    counts.add(items, voter, votable_of(holder.holder_no, holder.shares, holder.non_voting_shares),
               nominee=holder.nominee, recused=recused)


def _check_registered(holder: _HolderFigures, meeting_id: int) -> None:
    # The rows name holders by id alone: one of another meeting's register is not on this one.
    if holder.register_of != meeting_id:
        raise TallyInputError(f"holder {holder.holder_no!r} is not on the register")


def _outstanding(session: Session, meeting_id: int) -> int:
    """Votable shares over the whole register (Art. 179 shares excluded)."""
    with session.execute(
            select(Holder.holder_no, Holder.shares, Holder.non_voting_shares).where(Holder.meeting_id == meeting_id)
            .execution_options(yield_per=_BATCH)) as register:
        return sum(votable_of(row.holder_no, row.shares, row.non_voting_shares) for row in register)


def stored_choices(payload: bytes, elections: set[str]) -> dict[str, Choice]:
    """The typed choices of a stored ballot; ``BallotError`` if it no longer parses."""
    return typed_choices(parse_ballot(payload).choices, elections)


def live_tally(session: Session, meeting: Meeting) -> tuple[TallyResult, dict[str, list[int]]]:
    """The tally as of now and the e-votes' turnout by Taipei hour, read from the running
    totals and the room's entries; a meeting without running totals is recounted."""
    state = running.load(session, meeting.id or 0)
    if state is None:
        result = recount(session, meeting)
        return result, _turnout_from_ballots(session, meeting)
    outstanding, counts, turnout, _ = state
    agenda = service.agenda_of(service.agenda_rows(session, meeting.id or 0))
    items = {item.item_id: item for item in agenda}
    elections = {item.item_id for item in agenda if item.is_election}
    recused: dict[int, list[str]] = defaultdict(list)
    for item_key, holder_id in _recusals(session, meeting):
        recused[holder_id].append(item_key)
    evoters = _evoters_among(session, meeting, set(recused) | _attendee_ids(session, meeting), elections)
    # A recused e-voter was counted on every item: count them again without the recused ones.
    for holder_id, items_out in recused.items():
        if holder_id in evoters:
            voter, weight, nominee = evoters[holder_id]
            counts.add(items, voter, weight, nominee=nominee, sign=-1)
            counts.add(items, voter, weight, nominee=nominee, recused=items_out)
    room = TallyCounts()
    for attendance, holder in session.execute(
            select(Attendance, Holder).join(Holder, Holder.id == Attendance.holder_id)
            .where(Attendance.meeting_id == meeting.id)):
        if holder.id in evoters:
            continue  # in person with the e-vote standing (a proxy's holder has no counted e-vote)
        voter = PresentHolder(holder.holder_no, attendance.mode,  # type: ignore[arg-type]
                              typed_choices(json.loads(attendance.choices), elections))
        room.add(items, voter, holder.shares - holder.non_voting_shares, nominee=holder.nominee,
                 recused=recused.get(holder.id or 0, ()))
    counts.merge(room)
    return decide(agenda, counts, outstanding, service.meeting_rules(meeting)), turnout


def freeze_tally(session: Session, meeting: Meeting) -> TallyResult:
    """Recount the meeting and keep the result as its frozen tally (called when freezing)."""
    result = recount(session, meeting)
    frozen = json.dumps(result.as_dict(), sort_keys=True)
    row = session.get(RunningTally, meeting.id)
    if row is None:
        running.start(session, meeting.id or 0)
        row = session.get(RunningTally, meeting.id)
    assert row is not None
    row.frozen_tally = frozen
    session.add(row)
    return result


def tally_for(session: Session, actor: Actor, meeting_id: int) -> dict[str, object]:
    """The running (or frozen) tally of a meeting the caller may see, as JSON, with turnout."""
    meeting = visible_meeting(session, actor, meeting_id, roles=READ_ROLES)
    frozen = running.load(session, meeting.id or 0)
    if meeting.status == "frozen" and frozen is not None and frozen[3] is not None:
        figures: dict[str, object] = json.loads(frozen[3])
        turnout = frozen[2]
    else:
        result, turnout = live_tally(session, meeting)
        figures = result.as_dict()
    outstanding = int(figures["outstanding_shares"])  # type: ignore[call-overload]
    body = {"meeting": meeting.public_id, "status": meeting.status, **figures,
            "turnout": turnout_json(turnout, outstanding)}
    return shares_as_strings(body)  # type: ignore[return-value]


def turnout_json(turnout: Mapping[str, list[int]], outstanding: int) -> dict[str, object]:
    """Counted e-votes against outstanding shares, in all and by Taipei hour (cumulative)."""
    by_hour, holders, shares = [], 0, 0
    for hour in sorted(turnout):
        hour_holders, hour_shares = turnout[hour]
        if not hour_holders and not hour_shares:
            continue
        holders, shares = holders + hour_holders, shares + hour_shares
        by_hour.append({"hour": hour, "holders": hour_holders, "shares": hour_shares,
                        "holders_voted": holders, "shares_voted": shares})
    return {"holders_voted": holders, "shares_voted": shares, "outstanding_shares": outstanding,
            "by_hour": by_hour}


def shares_as_strings(value: object, key: str | None = None) -> object:
    """``value`` with every integer under a share field (see ``SHARE_FIELDS``) as a string."""
    if isinstance(value, dict):
        return {k: shares_as_strings(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shares_as_strings(v, key) for v in value]
    if key in SHARE_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _recusals(session: Session, meeting: Meeting) -> list[tuple[str, int]]:
    """(item key, holder id) of every recusal entered for the meeting."""
    return [(row.item_key, row.holder_id) for row in session.execute(
        select(AgendaItemRow.item_key, Recusal.holder_id).join(AgendaItemRow, AgendaItemRow.id == Recusal.item_id)
        .where(AgendaItemRow.meeting_id == meeting.id))]


def _attendee_ids(session: Session, meeting: Meeting) -> set[int]:
    return set(session.execute(select(Attendance.holder_id).where(Attendance.meeting_id == meeting.id)).scalars())


def _evoters_among(session: Session, meeting: Meeting, holder_ids: set[int],
                   elections: set[str]) -> dict[int, tuple[PresentHolder, int, bool]]:
    """Of ``holder_ids``, those with a counted e-vote: their voter, votable shares, nominee flag."""
    found: dict[int, tuple[PresentHolder, int, bool]] = {}
    ids = sorted(holder_ids)
    for start in range(0, len(ids), 500):
        for row in session.execute(
                select(BallotRow.holder_id, BallotRow.payload, Holder.holder_no, Holder.shares,
                       Holder.non_voting_shares, Holder.nominee)
                .join(Holder, Holder.id == BallotRow.holder_id)
                .where(BallotRow.meeting_id == meeting.id).where(BallotRow.status == "counted")
                .where(BallotRow.holder_id.in_(ids[start:start + 500]))):  # type: ignore[attr-defined]
            voter = PresentHolder(row.holder_no, "evote", stored_choices(row.payload, elections))
            found[row.holder_id] = (voter, row.shares - row.non_voting_shares, row.nominee)
    return found


def _turnout_from_ballots(session: Session, meeting: Meeting) -> dict[str, list[int]]:
    turnout: dict[str, list[int]] = {}
    for received_at, shares, non_voting in session.execute(
            select(BallotRow.received_at, Holder.shares, Holder.non_voting_shares)
            .join(Holder, Holder.id == BallotRow.holder_id)
            .where(BallotRow.meeting_id == meeting.id).where(BallotRow.status == "counted")):
        bucket = turnout.setdefault(hour_key(received_at), [0, 0])
        bucket[0] += 1
        bucket[1] += shares - non_voting
    return turnout

