"""Reading an auditor bundle's records without trusting their form: every field is checked
for its type as it is decoded. A field that does not fit raises ``ValueError`` naming it; the
readers of whole files report it through the verifier's ``fail`` callback instead (a
disagreement, never a traceback) and stop reading that file.

The log is read as a stream: ballots and revocations merged by leaf index, each checked for
log order as it comes, so a meeting of any size is read in constant memory.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

from voting import bundle_format as fmt
from voting.audit_recount import Room, RoomEntry
from voting.log_records import parse_log_time
from voting.tally import RegisterEntry, TallyInputError

MAX_LINE_BYTES = 1 << 20
ATTENDANCE_MODES = ("in_person", "proxy")
# fail(check, where, message, *, expected=None, found=None, leaf=-1): records a disagreement.
Fail = Callable[..., None]
# A log record: its leaf index (None: a revocation the log never held) and the job for the checks.
Record = tuple[int | None, tuple[Any, ...]]


def utc_time(value: object, what: str = "a time") -> dt.datetime:
    """An ISO 8601 UTC instant (``…Z`` or ``…+00:00``) as an aware datetime."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    moment = dt.datetime.fromisoformat(value)
    if moment.utcoffset() != dt.timedelta(0):
        raise ValueError(f"{what} {value!r} is not a UTC time")
    return moment.astimezone(dt.timezone.utc)


def count(value: object, what: str) -> int:
    """A JSON non-negative integer (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is not a non-negative integer")
    return value


def digit_string(value: object, what: str) -> int:
    """A share count written as decimal digits (any size)."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise ValueError(f"{what} is not a string of decimal digits")
    return int(value)


def string(value: object, what: str) -> str:
    """A JSON string."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def base64_bytes(value: object, what: str) -> bytes:
    """Bytes written as base64 text."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not base64 text")
    try:
        return binascii.a2b_base64(value)
    except binascii.Error:
        raise ValueError(f"{what} is not base64") from None


def read_lines(archive: zipfile.ZipFile, name: str) -> Iterator[tuple[int, Any]]:
    """(line number, decoded JSON) of each line of a JSON Lines member, read in big chunks."""
    with archive.open(name) as member:
        rest, number = b"", 0
        while True:
            chunk = member.read(1 << 20)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            if len(rest) > MAX_LINE_BYTES:
                raise ValueError(f"{name}: a line longer than {MAX_LINE_BYTES} bytes")
            for line in lines:
                number += 1
                yield number, json.loads(line)
            if not chunk:
                if rest.strip():
                    number += 1
                    yield number, json.loads(rest)
                return


def read_room(data: bytes) -> Room:
    """The host's entries (``room.json``): attendance, recusals, items added at the meeting."""
    document = json.loads(data)
    room = Room()
    for entry in document["attendance"]:
        if entry["mode"] not in ATTENDANCE_MODES or not isinstance(entry["choices"], dict):
            raise ValueError(f"the attendance of {entry.get('holder')!r} has a bad mode or choices")
        room.attendance.append(RoomEntry(string(entry["holder"], "holder"), entry["mode"], entry["choices"],
                                         utc_time(entry["entered_at"], "entered_at")))
    for recusal in document["recusals"]:
        room.recusals.setdefault(string(recusal["item"], "item"), set()).add(string(recusal["holder"], "holder"))
    added = document["items_added_at_meeting"]
    if not isinstance(added, list) or not isinstance(document["attendance"], list) \
            or not isinstance(document["recusals"], list):
        raise ValueError("attendance, recusals and items_added_at_meeting are lists")
    room.items_added = [string(key, "item") for key in added]
    return room


def read_register(archive: zipfile.ZipFile, fail: Fail) -> tuple[dict[str, RegisterEntry], dict[str, str]]:
    """The register (``register.jsonl``) by holder number, and the investor reference the
    platform matched to each holder (holders no investor matched are left out)."""
    register: dict[str, RegisterEntry] = {}
    investors: dict[str, str] = {}
    try:
        for _, line in read_lines(archive, fmt.REGISTER):
            holder = string(line["holder"], "holder")
            if holder in register:
                raise ValueError(f"holder {holder} appears twice")
            if not isinstance(line["nominee"], bool):
                raise ValueError("nominee is not true or false")
            if line.get("investor") is not None:
                investors[holder] = string(line["investor"], "investor")
            register[holder] = RegisterEntry(holder, digit_string(line["shares"], "shares"),
                                             digit_string(line["non_voting_shares"], "non_voting_shares"),
                                             line["nominee"])
    except (ValueError, KeyError, TypeError, TallyInputError) as exc:
        fail("payloads", fmt.REGISTER, f"line {len(register) + 1} cannot be read ({exc})")
    return register, investors


