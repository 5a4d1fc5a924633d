"""The fast canonical JSON is byte for byte the rfc8785 package's, errors included."""

from __future__ import annotations

import json
import random

import pytest
import rfc8785

from core.canonical import canonical_json, read_plain_canonical

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


def _strict_reading(data: bytes) -> object:
    """What a careful reader accepts: strict JSON whose RFC 8785 form is ``data`` itself."""
    def refuse(text: str) -> object:
        raise ValueError(text)

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ValueError("duplicate key")
        return dict(pairs)

    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates, parse_float=refuse,
                           parse_constant=refuse)
        return value if rfc8785.dumps(value) == data else None
    except (ValueError, RecursionError, rfc8785.CanonicalizationError):
        return None


def _mutants(rng: random.Random, data: bytes) -> list[bytes]:
    """Small edits of ``data``: bytes replaced, inserted or deleted, from JSON's alphabet."""
    alphabet = b'{}[]",:0123456789-+.eE \\u/tfn\x00\x7fa\xc3\xa9'
    out = []
    for _ in range(4000):
        edited = bytearray(data)
        for _ in range(rng.randrange(1, 3)):
            at = rng.randrange(len(edited) + 1)
            what = rng.randrange(3)
            if what == 0 and at < len(edited):
                edited[at] = rng.choice(alphabet)
            elif what == 1:
                edited[at:at] = bytes([rng.choice(alphabet)])
            elif at < len(edited):
                del edited[at]
        out.append(bytes(edited))
    return out


def test_the_plain_reading_accepts_only_what_a_careful_reader_accepts() -> None:
    """``read_plain_canonical`` may leave a canonical text to the careful reader (None), but
    whatever it reads is canonical JSON and reads as the careful reader reads it."""
    rng = random.Random(53)
    seeds = [_outcome(canonical_json, _value(rng)) for _ in range(3000)]
    seeds = [seed for seed in seeds if isinstance(seed, bytes)]
    ballot = (b'{"choices":{"1":"CFOR","2":{"CAGS":5,"CFOR":7},"3":{"allocations":{"C1":123456789012345,"C2":0}}},'
              b'"created_at":"2026-06-01T03:04:05Z","holder":"H001","meeting":"M1","nonce":"abcdefghijklmnop",'
              b'"type":"cloudseal.ballot/1"}')
    read = 0
    for data in [ballot, *seeds, *_mutants(rng, ballot)]:
        plain = read_plain_canonical(data)
        if plain is not None:
            read += 1
            assert plain == _strict_reading(data) and canonical_json(plain) == data, data
    assert read_plain_canonical(ballot) is not None and read > 1000


@pytest.mark.parametrize("data", [
    b'{"a":1,"a":1}',  # a duplicate key
    b'{"b":1,"a":2}',  # keys out of order
    b'{"a": 1}',  # whitespace
    b'[1.5]', b'[1e5]', b'[NaN]', b'[-Infinity]',  # not integers
    b'[9007199254740993]', b'[1234567890123456]', b'[-123456789012345]',  # beyond, or at, 15 digits
    b'[-0]', b'["\\u00e9"]', '["é"]'.encode(), b'["\\ud800"]', b'["\\/"]',  # not the canonical text
    b'{"\\ud83d\\uddf3":1,"\\uffff":2}',  # keys whose UTF-16 order differs
    b'[' * 100_000 + b']' * 100_000,  # deeper than the parser goes
    b'', b'{', b'nul', b'\xff',
])
def test_the_plain_reading_leaves_these_to_the_careful_reader(data: bytes) -> None:
    assert read_plain_canonical(data) is None


def test_the_plain_reading_leaves_more_than_64_containers_to_the_careful_reader() -> None:
    assert read_plain_canonical(b"[" * 32 + b",".join([b"{}"] * 32) + b"]" * 32) is not None
    assert read_plain_canonical(b"[" * 32 + b",".join([b"{}"] * 33) + b"]" * 32) is None


@pytest.mark.parametrize("data", ["[1]", memoryview(b"[1]"), None, 1])
def test_the_plain_reading_leaves_anything_but_bytes_to_the_careful_reader(data: object) -> None:
    assert read_plain_canonical(data) is None  # type: ignore[arg-type]
    assert read_plain_canonical(bytearray(b"[1]")) == [1]


def test_the_plain_reading_reads_plain_canonical_json() -> None:
    assert read_plain_canonical(b'{"a":[1,-2,true,null,"\\u0001\\n"],"b":{}}') == {
        "a": [1, -2, True, None, "\x01\n"], "b": {}}
    assert read_plain_canonical(b'[123456789012345]') == [123456789012345]
