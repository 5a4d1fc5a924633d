"""The per-meeting append-only ballot log (RFC 9162 hashing) and its sealed tree heads.

Appending locks the meeting's :class:`voting.models.LogState` row, which orders the leaves
and serialises appenders on every database; the state keeps the roots of the perfect
subtrees, so an append costs O(log n) whatever the size of the log. Every append issues a
tree head sealed by the platform (ECDSA P-256 over its canonical JSON), which the receipt
carries.

Each append also stores the perfect subtrees it completes (:class:`voting.models.LogNode`,
one row on average; the leaves themselves are :class:`voting.models.LogLeaf`), so an
inclusion proof, a consistency proof or the root at any past size reads only the O(log n)
subtree roots it is folded from (one query, each row found by its key), never the whole log.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Executable, bindparam, insert, literal_column, select, union_all, update
from sqlmodel import Session

from ca.bootstrap import SEAL_OWNER
from ca.models import IssuedCertificate
from ca.profiles import PLATFORM_SEAL
from ca.context import Pki
from core.db import UTCDateTime, utcnow
from core.errors import BadRequest, Conflict
from hsm_sim.base import DigestAlgorithm, Mechanism
from voting import merkle
from voting.log_records import TREE_HEAD_TYPE, log_time, tree_head_statement
from voting.models import LogLeaf, LogNode, LogState, TreeHead

_SEAL_KEY = "cloudseal_seal_certificate"
_LEAVES = LogLeaf.__table__  # type: ignore[attr-defined]
_NODES = LogNode.__table__  # type: ignore[attr-defined]
# The statements of the append path are built once: every ballot and revocation runs them.
_STATE = select(LogState.size, LogState.frontier).where(LogState.meeting_id == bindparam("meeting_id")) \
    .with_for_update()
_NEW_STATE = insert(LogState)
_INSERT_LEAF = insert(LogLeaf)
_INSERT_NODES = _NODES.insert()
_ADVANCE = (update(LogState).where(LogState.meeting_id == bindparam("log_meeting"))
            .where(LogState.size == bindparam("old_size"))
            .values(size=bindparam("new_size"), frontier=bindparam("new_frontier")))
_INSERT_HEAD = insert(TreeHead)
_SEAL_SIGNER = (
    select(IssuedCertificate.key_label, IssuedCertificate.serial_hex)
    .where(IssuedCertificate.profile == PLATFORM_SEAL.name)
    .where(IssuedCertificate.key_label.is_not(None))  # type: ignore[union-attr]
    .where(IssuedCertificate.status == "good")
    .where(IssuedCertificate.not_after > bindparam("now", type_=UTCDateTime()))
    .order_by(IssuedCertificate.not_after.desc())  # type: ignore[attr-defined]
    .limit(1)
)


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
        """The tree head as receipts carry it: the statement's fields, its seal serial and signature."""
        return {"type": TREE_HEAD_TYPE, "meeting": self.meeting, "tree_size": self.tree_size,
                "root_hash": base64.b64encode(self.root_hash).decode(),
                "issued_at": log_time(self.issued_at), "seal_serial": self.seal_serial,
                "signature": base64.b64encode(self.signature).decode()}


def seal(session: Session, pki: Pki, statement: bytes) -> tuple[bytes, str]:
    """The platform seal's ECDSA signature (DER) over SHA-256 of ``statement``, and its serial.

    The seal is the newest good, unexpired platform-seal certificate (as ``current_seal``
    chooses), read once per request: a ballot is sealed twice (tree head, receipt)."""
    signer = session.info.get(_SEAL_KEY)
    if signer is None:
        signer = session.connection().execute(_SEAL_SIGNER, {"now": pki.clock()}).first()
        if signer is None:
            raise Conflict("the platform has no valid seal certificate: run cloudseal init", code="seal_missing")
        session.info[_SEAL_KEY] = signer
    digest = hashlib.sha256(statement).digest()
    signature = pki.keystore.sign(signer.key_label, SEAL_OWNER, digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)
    return signature, signer.serial_hex


