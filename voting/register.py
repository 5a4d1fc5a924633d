"""The shareholder register at book closure, imported from CSV: streamed, all or nothing.

The file is read once, line by line, and never held whole in memory: its bytes are hashed as
they are read, every line is checked, and valid lines go into the database in batches inside
the caller's transaction (under a savepoint). One bad line rejects the whole file, but the
reading goes on to the end so the report names every bad line.

A holder's identity number is kept only as the RA's keyed hash (:func:`ra.secrets.identity_hmac`),
so register lines match investors, and their certificates, whichever broker enrolled them.
Share counts are arbitrary-precision integers (:class:`voting.models.ShareCount`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import operator
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import Connection, delete, insert, select
from sqlmodel import Session

from core import audit
from core.auth import Actor
from core.errors import BadRequest, Conflict
from hsm_sim.base import KeyStore
from ra.identity import IdentityKind, InvalidIdentity, parse_identity
from ra.secrets import identity_hmac
from voting.access import visible_meeting
from voting.models import Attendance, BallotRow, Holder, Meeting, Recusal

COLUMNS = ("holder_no", "id_number", "name", "shares", "non_voting_shares", "non_voting_reason", "nominee")
# Why shares carry no vote: treasury shares (Art. 167), shares held by a subsidiary (Art. 179).
NON_VOTING_REASONS = ("treasury", "subsidiary", "other")
BATCH_ROWS = 5_000
MAX_STORED_ERRORS = 10_000
MAX_LINE_CHARS = 4_096  # a valid line is well under 1,000 characters

_holders = Holder.__table__  # type: ignore[attr-defined]
_INSERT_HOLDERS = insert(_holders)
_HOLDER_NO = re.compile(r"[!-~]{1,32}")
_SHARES = re.compile(r"[0-9]{1,30}")
_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]{1,200}")
_BUSINESS_FORM = re.compile(r"\s*[0-9]{8}\s*")
_NATIONAL_FORM = re.compile(r"\s*[A-Za-z][0-9]{9}\s*")
# Undecodable bytes survive decoding as lone surrogates (errors="surrogateescape").
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")
_NOMINEE = {"": False, "n": False, "false": False, "0": False, "y": True, "true": True, "1": True}
_REASONS = {"": None, **{reason: reason for reason in NON_VOTING_REASONS}}
_OVERLONG = "\x00\n"  # stands in for a line too long to read; parses as one field


@dataclass(frozen=True)
class RegisterImport:
    """A register's figures: holders, shares, and the SHA-256 (hex) of the file's bytes.

    ``unchanged`` is True when an import found the same file already imported and changed
    nothing.
    """

    holders: int
    total_shares: int
    non_voting_shares: int
    voting_shares: int
    sha256: str
    unchanged: bool = False


@dataclass(frozen=True)
class LineError:
    """One problem of the file: its line (the header is line 1), the column if one, what is wrong."""

    line: int
    column: str | None
    message: str


class RegisterRejected(BadRequest):
    """The file was refused and nothing of it imported; ``errors`` names the bad lines.

    At most :data:`MAX_STORED_ERRORS` errors are kept; ``error_count`` is the exact total.
    """

    code = "invalid_register"

    def __init__(self, message: str, errors: list[LineError], *, error_count: int | None = None,
                 code: str | None = None) -> None:
        count = len(errors) if error_count is None else error_count
        super().__init__(message, code=code, details={
            "error_count": count, "errors": [dataclasses.asdict(error) for error in errors]})
        self.errors = errors
        self.error_count = count


class _HashingReader(io.RawIOBase):
    """Reads the caller's stream, hashing and counting the bytes; never closes that stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer)) or b""
        size = len(data)
        buffer[:size] = data
        self.sha256.update(data)
        self.bytes_read += size
        return size


def _bounded_lines(text: io.TextIOWrapper, overlong: set[int]) -> Iterator[str]:
    """The file's physical lines; a line past MAX_LINE_CHARS is skipped, noted and replaced."""
    readline, number = text.readline, 0
    while line := readline(MAX_LINE_CHARS):
        number += 1
        if len(line) == MAX_LINE_CHARS and line[-1] not in "\r\n":
            while (rest := readline(MAX_LINE_CHARS)) and rest[-1] not in "\r\n":
                pass
            overlong.add(number)
            line = _OVERLONG
        yield line


