"""Per-key policy checks shared by every backend.

Both backends call these before touching key material, so a request that one backend
refuses is refused by the other with the same error class and message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import hashes

from hsm_sim.base import (
    DEFAULT_MECHANISMS,
    DigestAlgorithm,
    HsmError,
    KeyAlgorithm,
    KeyInfo,
    Mechanism,
    PolicyViolation,
)

MAX_LABEL_LENGTH = 128

_HASHES: dict[DigestAlgorithm, type[hashes.HashAlgorithm]] = {
    DigestAlgorithm.SHA256: hashes.SHA256,
    DigestAlgorithm.SHA384: hashes.SHA384,
    DigestAlgorithm.SHA512: hashes.SHA512,
}


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise PolicyViolation(f"{kind} must be a non-empty string")
    if len(value) > MAX_LABEL_LENGTH:
        raise PolicyViolation(f"{kind} is longer than {MAX_LABEL_LENGTH} characters")
    if not value.isprintable():
        raise PolicyViolation(f"{kind} contains non-printable characters")
    return value


def validate_label(label: object) -> str:
    """Return ``label`` if it is a usable key label (non-empty, ≤ 128, printable)."""
    return _check_name("key label", label)


def validate_owner(owner: object) -> str:
    """Return ``owner`` if it is a usable owner name (same rules as labels)."""
    return _check_name("key owner", owner)


def coerce_algorithm(algorithm: object) -> KeyAlgorithm:
    """Accept a :class:`KeyAlgorithm` or its string value."""
    try:
        return KeyAlgorithm(algorithm)
    except ValueError:
        raise PolicyViolation(f"unknown key algorithm {algorithm!r}") from None


def coerce_mechanism(mechanism: object) -> Mechanism:
    """Accept a :class:`Mechanism` or its string value."""
    try:
        return Mechanism(mechanism)
    except ValueError:
        raise PolicyViolation(f"unknown mechanism {mechanism!r}") from None


def coerce_digest(digest_algorithm: object) -> DigestAlgorithm:
    """Accept a :class:`DigestAlgorithm` or its string value."""
    try:
        return DigestAlgorithm(digest_algorithm)
    except ValueError:
        raise PolicyViolation(f"unsupported digest algorithm {digest_algorithm!r}") from None


def hash_for(digest_algorithm: DigestAlgorithm) -> hashes.HashAlgorithm:
    """The cryptography hash object matching ``digest_algorithm``."""
    return _HASHES[digest_algorithm]()


def digest_algorithm_for(algorithm: hashes.HashAlgorithm) -> DigestAlgorithm:
    """Map a cryptography hash object to a :class:`DigestAlgorithm` (SHA-2 only)."""
    for digest_algorithm, hash_type in _HASHES.items():
        if type(algorithm) is hash_type:
            return digest_algorithm
    raise PolicyViolation(f"hash {getattr(algorithm, 'name', algorithm)!r} is not allowed")


def resolve_mechanisms(
    algorithm: KeyAlgorithm, mechanisms: Iterable[object] | None
) -> frozenset[Mechanism]:
    """The allow-list of a new key: the default, or a non-empty subset of it."""
    supported = DEFAULT_MECHANISMS[algorithm]
    if mechanisms is None:
        return supported
    requested = frozenset(coerce_mechanism(m) for m in mechanisms)
    if not requested:
        raise PolicyViolation("a key needs at least one allowed mechanism")
    unsupported = requested - supported
    if unsupported:
        names = ", ".join(sorted(m.value for m in unsupported))
        raise PolicyViolation(f"{algorithm.value} keys cannot be used for {names}")
    return requested


def check_owner(info: KeyInfo, owner: object) -> None:
    """Refuse a use on behalf of anyone but the key's owner."""
    if owner != info.owner:
        raise PolicyViolation(f"key {info.label!r} does not belong to owner {owner!r}")


def check_sign(
    info: KeyInfo,
    owner: object,
    digest: object,
    digest_algorithm: object,
    mechanism: object,
) -> tuple[DigestAlgorithm, Mechanism]:
    """Check a signature request against the key's policy; return the coerced arguments."""
    check_owner(info, owner)
    mech = coerce_mechanism(mechanism)
    digest_alg = coerce_digest(digest_algorithm)
    if info.algorithm.is_secret:
        raise PolicyViolation(f"key {info.label!r} is a secret key and cannot sign")
    if mech is Mechanism.HMAC_SHA256:
        raise PolicyViolation("HMAC is not a signature mechanism; use hmac_sha256")
    if mech not in DEFAULT_MECHANISMS[info.algorithm]:
        raise PolicyViolation(f"{mech.value} does not apply to {info.algorithm.value} keys")
    if mech not in info.mechanisms:
        raise PolicyViolation(f"key {info.label!r} is not allowed to sign with {mech.value}")
    if not isinstance(digest, bytes):
        raise PolicyViolation("digest must be bytes")
    if len(digest) != digest_alg.size:
        raise PolicyViolation(
            f"a {digest_alg.value} digest is {digest_alg.size} bytes, got {len(digest)}"
        )
    return digest_alg, mech


def check_hmac(info: KeyInfo, owner: object, data: object) -> None:
    """Check an HMAC request against the key's policy."""
    check_owner(info, owner)
    if not info.algorithm.is_secret:
        raise PolicyViolation(f"key {info.label!r} is an asymmetric key and cannot HMAC")
    if Mechanism.HMAC_SHA256 not in info.mechanisms:
        raise PolicyViolation(f"key {info.label!r} is not allowed to compute HMAC_SHA256")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PolicyViolation("HMAC input must be bytes")


def policy_document(info: KeyInfo) -> dict[str, Any]:
    """The policy of a key as plain JSON data (mechanisms sorted, so it is canonical)."""
    return {
        "label": info.label,
        "owner": info.owner,
        "algorithm": info.algorithm.value,
        "mechanisms": sorted(m.value for m in info.mechanisms),
    }


def canonical_json(document: dict[str, Any]) -> bytes:
    """Deterministic JSON bytes (sorted keys, no whitespace, ASCII)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def info_from_document(document: object) -> KeyInfo:
    """Rebuild a :class:`KeyInfo` from stored policy data; raise :class:`HsmError` if malformed."""
    malformed = HsmError("stored key policy is malformed")
    if not isinstance(document, dict):
        raise malformed
    label, owner = document.get("label"), document.get("owner")
    if not isinstance(label, str) or not isinstance(owner, str):
        raise malformed
    try:
        algorithm = KeyAlgorithm(document["algorithm"])
        mechanisms = frozenset(Mechanism(m) for m in document["mechanisms"])
    except (KeyError, TypeError, ValueError):
        raise malformed from None
    if not mechanisms <= DEFAULT_MECHANISMS[algorithm]:
        raise HsmError(f"stored policy of key {label!r} names mechanisms its type cannot use")
    return KeyInfo(label=label, owner=owner, algorithm=algorithm, mechanisms=mechanisms)


class KeyIntegrityError(HsmError):
    """A stored key failed its integrity check: altered policy or key, or another master key.

    The key is never used in that state; an operator restores it from backup or destroys it.
    """
