"""What the app checks on its own, with nothing but the platform's certificates.

* The trust chain: the platform seal certificate chains to the root the app pins, and it
  is a seal: the issuing CA also certifies every investor, whose HSM key signs any hash
  the investor asks for (CSC ``signHash``), so chaining alone proves nothing. A seal carries
  the platform policy (``{arc}.2``, the arc of the issuing CA's policies) and not the
  investor policy (``{arc}.1``), is no CA and no OCSP responder (no extended key usage).
* A receipt: sealed by a platform seal over its RFC 8785 JSON, and so is the tree head in it.
* The counted proof: the log entry of *my* ballot hashes to a leaf that RFC 9162's
  inclusion proof ties to the root of a sealed tree head.

Deliberately independent of the server's code (a few lines of RFC 9162 §2.1.3.2 and one
ECDSA check per seal), so a bug on one side is not silently shared by the other.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

TREE_HEAD_TYPE = "cloudseal.tree-head/1"
LOG_ENTRY_TYPE = "cloudseal.ballot-entry/1"
_ENTRY_FIELDS = ("type", "meeting", "holder", "ballot_sha256", "cms_sha256", "received_at")
# Certificate policy suffixes under the operator's policy arc (``ca.profiles``; a test keeps them equal).
INVESTOR_POLICY_SUFFIX, PLATFORM_POLICY_SUFFIX = "1", "2"


class VerificationError(Exception):
    """Something the app was given does not check out."""


@contextmanager
def _well_formed(what: str) -> Iterator[None]:
    """A missing field, a wrong type or bad base64 in ``what`` is a :class:`VerificationError` too."""
    try:
        yield
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise VerificationError(f"the {what} is malformed") from exc


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: whether ``proof`` puts ``leaf`` at ``index`` of the tree (``tree_size``, ``root``)."""
    if not 0 <= index < tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def _verify(certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def _extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    try:
        return certificate.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _is_ca(certificate: x509.Certificate) -> bool:
    constraints = _extension(certificate, ExtensionOID.BASIC_CONSTRAINTS)
    return constraints is not None and constraints.ca


def _policies(certificate: x509.Certificate) -> set[str]:
    return {p.policy_identifier.dotted_string for p in _extension(certificate, ExtensionOID.CERTIFICATE_POLICIES) or []}


def _platform_policy(issuing: x509.Certificate) -> str:
    """The platform policy OID: suffix ``2`` under the one arc of the issuing CA's policies."""
    arcs = {oid.rpartition(".")[0] for oid in _policies(issuing)}
    if len(arcs) != 1:
        raise VerificationError("the issuing CA's certificate policies do not name one policy arc")
    return f"{arcs.pop()}.{PLATFORM_POLICY_SUFFIX}"


def _is_seal(certificate: x509.Certificate, platform_policy: str) -> bool:
    """A platform seal: the platform policy and not the investor policy, no CA, no extended
    key usage (the OCSP responder has one), a signing key usage."""
    policies = _policies(certificate)
    investor_policy = platform_policy.rpartition(".")[0] + "." + INVESTOR_POLICY_SUFFIX
    usage = _extension(certificate, ExtensionOID.KEY_USAGE)
    return (platform_policy in policies and investor_policy not in policies and not _is_ca(certificate)
            and _extension(certificate, ExtensionOID.EXTENDED_KEY_USAGE) is None
            and usage is not None and bool(usage.digital_signature or usage.content_commitment))


@dataclass(frozen=True)
class TrustStore:
    """The root the app pins and the seal certificates checked against it."""

    root: x509.Certificate
    seals: Mapping[str, x509.Certificate]

    @classmethod
    def from_published(cls, published: Mapping[str, Any], pinned_root: x509.Certificate | None = None) -> TrustStore:
        """Check what ``GET /mobile/v1/pki`` returned: the root (equal to ``pinned_root`` when
        given) signs the issuing CA, which signs every seal certificate kept, and each of
        those is a platform seal (see the module docstring); :class:`VerificationError` otherwise."""
        with _well_formed("published trust material"):
            root = x509.load_pem_x509_certificate(published["root"].encode())
            issuing = x509.load_pem_x509_certificate(published["issuing"].encode())
            certificates = [x509.load_pem_x509_certificate(entry["pem"].encode()) for entry in published["seals"]]
        if pinned_root is not None and root != pinned_root:
            raise VerificationError("the server's root is not the pinned root")
        if not (_issued_by(root, root) and _is_ca(root) and _issued_by(issuing, root) and _is_ca(issuing)):
            raise VerificationError("the CA chain does not verify")
        platform_policy = _platform_policy(issuing)
        seals = {}
        for seal in certificates:
            serial = format(seal.serial_number, "x")
            if not _issued_by(seal, issuing):
                raise VerificationError(f"seal {serial} is not issued by the platform CA")
            if not _is_seal(seal, platform_policy):
                raise VerificationError(f"certificate {serial} is not a platform seal")
            seals[serial] = seal
        return cls(root, seals)

    def sealed(self, data: bytes, signature_b64: str, at: dt.datetime, serial: str | None = None) -> bool:
        """Whether a platform seal valid at ``at`` (the one named by ``serial``, or any) signed ``data``."""
        signature = base64.b64decode(signature_b64)
        candidates = [self.seals[serial]] if serial in self.seals else [] if serial else list(self.seals.values())
        return any(c.not_valid_before_utc <= at <= c.not_valid_after_utc and _verify(c, signature, data)
                   for c in candidates)


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def tree_head_statement(head: Mapping[str, Any]) -> bytes:
    """The bytes a tree head's seal signs (its RFC 8785 JSON without signature and serial)."""
    return rfc8785.dumps({"type": TREE_HEAD_TYPE, "meeting": head["meeting"], "tree_size": head["tree_size"],
                          "root_hash": head["root_hash"], "issued_at": head["issued_at"]})


def check_tree_head(trust: TrustStore, head: Mapping[str, Any]) -> None:
    """The tree head is sealed by the platform; :class:`VerificationError` otherwise."""
    if not trust.sealed(tree_head_statement(head), head["signature"], _time(head["issued_at"]), head.get("seal_serial")):
        raise VerificationError("the tree head is not sealed by the platform")


def check_receipt(trust: TrustStore, receipt: Mapping[str, Any], *, meeting: str, holder_no: str,
                  payload_sha256: str) -> None:
    """A receipt for *this* payload: its statement and its tree head are both sealed."""
    with _well_formed("receipt"):
        _check_receipt(trust, receipt, meeting=meeting, holder_no=holder_no, payload_sha256=payload_sha256)


def _check_receipt(trust: TrustStore, receipt: Mapping[str, Any], *, meeting: str, holder_no: str,
                   payload_sha256: str) -> None:
    statement = receipt["receipt"]
    received = _time(statement["received_at"])
    if not trust.sealed(rfc8785.dumps(statement), receipt["signature"], received, receipt["seal_serial"]):
        raise VerificationError("the receipt is not sealed by the platform")
    named = statement.get("ballot_sha256", statement.get("revocation_sha256"))
    if (statement["meeting"], statement["holder"], named) != (meeting, holder_no, payload_sha256):
        raise VerificationError("the receipt is for another submission")
    head = statement["tree_head"]
    if head["meeting"] != meeting or not 0 <= statement["leaf_index"] < head["tree_size"]:
        raise VerificationError("the receipt's tree head does not cover its leaf")
    check_tree_head(trust, head)


@dataclass(frozen=True)
class CountedCheck:
    """The outcome of checking a counted proof: it verified; the final status says the rest."""

    status: str
    counted: bool
    leaf_index: int
    tree_size: int


def check_counted(trust: TrustStore, proof: Mapping[str, Any], *, meeting: str, ballot_sha256: str,
                  holder_no: str | None = None, cms_sha256: str | None = None,
                  leaf_index: int | None = None) -> CountedCheck:
    """Recompute the leaf of *my* ballot from the log entry, fold the inclusion proof into the
    root of the sealed tree head, and check the seal; :class:`VerificationError` otherwise."""
    with _well_formed("counted proof"):
        return _check_counted(trust, proof, meeting=meeting, ballot_sha256=ballot_sha256, holder_no=holder_no,
                              cms_sha256=cms_sha256, leaf_index=leaf_index)


def _check_counted(trust: TrustStore, proof: Mapping[str, Any], *, meeting: str, ballot_sha256: str,
                   holder_no: str | None, cms_sha256: str | None, leaf_index: int | None) -> CountedCheck:
    entry, head = proof["entry"], proof["tree_head"]
    if tuple(sorted(entry)) != tuple(sorted(_ENTRY_FIELDS)) or entry["type"] != LOG_ENTRY_TYPE:
        raise VerificationError("the log entry is not a ballot entry")
    expected = {"meeting": meeting, "ballot_sha256": ballot_sha256, "holder": holder_no, "cms_sha256": cms_sha256}
    if any(value is not None and entry[name] != value for name, value in expected.items()):
        raise VerificationError("the log entry is not my ballot")
    if leaf_index is not None and proof["leaf_index"] != leaf_index:
        raise VerificationError("the ballot moved in the log since its receipt")
    if head["meeting"] != meeting or head["tree_size"] != proof["tree_size"]:
        raise VerificationError("the proof is for another tree")
    path = [base64.b64decode(h) for h in proof["inclusion_proof"]]
    if not verify_inclusion(leaf_hash(rfc8785.dumps(dict(entry))), proof["leaf_index"], proof["tree_size"], path,
                            base64.b64decode(head["root_hash"])):
        raise VerificationError("the inclusion proof does not verify")
    check_tree_head(trust, head)
    return CountedCheck(proof["status"], proof["status"] == "counted", proof["leaf_index"], proof["tree_size"])
