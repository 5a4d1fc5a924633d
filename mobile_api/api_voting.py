"""Meetings, voting and ballots for the app (mounted under ``/mobile/v1`` by :mod:`mobile_api.api`)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from core.db import committing_refusals, utcnow
from core.web import ReadSessionDep, request_sessions
from mobile_api import ballots, holdings, service
from mobile_api.holdings import MeetingView
from mobile_api.i18n import last_moment
from mobile_api.schemas import (
    PUBLIC_ID,
    SHA256_HEX,
    AgendaItemOut,
    BallotOut,
    BallotPage,
    BallotPrepareIn,
    BallotProofOut,
    CandidateOut,
    ChallengeOut,
    HoldingOut,
    MeetingDetailOut,
    MeetingPage,
    MeetingSummaryOut,
    PreparedOut,
    ReceiptOut,
    ResultOut,
    RevocationPrepareIn,
    SubmissionOut,
    SubmissionPage,
    SubmitIn,
    SubmittedOut,
    TreeHeadOut,
    b64,
    decode_cursor,
    encode_cursor,
    moment,
)
from mobile_api.web import CallerDep, LanguageDep, MobileRoute, push_provider
from voting.log_records import log_time

voting_router = APIRouter(route_class=MobileRoute)
PublicId = Annotated[str, Path(pattern=PUBLIC_ID)]
BallotHash = Annotated[str, Path(pattern=SHA256_HEX)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=32)]


def _summary_fields(view: MeetingView, language: str, now: dt.datetime,
                    seats: dict[str, int] | None = None) -> dict[str, object]:
    """The fields of a meeting's summary; ``seats`` (per election) fills each holding's
    cumulative votes (the detail view reads the agenda, the list does not)."""
    meeting, seats = view.meeting, seats or {}
    return {
        "public_id": meeting.public_id, "issuer_code": meeting.issuer_code, "issuer_name": view.issuer_name,
        "title": meeting.title, "meeting_date": meeting.meeting_date, "meeting_status": meeting.status,
        "opens_at": moment(meeting.opens_at, language), "closes_at": moment(meeting.closes_at, language),
        "last_moment": last_moment(meeting.closes_at, language), "voting_open": view.voting_open(now),
        "status": view.status, "votable_shares": str(view.votable_shares),
        "holdings": [HoldingOut(holder_no=h.holder_no, shares=str(h.shares), non_voting_shares=str(h.non_voting_shares),
                                votable_shares=str(holdings.votable(h)),
                                status=view.statuses.get(h.id or 0, "not_voted"),  # type: ignore[arg-type]
                                cumulative_votes={key: str(holdings.votable(h) * n) for key, n in seats.items() if n})
                     for h in view.holders],
    }


@voting_router.get("/meetings", response_model=MeetingPage, summary="Meetings I hold shares in")
def list_meetings(caller: CallerDep, session: ReadSessionDep, language: LanguageDep,
                  when: Literal["upcoming", "past", "all"] = "upcoming", limit: Limit = 20,
                  cursor: Cursor = None) -> MeetingPage:
    """Across every issuer and broker; upcoming soonest first, past latest first; with my
    status (not_voted, voted, revoked, overridden) and the deadline."""
    now = utcnow()
    views, more = holdings.list_meetings(session, caller, when=when, offset=decode_cursor(cursor), limit=limit, now=now)
    return MeetingPage(items=[MeetingSummaryOut(**_summary_fields(v, language, now)) for v in views],  # type: ignore[arg-type]
                       next_cursor=encode_cursor(more) if more is not None else None)


@voting_router.get("/meetings/{public_id}", response_model=MeetingDetailOut,
                   summary="A meeting's agenda, candidates and my votable shares")
def show_meeting(public_id: PublicId, caller: CallerDep, session: ReadSessionDep,
                 language: LanguageDep) -> MeetingDetailOut:
    """404 ``unknown_meeting`` for a meeting I hold no shares in."""
    view = holdings.meeting_view(session, caller, public_id)
    entries = holdings.agenda(session, view)
    only = view.holders[0] if len(view.holders) == 1 else None
    agenda = [AgendaItemOut(
        key=e.row.item_key, kind=e.row.kind, title=e.row.title, article=e.row.article, seats=e.row.seats,
        candidates=[CandidateOut(key=c["key"], name=c["name"]) for c in e.candidates],
        electronically_votable=e.row.kind not in ("extempore", "amendment"), recused_holders=e.recused,
        cumulative_votes_available=str(holdings.votable(only) * e.row.seats) if only and e.row.seats else None)
        for e in entries]
    seats = {e.row.item_key: e.row.seats for e in entries if e.row.seats}
    return MeetingDetailOut(**_summary_fields(view, language, utcnow(), seats), agenda=agenda)  # type: ignore[arg-type]


@voting_router.get("/meetings/{public_id}/result", response_model=ResultOut, summary="The published (frozen) result")
def meeting_result(public_id: PublicId, caller: CallerDep, session: ReadSessionDep, language: LanguageDep) -> ResultOut:
    """409 ``tally_not_final`` until the meeting's tally is frozen."""
    view, result = holdings.frozen_result(session, caller, public_id)
    assert view.meeting.frozen_at is not None
    return ResultOut(meeting=view.meeting.public_id, title=view.meeting.title,
                     frozen_at=moment(view.meeting.frozen_at, language), result=result)