def append(session: Session, pki: Pki, *, meeting_id: int, meeting_public_id: str, entry: bytes,
           ) -> tuple[int, SignedTreeHead]:
    """Append ``entry`` to the meeting's log; return its leaf index and the new sealed tree head."""
    return append_many(session, pki, meeting_id=meeting_id, meeting_public_id=meeting_public_id, entries=[entry])[0]


def append_many(session: Session, pki: Pki, *, meeting_id: int, meeting_public_id: str,
                entries: Sequence[bytes]) -> list[tuple[int, SignedTreeHead]]:
    """Append ``entries`` in order; return each one's leaf index and the sealed tree head
    issued right after it (one per entry, as for single appends), writing the leaves, the
    completed subtrees and the tree heads with one statement each."""
    if not entries:
        return []
    connection = session.connection()
    state = connection.execute(_STATE, {"meeting_id": meeting_id}).first()
    if state is None:
        connection.execute(_NEW_STATE, {"meeting_id": meeting_id, "size": 0, "frontier": "[]"})
        state = connection.execute(_STATE, {"meeting_id": meeting_id}).one()
    frontier = merkle.MerkleFrontier.from_state(state.size, [bytes.fromhex(h) for h in json.loads(state.frontier)])
    leaves: list[dict[str, object]] = []
    nodes: list[dict[str, object]] = []
    heads: list[dict[str, object]] = []
    appended: list[tuple[int, SignedTreeHead]] = []
    for entry in entries:
        (subtree, leaf), *completed = frontier.append_subtrees(merkle.leaf_hash(entry))
        leaves.append({"meeting_id": meeting_id, "leaf_index": subtree.index, "leaf_hash": leaf})
        nodes.extend({"meeting_id": meeting_id, "level": done.level, "node_index": done.index, "hash": root}
                     for done, root in completed)
        issued_at = utcnow()
        root = frontier.root()
        signature, serial = seal(session, pki, tree_head_statement(meeting_public_id, frontier.size, root, issued_at))
        heads.append({"meeting_id": meeting_id, "tree_size": frontier.size, "root_hash": root,
                      "issued_at": issued_at, "signature": signature})
        appended.append((subtree.index, SignedTreeHead(meeting_public_id, frontier.size, root, issued_at,
                                                       signature, serial)))
    connection.execute(_INSERT_LEAF, leaves)
    if nodes:
        connection.execute(_INSERT_NODES, nodes)
    updated = connection.execute(_ADVANCE, {
        "log_meeting": meeting_id, "old_size": state.size, "new_size": frontier.size,
        "new_frontier": json.dumps([h.hex() for h in frontier.subtree_roots])})
    if updated.rowcount != 1:  # the row lock makes this impossible; refuse rather than fork the log
        raise Conflict("the ballot log moved: try again", code="log_conflict")
    connection.execute(_INSERT_HEAD, heads)
    return appended


def leaf_hashes(session: Session, meeting_id: int, size: int | None = None) -> list[bytes]:
    """The log's leaf hashes in order (the first ``size`` of them)."""
    statement = select(LogLeaf.leaf_hash).where(LogLeaf.meeting_id == meeting_id).order_by(LogLeaf.leaf_index)
    if size is not None:
        statement = statement.limit(size)
    return list(session.execute(statement).scalars())


class IncompleteLog(RuntimeError):
    """The stored log lacks a subtree its size promises: damage or a skipped migration, not the caller's fault."""


def log_size(session: Session, meeting_id: int) -> int:
    """How many leaves the meeting's log holds (0 before its first entry)."""
    size = session.execute(select(LogState.size).where(LogState.meeting_id == meeting_id)).scalar_one_or_none()
    return size or 0


@lru_cache(maxsize=256)
def _roots_by_key(with_leaves: bool, nodes: int) -> Executable:
    """One statement reading (level, index, hash) of the wanted leaves (an expanding IN on their
    unique key) and of ``nodes`` inner nodes, each a lookup of its whole primary key, joined by
    UNION ALL. Built once per shape; a proof has O(log n) parts. (Not an OR of keys, nor a
    row-value IN: SQLite answers both by reading every node of the meeting.)"""
    parts = []
    if with_leaves:
        parts.append(select(literal_column("0").label("level"), _LEAVES.c.leaf_index.label("node_index"),
                            _LEAVES.c.leaf_hash.label("hash"))
                     .where(_LEAVES.c.meeting_id == bindparam("meeting_id"))
                     .where(_LEAVES.c.leaf_index.in_(bindparam("leaf_indexes", expanding=True))))
    for n in range(nodes):
        parts.append(select(_NODES.c.level, _NODES.c.node_index, _NODES.c.hash)
                     .where(_NODES.c.meeting_id == bindparam("meeting_id"))
                     .where(_NODES.c.level == bindparam(f"level_{n}"))
                     .where(_NODES.c.node_index == bindparam(f"index_{n}")))
    return parts[0] if len(parts) == 1 else union_all(*parts)


