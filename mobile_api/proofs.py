"""What the app checks on its own, with nothing but the platform's certificates.

* The trust chain: the platform seal certificate chains to the root the app pins.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

TREE_HEAD_TYPE = "cloudseal.tree-head/1"
LOG_ENTRY_TYPE = "cloudseal.ballot-entry/1"
_ENTRY_FIELDS = ("type", "meeting", "holder", "ballot_sha256", "cms_sha256", "received_at")


class VerificationError(Exception):
    """Something the app was given does not check out."""


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


@dataclass(frozen=True)
class TrustStore:
    """The root the app pins and the seal certificates checked against it."""

    root: x509.Certificate
    seals: Mapping[str, x509.Certificate]

    @classmethod
    def from_published(cls, published: Mapping[str, Any], pinned_root: x509.Certificate | None = None) -> TrustStore:
        """Check what ``GET /mobile/v1/pki`` returned: the root (equal to ``pinned_root`` when
        given) signs the issuing CA, which signs every seal certificate kept."""
        root = x509.load_pem_x509_certificate(published["root"].encode())
        issuing = x509.load_pem_x509_certificate(published["issuing"].encode())
        if pinned_root is not None and root != pinned_root:
            raise VerificationError("the server's root is not the pinned root")
        try:
            root.verify_directly_issued_by(root)
            issuing.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise VerificationError("the CA chain does not verify") from exc
        seals = {}
        for entry in published["seals"]:
            seal = x509.load_pem_x509_certificate(entry["pem"].encode())
            try:
                seal.verify_directly_issued_by(issuing)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise VerificationError(f"seal {entry['serial']} is not issued by the platform CA") from exc
            seals[format(seal.serial_number, "x")] = seal
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
