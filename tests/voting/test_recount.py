"""The recount that freezing records refuses stored data that contradicts itself, as the pure
tally does, on SQLite and PostgreSQL; it streams, and a failure part way leaves no cursor open."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable

import pytest
from sqlalchemy import select, text
from sqlmodel import Session

from cloudseal.platform import Platform
from core.db import session_scope, utcnow
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_attendance import meeting_row
from tests.voting.test_ballots import HOST, make_meeting, signed, submit, voter
from voting import attendance, results
from voting.ballot import BallotError, build_ballot, new_nonce
from voting.models import Attendance, BallotRow, Holder, Meeting
from voting.tally import TallyInputError

HOLDERS = [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 700), ("H003", NATIONAL_IDS[2], 400)]


def voted_meeting(platform: Platform) -> Meeting:
    """A meeting whose three holders all voted electronically, the first in the room too."""
    public_id = make_meeting(platform, HOLDERS, held_yesterday=True)
    meeting = meeting_row(platform, public_id)
    received = meeting.closes_at.replace(microsecond=0) - (meeting.closes_at - meeting.opens_at) / 2
    for n, (no, id_number, _) in enumerate(HOLDERS):
        payload, cms = signed(platform, voter(platform, no, id_number), public_id, {"1": "CFOR", "2": "CAGS"})
        assert submit(platform, payload, cms, received_at=received.replace(second=n)).status == "counted"
    with session_scope(platform.engine) as session:
        attendance.record_attendance(session, actor=HOST, meeting_id=meeting.id or 0, holder_no="H001",
                                     mode="in_person", choices={})
    return meeting


def recount(platform: Platform, meeting: Meeting) -> object:
    with session_scope(platform.engine) as session:
        return results.recount(session, meeting)


def holder_id(session: Session, meeting: Meeting, holder_no: str) -> int:
    return session.execute(select(Holder.id).where(Holder.meeting_id == meeting.id)
                           .where(Holder.holder_no == holder_no)).scalar_one()


def _stored_payload(payload: bytes) -> Callable[[Session, Meeting], None]:
    def change(session: Session, meeting: Meeting) -> None:
        ballot = session.execute(select(BallotRow).where(BallotRow.holder_id == holder_id(session, meeting, "H002"))
                                 .where(BallotRow.status == "counted")).scalar_one()
        ballot.payload = payload
    return change


def _room_mode(session: Session, meeting: Meeting) -> None:
    session.execute(select(Attendance).where(Attendance.meeting_id == meeting.id)).scalar_one().mode = "remote"


def _holder_shares(session: Session, meeting: Meeting) -> None:
    session.execute(text("UPDATE vote_holder SET non_voting_shares = '5000' WHERE id = :id"),
                    {"id": holder_id(session, meeting, "H003")})


def _unknown_item(session: Session, meeting: Meeting) -> None:
    payload = build_ballot(meeting.public_id, "H002", {"1": "CFOR", "9": "CFOR"}, new_nonce(), utcnow())
    _stored_payload(payload)(session, meeting)


@pytest.mark.parametrize(("change", "refusal", "message"), [
    (_stored_payload(b'{"choices": {"1": "CFOR"}, "type": "x"}'), BallotError, "not_canonical"),
    (_stored_payload(b'{"type":"x"}'), BallotError, "missing_field"),
    (_unknown_item, TallyInputError, "chose on unknown items ['9']"),
    (_room_mode, TallyInputError, "unknown attendance mode 'remote'"),
    (_holder_shares, TallyInputError, "need 0 <= non_voting_shares <= shares"),
])
def test_stored_data_that_contradicts_itself_is_refused(
        platform_on_each_database: Platform, change: Callable[[Session, Meeting], None], refusal: type[Exception],
        message: str) -> None:
    platform = platform_on_each_database
    meeting = voted_meeting(platform)
    recount(platform, meeting)
    with session_scope(platform.engine) as session:
        change(session, meeting)
    with pytest.raises(refusal, match=message.replace("[", r"\[").replace("]", r"\]")):
        recount(platform, meeting)


@pytest.mark.parametrize("table", ["vote_ballot", "vote_attendance", "vote_recusal"])
def test_a_row_naming_another_meetings_holder_is_refused(platform_on_each_database: Platform, table: str) -> None:
    """Rows name holders by id: a holder of another meeting is not on this one's register."""
    platform = platform_on_each_database
    meeting = voted_meeting(platform)
    other = meeting_row(platform, make_meeting(platform, [("Z001", NATIONAL_IDS[5], 777)], title="Other AGM"))
    with session_scope(platform.engine) as session:
        if table == "vote_recusal":
            attendance.record_recusal(session, actor=HOST, meeting_id=meeting.id or 0, item_key="1",
                                      holder_no="H001", reason="interested")
        session.execute(text(f"UPDATE {table} SET holder_id = :other WHERE holder_id = :mine"),  # noqa: S608
                        {"other": holder_id(session, other, "Z001"), "mine": holder_id(session, meeting, "H001")})
    with pytest.raises(TallyInputError, match="holder 'Z001' is not on the register"):
        recount(platform, meeting)


def test_a_failure_part_way_leaves_no_cursor_open(platform_on_each_database: Platform) -> None:
    platform = platform_on_each_database
    meeting = voted_meeting(platform)
    with session_scope(platform.engine) as session:
        _stored_payload(b"{}")(session, meeting)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with session_scope(platform.engine) as session:
            with pytest.raises(BallotError):
                results.recount(session, meeting)
            assert session.execute(select(Holder.holder_no).where(Holder.meeting_id == meeting.id)
                                   .order_by(Holder.holder_no)).scalars().all() == ["H001", "H002", "H003"]
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
