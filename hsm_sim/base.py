"""The key-custody interface every HSM backend implements.

Nothing above ``hsm_sim`` knows which backend runs: the software HSM (the embedded default)
and the PKCS#11 backend expose the same operations, raise the same errors and pass the same
contract tests. There is deliberately no operation that returns private or secret key
material.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa


class KeyAlgorithm(str, enum.Enum):
    """Key types the platform generates."""

    EC_P256 = "EC_P256"
    EC_P384 = "EC_P384"
    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    HMAC_SHA256 = "HMAC_SHA256"

    @property
    def is_ec(self) -> bool:
        return self in (KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384)

    @property
    def is_rsa(self) -> bool:
        return self in (KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_3072)

    @property
    def is_secret(self) -> bool:
        return self is KeyAlgorithm.HMAC_SHA256


class Mechanism(str, enum.Enum):
    """Operations a key may be used for; each key carries an allow-list of them."""

    ECDSA = "ECDSA"
    RSA_PKCS1V15 = "RSA_PKCS1V15"
    RSA_PSS = "RSA_PSS"
    HMAC_SHA256 = "HMAC_SHA256"


class DigestAlgorithm(str, enum.Enum):
    """Digest algorithms accepted by :meth:`KeyStore.sign`, with their output sizes."""

    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    @property
    def size(self) -> int:
        return {"sha256": 32, "sha384": 48, "sha512": 64}[self.value]


# The mechanisms each key type supports; also the default allow-list of a new key.
DEFAULT_MECHANISMS: dict[KeyAlgorithm, frozenset[Mechanism]] = {
    KeyAlgorithm.EC_P256: frozenset({Mechanism.ECDSA}),
    KeyAlgorithm.EC_P384: frozenset({Mechanism.ECDSA}),
    KeyAlgorithm.RSA_2048: frozenset({Mechanism.RSA_PKCS1V15, Mechanism.RSA_PSS}),
    KeyAlgorithm.RSA_3072: frozenset({Mechanism.RSA_PKCS1V15, Mechanism.RSA_PSS}),
    KeyAlgorithm.HMAC_SHA256: frozenset({Mechanism.HMAC_SHA256}),
}

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class KeyInfo:
    """What the HSM tells about a key: never the key itself."""

    label: str
    owner: str
    algorithm: KeyAlgorithm
    mechanisms: frozenset[Mechanism]


class HsmError(Exception):
    """Base class of every key-custody error."""


class KeyNotFound(HsmError):
    """No key exists under the label."""


class KeyExists(HsmError):
    """A key already exists under the label."""


class PolicyViolation(HsmError):
    """The key's policy forbids the request (wrong owner, mechanism or input)."""


class KeyLocked(HsmError):
    """The HSM (or the key) is not usable now: missing master key, token not logged in."""


class KeyStore(abc.ABC):
    """Key custody: generate, use and destroy keys that never leave the store.

    ``owner`` names who may use a key (e.g. ``"ca:issuing"`` or ``"investor:42"``); every
    use states the owner it acts for and a mismatch raises :class:`PolicyViolation`.
    Labels are unique within a store.
    """

    @abc.abstractmethod
    def generate_key_pair(
        self,
        label: str,
        owner: str,
        algorithm: KeyAlgorithm,
        mechanisms: frozenset[Mechanism] | None = None,
    ) -> KeyInfo:
        """Generate an asymmetric key pair inside the store and return its description."""

    @abc.abstractmethod
    def generate_secret_key(
        self,
        label: str,
        owner: str,
        algorithm: KeyAlgorithm = KeyAlgorithm.HMAC_SHA256,
    ) -> KeyInfo:
        """Generate a secret (HMAC) key inside the store."""

    @abc.abstractmethod
    def key_info(self, label: str) -> KeyInfo:
        """Describe the key under ``label``; raise :class:`KeyNotFound` if there is none."""

    @abc.abstractmethod
    def public_key(self, label: str) -> PublicKey:
        """Return the public key of an asymmetric key pair."""

    @abc.abstractmethod
    def sign(
        self,
        label: str,
        owner: str,
        digest: bytes,
        digest_algorithm: DigestAlgorithm,
        mechanism: Mechanism,
    ) -> bytes:
        """Sign a precomputed digest.

        ECDSA signatures are returned DER-encoded (as X.509 and CMS carry them); RSA
        signatures as the raw big-endian integer of the modulus size. RSA-PSS uses MGF1 with
        the digest's hash and a salt as long as the digest.
        """

    @abc.abstractmethod
    def hmac_sha256(self, label: str, owner: str, data: bytes) -> bytes:
        """Return HMAC-SHA256 of ``data`` under the secret key ``label``."""

    @abc.abstractmethod
    def destroy(self, label: str) -> None:
        """Destroy the key under ``label``; raise :class:`KeyNotFound` if there is none."""

    def has_key(self, label: str) -> bool:
        """Tell whether a key exists under ``label``."""
        try:
            self.key_info(label)
        except KeyNotFound:
            return False
        return True

    def close(self) -> None:
        """Release sessions and handles held by the backend."""