def _problem(value: str, message: str) -> str:
    return "contains bytes that are not valid UTF-8" if _UNDECODABLE.search(value) else message


def _read_header(reader: Any, overlong: set[int]) -> tuple[int, Callable[[list[str]], tuple[str, ...]]]:
    """Check the header; return its line number and a function putting a row in COLUMNS order."""
    line = 0
    try:
        header: list[str] = []
        while not header:  # blank lines before the header are skipped
            line = reader.line_num + 1
            header = next(reader)
    except StopIteration:
        raise RegisterRejected("the file is empty", [], code="empty_register") from None
    except csv.Error as exc:
        raise RegisterRejected("the header cannot be read", [LineError(line, None, str(exc))],
                               code="invalid_register_header") from None
    # Shown back to the caller: invalid UTF-8 (kept as surrogates) and controls escaped.
    names = [name.strip().lower().encode("utf-8", "backslashreplace").decode("utf-8") for name in header]
    errors = [LineError(line, None, f"longer than {MAX_LINE_CHARS} characters")] if line in overlong else []
    errors += [LineError(line, name, _problem(name, "duplicated column"))
               for position, name in enumerate(names) if name in names[:position]]
    errors += [LineError(line, name, _problem(name, "unknown column")) for name in dict.fromkeys(names)
               if name not in COLUMNS]
    errors += [LineError(line, name, "missing column") for name in COLUMNS if name not in names]
    if errors:
        raise RegisterRejected("the header must name exactly: " + ",".join(COLUMNS), errors,
                               code="invalid_register_header")
    return line, operator.itemgetter(*(names.index(name) for name in COLUMNS))


