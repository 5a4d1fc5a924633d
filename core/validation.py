"""Shared input types: text that can be stored anywhere (no NUL or control characters)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, Field


def no_control_characters(value: str) -> str:
    """Refuse C0/C1 control characters (PostgreSQL cannot store NUL) and outer spaces."""
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError("control characters are not allowed")
    if value != value.strip():
        raise ValueError("leading or trailing spaces are not allowed")
    return value


def not_in_the_future(value: dt.date | None) -> dt.date | None:
    """A date that has already happened (birth dates)."""
    if value is not None and value > dt.date.today():
        raise ValueError("must not lie in the future")
    return value


def clean(max_length: int, min_length: int = 1) -> type[str]:
    """A ``str`` of bounded length with no control characters, for request models."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length),  # type: ignore[return-value]
                     AfterValidator(no_control_characters)]


PastDate = Annotated[dt.date, AfterValidator(not_in_the_future)]
Text32 = clean(32)
Text64 = clean(64)
Text200 = clean(200)
Description200 = clean(200, min_length=3)
# Path and query integers are database ids: bounded so no driver overflows.
DB_ID_MAX = 2**31 - 1
