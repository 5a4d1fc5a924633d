"""The ballot payload: canonical JSON (RFC 8785) that the holder signs as detached CMS.

A ballot is exactly its RFC 8785 canonical JSON (``core.canonical``)::

    {"type": "cloudseal.ballot/1", "meeting": "...", "holder": "...",
     "choices": {"<item id>": <choice>}, "nonce": "<base64url>", "created_at": "2026-06-01T03:04:05Z"}

``parse_ballot`` checks the envelope (anything a verifier can check without the agenda);
``check_choices`` checks the choices against the agenda and the holder's shares. Both raise
``BallotError`` with a stable ``code``; the one soft outcome is an over-allocated election,
which voids that election on that ballot only (Art. 198) and is reported, not raised.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

import rfc8785

from core.canonical import canonical_json, read_plain_canonical

from voting.agenda import (
    NO_ACTION,
    VOTE_CODES,
    AgendaItem,
    Choice,
    ElectionVote,
    SplitVote,
    is_count,
)

__all__ = [
    "BALLOT_TYPE",
    "AgendaItem",
    "Ballot",
    "BallotError",
    "ChoiceStatus",
    "ElectionVote",
    "SplitVote",
    "ballot_digest",
    "build_ballot",
    "check_choices",
    "decode_choices",
    "format_time",
    "new_nonce",
    "parse_ballot",
]

BALLOT_TYPE = "cloudseal.ballot/1"
_FIELDS = frozenset({"type", "meeting", "holder", "choices", "nonce", "created_at"})
_MEETING_ID = re.compile(r"[!-~]{1,64}")  # printable ASCII: no NUL or control reaches a database
_HOLDER_NO = re.compile(r"[!-~]{1,32}")  # printable ASCII, as on the register
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

ChoiceStatus = Literal["ok", "void_over_allocation"]


class BallotError(ValueError):
    """A ballot refused, with a stable machine-readable ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Ballot:
    """A parsed, envelope-checked ballot. ``choices`` keeps the raw JSON values of each item."""

    meeting_id: str
    holder_no: str
    choices: Mapping[str, object]
    nonce: str
    created_at: datetime
    payload: bytes = field(repr=False)

    @property
    def digest(self) -> bytes:
        """SHA-256 of the canonical payload."""
        return ballot_digest(self.payload)


def new_nonce() -> str:
    """A fresh random nonce (128 bits, base64url without padding: 22 characters)."""
    return secrets.token_urlsafe(16)


def ballot_digest(payload: bytes) -> bytes:
    """SHA-256 of the ballot bytes: what the CMS signature and the log entry commit to."""
    return hashlib.sha256(payload).digest()


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with a Z and whole seconds, e.g. ``2026-06-01T03:04:05Z``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise BallotError("invalid_time", "ballot time must be timezone-aware")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def build_ballot(
    meeting_id: str,
    holder_no: str,
    choices: Mapping[str, Choice | Mapping[str, object]],
    nonce: str,
    created_at: datetime,
) -> bytes:
    """The canonical ballot bytes for these choices.

    A choice is a vote code, a ``SplitVote``/``ElectionVote``, or its JSON form. Sub-second
    precision of ``created_at`` is dropped (the wire format has whole seconds). The result is
    checked with ``parse_ballot``, so anything built here also parses.
    """
    document = {
        "type": BALLOT_TYPE,
        "meeting": meeting_id,
        "holder": holder_no,
        "choices": {
            item_id: choice.to_json() if isinstance(choice, (SplitVote, ElectionVote)) else choice
            for item_id, choice in choices.items()
        },
        "nonce": nonce,
        "created_at": format_time(created_at),
    }
    payload = _canonical(document)
    parse_ballot(payload)
    return payload


def _canonical(value: object) -> bytes:
    try:
        return canonical_json(value)  # type: ignore[arg-type]
    except rfc8785.IntegerDomainError as exc:
        # I-JSON: integers beyond 2**53 - 1 are not portable JSON numbers.
        raise BallotError("integer_out_of_range", str(exc)) from exc
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise BallotError("not_canonical", f"cannot canonicalise: {exc}") from exc
    except RecursionError as exc:  # the C parser reads deeper than the encoder writes
        raise BallotError("not_json", "nested too deeply") from exc


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise BallotError("duplicate_key", f"key {key!r} appears twice")
        obj[key] = value
    return obj