def _load_rows(connection: Connection, keystore: KeyStore, meeting_id: int, stream: BinaryIO,
               progress: Callable[[int], None] | None) -> tuple[RegisterImport, int]:
    """Check and insert every line; return the figures and the byte count, or raise RegisterRejected."""
    raw = _HashingReader(stream)
    text = io.TextIOWrapper(io.BufferedReader(raw, 1 << 16), encoding="utf-8-sig",
                            errors="surrogateescape", newline="")
    overlong: set[int] = set()
    reader = csv.reader(_bounded_lines(text, overlong), strict=True)
    header_line, in_order = _read_header(reader, overlong)

    stored: list[LineError] = []
    pending: list[LineError] = []  # this batch's errors, stored in line order at each flush
    error_count = holders = total = non_voting_total = 0
    batch: list[dict[str, Any]] = []
    batch_lines: dict[str, int] = {}  # holder_no -> line, for this batch
    national, business = IdentityKind.NATIONAL_ID, IdentityKind.BUSINESS_NUMBER

    def flush() -> None:
        nonlocal holders, error_count
        if batch_lines and holders:
            # Holder numbers of earlier batches are in the database already: its unique index
            # finds repeats, so memory stays flat however long the register.
            repeated = set(connection.execute(
                select(_holders.c.holder_no).where(_holders.c.meeting_id == meeting_id,
                                                   _holders.c.holder_no.in_(list(batch_lines)))).scalars())
            if repeated:
                pending.extend(LineError(batch_lines[no], "holder_no", f"holder number {no} is on an earlier line")
                               for no in repeated)
                batch[:] = [row for row in batch if row["holder_no"] not in repeated]
        if batch:
            connection.execute(_INSERT_HOLDERS, batch)
            holders += len(batch)
        error_count += len(pending)
        pending.sort(key=operator.attrgetter("line"))
        stored.extend(pending[:MAX_STORED_ERRORS - len(stored)])
        batch.clear()
        batch_lines.clear()
        pending.clear()
        if progress is not None:
            progress(raw.bytes_read)

    last_line, rows_seen = header_line, 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            pending.append(LineError(last_line + 1, None, f"not valid CSV: {exc}"))
            last_line = reader.line_num
            continue
        line, last_line = last_line + 1, reader.line_num
        if not row:
            continue  # a blank line
        rows_seen += 1
        if len(row) != 7:
            message = (f"longer than {MAX_LINE_CHARS} characters" if line in overlong
                       else _problem("".join(row), f"{len(row)} fields where the header has 7"))
            pending.append(LineError(line, None, message))
            continue
        holder_no, id_number, name, shares_text, non_voting_text, reason_text, nominee_text = in_order(row)
        errors_before = len(pending)
        if not _HOLDER_NO.fullmatch(holder_no):
            pending.append(LineError(line, "holder_no", _problem(holder_no, "1 to 32 printable characters, no spaces")))
        elif holder_no in batch_lines:
            pending.append(LineError(line, "holder_no", f"holder number {holder_no} is also on line "
                                                        f"{batch_lines[holder_no]}"))
        kind = business if _BUSINESS_FORM.fullmatch(id_number) else national
        try:
            identity = parse_identity(kind, id_number)
        except InvalidIdentity as exc:
            message = (str(exc) if kind is business or _NATIONAL_FORM.fullmatch(id_number)
                       else "neither a national ID (a letter and 9 digits) nor a business number (8 digits)")
            pending.append(LineError(line, "id_number", _problem(id_number, message)))
        if not _NAME.fullmatch(name) or name.isspace():
            pending.append(LineError(line, "name", _problem(name, "1 to 200 characters, no control characters")))
        shares = non_voting = 0
        if _SHARES.fullmatch(shares_text):
            shares = int(shares_text)
        else:
            pending.append(LineError(line, "shares", _problem(shares_text, "digits only, at most 30")))
        if _SHARES.fullmatch(non_voting_text):
            non_voting = int(non_voting_text)
            if non_voting > shares:
                pending.append(LineError(line, "non_voting_shares", "more than the holder's shares"))
        else:
            pending.append(LineError(line, "non_voting_shares", _problem(non_voting_text, "digits only, at most 30")))
        reason = _REASONS.get(reason_text.strip().lower(), "?")
        if reason == "?":
            pending.append(LineError(line, "non_voting_reason", _problem(
                reason_text, "empty or one of: " + ", ".join(NON_VOTING_REASONS))))
        elif reason is None and non_voting:
            pending.append(LineError(line, "non_voting_reason", "required when there are non-voting shares"))
        nominee = _NOMINEE.get(nominee_text.strip().lower())
        if nominee is None:
            pending.append(LineError(line, "nominee", _problem(nominee_text, "Y or N (or true/false, 1/0)")))
        if len(pending) != errors_before:
            continue
        batch_lines[holder_no] = line
        batch.append({"meeting_id": meeting_id, "holder_no": holder_no,
                      "id_hmac": identity_hmac(keystore, kind.value, identity.number), "name": name, "shares": shares,
                      "non_voting_shares": non_voting, "non_voting_reason": reason, "nominee": nominee})
        total += shares
        non_voting_total += non_voting
        if len(batch) >= BATCH_ROWS:
            flush()
    flush()
    if error_count:
        raise RegisterRejected(f"{error_count} problem(s) in the register; nothing was imported", stored,
                               error_count=error_count)
    if not rows_seen:
        raise RegisterRejected("the file has a header but no holders", [], code="empty_register")
    summary = RegisterImport(holders=holders, total_shares=total, non_voting_shares=non_voting_total,
                             voting_shares=total - non_voting_total, sha256=raw.sha256.hexdigest())
    return summary, raw.bytes_read


def _hash_and_rewind(stream: BinaryIO, stack: ExitStack) -> tuple[BinaryIO, str]:
    """SHA-256 of the whole stream, and a stream to read the same bytes again from the start.

    A stream that cannot seek is copied to a temporary file (on disk, not in memory).
    """
    digest = hashlib.sha256()
    seekable = stream.seekable()
    start = stream.tell() if seekable else 0
    copy = None if seekable else stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 (closed by stack)
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        if copy is not None:
            copy.write(chunk)
    target: BinaryIO = stream if copy is None else copy  # type: ignore[assignment]
    target.seek(start if copy is None else 0)
    return target, digest.hexdigest()


