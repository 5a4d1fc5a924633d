"""Secrets of the RA held in the HSM, and the one-time codes it hands out.

* National IDs are kept only as HMAC-SHA256 under ``ra/identity``: equal IDs give equal
  HMACs (one identity across brokers), yet a stolen database reveals nothing and allows no
  offline guessing without the HSM.
* PINs are kept as HMAC-SHA256(salt ‖ PIN) under ``ra/pin``: one HSM call per check, fast
  enough for every signature; guessing is bounded online by the lockout.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from hsm_sim.base import KeyAlgorithm, KeyStore

IDENTITY_KEY = ("ra/identity", "ra:identity")
PIN_KEY = ("ra/pin", "ra:pin")
# 16 characters of an unambiguous base32 alphabet: 80 bits, shown as four dash-separated groups of four.
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_CODE_LENGTH = 16


def ensure_ra_keys(keystore: KeyStore) -> list[str]:
    """Create the RA's HMAC keys in the HSM if missing (idempotent)."""
    created = []
    for label, owner in (IDENTITY_KEY, PIN_KEY):
        if not keystore.has_key(label):
            keystore.generate_secret_key(label, owner, KeyAlgorithm.HMAC_SHA256)
            created.append(label)
    return created


def identity_hmac(keystore: KeyStore, kind: str, number: str) -> str:
    """The stored, searchable stand-in for an identity number (hex)."""
    return keystore.hmac_sha256(*IDENTITY_KEY, f"{kind}:{number}".encode()).hex()


def pin_hmac(keystore: KeyStore, salt: bytes, pin: str) -> bytes:
    """The stored stand-in for a PIN under a per-credential salt."""
    return keystore.hmac_sha256(*PIN_KEY, salt + pin.encode())


def pin_matches(keystore: KeyStore, salt: bytes, pin: str, stored: bytes) -> bool:
    """Constant-time comparison of a PIN attempt with the stored HMAC."""
    return hmac.compare_digest(pin_hmac(keystore, salt, pin), stored)


def new_activation_code() -> str:
    """A fresh one-time activation code for out-of-band delivery."""
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, _CODE_LENGTH, 4))


def normalise_code(code: str) -> str:
    """What a person may type (lower case, spaces, dashes) reduced to the canonical code."""
    return "".join(c for c in code.upper() if c.isalnum())


def code_digest(code: str) -> str:
    """How an activation code is kept at rest."""
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def new_reference() -> str:
    """A public investor reference (certificates carry this, never the national ID)."""
    return "INV-" + secrets.token_hex(6).upper()
