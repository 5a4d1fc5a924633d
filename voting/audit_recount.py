"""The auditor's recount: the Company Act rules over the logged ballots and revocations, the
tally from the counted ballots and the room, and the comparison with what the platform froze.

Pure: the same :func:`voting.rules.apply_evoting_rules` and :func:`voting.tally.tally_meeting`
as the platform, fed from an auditor bundle instead of the database.

The platform labels every ballot of a holder with a registered proxy ``overridden_by_proxy``
(the counted one and any superseded one: a proxy sets aside the holder's e-voting), where the
rules call the non-counted ones ``superseded``; the comparison treats both as the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voting.agenda import AgendaItem
from voting.audit_report import Disagreement
from voting.ballot import Ballot, BallotError, check_choices, parse_ballot, typed_choices
from voting.rules import ProxyRegistration, ReceivedBallot, Revocation, apply_evoting_rules
from voting.tally import PresentHolder, RegisterEntry, TallyInputError, TallyResult, tally_meeting
from voting.thresholds import MeetingRules

_OVERRIDDEN = "overridden_by_proxy"


@dataclass(slots=True)
class LoggedBallot:
    """A ballot as the bundle records it (its signature and leaf already checked)."""

    leaf: int
    holder: str
    received_at: dt.datetime
    status: str
    payload: bytes
    sha256: str

    @property
    def ballot_id(self) -> str:
        """The id the rules order equal instants by: the leaf index, zero-padded (log order)."""
        return f"{self.leaf:012d}"

    def where(self) -> str:
        return f"leaf {self.leaf} (ballot of holder {self.holder} received {self.received_at.isoformat()})"


@dataclass(slots=True)
class LoggedRevocation:
    """A revocation as the bundle records it."""

    leaf: int | None
    holder: str
    received_at: dt.datetime
    revoked: list[str]

    def where(self) -> str:
        leaf = "unlogged" if self.leaf is None else f"leaf {self.leaf}"
        return f"{leaf} (revocation by holder {self.holder} received {self.received_at.isoformat()})"


@dataclass(frozen=True)
class RoomEntry:
    """A holder the host recorded present, how, with their in-room choices."""

    holder: str
    mode: str
    choices: Mapping[str, object]
    entered_at: dt.datetime


@dataclass
class Room:
    """The host's entries: attendance, recusals (item → holders), items added at the meeting."""

    attendance: list[RoomEntry] = field(default_factory=list)
    recusals: dict[str, set[str]] = field(default_factory=dict)
    items_added: list[str] = field(default_factory=list)


def apply_rules(ballots: Sequence[LoggedBallot], revocations: Sequence[LoggedRevocation], room: Room,
                opens_at: dt.datetime, closes_at: dt.datetime) -> tuple[list[Disagreement], dict[str, LoggedBallot]]:
    """Re-apply the e-voting rules; return every disagreement with the platform's statuses (in
    log order) and the counted ballot of each holder."""
    problems: list[Disagreement] = []
    by_hash = {ballot.sha256: ballot for ballot in ballots}
    rule_revocations = []
    for revocation in revocations:
        if not revocation.revoked:
            problems.append(Disagreement("rules", revocation.where(), "the revocation revokes no ballot (the platform "
                                         "refuses those)", leaf=revocation.leaf if revocation.leaf is not None else -1))
        for digest in revocation.revoked:
            target = by_hash.get(digest)
            rule_revocations.append(Revocation(revocation.holder, target.ballot_id if target else f"unknown:{digest}",
                                               revocation.received_at))
    proxies = [ProxyRegistration(entry.holder, entry.entered_at) for entry in room.attendance if entry.mode == "proxy"]
    outcome = apply_evoting_rules([ReceivedBallot(b.ballot_id, b.holder, b.received_at) for b in ballots],
                                  rule_revocations, proxies, closes_at)
    by_id = {ballot.ballot_id: ballot for ballot in ballots}
    revocation_of = {(r.holder, r.received_at): r for r in revocations}
    for refused in outcome.refused_revocations:
        source = revocation_of[(refused.revocation.holder_no, refused.revocation.received_at)]
        problems.append(Disagreement(
            "rules", source.where(), f"the rules refuse this revocation ({refused.reason}), the platform accepted it",
            expected="refused", found="accepted", leaf=source.leaf if source.leaf is not None else -1))
    proxy_holders = {p.holder_no for p in proxies}
    for ballot in ballots:
        if ballot.received_at < opens_at:
            problems.append(Disagreement("rules", ballot.where(), "received before the e-voting window opened "
                                         f"({opens_at.isoformat()})", leaf=ballot.leaf))
            continue
        expected = outcome.ballot_status[ballot.ballot_id]
        if ballot.holder in proxy_holders and expected in ("counted", "superseded"):
            expected = _OVERRIDDEN
        if expected != ballot.status:
            why = " (received at or after the deadline)" if expected == "late" else ""
            problems.append(Disagreement("rules", ballot.where(), f"the rules give another status{why}",
                                         expected=expected, found=ballot.status, leaf=ballot.leaf))
    counted = {holder: by_id[ballot_id] for holder, ballot_id in outcome.counted_ballot.items() if ballot_id}
    for entry in room.attendance:
        if entry.mode == "in_person" and entry.choices and entry.holder in counted:
            problems.append(Disagreement("rules", f"room entry of holder {entry.holder}", "in-room votes are recorded "
                                         "for a holder whose e-vote stands (no revocation in time, Art. 177-2)"))
    problems.sort(key=lambda d: d.leaf)
    return problems, counted


