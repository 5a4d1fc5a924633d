"""The per-meeting append-only ballot log (RFC 9162 hashing) and its sealed tree heads.

Appending locks the meeting's :class:`voting.models.LogState` row, which orders the leaves
and serialises appenders on every database; the state keeps the roots of the perfect
subtrees, so an append costs O(log n) whatever the size of the log. Every append issues a
tree head sealed by the platform (ECDSA P-256 over its canonical JSON), which the receipt
carries; proofs are computed from the stored leaf hashes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import rfc8785
from sqlalchemy import insert, select, update
from sqlmodel import Session

from ca.bootstrap import SEAL_OWNER, current_seal
from ca.context import Pki
from core.db import utcnow
from core.errors import Conflict
from hsm_sim.base import DigestAlgorithm, Mechanism
from voting import merkle
from voting.models import LogLeaf, LogState, TreeHead

TREE_HEAD_TYPE = "cloudseal.tree-head/1"
_SEAL_KEY = "cloudseal_seal_certificate"


@dataclass(frozen=True)
class SignedTreeHead:
    """A sealed statement of the log's size and root at a moment."""

    meeting: str
    tree_size: int
    root_hash: bytes
    issued_at: dt.datetime
    signature: bytes
    seal_serial: str

    def statement(self) -> bytes:
        """The canonical bytes the seal signs."""
        return tree_head_statement(self.meeting, self.tree_size, self.root_hash, self.issued_at)

    def to_json(self) -> dict[str, object]:
        return {"type": TREE_HEAD_TYPE, "meeting": self.meeting, "tree_size": self.tree_size,
                "root_hash": base64.b64encode(self.root_hash).decode(),
                "issued_at": _time(self.issued_at), "seal_serial": self.seal_serial,
                "signature": base64.b64encode(self.signature).decode()}


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tree_head_statement(meeting: str, tree_size: int, root_hash: bytes, issued_at: dt.datetime) -> bytes:
    """RFC 8785 JSON of a tree head without its signature: what the platform seal signs."""
    return rfc8785.dumps({"type": TREE_HEAD_TYPE, "meeting": meeting, "tree_size": tree_size,
                          "root_hash": base64.b64encode(root_hash).decode(), "issued_at": _time(issued_at)})


def seal(session: Session, pki: Pki, statement: bytes) -> tuple[bytes, str]:
    """The platform seal's ECDSA signature (DER) over SHA-256 of ``statement``, and its serial."""
    # Read once per request: a ballot is sealed twice (tree head, receipt).
    certificate = session.info.get(_SEAL_KEY) or current_seal(session, pki)
    session.info[_SEAL_KEY] = certificate
    if certificate is None or certificate.key_label is None:
        raise Conflict("the platform has no valid seal certificate: run cloudseal init", code="seal_missing")
    digest = hashlib.sha256(statement).digest()
    signature = pki.keystore.sign(certificate.key_label, SEAL_OWNER, digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)
    return signature, certificate.serial_hex


def append(session: Session, pki: Pki, *, meeting_id: int, meeting_public_id: str, entry: bytes,
           ) -> tuple[int, SignedTreeHead]:
    """Append ``entry`` to the meeting's log; return its leaf index and the new sealed tree head."""
    connection = session.connection()
    state = connection.execute(select(LogState.size, LogState.frontier).where(LogState.meeting_id == meeting_id)
                               .with_for_update()).first()
    if state is None:
        connection.execute(insert(LogState).values(meeting_id=meeting_id, size=0, frontier="[]"))
        state = connection.execute(select(LogState.size, LogState.frontier)
                                   .where(LogState.meeting_id == meeting_id).with_for_update()).one()
    frontier = merkle.MerkleFrontier.from_state(state.size, [bytes.fromhex(h) for h in json.loads(state.frontier)])
    leaf = merkle.leaf_hash(entry)
    index = frontier.append(leaf)
    connection.execute(insert(LogLeaf).values(meeting_id=meeting_id, leaf_index=index, leaf_hash=leaf))
    updated = connection.execute(
        update(LogState).where(LogState.meeting_id == meeting_id).where(LogState.size == state.size)
        .values(size=frontier.size, frontier=json.dumps([h.hex() for h in frontier.subtree_roots])))
    if updated.rowcount != 1:  # the row lock makes this impossible; refuse rather than fork the log
        raise Conflict("the ballot log moved: try again", code="log_conflict")
    issued_at = utcnow()
    root = frontier.root()
    signature, serial = seal(session, pki, tree_head_statement(meeting_public_id, frontier.size, root, issued_at))
    connection.execute(insert(TreeHead).values(meeting_id=meeting_id, tree_size=frontier.size, root_hash=root,
                                               issued_at=issued_at, signature=signature))
    return index, SignedTreeHead(meeting_public_id, frontier.size, root, issued_at, signature, serial)


def leaf_hashes(session: Session, meeting_id: int, size: int | None = None) -> list[bytes]:
    """The log's leaf hashes in order (the first ``size`` of them)."""
    statement = select(LogLeaf.leaf_hash).where(LogLeaf.meeting_id == meeting_id).order_by(LogLeaf.leaf_index)
    if size is not None:
        statement = statement.limit(size)
    return list(session.execute(statement).scalars())


def latest_tree_head(session: Session, meeting_id: int) -> TreeHead | None:
    """The newest sealed tree head of a meeting's log."""
    return session.execute(select(TreeHead).where(TreeHead.meeting_id == meeting_id)
                           .order_by(TreeHead.tree_size.desc()).limit(1)).scalar_one_or_none()  # type: ignore[attr-defined]
