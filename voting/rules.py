"""Which electronic ballots count (Art. 177-2, proxies): a pure function over recorded events.

The online service and the offline auditor apply the same function to the same events
(ballots, revocations, proxy registrations, the closing instant) and must get the same result.

Rules, per holder:

* Only arrivals strictly before ``closes_at`` have effect. A ballot at/after it is "late"
  (never accepted online; the auditor flags it); a revocation at/after it is refused as
  "late_revocation" and leaves the e-vote in force.
* Ballots are taken in order of ``received_at``; equal instants are ordered by ``ballot_id``
  ascending, so the order is total and reproducible.
* The first ballot received counts. A later ballot is "superseded" (recorded, not counted)
  unless every earlier in-time ballot of the holder was validly revoked *strictly before* the
  later one arrived; then the first ballot received after those revocations counts.
* A proxy registered for the meeting overrides the counted e-vote ("overridden_by_proxy").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal

BallotStatus = Literal["counted", "superseded", "revoked", "overridden_by_proxy", "late"]
HolderState = Literal["not_voted", "voted", "revoked", "overridden"]
RefusalReason = Literal[
    "late_revocation", "unknown_ballot", "holder_mismatch", "revocation_precedes_ballot", "already_revoked"
]


@dataclass(frozen=True)
class ReceivedBallot:
    """A ballot as recorded on arrival."""

    ballot_id: str
    holder_no: str
    received_at: datetime


@dataclass(frozen=True)
class Revocation:
    """A holder's revocation of one of their ballots, as recorded on arrival."""

    holder_no: str
    ballot_id: str
    received_at: datetime


@dataclass(frozen=True)
class ProxyRegistration:
    """A proxy registered for the meeting on behalf of a holder.

    It overrides the holder's e-vote whenever it was registered (Art. 177-2: the vote of the
    proxy attending prevails); ``registered_at`` is kept for the audit trail.
    """

    holder_no: str
    registered_at: datetime


@dataclass(frozen=True)
class RefusedRevocation:
    """A revocation that had no effect, and why."""

    revocation: Revocation
    reason: RefusalReason


@dataclass(frozen=True)
class EvotingOutcome:
    """The result of the rules.

    ``counted_ballot`` and ``holder_state`` cover every holder with a ballot, a revocation or
    a proxy; ``counted_ballot`` is None when no e-ballot of the holder counts.
    """

    ballot_status: Mapping[str, BallotStatus]
    counted_ballot: Mapping[str, str | None]
    holder_state: Mapping[str, HolderState]
    refused_revocations: tuple[RefusedRevocation, ...]

    def counted_ballot_ids(self) -> frozenset[str]:
        """The ids of the ballots the tally uses."""
        return frozenset(b for b in self.counted_ballot.values() if b is not None)


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


def _arrival_order(ballot: ReceivedBallot) -> tuple[datetime, str]:
    return ballot.received_at, ballot.ballot_id


def _valid_revocations(
    ballots: Mapping[str, ReceivedBallot],
    revocations: Iterable[Revocation],
    closes_at: datetime,
) -> tuple[dict[str, datetime], list[RefusedRevocation]]:
    """The effective revocation instant of each revoked ballot, and the refused revocations."""
    revoked_at: dict[str, datetime] = {}
    refused: list[RefusedRevocation] = []
    for revocation in sorted(revocations, key=lambda r: (r.received_at, r.ballot_id, r.holder_no)):
        _require_aware(revocation.received_at, "revocation received_at")
        ballot = ballots.get(revocation.ballot_id)
        reason: RefusalReason | None = None
        if ballot is None:
            reason = "unknown_ballot"
        elif ballot.holder_no != revocation.holder_no:
            reason = "holder_mismatch"
        elif revocation.received_at >= closes_at:
            reason = "late_revocation"
        elif revocation.received_at < ballot.received_at:
            reason = "revocation_precedes_ballot"
        elif revocation.ballot_id in revoked_at:
            reason = "already_revoked"
        if reason is None:
            revoked_at[revocation.ballot_id] = revocation.received_at
        else:
            refused.append(RefusedRevocation(revocation, reason))
    return revoked_at, refused


def apply_evoting_rules(
    ballots: Sequence[ReceivedBallot],
    revocations: Sequence[Revocation],
    proxies: Sequence[ProxyRegistration],
    closes_at: datetime,
) -> EvotingOutcome:
    """Decide the status of every ballot, the counted ballot and the app state of every holder.

    Raises ``ValueError`` on naive datetimes or a ballot id recorded twice.
    """
    _require_aware(closes_at, "closes_at")
    by_id: dict[str, ReceivedBallot] = {}
    for ballot in ballots:
        _require_aware(ballot.received_at, "ballot received_at")
        if ballot.ballot_id in by_id:
            raise ValueError(f"ballot id {ballot.ballot_id!r} recorded twice")
        by_id[ballot.ballot_id] = ballot
    revoked_at, refused = _valid_revocations(by_id, revocations, closes_at)
    proxy_holders = {p.holder_no for p in proxies}

    per_holder: dict[str, list[ReceivedBallot]] = defaultdict(list)
    for ballot in ballots:
        per_holder[ballot.holder_no].append(ballot)
    holders = set(per_holder) | proxy_holders | {r.holder_no for r in revocations}

    status: dict[str, BallotStatus] = {}
    counted: dict[str, str | None] = {}
    state: dict[str, HolderState] = {}
    for holder_no in sorted(holders):
        standing = None
        any_revoked = False
        # Whether an earlier in-time ballot stands unrevoked, and the latest instant at which
        # an earlier ballot was revoked: a later ballot counts only if it arrived after that.
        blocked = False
        last_revoked_at: datetime | None = None
        for ballot in sorted(per_holder.get(holder_no, ()), key=_arrival_order):
            if ballot.received_at >= closes_at:
                status[ballot.ballot_id] = "late"
                continue
            revocation_time = revoked_at.get(ballot.ballot_id)
            accepted_on_arrival = not blocked and (last_revoked_at is None or last_revoked_at < ballot.received_at)
            if revocation_time is not None:
                status[ballot.ballot_id] = "revoked"
                any_revoked = True
                last_revoked_at = max(last_revoked_at or revocation_time, revocation_time)
            else:
                blocked = True
                if accepted_on_arrival:
                    standing = ballot.ballot_id
                    status[ballot.ballot_id] = "counted"
                else:
                    status[ballot.ballot_id] = "superseded"
        if standing is not None and holder_no in proxy_holders:
            status[standing] = "overridden_by_proxy"
            counted[holder_no] = None
            state[holder_no] = "overridden"
        else:
            counted[holder_no] = standing
            state[holder_no] = "voted" if standing else ("revoked" if any_revoked else "not_voted")
    return EvotingOutcome(
        ballot_status=MappingProxyType(status),
        counted_ballot=MappingProxyType(counted),
        holder_state=MappingProxyType(state),
        refused_revocations=tuple(refused),
    )


def holder_voting_state(
    holder_no: str,
    ballots: Sequence[ReceivedBallot],
    revocations: Sequence[Revocation],
    proxies: Sequence[ProxyRegistration],
    closes_at: datetime,
) -> HolderState:
    """What the app shows one holder: "not_voted", "voted", "revoked" or "overridden".

    The events may be the whole meeting's or just this holder's; only theirs matter.
    """
    outcome = apply_evoting_rules(
        [b for b in ballots if b.holder_no == holder_no],
        [r for r in revocations if r.holder_no == holder_no],
        [p for p in proxies if p.holder_no == holder_no],
        closes_at,
    )
    return outcome.holder_state.get(holder_no, "not_voted")
