"""Canonical JSON (RFC 8785, JCS) with the C JSON encoder for the values the platform signs.

For plain values — dicts with string keys, lists, strings, booleans, None and integers
within ±(2**53 - 1) — RFC 8785's output is what ``json.dumps`` gives with sorted keys, no
whitespace and no ASCII escaping: the same string escapes (``\\b \\f \\n \\r \\t \\" \\\\``
and ``\\u00xx`` in lower case for the other control characters), integers in plain decimal,
and keys in the same order as long as no key holds a character beyond U+D7FF (RFC 8785
sorts by UTF-16 code units, Python by code points; the two differ only above it). Anything
else (floats, other types, such keys, lone surrogates, large integers) goes to the
``rfc8785`` package, which also raises its errors for what JCS cannot represent.

Why: the pure-Python encoder took about 40 µs for a receipt; a ballot takes four encodings.
"""

from __future__ import annotations

import json

import rfc8785

_SAFE_INTEGER = 2**53 - 1
_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode
_MAX_DEPTH = 64  # deeper values are left to rfc8785 (this walk takes two frames a level)


def _plain(value: object, depth: int = 0) -> bool:
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER  # type: ignore[operator]
    if depth >= _MAX_DEPTH:
        return False
    if kind is dict:
        return all(type(key) is str and (key.isascii() or max(key) < "\ud800") and _plain(item, depth + 1)
                   for key, item in value.items())  # type: ignore[attr-defined]
    if kind is list:
        return all(_plain(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    return False


class _NotPlain(Exception):
    """A number the fast reading leaves to the careful one."""


def _not_plain(text: str) -> object:
    raise _NotPlain(text)


def _short_int(text: str) -> int:
    if len(text) > 15:  # 15 characters hold at most 15 digits: below 2**53 - 1
        raise _NotPlain(text)
    return int(text)


_read_plain = json.JSONDecoder(parse_float=_not_plain, parse_int=_short_int, parse_constant=_not_plain).decode


_MAX_CONTAINERS = 64  # objects and arrays: few enough that no reader nears the recursion limit


def read_plain_canonical(data: bytes) -> object | None:
    """The JSON value the bytes ``data`` hold when ``data`` is plainly its own RFC 8785 form,
    else None.

    Plainly: ASCII, at most 64 objects and arrays (so nested too shallowly for any reader to
    run out of stack), integers written in at most 15 characters (so within ±(2**53 - 1)),
    no fraction, exponent or constant, and byte for byte what the C encoder writes for the
    value read. Then every key is ASCII, so the orders agree and the encoder's output is
    RFC 8785's. None says only that this cheap reading could not show it: duplicate keys,
    whitespace, escapes of non-ASCII characters, deep nesting, malformed JSON and anything
    but bytes all land there, and the caller reads ``data`` its careful way (which names the
    fault).
    """
    if (not isinstance(data, bytes | bytearray) or not data.isascii()
            or data.count(b"{") + data.count(b"[") > _MAX_CONTAINERS):
        return None
    text = data.decode("ascii")
    try:
        value = _read_plain(text)
        return value if _encode(value) == text else None
    except (_NotPlain, ValueError, RecursionError):
        return None


def canonical_json(value: object) -> bytes:
    """The RFC 8785 serialisation of ``value`` (raises ``rfc8785``'s errors where it does)."""
    if _plain(value):
        try:
            return _encode(value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: rfc8785 names the error
            pass
    return rfc8785.dumps(value)  # type: ignore[arg-type]
