"""The e-voting window by the Asia/Taipei calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from voting.calendar import (
    TAIPEI,
    evoting_closes_at,
    evoting_opens_at,
    last_moment_display,
    window_contains,
)


def test_meeting_on_june_4_closes_after_june_1_235959_taipei() -> None:
    closes_at = evoting_closes_at(date(2026, 6, 4))
    assert closes_at == datetime(2026, 6, 1, 16, 0, 0, tzinfo=UTC)
    assert closes_at.utcoffset() == timedelta(0)
    assert closes_at.astimezone(TAIPEI).replace(tzinfo=None) == datetime(2026, 6, 2, 0, 0, 0)
    assert last_moment_display(date(2026, 6, 4)) == "2026-06-01 23:59:59 (Asia/Taipei)"


def test_window_opens_at_taipei_midnight_after_the_notice() -> None:
    opens_at = evoting_opens_at(date(2026, 5, 5))
    assert opens_at == datetime(2026, 5, 5, 16, 0, 0, tzinfo=UTC)
    assert opens_at.astimezone(TAIPEI).replace(tzinfo=None) == datetime(2026, 5, 6, 0, 0, 0)


def test_window_crosses_month_and_year_boundaries() -> None:
    assert evoting_closes_at(date(2027, 1, 1)) == datetime(2026, 12, 29, 16, 0, tzinfo=UTC)
    assert last_moment_display(date(2026, 3, 2)) == "2026-02-27 23:59:59 (Asia/Taipei)"
    assert evoting_opens_at(date(2026, 12, 31)) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)


def test_window_is_half_open() -> None:
    opens_at = evoting_opens_at(date(2026, 5, 5))
    closes_at = evoting_closes_at(date(2026, 6, 4))
    last_second = datetime(2026, 6, 1, 23, 59, 59, 999_999, tzinfo=TAIPEI)
    assert window_contains(opens_at, opens_at, closes_at)
    assert window_contains(last_second, opens_at, closes_at)
    assert not window_contains(closes_at, opens_at, closes_at)
    assert not window_contains(opens_at - timedelta(microseconds=1), opens_at, closes_at)
    with pytest.raises(ValueError):
        window_contains(datetime(2026, 6, 1), opens_at, closes_at)
