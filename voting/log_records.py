"""The canonical bytes of the ballot log: entries, tree-head statements and revocation payloads.

Pure (no database, no HSM): the service writes these bytes and the offline auditor
(:mod:`voting.audit_verify`) recomputes them from an auditor bundle, so both import them
from here and cannot drift apart.

* A ballot's log entry and a revocation's log entry are RFC 8785 JSON; the Merkle leaf is
  SHA-256(0x00 || entry) (:func:`voting.merkle.leaf_hash`).
* A tree head statement is what the platform seal signs (ECDSA P-256 over its SHA-256).
* A revocation payload is what a holder signs to revoke their e-vote.

Times are written by :func:`log_time`: UTC with microseconds and a ``Z``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re

from core.canonical import canonical_json
from core.errors import BadRequest

LOG_ENTRY_TYPE = "cloudseal.ballot-entry/1"
REVOCATION_TYPE = "cloudseal.revocation/1"
REVOCATION_ENTRY_TYPE = "cloudseal.revocation-entry/1"
TREE_HEAD_TYPE = "cloudseal.tree-head/1"
LOG_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_REVOCATION_FIELDS = frozenset({"type", "meeting", "holder", "nonce", "created_at"})
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_MEETING_ID = re.compile(r"[0-9a-f]{32}")
_HOLDER_NO = re.compile(r"[!-~]{1,32}")


def log_time(moment: dt.datetime) -> str:
    """How the log's statements write a moment: UTC, microseconds, e.g. 2026-06-01T15:59:59.000000Z."""
    return moment.astimezone(dt.timezone.utc).strftime(LOG_TIME_FORMAT)


def parse_log_time(text: str) -> dt.datetime:
    """The aware UTC moment :func:`log_time` wrote; ``ValueError`` for any other text."""
    if not isinstance(text, str) or len(text) != 27 or not text.endswith("Z"):
        raise ValueError(f"{text!r} is not a log time")
    moment = dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.timezone.utc)
    if log_time(moment) != text:
        raise ValueError(f"{text!r} is not a log time")
    return moment


def log_entry(meeting_public_id: str, holder_no: str, ballot_sha256: str, cms_sha256: str,
              received_at: dt.datetime) -> bytes:
    """The canonical log entry of an accepted ballot (its Merkle leaf is SHA-256(0x00 || entry))."""
    return canonical_json({"type": LOG_ENTRY_TYPE, "meeting": meeting_public_id, "holder": holder_no,
                           "ballot_sha256": ballot_sha256, "cms_sha256": cms_sha256,
                           "received_at": received_at.strftime(LOG_TIME_FORMAT)})


def revocation_log_entry(meeting_public_id: str, holder_no: str, revocation_sha256: str, cms_sha256: str,
                         revoked: list[str], received_at: dt.datetime) -> bytes:
    """The canonical log entry of an accepted revocation (its Merkle leaf is SHA-256(0x00 || entry)).

    ``revoked`` lists the SHA-256 of the revoked ballots' payloads, in the order they were received.
    """
    return canonical_json({"type": REVOCATION_ENTRY_TYPE, "meeting": meeting_public_id, "holder": holder_no,
                           "revocation_sha256": revocation_sha256, "cms_sha256": cms_sha256, "revoked": revoked,
                           "received_at": log_time(received_at)})


def tree_head_statement(meeting: str, tree_size: int, root_hash: bytes, issued_at: dt.datetime) -> bytes:
    """RFC 8785 JSON of a tree head without its signature: what the platform seal signs."""
    return canonical_json({"type": TREE_HEAD_TYPE, "meeting": meeting, "tree_size": tree_size,
                           "root_hash": base64.b64encode(root_hash).decode(), "issued_at": log_time(issued_at)})


def build_revocation(meeting_id: str, holder_no: str, nonce: str, created_at: dt.datetime) -> bytes:
    """The canonical bytes a holder signs to revoke their e-vote."""
    return canonical_json({"type": REVOCATION_TYPE, "meeting": meeting_id, "holder": holder_no, "nonce": nonce,
                           "created_at": created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})


def parse_revocation(payload: bytes) -> dict[str, str]:
    """The fields of a canonical revocation payload; 400 ``malformed_revocation`` otherwise."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest("a revocation is canonical JSON", code="malformed_revocation") from exc
    if (not isinstance(data, dict) or set(data) != _REVOCATION_FIELDS
            or data.get("type") != REVOCATION_TYPE or not all(isinstance(v, str) for v in data.values())
            or not _NONCE.fullmatch(data["nonce"]) or not _MEETING_ID.fullmatch(data["meeting"])
            or not _HOLDER_NO.fullmatch(data["holder"]) or canonical_json(data) != payload):
        raise BadRequest("not a canonical cloudseal revocation", code="malformed_revocation")
    return data