def read_ocsp_responses(archive: zipfile.ZipFile, fail: Fail) -> dict[str, bytes]:
    """The OCSP responses (``ocsp-responses.jsonl``) by the SHA-256 of their DER."""
    responses: dict[str, bytes] = {}
    try:
        for number, line in read_lines(archive, fmt.OCSP_RESPONSES):
            der, digest = base64_bytes(line["der"], "der"), string(line["sha256"], "sha256")
            if hashlib.sha256(der).hexdigest() != digest:
                fail("signatures", f"{fmt.OCSP_RESPONSES} line {number}", "the response's SHA-256 differs from the "
                     "one it is filed under", expected=hashlib.sha256(der).hexdigest(), found=digest)
            responses[digest] = der
    except (ValueError, KeyError, TypeError) as exc:
        fail("signatures", fmt.OCSP_RESPONSES, f"cannot be read ({exc})")
    return responses


def log_records(archive: zipfile.ZipFile, name: str, kind: str, ocsp: dict[str, bytes], fail: Fail
                ) -> Iterator[Record]:
    """Each ballot (``kind`` ``b``) or revocation (``r``) record of ``name``, checked for form and
    log order; the job carries the record's OCSP evidence from ``ocsp`` (or its unknown digest)."""
    previous = -1
    try:
        for number, line in read_lines(archive, name):
            leaf = line["leaf_index"]
            if leaf is None and kind == "r":
                previous = 1 << 62  # unlogged revocations come last
            else:
                leaf = count(leaf, "leaf_index")
                if leaf <= previous:
                    fail("log", f"{name} line {number}", f"leaf {leaf} comes after leaf {previous}: the records "
                         "are not in log order", leaf=leaf)
                previous = leaf
            evidence = line["ocsp_sha256"]
            if evidence is not None:
                evidence = ocsp.get(string(evidence, "ocsp_sha256"), evidence)
            job = (kind, leaf, string(line["holder"], "holder"), utc_time(line["received_at"]),
                   base64_bytes(line["payload"], "payload"), base64_bytes(line["cms"], "cms"), evidence,
                   line["voided_items"] if kind == "b" else None)
            extra = line["status"] if kind == "b" else [string(h, "revoked") for h in line["revoked"]]
            if kind == "b" and extra not in fmt.BALLOT_STATUSES:
                raise ValueError(f"unknown status {extra!r}")
            yield leaf, (*job, extra)
    except (ValueError, KeyError, TypeError) as exc:
        fail("log", name, f"a record cannot be read ({exc})")


def tree_heads(archive: zipfile.ZipFile, fail: Fail) -> Iterator[tuple[Any, ...]]:
    """Each signed tree head, checked for form and size order."""
    previous = 0
    try:
        for number, line in read_lines(archive, fmt.TREE_HEADS):
            size = count(line["tree_size"], "tree_size")
            if size <= previous:
                fail("log", f"{fmt.TREE_HEADS} line {number}", f"a tree head of size {size} after one of size "
                     f"{previous}: not in size order", leaf=size)
            previous = size
            yield ("h", size, base64_bytes(line["root_hash"], "root_hash"), parse_log_time(line["issued_at"]),
                   base64_bytes(line["signature"], "signature"), string(line["seal_serial"], "seal_serial"))
    except (ValueError, KeyError, TypeError) as exc:
        fail("log", fmt.TREE_HEADS, f"a tree head cannot be read ({exc})")


def merged_log(archive: zipfile.ZipFile, ocsp: dict[str, bytes], fail: Fail) -> Iterator[Record]:
    """Ballots and revocations merged in log order (unlogged revocations last)."""
    ballots = log_records(archive, fmt.BALLOTS, "b", ocsp, fail)
    revocations = log_records(archive, fmt.REVOCATIONS, "r", ocsp, fail)
    ballot, revocation = next(ballots, None), next(revocations, None)
    while ballot is not None or revocation is not None:
        if revocation is None or (ballot is not None and (revocation[0] is None or ballot[0] < revocation[0])):
            yield ballot  # type: ignore[misc]
            ballot = next(ballots, None)
        else:
            yield revocation
            revocation = next(revocations, None)