def _refuse_float(text: str) -> object:
    raise BallotError("float_not_allowed", f"number {text} is not an integer")


def _refuse_constant(text: str) -> object:
    raise BallotError("not_json", f"{text} is not JSON")


def parse_ballot(payload: bytes) -> Ballot:
    """Parse and check a ballot's bytes; raise ``BallotError`` on anything but a canonical ballot.

    Codes: not_utf8, not_json, duplicate_key, float_not_allowed, integer_out_of_range,
    not_canonical, not_object, wrong_type, missing_field, unexpected_field, invalid_field,
    invalid_nonce, invalid_time.
    """
    if not isinstance(payload, bytes):
        raise TypeError(f"a ballot is bytes, not {type(payload).__name__}")
    document = read_plain_canonical(payload)  # the usual ballot, read with the C parser alone
    if document is None:
        document = _read_carefully(payload)
    if not isinstance(document, dict):
        raise BallotError("not_object", "a ballot is a JSON object")
    if missing := _FIELDS - document.keys():
        raise BallotError("missing_field", f"missing {sorted(missing)}")
    if extra := document.keys() - _FIELDS:
        raise BallotError("unexpected_field", f"unexpected {sorted(extra)}")
    if document["type"] != BALLOT_TYPE:
        raise BallotError("wrong_type", f"type must be {BALLOT_TYPE!r}")
    for name, form in (("meeting", _MEETING_ID), ("holder", _HOLDER_NO)):
        if not isinstance(document[name], str) or not form.fullmatch(document[name]):
            raise BallotError("invalid_field", f"{name} is not a valid {name} id")
    choices = document["choices"]
    if not isinstance(choices, dict) or not all(choices):
        raise BallotError("invalid_field", "choices must be an object keyed by non-empty item ids")
    nonce = document["nonce"]
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise BallotError("invalid_nonce", "nonce must be 16-64 base64url characters")
    return Ballot(
        meeting_id=document["meeting"],
        holder_no=document["holder"],
        choices=MappingProxyType(choices),
        nonce=nonce,
        created_at=_parse_time(document["created_at"]),
        payload=payload,
    )


