"""Revocations, proxies, in-room votes and the stored tally (Art. 177-1, 177-2)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from cloudseal.platform import Platform
from core.auth import Actor, Role
from core.db import session_scope, utcnow
from core.errors import AppError
from ra import credentials as ra_credentials
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_ballots import HOST, Voter, make_meeting, sign_payload, signed, submit, voter
from voting import attendance, ballots, results
from voting import service as voting_service
from voting.ballot import new_nonce
from voting.models import BallotRow, Meeting


def meeting_row(platform: Platform, public_id: str) -> Meeting:
    with session_scope(platform.engine) as session:
        return session.execute(select(Meeting).where(Meeting.public_id == public_id)).scalar_one()


def revocation(platform: Platform, who: Voter, meeting: str) -> tuple[bytes, bytes]:
    payload = attendance.build_revocation(meeting, who.holder_no, new_nonce(), utcnow())
    return payload, sign_payload(platform, who, payload)


def revoke(platform: Platform, payload: bytes, cms: bytes, **kw: object) -> int:
    return revoke_sealed(platform, payload, cms, **kw).revoked_ballots


def revoke_sealed(platform: Platform, payload: bytes, cms: bytes, **kw: object) -> attendance.AcceptedRevocation:
    with session_scope(platform.engine) as session:
        return attendance.revoke_evote(session, platform.pki, payload=payload, cms=cms, **kw)  # type: ignore[arg-type]


def code_of(call) -> str:
    try:
        call()
    except AppError as exc:
        return exc.code
    return "ok"


def statuses(platform: Platform) -> list[str]:
    with session_scope(platform.engine) as session:
        return list(session.execute(select(BallotRow.status).order_by(BallotRow.id)).scalars())


def test_revoked_before_the_deadline_lets_the_next_ballot_count(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submit(platform, *signed(platform, alice, meeting, {"1": "CFOR"}))
    submit(platform, *signed(platform, alice, meeting, {"1": "CAGS"}))
    assert revoke(platform, *revocation(platform, alice, meeting)) == 2
    third = submit(platform, *signed(platform, alice, meeting, {"1": "ABST"}))
    assert third.status == "counted" and statuses(platform) == ["revoked", "revoked", "counted"]


def test_a_late_revocation_is_refused_and_the_evote_stays(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submit(platform, *signed(platform, alice, meeting))
    late = meeting_row(platform, meeting).closes_at
    assert code_of(lambda: revoke(platform, *revocation(platform, alice, meeting), received_at=late)) \
        == "revocation_too_late"
    assert statuses(platform) == ["counted"]


def test_a_revocation_signed_by_another_investor_is_refused(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 10)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    mallory = voter(platform, "H002", NATIONAL_IDS[1])
    submit(platform, *signed(platform, alice, meeting))
    forged = revocation(platform, Voter("H001", mallory.credential_id, mallory.phone), meeting)
    assert code_of(lambda: revoke(platform, *forged)) == "not_the_holder"
    assert code_of(lambda: revoke(platform, *revocation(platform, mallory, meeting))) == "nothing_to_revoke"
    assert statuses(platform) == ["counted"]


def test_a_proxy_overrides_the_evote(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submit(platform, *signed(platform, alice, meeting))
    meeting_id = meeting_row(platform, meeting).id or 0
    with session_scope(platform.engine) as session:
        attendance.register_proxy(session, actor=HOST, meeting_id=meeting_id, holder_no="H001", proxy_name="Bob")
    assert statuses(platform) == ["overridden_by_proxy"]
    later = submit(platform, *signed(platform, alice, meeting, {"1": "CAGS"}))
    assert later.status == "overridden_by_proxy"


def test_an_evoter_in_the_room_keeps_the_evote_and_in_room_votes_are_refused(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 500)],
                           held_yesterday=True)
    row = meeting_row(platform, meeting)
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submit(platform, *signed(platform, alice, meeting, {"1": "CFOR", "2": "CFOR"}),
           received_at=row.closes_at - dt.timedelta(hours=1))
    with session_scope(platform.engine) as session:
        refused = code_of(lambda: attendance.record_attendance(
            session, actor=HOST, meeting_id=row.id or 0, holder_no="H001", mode="in_person", choices={"1": "CAGS"}))
        attendance.record_attendance(session, actor=HOST, meeting_id=row.id or 0, holder_no="H002",
                                     mode="in_person", choices={"1": "CAGS", "2": "NOAC"})
    assert refused == "evote_stands"
    with session_scope(platform.engine) as session:
        tally = results.tally_for(session, HOST, row.id or 0)
    first, special = tally["items"][0], tally["items"][1]
    assert (tally["outstanding_shares"], tally["present_shares"]) == ("1500", "1500")  # shares are strings
    assert (first["for_votes"], first["against_votes"]) == ("1000", "500")
    assert (special["for_votes"], special["not_voted"], special["adopted"]) == ("1000", "500", True)


def test_a_host_of_another_issuer_gets_404_for_the_tally(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    meeting_id = meeting_row(platform, meeting).id or 0
    with session_scope(platform.engine) as session, pytest.raises(AppError) as refused:
        results.tally_for(session, Actor("eve", Role.ISSUER_HOST, "2317"), meeting_id)
    assert refused.value.code == "unknown_meeting"


def test_a_recused_holder_counts_for_quorum_but_not_in_that_items_votes(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 500)])
    row = meeting_row(platform, meeting)
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    bob = voter(platform, "H002", NATIONAL_IDS[1])
    submit(platform, *signed(platform, alice, meeting, {"1": "CFOR", "2": "CFOR"}))
    submit(platform, *signed(platform, bob, meeting, {"1": "CAGS", "2": "CAGS"}))
    with session_scope(platform.engine) as session:
        attendance.record_recusal(session, actor=HOST, meeting_id=row.id or 0, item_key="2", holder_no="H001",
                                  reason="party to the transaction")
        duplicate = code_of(lambda: attendance.record_recusal(session, actor=HOST, meeting_id=row.id or 0,
                                                              item_key="2", holder_no="H001", reason="again"))
    assert duplicate == "recusal_exists"
    with session_scope(platform.engine) as session:
        tally = results.tally_for(session, HOST, row.id or 0)
    acknowledgement, special = tally["items"][0], tally["items"][1]
    assert tally["present_shares"] == "1500" and acknowledgement["for_votes"] == "1000"
    assert (special["recused_shares"], special["denominator"], special["for_votes"], special["against_votes"]) \
        == ("1000", "500", "0", "500")


def test_after_the_deadline_a_holder_learns_the_ballot_was_recorded_and_why_it_does_not_count(
        platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)], held_yesterday=True)
    row = meeting_row(platform, meeting)
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    during = row.closes_at - dt.timedelta(hours=2)
    first = submit(platform, *signed(platform, alice, meeting, {"1": "CFOR"}), received_at=during)
    second = submit(platform, *signed(platform, alice, meeting, {"1": "CAGS"}),
                    received_at=during + dt.timedelta(minutes=1))
    with session_scope(platform.engine) as session:
        assert code_of(lambda: ballots.confirm_ballot(session, meeting_public_id=meeting, ballot_sha256=str(
            first.statement["ballot_sha256"]))) == "tally_not_final"
        voting_service.freeze_meeting(session, platform.pki, actor=HOST, meeting_id=row.id or 0)
    with session_scope(platform.engine) as session:
        counted = ballots.confirm_ballot(session, meeting_public_id=meeting,
                                         ballot_sha256=str(first.statement["ballot_sha256"]))
        superseded = ballots.confirm_ballot(session, meeting_public_id=meeting,
                                            ballot_sha256=str(second.statement["ballot_sha256"]))
    assert (counted.status, superseded.status) == ("counted", "superseded")
    assert superseded.tree_size == 2 and len(superseded.inclusion_proof) == 1
    auditor = Actor("audrey", Role.AUDITOR)
    live_id = meeting_row(platform, make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])).id or 0
    with session_scope(platform.engine) as session:  # auditors read frozen meetings only
        assert results.tally_for(session, auditor, row.id or 0)["status"] == "frozen"
        assert code_of(lambda: results.tally_for(session, auditor, live_id)) == "unknown_meeting"


def test_a_ballot_one_second_after_the_deadline_is_refused(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)], held_yesterday=True)
    row = meeting_row(platform, meeting)
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    last_second = row.closes_at - dt.timedelta(seconds=1)
    assert code_of(lambda: submit(platform, *signed(platform, alice, meeting),
                                  received_at=row.closes_at + dt.timedelta(seconds=1))) == "voting_closed"
    assert code_of(lambda: submit(platform, *signed(platform, alice, meeting), received_at=row.closes_at)) \
        == "voting_closed"
    assert submit(platform, *signed(platform, alice, meeting), received_at=last_second).status == "counted"


def test_a_ballot_from_a_revoked_certificate_is_refused_at_receipt(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, meeting)
    with session_scope(platform.engine) as session:
        ra_credentials.revoke_credential(session, platform.pki, actor=Actor("olivia", Role.RA_OFFICER, "B001"),
                                         credential=ra_credentials.get_credential(session, alice.credential_id),
                                         reason="keyCompromise")
    assert code_of(lambda: submit(platform, payload, cms)) == "certificate_revoked"
    assert statuses(platform) == []


def test_nothing_changes_after_the_tally_is_frozen(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 500)],
                           held_yesterday=True)
    row = meeting_row(platform, meeting)
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    late_ballot = signed(platform, alice, meeting)
    submit(platform, *signed(platform, alice, meeting), received_at=row.closes_at - dt.timedelta(hours=1))
    with session_scope(platform.engine) as session:
        before = results.tally_for(session, HOST, row.id or 0)
        voting_service.freeze_meeting(session, platform.pki, actor=HOST, meeting_id=row.id or 0)
    with session_scope(platform.engine) as session:
        refusals = {
            code_of(lambda: attendance.record_attendance(session, actor=HOST, meeting_id=row.id or 0, holder_no="H002",
                                                         mode="in_person", choices={"1": "CFOR"})),
            code_of(lambda: attendance.register_proxy(session, actor=HOST, meeting_id=row.id or 0, holder_no="H002",
                                                      proxy_name="x")),
            code_of(lambda: attendance.record_recusal(session, actor=HOST, meeting_id=row.id or 0, item_key="1",
                                                      holder_no="H002", reason="x")),
        }
    assert refusals == {"meeting_not_published", "meeting_frozen"}
    assert code_of(lambda: submit(platform, *late_ballot, received_at=row.closes_at - dt.timedelta(minutes=1))) \
        == "voting_not_open"
    with session_scope(platform.engine) as session:
        after = results.tally_for(session, HOST, row.id or 0)
    assert after["status"] == "frozen" and {k: v for k, v in after.items() if k != "status"} \
        == {k: v for k, v in before.items() if k != "status"}


def test_a_replayed_revocation_is_refused_and_the_later_ballot_keeps_counting(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submit(platform, *signed(platform, alice, meeting, {"1": "CFOR"}))
    withdrawal = revocation(platform, alice, meeting)
    assert revoke(platform, *withdrawal) == 1
    submit(platform, *signed(platform, alice, meeting, {"1": "CAGS"}))
    assert code_of(lambda: revoke(platform, *withdrawal)) == "duplicate_revocation"
    assert statuses(platform) == ["revoked", "counted"]


def test_a_proxy_entered_with_its_votes_overrides_the_evote(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)], held_yesterday=True)
    row = meeting_row(platform, meeting)
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submit(platform, *signed(platform, alice, meeting), received_at=row.closes_at - dt.timedelta(hours=1))
    with session_scope(platform.engine) as session:
        attendance.record_attendance(session, actor=HOST, meeting_id=row.id or 0, holder_no="H001", mode="proxy",
                                     choices={"1": "CAGS"})
    assert statuses(platform) == ["overridden_by_proxy"]


def test_hostile_revocation_payloads_get_4xx(platform: Platform) -> None:
    for payload in (b"[" * 30000 + b"]" * 30000, b'{"meeting":"\\u0000"}', b"\xff"):
        assert code_of(lambda: revoke(platform, payload, b"\x30\x00")) == "malformed_revocation"