def recount(register: Mapping[str, RegisterEntry], agenda: Sequence[AgendaItem], counted: Mapping[str, LoggedBallot],
            room: Room, rules: MeetingRules) -> TallyResult | Disagreement:
    """The tally from the counted ballots and the room, as the platform's recount makes it
    (a proxy's entry replaces the e-vote; an in-person e-voter keeps it); or the first
    input that does not fit."""
    elections = {item.item_id for item in agenda if item.is_election}
    present: dict[str, PresentHolder] = {}
    for holder, ballot in counted.items():
        try:
            choices = parse_ballot(ballot.payload).choices
        except BallotError as exc:
            return Disagreement("tally", ballot.where(), f"the counted ballot does not parse ({exc.code})",
                                leaf=ballot.leaf)
        present[holder] = PresentHolder(holder, "evote", typed_choices(choices, elections))
    for entry in room.attendance:
        if entry.mode == "in_person" and entry.holder in present:
            continue
        holder = register.get(entry.holder)
        if holder is None:
            return Disagreement("tally", f"room entry of holder {entry.holder}", "the holder is not on the register")
        try:
            check_choices(Ballot("", entry.holder, entry.choices, "host", entry.entered_at, b""), agenda,
                          nominee=holder.nominee, in_room=True,
                          votable_shares={item.item_id: holder.votable_shares for item in agenda})
        except BallotError as exc:
            return Disagreement("tally", f"room entry of holder {entry.holder}", f"the in-room choices do not fit "
                                f"the agenda ({exc.code}: {exc.message})")
        present[entry.holder] = PresentHolder(entry.holder, entry.mode,  # type: ignore[arg-type]
                                              typed_choices(entry.choices, elections))
    try:
        return tally_meeting(list(register.values()), agenda, list(present.values()), rules, room.recusals)
    except TallyInputError as exc:
        return Disagreement("tally", "tally inputs", str(exc))


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _same(frozen: object, recomputed: object) -> bool:
    left, right = _as_int(frozen), _as_int(recomputed)
    if left is not None and right is not None:
        return left == right
    return frozen == recomputed


def compare_tally(frozen: Mapping[str, Any], recomputed: Mapping[str, Any]) -> list[Disagreement]:
    """Every figure where the frozen tally differs from the recount (share figures compared
    as integers, whether the frozen JSON has them as numbers or strings)."""
    problems: list[Disagreement] = []

    def differ(where: str, field_name: str, was: object, now: object) -> None:
        problems.append(Disagreement("tally", where, f"{field_name}: the frozen tally differs from the recount",
                                     expected=_show(now), found=_show(was)))

    for name in ("outstanding_shares", "present_shares"):
        if not _same(frozen.get(name), recomputed[name]):
            differ("meeting", name, frozen.get(name), recomputed[name])
    attendance = frozen.get("attendance") if isinstance(frozen.get("attendance"), dict) else {}
    for mode, figures in recomputed["attendance"].items():
        for name, value in figures.items():
            was = attendance.get(mode, {}).get(name) if isinstance(attendance.get(mode), dict) else None
            if not _same(was, value):
                differ(f"attendance {mode}", name, was, value)
    listed = frozen.get("items") if isinstance(frozen.get("items"), list) else []
    frozen_items = {item.get("item_id"): item for item in listed if isinstance(item, dict)}
    for item in recomputed["items"]:
        where = f"item {item['item_id']} ({item['kind']})"
        was_item = frozen_items.pop(item["item_id"], None)
        if was_item is None:
            problems.append(Disagreement("tally", where, "the frozen tally has no figures for this item"))
            continue
        for name, value in item.items():
            if name == "candidates":
                _compare_candidates(where, was_item.get(name), value, differ)
            elif not _same(was_item.get(name), value):
                differ(where, name, was_item.get(name), value)
    for item_id in frozen_items:
        problems.append(Disagreement("tally", f"item {item_id}", "the frozen tally has an item the agenda lacks"))
    return problems


def _compare_candidates(where: str, frozen: object, recomputed: list[dict[str, Any]], differ: Any) -> None:
    was = {c.get("candidate_id"): c for c in frozen if isinstance(c, dict)} if isinstance(frozen, list) else {}
    if isinstance(frozen, list) and [c.get("candidate_id") for c in frozen if isinstance(c, dict)] != \
            [c["candidate_id"] for c in recomputed]:
        differ(where, "candidates (ranking)", [c.get("candidate_id") for c in frozen if isinstance(c, dict)],
               [c["candidate_id"] for c in recomputed])
    for candidate in recomputed:
        for name, value in candidate.items():
            previous = was.get(candidate["candidate_id"], {}).get(name)
            if not _same(previous, value):
                differ(f"{where} candidate {candidate['candidate_id']}", name, previous, value)


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "missing"
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return f"{int(value):,}"
    return str(value)