def _read_carefully(payload: bytes) -> object:
    """The JSON value of a canonical payload; ``BallotError`` names the first fault otherwise."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BallotError("not_utf8", str(exc)) from exc
    try:
        document = json.loads(
            text,
            object_pairs_hook=_refuse_duplicates,
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
        )
    except BallotError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge integers, deep nesting
        raise BallotError("not_json", str(exc)[:200]) from exc
    if _canonical(document) != payload:
        raise BallotError("not_canonical", "bytes differ from the RFC 8785 form")
    return document


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise BallotError("invalid_time", "created_at must look like 2026-06-01T03:04:05Z")
    try:
        if value.isascii():  # the usual case, read without strptime (the pattern fixed the form)
            return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
        # Other Unicode digits have always been read as digits; stored ballots may hold them.
        return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise BallotError("invalid_time", str(exc)) from exc


def check_choices(
    ballot: Ballot,
    agenda: Sequence[AgendaItem],
    *,
    nominee: bool,
    votable_shares: Mapping[str, int],
    in_room: bool = False,
) -> dict[str, ChoiceStatus]:
    """Check every choice against the agenda; return a status per item the ballot mentions.

    ``in_room`` checks votes the host enters for a holder at the meeting: extempore and
    amendment items are votable there, and ``NOAC`` (no action) is accepted.

    Raises ``BallotError`` with unknown_item, item_not_votable, invalid_choice,
    split_not_allowed, split_exceeds_shares or unknown_candidate. An election whose
    allocations exceed votable shares × seats is not an error: that item gets
    "void_over_allocation" (that election is void on this ballot; the rest stands).
    ``votable_shares`` must give the holder's shares for every split or election item.
    """
    items = {item.item_id: item for item in agenda}
    statuses: dict[str, ChoiceStatus] = {}
    for item_id, choice in ballot.choices.items():
        item = items.get(item_id)
        if item is None:
            raise BallotError("unknown_item", f"no agenda item {item_id!r}")
        if in_room and choice == NO_ACTION:
            statuses[item_id] = "ok"
            continue
        if not item.electronically_votable and not in_room:
            raise BallotError("item_not_votable", f"item {item_id!r} ({item.kind}) cannot be voted electronically")
        if item.is_election:
            statuses[item_id] = _check_election(item, choice, _shares(votable_shares, item_id))
        else:
            _check_resolution(item_id, choice, nominee, votable_shares)
            statuses[item_id] = "ok"
    return statuses


def _shares(votable_shares: Mapping[str, int], item_id: str) -> int:
    try:
        return votable_shares[item_id]
    except KeyError:
        raise ValueError(f"votable shares not given for item {item_id!r}") from None


def _check_resolution(item_id: str, choice: object, nominee: bool, votable_shares: Mapping[str, int]) -> None:
    if isinstance(choice, str):
        if choice not in VOTE_CODES:
            raise BallotError("invalid_choice", f"{choice!r} is not one of {', '.join(VOTE_CODES)} on {item_id!r}")
        return
    if not isinstance(choice, dict) or not set(choice) <= set(VOTE_CODES) or not all(map(is_count, choice.values())):
        raise BallotError("invalid_choice", f"choice on {item_id!r} is neither a vote code nor a split vote")
    if not nominee:
        raise BallotError("split_not_allowed", f"only a nominee holder may split votes (item {item_id!r})")
    if sum(choice.values()) > _shares(votable_shares, item_id):
        raise BallotError("split_exceeds_shares", f"split on {item_id!r} uses more than the holder's votable shares")


def _check_election(item: AgendaItem, choice: object, shares: int) -> ChoiceStatus:
    if not isinstance(choice, dict) or set(choice) != {"allocations"} or not isinstance(choice["allocations"], dict):
        raise BallotError("invalid_choice", f"election {item.item_id!r} takes {{\"allocations\": {{...}}}}")
    allocations = choice["allocations"]
    for candidate, votes in allocations.items():
        if candidate not in item.candidates:
            raise BallotError("unknown_candidate", f"{candidate!r} is not a candidate in {item.item_id!r}")
        if not is_count(votes):
            raise BallotError("invalid_choice", f"votes for {candidate!r} must be a non-negative integer")
    if sum(allocations.values()) > shares * item.seats:
        return "void_over_allocation"
    return "ok"


def decode_choices(
    ballot: Ballot,
    agenda: Sequence[AgendaItem],
    *,
    nominee: bool,
    votable_shares: Mapping[str, int],
) -> dict[str, Choice]:
    """The ballot's choices as typed ``Choice`` values for the tally, after ``check_choices``.

    Over-allocated elections are kept as they are: the tally voids and counts them itself.
    """
    check_choices(ballot, agenda, nominee=nominee, votable_shares=votable_shares)
    return typed_choices(ballot.choices, {item.item_id for item in agenda if item.is_election})


def typed_choices(raw: Mapping[str, object], elections: set[str]) -> dict[str, Choice]:
    """Checked JSON choices (a ballot's, or the host's entry) as typed values; ``NOAC``
    (present, no action) is left out, like an item not voted."""
    typed: dict[str, Choice] = {}
    for item_id, choice in raw.items():
        if choice == NO_ACTION:
            continue
        if isinstance(choice, str):
            typed[item_id] = choice
        elif item_id in elections:
            typed[item_id] = ElectionVote(dict(choice["allocations"]))  # type: ignore[index]
        else:
            parts: Mapping[str, int] = choice  # type: ignore[assignment]
            typed[item_id] = SplitVote(parts.get("CFOR", 0), parts.get("CAGS", 0), parts.get("ABST", 0))
    return typed
