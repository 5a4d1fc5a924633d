"""Who may see and run which meeting: a host only their own issuer's, an operator any.

Every voting query for staff goes through :func:`visible_meeting`; a meeting of another
issuer is answered exactly like one that does not exist (404 ``unknown_meeting``).
"""

from __future__ import annotations

from sqlmodel import Session

from core.auth import Actor, Role, require_role
from core.errors import NotFound
from voting.models import Meeting

MEETING_ROLES = (Role.ISSUER_HOST, Role.OPERATOR)
# Auditors read frozen meetings (reports, bundles); they change nothing.
READ_ROLES = (Role.ISSUER_HOST, Role.OPERATOR, Role.AUDITOR)


def can_see_issuer(actor: Actor, issuer_code: str) -> bool:
    """Operators and auditors see every issuer; a host only the issuer of their account."""
    if actor.role in (Role.OPERATOR, Role.AUDITOR):
        return True
    return actor.role is Role.ISSUER_HOST and actor.tenant == issuer_code


def visible_meeting(session: Session, actor: Actor, meeting_id: int, *, roles: tuple[Role, ...] = MEETING_ROLES,
                    for_update: bool = False) -> Meeting:
    """The meeting if ``actor`` may act on it with one of ``roles``; 404 ``unknown_meeting`` otherwise."""
    require_role(actor, *roles)
    meeting = session.get(Meeting, meeting_id, with_for_update=for_update) if 0 < meeting_id < 2**31 else None
    if meeting is None or not can_see_issuer(actor, meeting.issuer_code) or not auditor_may_read(actor, meeting):
        raise NotFound("no such meeting", code="unknown_meeting")
    return meeting


def auditor_may_read(actor: Actor, meeting: Meeting) -> bool:
    """Auditors read a meeting once its tally is frozen, not while it is being run."""
    return actor.role is not Role.AUDITOR or meeting.status == "frozen"