def _prepared_out(prepared: service.Prepared, language: str) -> PreparedOut:
    submission, challenge = prepared.submission, prepared.challenge
    return PreparedOut(
        submission_id=submission.id, kind=submission.kind, meeting=prepared.meeting.public_id,  # type: ignore[arg-type]
        holder_no=submission.holder_no, payload=b64(submission.payload), payload_sha256=submission.payload_sha256,
        challenge=ChallengeOut(challenge_id=challenge.id, nonce=b64(challenge.nonce),
                               expires_at=moment(challenge.expires_at, language)),
        expires_at=moment(submission.expires_at, language))


@voting_router.post("/meetings/{public_id}/ballots/prepare", response_model=PreparedOut, status_code=201,
                    summary="Build my ballot: its canonical bytes, their SHA-256 and a device challenge")
def prepare_ballot(public_id: PublicId, body: BallotPrepareIn, request: Request, caller: CallerDep,
                   language: LanguageDep) -> PreparedOut:
    with request_sessions(request) as (session, reader):
        prepared = service.prepare_ballot(session, reader, caller, meeting_public_id=public_id,
                                          holder_no=body.holder_no, choices=body.choices)
    return _prepared_out(prepared, language)


@voting_router.post("/meetings/{public_id}/revocation/prepare", response_model=PreparedOut, status_code=201,
                    summary="Build the revocation of my e-vote (before the deadline) and a device challenge")
def prepare_revocation(public_id: PublicId, body: RevocationPrepareIn, request: Request, caller: CallerDep,
                       language: LanguageDep) -> PreparedOut:
    with request_sessions(request) as (session, reader):
        prepared = service.prepare_revocation(session, reader, caller, meeting_public_id=public_id,
                                              holder_no=body.holder_no)
    return _prepared_out(prepared, language)


def _receipt_out(kept: dict[str, object] | None) -> ReceiptOut | None:
    if kept is None:
        return None
    return ReceiptOut(receipt=kept["receipt"], signature=kept["signature"],  # type: ignore[arg-type]
                      seal_serial=kept["seal_serial"], status=kept["status"])  # type: ignore[arg-type]


@voting_router.post("/submissions/{submission_id}", response_model=SubmittedOut, status_code=201,
                    summary="PIN + device signature: sign in the HSM, submit, get the sealed receipt")
def submit(submission_id: PublicId, body: SubmitIn, request: Request, caller: CallerDep) -> SubmittedOut:
    """One call for the PIN entry: authorise (signing service), sign the CMS with my HSM
    key, hand it to the voting service. A prepared submission works once."""
    with request_sessions(request) as (session, reader), committing_refusals(session):
        done = service.submit(session, reader, request.app.state.pki, caller, submission_id=submission_id,
                              pin=body.pin, device_signature=body.device_signature, push=push_provider(request))
    receipt = done.receipt
    return SubmittedOut(
        submission_id=done.submission.id, kind=done.submission.kind, meeting=done.meeting.public_id,  # type: ignore[arg-type]
        holder_no=done.submission.holder_no, payload_sha256=done.submission.payload_sha256, status=receipt.status,
        cms=base64.b64encode(done.cms).decode(), revoked_ballots=done.revoked_ballots,
        receipt=ReceiptOut(**receipt.to_json()))  # type: ignore[arg-type]


