"""The signed PDF report of a frozen meeting: made when the meeting is frozen, served after.

Freezing calls :func:`store_report` in its own transaction, so a meeting is frozen with its
sealed report or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

from sqlmodel import Session

from ca.context import Pki
from core.auth import Actor
from core.errors import Conflict
from voting.access import READ_ROLES, visible_meeting
from voting.models import Meeting, MeetingReport
from voting.report_data import gather_report_data
from voting.report_pdf import render_report
from voting.report_sign import seal_pdf


def store_report(session: Session, pki: Pki, meeting: Meeting, tally: Mapping[str, object],
                 frozen_at: dt.datetime) -> MeetingReport:
    """Render the report of ``meeting`` frozen with ``tally``, seal it and store it."""
    pdf = render_report(gather_report_data(session, meeting, tally, frozen_at))
    sealed = seal_pdf(session, pki, pdf, reason=f"Voting results of meeting {meeting.public_id}")
    report = MeetingReport(meeting_id=meeting.id or 0, pdf=sealed, pdf_sha256=hashlib.sha256(sealed).hexdigest(),
                           created_at=frozen_at)
    session.add(report)
    session.flush()
    return report


def report_for(session: Session, actor: Actor, meeting_id: int) -> tuple[Meeting, MeetingReport]:
    """The sealed report of a meeting the caller may read; 409 ``meeting_not_frozen`` before
    freezing, 409 ``report_missing`` for a meeting frozen before reports existed."""
    meeting = visible_meeting(session, actor, meeting_id, roles=READ_ROLES)
    if meeting.status != "frozen":
        raise Conflict("the report is made when the meeting is frozen", code="meeting_not_frozen")
    report = session.get(MeetingReport, meeting.id)
    if report is None:
        raise Conflict("this meeting was frozen without a report", code="report_missing")
    return meeting, report
