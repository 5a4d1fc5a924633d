"""The console's two languages: Traditional Chinese and English.

The language is the ``cs_lang`` cookie when set (the switch in the header), otherwise the
best match of the browser's ``Accept-Language``; English when neither names one we have.
Texts live in :mod:`console.messages`; an unknown key shows itself, so a gap is visible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from starlette.requests import Request

from console.messages import ERROR_MESSAGES, MESSAGES
from voting.calendar import TAIPEI

LANGUAGES = ("zh-Hant", "en")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "cs_lang"


def _accept_language(header: str) -> str | None:
    """The first language of ``header`` (by q-value) that the console speaks."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((-quality, position, tag.strip().lower()))
    for quality, _, tag in sorted(ranked):
        if quality >= 0:
            continue
        if tag.startswith("zh"):
            return "zh-Hant"
        if tag.startswith("en"):
            return "en"
    return None


def language_of(request: Request) -> str:
    """The language to answer ``request`` in."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen  # type: ignore[return-value]
    return _accept_language(request.headers.get("accept-language", "")) or DEFAULT_LANGUAGE


def translator(language: str) -> Callable[..., str]:
    """``t(key, **values)``: the text of ``key`` in ``language``, with ``{name}`` filled in."""
    index = 0 if language == "en" else 1

    def t(key: str, **values: object) -> str:
        texts = MESSAGES.get(key)
        text = texts[index] if texts else key
        return text.format(**values) if values else text

    return t


def error_text(language: str, code: str, fallback: str) -> str:
    """A service error in ``language``: its translation by stable code, else the service's message."""
    texts = ERROR_MESSAGES.get(code)
    if texts is None:
        return fallback
    return texts[0 if language == "en" else 1]


def taipei(moment: dt.datetime | None, with_seconds: bool = False) -> str:
    """``moment`` as a person in Taiwan reads it (Asia/Taipei), or an empty string."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(TAIPEI).strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M")


def grouped(value: int | str | None) -> str:
    """An integer (share count) with thousands separators; exact for any size."""
    if value is None or value == "":
        return ""
    return f"{int(value):,}"