def subtree_roots(session: Session, meeting_id: int,
                  subtrees: Iterable[merkle.Subtree]) -> dict[merkle.Subtree, bytes]:
    """The stored roots of ``subtrees`` that exist, in one query: leaves from the leaf table,
    the others from the node table, each found by its key (a subtree not yet complete is
    simply absent)."""
    wanted = set(subtrees)
    if not wanted:
        return {}
    leaves = sorted(s.index for s in wanted if s.level == 0)
    nodes = sorted(s for s in wanted if s.level > 0)
    keys: dict[str, object] = {"meeting_id": meeting_id}
    if leaves:
        keys["leaf_indexes"] = leaves
    for n, node in enumerate(nodes):
        keys[f"level_{n}"], keys[f"index_{n}"] = node
    rows = session.connection().execute(_roots_by_key(bool(leaves), len(nodes)), keys)
    return {merkle.Subtree(level, index): root for level, index, root in rows}


def _range_hashes(session: Session, meeting_id: int, ranges: list[tuple[int, int]]) -> list[bytes]:
    wanted = merkle.subtrees_of(ranges)
    roots = subtree_roots(session, meeting_id, wanted)
    if len(roots) != len(wanted):
        missing = sorted(wanted - roots.keys())[:3]
        raise IncompleteLog(f"meeting {meeting_id}: the log lacks subtrees {missing}")
    return merkle.range_hashes(ranges, roots)


def inclusion_proof(session: Session, meeting_id: int, leaf_index: int, tree_size: int) -> list[bytes]:
    """PATH(leaf_index, D[0:tree_size]) of RFC 9162 §2.1.3.1, leaf side first, read from the
    O(log n) stored subtree roots it is made of.

    400 ``invalid_proof_request`` unless 0 <= leaf_index < tree_size <= the log's size.
    """
    if not 0 <= leaf_index < tree_size or tree_size > log_size(session, meeting_id):
        raise BadRequest("no such leaf in a tree of that size", code="invalid_proof_request")
    return _range_hashes(session, meeting_id, merkle.inclusion_ranges(leaf_index, tree_size))


def consistency_proof(session: Session, meeting_id: int, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1, read from the O(log n) stored
    subtree roots it is made of (empty when old_size is 0 or new_size).

    400 ``invalid_proof_request`` unless 0 <= old_size <= new_size <= the log's size.
    """
    if not 0 <= old_size <= new_size or new_size > log_size(session, meeting_id):
        raise BadRequest("need old_size <= new_size <= the log's size", code="invalid_proof_request")
    return _range_hashes(session, meeting_id, merkle.consistency_ranges(old_size, new_size))


def root_at(session: Session, meeting_id: int, tree_size: int) -> bytes:
    """MTH(D[0:tree_size]): the log's root when it had ``tree_size`` leaves (SHA-256(b"") at 0),
    folded from its O(log n) stored perfect subtrees.

    400 ``invalid_proof_request`` unless 0 <= tree_size <= the log's size.
    """
    if not 0 <= tree_size <= log_size(session, meeting_id):
        raise BadRequest("no tree of that size in this log", code="invalid_proof_request")
    return _range_hashes(session, meeting_id, [(0, tree_size)])[0]


def latest_tree_head(session: Session, meeting_id: int) -> TreeHead | None:
    """The newest sealed tree head of a meeting's log."""
    return session.execute(select(TreeHead).where(TreeHead.meeting_id == meeting_id)
                           .order_by(TreeHead.tree_size.desc()).limit(1)).scalar_one_or_none()  # type: ignore[attr-defined]
