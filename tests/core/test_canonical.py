"""The fast canonical JSON is byte for byte the rfc8785 package's, errors included."""

from __future__ import annotations

import random

import pytest
import rfc8785

from core.canonical import canonical_json

# Characters where the encoders could differ: escapes, controls, DEL, the BMP's top,
# surrogates (lone ones are errors), astral characters (sorted differently by UTF-16).
_CHARS = ['"', "\\", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "/", "a", "Z", "é", "臺",
          "\u2028", "\ud7ff", "\ue000", "\uffff", "\U0001f5f3", "\U00010000", "\ud800"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randrange(0, 5)))


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return rng.choice([0, 1, -1, 2**53 - 1, -(2**53 - 1), 2**53, -(2**53), 10**30, rng.randrange(-10**6, 10**6)])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice([0.5, 1.0, -0.0, 1e21, 1e-7, 123.456])
    if kind == 4:
        return rng.choice(["CFOR", "CAGS", "ABST", "2026-06-04T00:00:00.000000Z"])
    if kind == 5:
        return rng.choice([(1, 2), {"a"}, b"x"])
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randrange(5))}


def _outcome(encode: object, value: object) -> bytes | str:
    try:
        return encode(value)  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 - the error's type is what must agree
        return type(exc).__name__


def test_canonical_json_agrees_with_rfc8785_on_thousands_of_values() -> None:
    rng = random.Random(8785)
    fast = 0
    for _ in range(20000):
        value = _value(rng)
        assert _outcome(canonical_json, value) == _outcome(rfc8785.dumps, value), value
        fast += isinstance(_outcome(rfc8785.dumps, value), bytes)
    assert fast > 10000


@pytest.mark.parametrize("value", [
    {"\U0001f5f3": 1, "\uffff": 2, "a": 3},  # UTF-16 order puts the astral key first
    {"b": [1, {"d": None, "c": True}], "a": "\u0007"},
    {"type": "cloudseal.receipt/1", "leaf_index": 41, "tree_head": {"tree_size": 42, "root": "ab"}},
])
def test_known_cases(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [63, 64, 65, 900])
def test_deep_values_agree_too(depth: int) -> None:
    """Deep nesting is left to rfc8785, which gets as deep as it always did."""
    value: object = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    assert _outcome(canonical_json, value) == _outcome(rfc8785.dumps, value)
