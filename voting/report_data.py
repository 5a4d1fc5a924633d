"""What the signed report of a frozen meeting shows, gathered from the database once.

:func:`gather_report_data` reads the meeting, its issuer, its agenda (titles, candidate
names), the newest sealed tree head of its ballot log and takes the frozen tally as it was
just computed; :mod:`voting.report_pdf` turns the result into a PDF without touching the
database. Share figures stay Python ints of any size.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sqlmodel import Session

from voting import ballot_log, service
from voting.models import AgendaItemRow, Issuer, Meeting


@dataclass(frozen=True)
class AgendaEntry:
    """An agenda item as the report names it."""

    key: str
    kind: str
    title: str
    article: str | None
    seats: int
    candidate_names: Mapping[str, str]


@dataclass(frozen=True)
class TreeHeadLine:
    """The sealed tree head of the ballot log at freezing."""

    tree_size: int
    root_hash: bytes
    issued_at: dt.datetime


@dataclass(frozen=True)
class ReportData:
    """Everything the PDF report shows. ``tally`` is :meth:`voting.tally.TallyResult.as_dict`
    (ints stay ints); ``agenda`` is in agenda order."""

    issuer_code: str
    issuer_name: str
    meeting_public_id: str
    meeting_title: str
    meeting_date: dt.date
    frozen_at: dt.datetime
    agenda: tuple[AgendaEntry, ...]
    tally: Mapping[str, object]
    tree_head: TreeHeadLine | None

    def entry(self, item_key: str) -> AgendaEntry:
        """The agenda entry of ``item_key`` (KeyError for an item not on the agenda)."""
        for entry in self.agenda:
            if entry.key == item_key:
                return entry
        raise KeyError(item_key)


def agenda_entry(row: AgendaItemRow) -> AgendaEntry:
    """An agenda row as the report names it (candidates keyed by their ballot key)."""
    names = {c["key"]: c["name"] for c in json.loads(row.candidates)}
    return AgendaEntry(row.item_key, row.kind, row.title, row.article, row.seats, MappingProxyType(names))


def gather_report_data(session: Session, meeting: Meeting, tally: Mapping[str, object],
                       frozen_at: dt.datetime) -> ReportData:
    """The report's data for ``meeting`` frozen at ``frozen_at`` with the figures ``tally``."""
    issuer = session.get(Issuer, meeting.issuer_code)
    head = ballot_log.latest_tree_head(session, meeting.id or 0)
    return ReportData(
        issuer_code=meeting.issuer_code,
        issuer_name=issuer.name if issuer is not None else meeting.issuer_code,
        meeting_public_id=meeting.public_id,
        meeting_title=meeting.title,
        meeting_date=meeting.meeting_date,
        frozen_at=frozen_at,
        agenda=tuple(agenda_entry(row) for row in service.agenda_rows(session, meeting.id or 0)),
        tally=tally,
        tree_head=TreeHeadLine(head.tree_size, head.root_hash, head.issued_at) if head is not None else None,
    )