def _ballot_out(view: ballots.BallotView, language: str) -> BallotOut:
    row = view.row
    return BallotOut(meeting=view.meeting.public_id, meeting_title=view.meeting.title, holder_no=view.holder_no,
                     ballot_sha256=row.ballot_sha256, received_at=moment(row.received_at, language), status=row.status,
                     leaf_index=row.leaf_index, voided_items=json.loads(row.item_status),
                     receipt=_receipt_out(view.receipt))


@voting_router.get("/ballots", response_model=BallotPage, summary="My ballots, newest first, with their receipts")
def my_ballots(caller: CallerDep, session: ReadSessionDep, language: LanguageDep,
               meeting: Annotated[str | None, Query(pattern=PUBLIC_ID)] = None, limit: Limit = 20,
               cursor: Cursor = None) -> BallotPage:
    views, more = ballots.my_ballots(session, caller, meeting_public_id=meeting, offset=decode_cursor(cursor),
                                     limit=limit)
    return BallotPage(items=[_ballot_out(v, language) for v in views],
                      next_cursor=encode_cursor(more) if more is not None else None)


@voting_router.get("/meetings/{public_id}/ballots/{ballot_sha256}", response_model=BallotOut,
                   summary="One of my ballots and its receipt")
def my_ballot(public_id: PublicId, ballot_sha256: BallotHash, caller: CallerDep, session: ReadSessionDep,
              language: LanguageDep) -> BallotOut:
    return _ballot_out(ballots.my_ballot(session, caller, public_id, ballot_sha256), language)


@voting_router.get("/meetings/{public_id}/ballots/{ballot_sha256}/proof", response_model=BallotProofOut,
                   summary="After the meeting: proof that my ballot was recorded and counted")
def ballot_proof(public_id: PublicId, ballot_sha256: BallotHash, caller: CallerDep,
                 session: ReadSessionDep) -> BallotProofOut:
    """The final status, the RFC 9162 inclusion proof in the newest sealed tree head and
    the log entry (409 ``tally_not_final`` before the tally is frozen)."""
    proof = ballots.counted_proof(session, caller, public_id, ballot_sha256)
    head = proof.tree_head
    return BallotProofOut(
        status=proof.status, counted=proof.status == "counted", leaf_index=proof.leaf_index, tree_size=proof.tree_size,
        inclusion_proof=[b64(h) for h in proof.inclusion_proof],
        tree_head=TreeHeadOut(meeting=public_id, tree_size=head.tree_size, root_hash=b64(head.root_hash),
                              issued_at=log_time(head.issued_at), signature=b64(head.signature)),
        entry=proof.entry, voided_items=proof.voided_items)


@voting_router.get("/receipts", response_model=SubmissionPage,
                   summary="My sealed receipts (ballots and revocations sent through the app), newest first")
def my_receipts(caller: CallerDep, session: ReadSessionDep, language: LanguageDep, limit: Limit = 20,
                cursor: Cursor = None) -> SubmissionPage:
    rows, more = ballots.my_submissions(session, caller, offset=decode_cursor(cursor), limit=limit)
    items = []
    for submission, meeting in rows:
        assert submission.used_at is not None and submission.receipt is not None
        items.append(SubmissionOut(
            submission_id=submission.id, kind=submission.kind, meeting=meeting.public_id,  # type: ignore[arg-type]
            meeting_title=meeting.title, holder_no=submission.holder_no, payload_sha256=submission.payload_sha256,
            submitted_at=moment(submission.used_at, language),
            receipt=_receipt_out(json.loads(submission.receipt))))  # type: ignore[arg-type]
    return SubmissionPage(items=items, next_cursor=encode_cursor(more) if more is not None else None)
