"""The e-voting window, by the Asia/Taipei calendar (Art. 177-2).

The window is half-open: ``opens_at <= received_at < closes_at``, both instants in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

TAIPEI = ZoneInfo("Asia/Taipei")

# A ballot or revocation must arrive two full days before the meeting day: for a meeting on
# day D the last accepted day is D-3, so the window closes at the start of D-2.
_CLOSING_DAYS_BEFORE_MEETING = 2


def _taipei_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=TAIPEI).astimezone(UTC)


def evoting_opens_at(notice_published_on: date) -> datetime:
    """00:00 Asia/Taipei of the day after the meeting notice is published, in UTC."""
    return _taipei_midnight(notice_published_on + timedelta(days=1))


def evoting_closes_at(meeting_date: date) -> datetime:
    """The exclusive end of the window, in UTC: 00:00 Asia/Taipei two days before the meeting.

    For a meeting on 2026-06-04 the last accepted moment is 2026-06-01 23:59:59 Taipei and
    this returns 2026-06-01T16:00:00Z.
    """
    return _taipei_midnight(meeting_date - timedelta(days=_CLOSING_DAYS_BEFORE_MEETING))


def last_moment_display(meeting_date: date) -> str:
    """The last accepted second as a person reads it, e.g. ``2026-06-01 23:59:59 (Asia/Taipei)``."""
    last = (evoting_closes_at(meeting_date) - timedelta(seconds=1)).astimezone(TAIPEI)
    return f"{last:%Y-%m-%d %H:%M:%S} (Asia/Taipei)"


def window_contains(received_at: datetime, opens_at: datetime, closes_at: datetime) -> bool:
    """Whether an arrival time falls in the half-open window [opens_at, closes_at)."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return opens_at <= received_at < closes_at
