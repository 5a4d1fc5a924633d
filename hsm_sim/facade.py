"""cryptography private-key facades over HSM-held keys.

cryptography's builders (``x509.CertificateBuilder``, ``CertificateRevocationListBuilder``,
``ocsp.OCSPResponseBuilder``) accept any subclass of ``ec.EllipticCurvePrivateKey`` or
``rsa.RSAPrivateKey`` and only call its ``sign``; these facades forward that call to
:meth:`KeyStore.sign` on behalf of a fixed owner. Everything that would reveal or use the
private key otherwise (export, ECDH, RSA decryption) raises :class:`PolicyViolation`.
"""

from __future__ import annotations

from typing import NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding

from hsm_sim.base import DigestAlgorithm, HsmError, KeyStore, Mechanism, PolicyViolation
from hsm_sim.policy import check_owner, digest_algorithm_for, hash_for


def _digest(
    data: bytes, algorithm: hashes.HashAlgorithm | utils.Prehashed
) -> tuple[bytes, DigestAlgorithm]:
    """Hash ``data`` (or take it as the digest when prehashed) with an allowed SHA-2."""
    if isinstance(algorithm, utils.Prehashed):
        return bytes(data), digest_algorithm_for(algorithm._algorithm)
    digest_algorithm = digest_algorithm_for(algorithm)
    hasher = hashes.Hash(hash_for(digest_algorithm))
    hasher.update(data)
    return hasher.finalize(), digest_algorithm


def _no_export() -> NoReturn:
    raise PolicyViolation("HSM-held private keys cannot be exported or used outside the HSM")


class _HsmKeyHandle:
    """What both facades share: the binding to one key and owner, and no way to copy out."""

    _public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey

    def _bind(self, store: KeyStore, label: str, owner: str, kind: str) -> None:
        info = store.key_info(label)
        is_kind = info.algorithm.is_ec if kind == "EC" else info.algorithm.is_rsa
        if not is_kind:
            raise PolicyViolation(f"key {label!r} is not an {kind} key")
        check_owner(info, owner)
        public = store.public_key(label)
        expected = ec.EllipticCurvePublicKey if kind == "EC" else rsa.RSAPublicKey
        if not isinstance(public, expected):
            raise HsmError(f"the store returned no {kind} public key for {label!r}")
        self._store, self._label, self._owner = store, label, owner
        self._public = public

    @property
    def label(self) -> str:
        """The key's label in the store."""
        return self._label

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _no_export()

    def __copy__(self) -> _HsmKeyHandle:
        return self  # an immutable handle

    def __deepcopy__(self, memo: dict) -> _HsmKeyHandle:
        return self


class HsmEcPrivateKey(_HsmKeyHandle, ec.EllipticCurvePrivateKey):
    """An EC key in a :class:`KeyStore`, usable wherever cryptography wants a private key."""

    def __init__(self, store: KeyStore, label: str, owner: str) -> None:
        """Bind to the EC key ``label``, signing on behalf of ``owner``."""
        self._bind(store, label, owner, "EC")

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(
        self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
    ) -> bytes:
        """Return a DER ECDSA signature over ``data`` (hashed here unless ``Prehashed``)."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise PolicyViolation("only ECDSA signatures are supported")
        if getattr(signature_algorithm, "deterministic_signing", False):
            raise PolicyViolation("deterministic (RFC 6979) ECDSA is not available from the HSM")
        digest, digest_algorithm = _digest(bytes(data), signature_algorithm.algorithm)
        return self._store.sign(self._label, self._owner, digest, digest_algorithm, Mechanism.ECDSA)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        _no_export()

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _no_export()


class HsmRsaPrivateKey(_HsmKeyHandle, rsa.RSAPrivateKey):
    """An RSA key in a :class:`KeyStore`, usable wherever cryptography wants a private key."""

    def __init__(self, store: KeyStore, label: str, owner: str) -> None:
        """Bind to the RSA key ``label``, signing on behalf of ``owner``."""
        self._bind(store, label, owner, "RSA")

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(
        self,
        data: bytes,
        padding: AsymmetricPadding,
        algorithm: utils.Prehashed | hashes.HashAlgorithm | utils.NoDigestInfo,
    ) -> bytes:
        """Sign with PKCS#1 v1.5 or PSS (MGF1 with the same hash, salt = digest length)."""
        if isinstance(algorithm, utils.NoDigestInfo):
            raise PolicyViolation("RSA signatures without DigestInfo are not allowed")
        digest, digest_algorithm = _digest(bytes(data), algorithm)
        mechanism = _rsa_mechanism(padding, digest_algorithm)
        return self._store.sign(self._label, self._owner, digest, digest_algorithm, mechanism)

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        raise PolicyViolation("HSM-held signing keys cannot decrypt")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _no_export()


def _rsa_mechanism(pad: AsymmetricPadding, digest_algorithm: DigestAlgorithm) -> Mechanism:
    if isinstance(pad, padding.PKCS1v15):
        return Mechanism.RSA_PKCS1V15
    if not isinstance(pad, padding.PSS):
        raise PolicyViolation(f"RSA padding {pad.name!r} is not supported for signing")
    mgf = pad.mgf
    if not isinstance(mgf, padding.MGF1) or type(mgf._algorithm) is not type(
        hash_for(digest_algorithm)
    ):
        raise PolicyViolation("RSA-PSS needs MGF1 with the signature's hash")
    salt = pad._salt_length
    if salt is not padding.PSS.DIGEST_LENGTH and salt != digest_algorithm.size:
        raise PolicyViolation("RSA-PSS salt must be as long as the digest")
    return Mechanism.RSA_PSS


def hsm_private_key(store: KeyStore, label: str, owner: str) -> HsmEcPrivateKey | HsmRsaPrivateKey:
    """The facade matching the algorithm of the key ``label`` (secret keys have none)."""
    algorithm = store.key_info(label).algorithm
    if algorithm.is_ec:
        return HsmEcPrivateKey(store, label, owner)
    if algorithm.is_rsa:
        return HsmRsaPrivateKey(store, label, owner)
    raise PolicyViolation(f"key {label!r} is a secret key and cannot sign certificates")
