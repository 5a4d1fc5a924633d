"""CSV exports of a meeting for its hosts, operators and auditors.

* the tally, one row per resolution and per election, plus one row per candidate;
* the ballots received, one row per ballot (counted or not), streamed from the database in
  chunks so a meeting with a million ballots never sits in memory.

Both may be downloaded before freezing: the tally is then the running one (the
``X-Tally-Status`` header and the file name say which). The ballot list names holders and
hashes, never choices. Files are UTF-8 with a byte-order mark (so spreadsheet programs show
Chinese titles), share figures are plain decimal digits of any size, and a text cell that a
spreadsheet would take for a formula (``=``, ``+``, ``-``, ``@``) is prefixed with ``'``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.auth import Actor
from voting import results, service
from voting.access import READ_ROLES, visible_meeting
from voting.calendar import TAIPEI
from voting.models import BallotRow, Holder, Meeting
from voting.report_data import AgendaEntry, agenda_entry

BOM = "\ufeff"
TALLY_COLUMNS = ("item", "kind", "title", "candidate", "candidate_name", "for", "against", "abstain", "not_voted",
                 "denominator", "votes", "elected", "rule", "adopted")
BALLOT_COLUMNS = ("holder_no", "received_at_taipei", "received_at_utc", "status", "ballot_sha256", "leaf_index")
CHUNK_ROWS = 2000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_BALLOT_CHUNK = (
    select(BallotRow.id, Holder.holder_no, BallotRow.received_at, BallotRow.status, BallotRow.ballot_sha256,
           BallotRow.leaf_index)
    .join(Holder, Holder.id == BallotRow.holder_id)
    .where(BallotRow.meeting_id == bindparam("meeting_id"))
    .where(BallotRow.id > bindparam("after")).where(BallotRow.id <= bindparam("last"))
    .order_by(BallotRow.id).limit(bindparam("limit"))
)


def safe_cell(value: object) -> str:
    """A cell's text, neutralised when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_text(rows: Iterable[Sequence[object]]) -> str:
    """``rows`` as CSV text (RFC 4180, CRLF line ends), every cell through :func:`safe_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def _yes_no(value: object) -> str:
    return "yes" if value else "no"


def resolution_row(entry: AgendaEntry, figures: Mapping[str, Any]) -> list[object]:
    """A resolution's figures (shares) and outcome."""
    return [entry.key, entry.kind, entry.title, "", "", figures["for_votes"], figures["against_votes"],
            figures["abstain_votes"], figures["not_voted"], figures["denominator"], "", "", figures["rule"],
            _yes_no(figures["adopted"])]


def election_rows(entry: AgendaEntry, figures: Mapping[str, Any]) -> list[list[object]]:
    """An election's row (votes available as denominator, votes cast) and one per candidate,
    ranked; ``elected`` is ``yes``, ``no`` or ``lot`` (tied for the last seat)."""
    rows: list[list[object]] = [[entry.key, "election", entry.title, "", "", "", "", "", "",
                                 figures["votes_available"], figures["votes_cast"], "", figures["rule"], ""]]
    tied = set(figures["tie_for_last_seat"])
    for candidate in figures["candidates"]:
        key = candidate["candidate_id"]
        elected = "lot" if key in tied else _yes_no(candidate["elected"])
        rows.append([entry.key, "candidate", entry.title, key, entry.candidate_names.get(key, ""), "", "", "", "",
                     "", candidate["votes"], elected, "", ""])
    return rows


def tally_csv(session: Session, actor: Actor, meeting_id: int) -> tuple[Meeting, str]:
    """The meeting and its tally as CSV text: the frozen tally, or the running one before freezing."""
    meeting = visible_meeting(session, actor, meeting_id, roles=READ_ROLES)
    figures = results.tally_for(session, actor, meeting_id)
    agenda = {row.item_key: agenda_entry(row) for row in service.agenda_rows(session, meeting.id or 0)}
    rows: list[list[object]] = [list(TALLY_COLUMNS)]
    for item in figures["items"]:  # type: ignore[attr-defined]
        entry = agenda[item["item_id"]]
        if item["kind"] == "election":
            rows += election_rows(entry, item)
        else:
            rows.append(resolution_row(entry, item))
    return meeting, BOM + csv_text(rows)


def exportable_meeting(session: Session, actor: Actor, meeting_id: int) -> Meeting:
    """The meeting whose ballots a host, operator or auditor may list (404 ``unknown_meeting`` otherwise)."""
    return visible_meeting(session, actor, meeting_id, roles=READ_ROLES)


def ballot_line(holder_no: str, received_at: dt.datetime, status: str, ballot_sha256: str,
                leaf_index: int) -> list[object]:
    """One ballot: when it arrived (Taipei and UTC, ISO 8601), its status, hash and log index."""
    utc = received_at.astimezone(dt.UTC)
    return [holder_no, utc.astimezone(TAIPEI).isoformat(), utc.isoformat().replace("+00:00", "Z"), status,
            ballot_sha256, leaf_index]


def ballots_csv(engine: Engine, meeting_id: int, *, chunk_rows: int = CHUNK_ROWS) -> Generator[str, None, None]:
    """The meeting's ballots as CSV text, in order of receipt, one chunk of rows at a time.

    Reads ``chunk_rows`` ballots per query (keyset on the row id, up to the last ballot
    stored when the export began), on its own session, so it can run while the response streams.
    """
    yield BOM + csv_text([BALLOT_COLUMNS])
    with Session(engine) as session:
        last = session.execute(select(func.max(BallotRow.id)).where(BallotRow.meeting_id == meeting_id)).scalar()
        after = 0
        while last is not None and after < last:
            rows = session.execute(_BALLOT_CHUNK, {"meeting_id": meeting_id, "after": after, "last": last,
                                                   "limit": chunk_rows}).all()
            if not rows:
                return
            after = rows[-1].id
            yield csv_text(ballot_line(r.holder_no, r.received_at, r.status, r.ballot_sha256, r.leaf_index)
                           for r in rows)


def encoded(texts: Generator[str, None, None]) -> Generator[bytes, None, None]:
    """``texts`` as UTF-8, closing ``texts`` (and the session it holds) when closed itself:
    what a streamed response needs to let go of an abandoned download at once."""
    with contextlib.closing(texts):
        for text in texts:
            yield text.encode()
