"""The investor's ballots, receipts, and after the meeting the proof that a ballot counted.

Only the caller's own register lines are visible: another holder's ballot answers exactly
like one that does not exist (404 ``unknown_ballot``). A ballot's receipt is the one sealed
when it was received through the app (kept with the submission); the proof is the voting
service's confirmation (status, RFC 9162 inclusion proof) with the sealed tree head it
refers to and the log entry, so the app recomputes the leaf from its own ballot.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from core.errors import NotFound
from mobile_api import holdings
from mobile_api.auth import MobileCaller
from mobile_api.models import MobileSubmission
from voting import ballot_log, ballots
from voting.log_records import LOG_ENTRY_TYPE, log_time
from voting.models import BallotRow, Holder, Meeting, TreeHead


@dataclass(frozen=True)
class BallotView:
    """One of the caller's ballots as received, with its receipt when sent through the app."""

    row: BallotRow
    meeting: Meeting
    holder_no: str
    receipt: dict[str, Any] | None


def _receipts(reader: Session, caller: MobileCaller, rows: list[BallotRow]) -> dict[tuple[int, str], dict[str, Any]]:
    if not rows:
        return {}
    found = reader.execute(
        select(MobileSubmission.meeting_id, MobileSubmission.payload_sha256, MobileSubmission.receipt)
        .where(MobileSubmission.investor_id == caller.investor_id).where(MobileSubmission.kind == "ballot")
        .where(MobileSubmission.receipt.is_not(None))  # type: ignore[union-attr]
        .where(MobileSubmission.payload_sha256.in_([r.ballot_sha256 for r in rows])))  # type: ignore[attr-defined]
    return {(meeting_id, sha): json.loads(receipt) for meeting_id, sha, receipt in found}


def my_ballots(reader: Session, caller: MobileCaller, *, meeting_public_id: str | None, offset: int,
               limit: int) -> tuple[list[BallotView], int | None]:
    """A page of the caller's ballots (newest first) and the offset of the next page."""
    statement = (select(BallotRow, Meeting, Holder.holder_no).join(Holder, Holder.id == BallotRow.holder_id)
                 .join(Meeting, Meeting.id == BallotRow.meeting_id).where(Holder.id_hmac == caller.id_hmac))
    if meeting_public_id is not None:
        holdings.meeting_view(reader, caller, meeting_public_id, statuses=False)  # 404 if not the caller's
        statement = statement.where(Meeting.public_id == meeting_public_id)
    rows = reader.execute(statement.order_by(BallotRow.received_at.desc(), BallotRow.id.desc())  # type: ignore[attr-defined]
                          .offset(offset).limit(limit + 1)).all()
    receipts = _receipts(reader, caller, [r[0] for r in rows[:limit]])
    views = [BallotView(row, meeting, holder_no, receipts.get((meeting.id, row.ballot_sha256)))
             for row, meeting, holder_no in rows[:limit]]
    return views, offset + limit if len(rows) > limit else None


def my_ballot(reader: Session, caller: MobileCaller, meeting_public_id: str, ballot_sha256: str) -> BallotView:
    """One of the caller's ballots; 404 ``unknown_ballot`` for anyone else's."""
    found = reader.execute(
        select(BallotRow, Meeting, Holder.holder_no).join(Holder, Holder.id == BallotRow.holder_id)
        .join(Meeting, Meeting.id == BallotRow.meeting_id).where(Holder.id_hmac == caller.id_hmac)
        .where(Meeting.public_id == meeting_public_id).where(BallotRow.ballot_sha256 == ballot_sha256)).first()
    if found is None:
        raise NotFound("no such ballot", code="unknown_ballot")
    row, meeting, holder_no = found
    return BallotView(row, meeting, holder_no, _receipts(reader, caller, [row]).get((meeting.id, row.ballot_sha256)))


def my_submissions(reader: Session, caller: MobileCaller, *, offset: int,
                   limit: int) -> tuple[list[tuple[MobileSubmission, Meeting]], int | None]:
    """A page of the caller's accepted submissions (ballots and revocations, with their
    sealed receipts), newest first, and the offset of the next page."""
    rows = reader.execute(
        select(MobileSubmission, Meeting).join(Meeting, Meeting.id == MobileSubmission.meeting_id)
        .where(MobileSubmission.investor_id == caller.investor_id)
        .where(MobileSubmission.receipt.is_not(None))  # type: ignore[union-attr]
        .order_by(MobileSubmission.used_at.desc(), MobileSubmission.id)  # type: ignore[union-attr]
        .offset(offset).limit(limit + 1)).all()
    return [(s, m) for s, m in rows[:limit]], offset + limit if len(rows) > limit else None


@dataclass(frozen=True)
class CountedProof:
    """That a ballot was recorded (and whether it counted), provable from the log."""

    status: str
    leaf_index: int
    tree_size: int
    inclusion_proof: list[bytes]
    tree_head: TreeHead
    entry: dict[str, str]
    voided_items: dict[str, str]


def counted_proof(reader: Session, caller: MobileCaller, meeting_public_id: str, ballot_sha256: str) -> CountedProof:
    """After the tally is frozen: the ballot's final status, its RFC 9162 inclusion proof in
    the newest sealed tree head, and the log entry its leaf hashes (409 ``tally_not_final``
    before; 404 ``unknown_ballot`` for a ballot not the caller's)."""
    view = my_ballot(reader, caller, meeting_public_id, ballot_sha256)
    confirmation = ballots.confirm_ballot(reader, meeting_public_id=meeting_public_id, ballot_sha256=ballot_sha256)
    head = reader.execute(select(TreeHead).where(TreeHead.meeting_id == view.meeting.id)
                          .where(TreeHead.tree_size == confirmation.tree_size)).scalar_one()
    if head.root_hash != confirmation.root_hash:  # the tree heads are append-only: this is damage
        raise ballot_log.IncompleteLog(f"meeting {meeting_public_id}: the tree head of size {head.tree_size} moved")
    entry = {"type": LOG_ENTRY_TYPE, "meeting": view.meeting.public_id, "holder": view.holder_no,
             "ballot_sha256": view.row.ballot_sha256, "cms_sha256": hashlib.sha256(view.row.cms).hexdigest(),
             "received_at": log_time(view.row.received_at)}
    return CountedProof(confirmation.status, confirmation.leaf_index, confirmation.tree_size,
                        confirmation.inclusion_proof, head, entry, confirmation.voided_items)
