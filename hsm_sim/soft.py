"""The software HSM: the embedded default key store.

Each key is one JSON file in the store directory, named by the SHA-256 of its label. The
private or secret key is in it only wrapped with AES-256-GCM under a 32-byte master key kept
in a separate file; the key's policy (label, owner, algorithm, mechanisms) is the associated
data of that encryption, so editing the policy in the file makes the key unusable.

Several processes may share one directory (``cloudseal serve`` with N workers plus the CLI):
files are published with ``os.link``, which fails if the name exists, so two processes
generating the same label cannot both win. Unwrapped keys are cached per process for speed
(issuance needs thousands of signatures a second); every use ``os.stat``-s the key file
(2-3 µs, against ~45 µs for a P-256 signature) and drops the cached key when the file is
gone or has been replaced, so a key destroyed by another process stops signing at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
    hash_for,
    info_from_document,
    policy_document,
    resolve_mechanisms,
    validate_label,
    validate_owner,
)

MASTER_KEY_SIZE = 32
_NONCE_SIZE = 12
_FORMAT = "cloudseal-soft-key/1"
_CURVES: dict[KeyAlgorithm, ec.EllipticCurve] = {
    KeyAlgorithm.EC_P256: ec.SECP256R1(),
    KeyAlgorithm.EC_P384: ec.SECP384R1(),
}
_RSA_BITS = {KeyAlgorithm.RSA_2048: 2048, KeyAlgorithm.RSA_3072: 3072}
# Unwrapped keys kept per process: the CA's and the busiest investors' keys stay hot while
# memory stays bounded however many investors there are.
CACHE_SIZE = 4096

# Signature parameters are immutable: build them once, not on every signature.
_PREHASHED = {d: Prehashed(hash_for(d)) for d in DigestAlgorithm}
_ECDSA = {d: ec.ECDSA(_PREHASHED[d]) for d in DigestAlgorithm}
_PKCS1V15 = padding.PKCS1v15()
_PSS = {
    d: padding.PSS(mgf=padding.MGF1(hash_for(d)), salt_length=d.size) for d in DigestAlgorithm
}

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (existing ones are untouched)."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(directory: Path, final: Path, content: bytes) -> bool:
    """Write ``content`` to ``final`` atomically; return False if ``final`` already exists.

    The temporary file is created with O_CREAT|O_EXCL and mode 0600 (mkstemp), filled and
    fsync-ed, then hard-linked to its final name: readers never see a partial file, and of
    two concurrent writers exactly one link succeeds.
    """
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        _fsync_dir(directory)
        return True
    finally:
        os.unlink(tmp)


def _read_master_key(path: Path) -> bytes:
    try:
        with open(path, "rb") as master:
            key = master.read(MASTER_KEY_SIZE + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyLocked(f"cannot read the HSM master key file {path}: {exc.strerror}") from None
    if len(key) != MASTER_KEY_SIZE:
        raise KeyLocked(f"the HSM master key file {path} does not hold {MASTER_KEY_SIZE} bytes")
    return key


def load_or_create_master_key(path: Path) -> bytes:
    """Read the 32-byte master key, creating it (mode 0600, parents 0700) if it is missing.

    When two processes create it at once, one publishes its key and the other reads it.
    """
    path = Path(path)
    try:
        return _read_master_key(path)
    except FileNotFoundError:
        pass
    _make_private_dirs(path.parent)
    _publish(path.parent, path, os.urandom(MASTER_KEY_SIZE))
    return _read_master_key(path)


@dataclass(frozen=True)
class _LoadedKey:
    path: str
    stamp: tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_size of the key file
    info: KeyInfo
    key: _PrivateKey | bytes
    public: PublicKey | None


def _new_private_key(algorithm: KeyAlgorithm) -> _PrivateKey:
    if algorithm.is_ec:
        return ec.generate_private_key(_CURVES[algorithm])
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[algorithm])


def _key_matches(key: object, algorithm: KeyAlgorithm) -> bool:
    if algorithm.is_ec:
        return (
            isinstance(key, ec.EllipticCurvePrivateKey)
            and key.curve.name == _CURVES[algorithm].name
        )
    return isinstance(key, rsa.RSAPrivateKey) and key.key_size == _RSA_BITS[algorithm]


def _spki(public: PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class SoftKeyStore(KeyStore):
    """Software HSM keeping master-key-wrapped keys in a directory (see the module doc)."""

    def __init__(self, directory: Path, master_key_file: Path) -> None:
        """Open (creating if needed) the store in ``directory`` under ``master_key_file``."""
        self._dir = Path(directory)
        _make_private_dirs(self._dir)
        self._aead = AESGCM(load_or_create_master_key(Path(master_key_file)))
        self._cache: OrderedDict[str, _LoadedKey] = OrderedDict()
        self._lock = threading.Lock()

    # -- generation ------------------------------------------------------------------------

    def generate_key_pair(
        self,
        label: str,
        owner: str,
        algorithm: KeyAlgorithm,
        mechanisms: frozenset[Mechanism] | None = None,
    ) -> KeyInfo:
        """Generate an EC or RSA key pair under ``label`` for ``owner``."""
        algorithm = coerce_algorithm(algorithm)
        if algorithm.is_secret:
            raise PolicyViolation(f"{algorithm.value} is a secret key; use generate_secret_key")
        info = self._new_info(label, owner, algorithm, mechanisms)
        key = _new_private_key(algorithm)
        pkcs8 = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._write(info, pkcs8, _spki(key.public_key()))
        return info

    def generate_secret_key(
        self,
        label: str,
        owner: str,
        algorithm: KeyAlgorithm = KeyAlgorithm.HMAC_SHA256,
    ) -> KeyInfo:
        """Generate a 256-bit HMAC key under ``label`` for ``owner``."""
        algorithm = coerce_algorithm(algorithm)
        if not algorithm.is_secret:
            raise PolicyViolation(f"{algorithm.value} is a key pair; use generate_key_pair")
        info = self._new_info(label, owner, algorithm, None)
        self._write(info, os.urandom(32), None)
        return info

    def _new_info(
        self,
        label: str,
        owner: str,
        algorithm: KeyAlgorithm,
        mechanisms: frozenset[Mechanism] | None,
    ) -> KeyInfo:
        info = KeyInfo(
            label=validate_label(label),
            owner=validate_owner(owner),
            algorithm=algorithm,
            mechanisms=resolve_mechanisms(algorithm, mechanisms),
        )
        # Cheap early refusal before an expensive RSA generation; _write is the real check.
        if os.path.exists(self._path(info.label)):
            raise KeyExists(f"a key already exists under label {info.label!r}")
        return info

    def _write(self, info: KeyInfo, secret: bytes, spki: bytes | None) -> None:
        policy = policy_document(info)
        nonce = os.urandom(_NONCE_SIZE)
        wrapped = self._aead.encrypt(nonce, secret, canonical_json(policy))
        record = {
            "format": _FORMAT,
            **policy,
            "public_key": base64.b64encode(spki).decode() if spki is not None else None,
            "nonce": base64.b64encode(nonce).decode(),
            "wrapped": base64.b64encode(wrapped).decode(),
        }
        content = json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
        if not _publish(self._dir, Path(self._path(info.label)), content):
            raise KeyExists(f"a key already exists under label {info.label!r}")

    # -- lookup ----------------------------------------------------------------------------

    def _path(self, label: str) -> str:
        # A plain string: pathlib costs more than the stat on the signing hot path.
        return os.path.join(self._dir, hashlib.sha256(label.encode()).hexdigest() + ".json")

    def _load(self, label: str) -> _LoadedKey:
        """The usable key under ``label``, from the cache while its file is unchanged."""
        label = validate_label(label)
        with self._lock:
            cached = self._cache.get(label)
        path = cached.path if cached is not None else self._path(label)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            with self._lock:
                self._cache.pop(label, None)
            raise KeyNotFound(f"no key under label {label!r}") from None
        if cached is not None and cached.stamp == (
            st.st_dev,
            st.st_ino,
            st.st_mtime_ns,
            st.st_size,
        ):
            with self._lock:
                if label in self._cache:
                    self._cache.move_to_end(label)
            return cached
        loaded = self._unwrap(path, label)
        with self._lock:
            self._cache[label] = loaded
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return loaded

    def _unwrap(self, path: str, label: str) -> _LoadedKey:
        try:
            with open(path, "rb") as key_file:
                st = os.fstat(key_file.fileno())
                raw = key_file.read()
        except FileNotFoundError:
            raise KeyNotFound(f"no key under label {label!r}") from None
        broken = KeyIntegrityError(f"the key file of {label!r} is damaged; it cannot be used")
        try:
            record = json.loads(raw)
            info = info_from_document(record)
            nonce = base64.b64decode(record["nonce"], validate=True)
            wrapped = base64.b64decode(record["wrapped"], validate=True)
        except (ValueError, KeyError, TypeError, HsmError):
            raise broken from None
        if record.get("format") != _FORMAT or info.label != label or len(nonce) != _NONCE_SIZE:
            raise broken
        try:
            secret = self._aead.decrypt(nonce, wrapped, canonical_json(policy_document(info)))
        except InvalidTag:
            raise KeyIntegrityError(
                f"key {label!r} failed its integrity check: its policy or wrapped key was "
                "altered, or it was wrapped under another master key"
            ) from None
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if info.algorithm.is_secret:
            if len(secret) != 32:
                raise broken
            return _LoadedKey(path, stamp, info, secret, None)
        try:
            key = serialization.load_der_private_key(secret, password=None)
        except ValueError:
            raise broken from None
        if not _key_matches(key, info.algorithm):
            raise broken
        public = key.public_key()
        # The clear public key must be the wrapped key's own, or certificates would be
        # issued for a public key substituted in the file.
        if record.get("public_key") != base64.b64encode(_spki(public)).decode():
            raise KeyIntegrityError(f"the stored public key of {label!r} does not match its key")
        return _LoadedKey(path, stamp, info, key, public)  # type: ignore[arg-type]

    def key_info(self, label: str) -> KeyInfo:
        """Describe the key under ``label`` (its file is checked on every call)."""
        return self._load(label).info

    def public_key(self, label: str) -> PublicKey:
        """Return the public key of the key pair under ``label``."""
        loaded = self._load(label)
        if loaded.public is None:
            raise PolicyViolation(f"key {label!r} is a secret key and has no public key")
        return loaded.public

    # -- use -------------------------------------------------------------------------------

    def sign(
        self,
        label: str,
        owner: str,
        digest: bytes,
        digest_algorithm: DigestAlgorithm,
        mechanism: Mechanism,
    ) -> bytes:
        """Sign ``digest`` after checking owner, mechanism and digest length."""
        loaded = self._load(label)
        digest_alg, mech = check_sign(loaded.info, owner, digest, digest_algorithm, mechanism)
        key = loaded.key
        if mech is Mechanism.ECDSA and isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(digest, _ECDSA[digest_alg])
        if isinstance(key, rsa.RSAPrivateKey):
            pad = _PKCS1V15 if mech is Mechanism.RSA_PKCS1V15 else _PSS[digest_alg]
            return key.sign(digest, pad, _PREHASHED[digest_alg])
        raise PolicyViolation(f"{mech.value} does not apply to key {label!r}")

    def hmac_sha256(self, label: str, owner: str, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under the secret key ``label``."""
        loaded = self._load(label)
        check_hmac(loaded.info, owner, data)
        if not isinstance(loaded.key, bytes):
            raise PolicyViolation(f"key {label!r} is not a secret key")
        return hmac.new(loaded.key, data, hashlib.sha256).digest()

    def destroy(self, label: str) -> None:
        """Delete the key file under ``label``; every process stops using the key."""
        label = validate_label(label)
        try:
            os.unlink(self._path(label))
        except FileNotFoundError:
            raise KeyNotFound(f"no key under label {label!r}") from None
        finally:
            with self._lock:
                self._cache.pop(label, None)
        _fsync_dir(self._dir)

    def close(self) -> None:
        """Forget the unwrapped keys held in memory."""
        with self._lock:
            self._cache.clear()