def _refuse_if_locked(session: Session, meeting: Meeting) -> None:
    """The register is fixed once a ballot is in or the tally is frozen."""
    if meeting.status != "draft":
        raise Conflict(f"the meeting is {meeting.status}; its register cannot change", code="register_locked")
    if session.execute(select(BallotRow.id).where(BallotRow.meeting_id == meeting.id).limit(1)).first():
        raise Conflict("ballots have been received; the register cannot change", code="register_locked")


def _delete_holders(connection: Connection, meeting_id: int) -> None:
    """Remove a register and what hangs on its holders (recusals, attendance)."""
    holder_ids = select(_holders.c.id).where(_holders.c.meeting_id == meeting_id)
    recusals, attendance = Recusal.__table__, Attendance.__table__  # type: ignore[attr-defined]
    connection.execute(delete(recusals).where(recusals.c.holder_id.in_(holder_ids)))
    connection.execute(delete(attendance).where(attendance.c.holder_id.in_(holder_ids)))
    connection.execute(delete(_holders).where(_holders.c.meeting_id == meeting_id))


def import_register(session: Session, keystore: KeyStore, *, actor: Actor, meeting_id: int, stream: BinaryIO,
                    replace: bool = False, progress: Callable[[int], None] | None = None) -> RegisterImport:
    """Import a meeting's register from CSV (UTF-8, header of :data:`COLUMNS` in any order).

    The same bytes again change nothing (``unchanged=True``). A different file is 409
    ``register_exists`` unless ``replace``; replacing is 409 ``register_locked`` once a ballot
    is in or the meeting is frozen. Any bad line: :class:`RegisterRejected` (400
    ``invalid_register``, ``empty_register``, ``invalid_register_header``) naming every bad
    line, and nothing imported. ``progress`` receives the bytes read so far, now and then.
    Runs in the caller's transaction; 404 ``unknown_meeting`` for a meeting the actor may not run.
    """
    meeting = visible_meeting(session, actor, meeting_id, for_update=True)
    mid = meeting.id or 0
    previous = meeting.register_sha256
    with ExitStack() as stack:
        expected = None
        if previous is not None:
            stream, expected = _hash_and_rewind(stream, stack)
            if expected == previous:
                stored = register_summary(session, mid)
                assert stored is not None
                return dataclasses.replace(stored, unchanged=True)
            if not replace:
                raise Conflict("the meeting has a different register; import it with replace",
                               code="register_exists")
        _refuse_if_locked(session, meeting)
        with session.begin_nested():  # a refused file leaves nothing, even if the caller commits
            connection = session.connection()
            if previous is not None:
                _delete_holders(connection, mid)
            summary, size = _load_rows(connection, keystore, mid, stream, progress)
            if expected is not None and summary.sha256 != expected:
                raise BadRequest("the file changed while it was read", code="register_changed")
            meeting.register_sha256 = summary.sha256
            meeting.register_holders = summary.holders
            session.add(meeting)
            session.flush()
            audit.record(session, actor=actor.label, tenant=meeting.issuer_code, action="register.import",
                         object_type="meeting", object_id=meeting.public_id,
                         details={"holders": summary.holders, "sha256": summary.sha256, "bytes": size,
                                  "replaced": previous is not None})
    return summary


def register_summary(session: Session, meeting_id: int) -> RegisterImport | None:
    """The stored register's figures (shares summed in Python), or None if none was imported."""
    meeting = session.get(Meeting, meeting_id)
    if meeting is None or meeting.register_sha256 is None:
        return None
    holders = total = non_voting = 0
    rows = session.connection().execute(
        select(_holders.c.shares, _holders.c.non_voting_shares).where(_holders.c.meeting_id == meeting_id)
        .execution_options(yield_per=10_000))
    for shares, non_voting_shares in rows:
        holders += 1
        total += shares
        non_voting += non_voting_shares
    return RegisterImport(holders=holders, total_shares=total, non_voting_shares=non_voting,
                          voting_shares=total - non_voting, sha256=meeting.register_sha256)
