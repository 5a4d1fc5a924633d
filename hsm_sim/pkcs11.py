"""The PKCS#11 backend: keys live in a token (SoftHSM2 in tests, a network HSM in production).

Keys are token objects, private, sensitive and non-extractable, found by ``CKA_LABEL`` and a
random ``CKA_ID`` shared by the pair. Each key's policy (owner, algorithm, mechanisms) is a
private ``CKO_DATA`` object with ``CKA_APPLICATION = "cloudseal-policy"`` and the same label,
and this layer enforces it exactly as the software HSM does (``hsm_sim.policy``).

Sessions, threading and error mapping are in :mod:`hsm_sim.pkcs11_session`: every call
runs under one lock per library, so checking that a label is free and creating the key are
atomic within a process. PKCS#11 offers no atomic create-if-absent, so two *processes* could
still race on one label; callers derive labels from database rows that are unique already.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asn1crypto.core import OctetString
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import MGF, Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11 import Mechanism as P11Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from hsm_sim.base import (
    DigestAlgorithm,
    HsmError,
    KeyAlgorithm,
    KeyExists,
    KeyInfo,
    KeyLocked,
    KeyNotFound,
    KeyStore,
    Mechanism,
    PolicyViolation,
    PublicKey,
)
from hsm_sim.policy import (
    KeyIntegrityError,
    canonical_json,
    check_hmac,
    check_sign,
    coerce_algorithm,
    info_from_document,
    policy_document,
    resolve_mechanisms,
    validate_label,
    validate_owner,
)
from hsm_sim.pkcs11_session import TokenConnection, connect, release, run

POLICY_APPLICATION = "cloudseal-policy"

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1): CKM_RSA_PKCS pads whatever it is given.
_DIGEST_INFO_PREFIX = {
    DigestAlgorithm.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    DigestAlgorithm.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    DigestAlgorithm.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}
_PSS_PARAMS = {
    DigestAlgorithm.SHA256: (P11Mechanism.SHA256, MGF.SHA256, 32),
    DigestAlgorithm.SHA384: (P11Mechanism.SHA384, MGF.SHA384, 48),
    DigestAlgorithm.SHA512: (P11Mechanism.SHA512, MGF.SHA512, 64),
}
_CURVES: dict[KeyAlgorithm, ec.EllipticCurve] = {
    KeyAlgorithm.EC_P256: ec.SECP256R1(),
    KeyAlgorithm.EC_P384: ec.SECP384R1(),
}
_RSA_BITS = {KeyAlgorithm.RSA_2048: 2048, KeyAlgorithm.RSA_3072: 3072}
_KEY_TYPES = {
    KeyAlgorithm.EC_P256: KeyType.EC,
    KeyAlgorithm.EC_P384: KeyType.EC,
    KeyAlgorithm.RSA_2048: KeyType.RSA,
    KeyAlgorithm.RSA_3072: KeyType.RSA,
    KeyAlgorithm.HMAC_SHA256: KeyType.GENERIC_SECRET,
}
_OBJECT_GONE = (p11e.ObjectHandleInvalid, p11e.KeyHandleInvalid)
CACHE_SIZE = 4096  # looked-up keys kept per token connection (object handles, public keys)

_T = TypeVar("_T")


@dataclass
class _Entry:
    """A key looked up on the token, cached while its policy object still reads the same."""

    info: KeyInfo
    policy_object: Any
    policy_value: bytes
    key: Any  # pkcs11 PrivateKey or SecretKey
    public: PublicKey | None


def _public_from_token(public: Any, algorithm: KeyAlgorithm) -> PublicKey:
    """Build a cryptography public key from a token public-key object, checking its type."""
    if algorithm.is_ec:
        curve = _CURVES[algorithm]
        if bytes(public[Attribute.EC_PARAMS]) != encode_named_curve_parameters(curve.name):
            raise KeyIntegrityError("the token key's curve differs from its policy")
        point = OctetString.load(bytes(public[Attribute.EC_POINT])).native
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    modulus = int.from_bytes(public[Attribute.MODULUS], "big")
    exponent = int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
    key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    if key.key_size != _RSA_BITS[algorithm]:
        raise KeyIntegrityError("the token key's size differs from its policy")
    return key


class Pkcs11KeyStore(KeyStore):
    """Key store on a PKCS#11 token (see the module doc)."""

    def __init__(self, library_path: str, token_label: str, user_pin: str) -> None:
        """Log in to the token labelled ``token_label`` of the library at ``library_path``."""
        self._conn: TokenConnection | None = connect(library_path, token_label, user_pin)

    def _call(self, operation: Callable[[TokenConnection], _T]) -> _T:
        if self._conn is None:
            raise KeyLocked("this PKCS#11 key store is closed")
        return run(self._conn, operation)

    # -- lookup ----------------------------------------------------------------------------

    @staticmethod
    def _objects(conn: TokenConnection, label: str, attrs: dict[Attribute, Any]) -> list[Any]:
        return list(conn.session.get_objects({Attribute.LABEL: label, **attrs}))

    def _entry(self, conn: TokenConnection, label: str) -> _Entry:
        """The key under ``label``; a cached entry is re-validated by re-reading its policy."""
        cache = conn.cache
        entry = cache.get(label)
        if entry is not None:
            del cache[label]  # re-inserted below or on success: the dict is kept in LRU order
            try:
                if bytes(entry.policy_object[Attribute.VALUE]) == entry.policy_value:
                    cache[label] = entry
                    return entry
            except _OBJECT_GONE:
                pass
        policy_template = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: POLICY_APPLICATION,
        }
        policies = self._objects(conn, label, policy_template)
        if not policies:
            raise KeyNotFound(f"no key under label {label!r}")
        if len(policies) > 1:
            raise KeyIntegrityError(f"label {label!r} has several policies on the token")
        value = bytes(policies[0][Attribute.VALUE])
        try:
            document = json.loads(value)
            info = info_from_document(document)
            key_id = bytes.fromhex(document["key_id"])
        except (ValueError, KeyError, TypeError, HsmError):
            raise KeyIntegrityError(f"the policy object of {label!r} is damaged") from None
        if info.label != label:
            raise KeyIntegrityError(f"the policy object of {label!r} names another label")
        klass = ObjectClass.SECRET_KEY if info.algorithm.is_secret else ObjectClass.PRIVATE_KEY
        keys = self._objects(conn, label, {Attribute.CLASS: klass, Attribute.ID: key_id})
        if len(keys) != 1:
            raise KeyIntegrityError(f"key {label!r} has a policy but {len(keys)} key objects")
        if keys[0].key_type is not _KEY_TYPES[info.algorithm]:
            raise KeyIntegrityError(f"the token key of {label!r} differs from its policy")
        public = None
        if not info.algorithm.is_secret:
            publics = self._objects(
                conn, label, {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key_id}
            )
            if len(publics) != 1:
                raise KeyIntegrityError(f"key {label!r} has {len(publics)} public key objects")
            public = _public_from_token(publics[0], info.algorithm)
        entry = _Entry(info, policies[0], value, keys[0], public)
        cache[label] = entry
        if len(cache) > CACHE_SIZE:
            del cache[next(iter(cache))]
        return entry

    def key_info(self, label: str) -> KeyInfo:
        """Describe the key under ``label``."""
        label = validate_label(label)
        return self._call(lambda conn: self._entry(conn, label).info)

    def public_key(self, label: str) -> PublicKey:
        """Return the public key of the key pair under ``label``."""
        label = validate_label(label)
        public = self._call(lambda conn: self._entry(conn, label).public)
        if public is None:
            raise PolicyViolation(f"key {label!r} is a secret key and has no public key")
        return public

    # -- generation ------------------------------------------------------------------------

    def _new_info(
        self,
        label: str,
        owner: str,
        algorithm: KeyAlgorithm,
        mechanisms: frozenset[Mechanism] | None,
    ) -> KeyInfo:
        return KeyInfo(
            label=validate_label(label),
            owner=validate_owner(owner),
            algorithm=algorithm,
            mechanisms=resolve_mechanisms(algorithm, mechanisms),
        )

    def _create(self, info: KeyInfo, make_key: Callable[[Any, bytes], list[Any]]) -> KeyInfo:
        """Create the key objects, then the policy object that makes them usable."""

        def create(conn: TokenConnection) -> KeyInfo:
            if self._objects(conn, info.label, {}):
                raise KeyExists(f"a key already exists under label {info.label!r}")
            key_id = os.urandom(16)
            created = make_key(conn.session, key_id)
            try:
                document = {**policy_document(info), "key_id": key_id.hex()}
                conn.session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.DATA,
                        Attribute.APPLICATION: POLICY_APPLICATION,
                        Attribute.LABEL: info.label,
                        Attribute.VALUE: canonical_json(document),
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.MODIFIABLE: False,
                    }
                )
            except BaseException:
                for obj in created:
                    obj.destroy()
                raise
            return info

        return self._call(create)

    def generate_key_pair(
        self,
        label: str,
        owner: str,
        algorithm: KeyAlgorithm,
        mechanisms: frozenset[Mechanism] | None = None,
    ) -> KeyInfo:
        """Generate a non-extractable EC or RSA key pair on the token."""
        algorithm = coerce_algorithm(algorithm)
        if algorithm.is_secret:
            raise PolicyViolation(f"{algorithm.value} is a secret key; use generate_secret_key")
        info = self._new_info(label, owner, algorithm, mechanisms)
        private_template = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.MODIFIABLE: False,
        }
        public_template: dict[Attribute, Any] = {Attribute.TOKEN: True, Attribute.PRIVATE: False}
        if algorithm.is_rsa:
            public_template[Attribute.PUBLIC_EXPONENT] = (65537).to_bytes(3, "big")
        options: dict[str, Any] = {
            "label": info.label,
            "store": True,
            "capabilities": MechanismFlag.SIGN | MechanismFlag.VERIFY,
            "private_template": private_template,
            "public_template": public_template,
        }

        def make_key(session: Any, key_id: bytes) -> list[Any]:
            if algorithm.is_ec:
                params = session.create_domain_parameters(
                    KeyType.EC,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[algorithm].name)},
                    local=True,
                )
                return list(params.generate_keypair(id=key_id, **options))
            return list(
                session.generate_keypair(KeyType.RSA, _RSA_BITS[algorithm], id=key_id, **options)
            )

        return self._create(info, make_key)

    def generate_secret_key(
        self,
        label: str,
        owner: str,
        algorithm: KeyAlgorithm = KeyAlgorithm.HMAC_SHA256,
    ) -> KeyInfo:
        """Generate a non-extractable 256-bit generic secret for CKM_SHA256_HMAC."""
        algorithm = coerce_algorithm(algorithm)
        if not algorithm.is_secret:
            raise PolicyViolation(f"{algorithm.value} is a key pair; use generate_key_pair")
        info = self._new_info(label, owner, algorithm, None)

        def make_key(session: Any, key_id: bytes) -> list[Any]:
            key = session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                id=key_id,
                label=info.label,
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.MODIFIABLE: False,
                },
            )
            return [key]

        return self._create(info, make_key)

    # -- use -------------------------------------------------------------------------------

    def sign(
        self,
        label: str,
        owner: str,
        digest: bytes,
        digest_algorithm: DigestAlgorithm,
        mechanism: Mechanism,
    ) -> bytes:
        """Sign ``digest`` on the token after checking the key's policy."""
        label = validate_label(label)

        def sign(conn: TokenConnection) -> bytes:
            entry = self._entry(conn, label)
            digest_alg, mech = check_sign(entry.info, owner, digest, digest_algorithm, mechanism)
            if mech is Mechanism.ECDSA:
                raw = entry.key.sign(digest, mechanism=P11Mechanism.ECDSA)
                half = len(raw) // 2
                return encode_dss_signature(
                    int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
                )
            if mech is Mechanism.RSA_PKCS1V15:
                digest_info = _DIGEST_INFO_PREFIX[digest_alg] + digest
                return bytes(entry.key.sign(digest_info, mechanism=P11Mechanism.RSA_PKCS))
            return bytes(
                entry.key.sign(
                    digest,
                    mechanism=P11Mechanism.RSA_PKCS_PSS,
                    mechanism_param=_PSS_PARAMS[digest_alg],
                )
            )

        return self._call(sign)

    def hmac_sha256(self, label: str, owner: str, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` computed on the token."""
        label = validate_label(label)

        def mac(conn: TokenConnection) -> bytes:
            entry = self._entry(conn, label)
            check_hmac(entry.info, owner, data)
            return bytes(entry.key.sign(bytes(data), mechanism=P11Mechanism.SHA256_HMAC))

        return self._call(mac)

    def destroy(self, label: str) -> None:
        """Destroy the key: its policy first (so it is unusable at once), then its objects."""
        label = validate_label(label)

        def destroy(conn: TokenConnection) -> None:
            conn.cache.pop(label, None)
            objects = self._objects(conn, label, {})
            if not objects:
                raise KeyNotFound(f"no key under label {label!r}")
            objects.sort(key=lambda obj: obj[Attribute.CLASS] != ObjectClass.DATA)
            for obj in objects:
                obj.destroy()

        self._call(destroy)

    def close(self) -> None:
        """Release this store; the shared session closes with the last store of the token."""
        conn, self._conn = self._conn, None
        if conn is not None:
            release(conn)
