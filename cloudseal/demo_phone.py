"""The investor's phone, as the demo drives it: one small adapter over the public HTTP API.

It holds what the app holds — a P-256 device key kept in memory and the PIN its owner
types — and speaks only HTTP, with the platform's existing public endpoints:

* ``activate``: ``POST /ra/activation/redeem`` (device key, PIN, proof over the code);
* ``vote``: the canonical ballot (:func:`voting.ballot.build_ballot`), a challenge from
  ``POST /ra/app/challenges``, the device's signature over it and the ballot's digest, the
  CMS from ``POST /signing/cms`` (PIN + device proof), then ``POST /voting/ballots``;
* ``revoke``: the same with a revocation payload and ``POST /voting/revocations``;
* ``confirm``: after the meeting, ``GET /voting/log/{meeting}/ballots/{sha256}`` and the
  signed tree head, with the inclusion proof checked on the phone.

This is the one place the demo talks like a phone: ``mobile_api.client.MobileClient``
(the mobile API's reference client) replaces it here, with the same four methods.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.db import utcnow
from ra import devices
from ra import secrets as ra_secrets
from signing.service import authorization_action
from voting import merkle
from voting.ballot import build_ballot, new_nonce
from voting.log_records import build_revocation, log_entry


class PhoneRefused(Exception):
    """The platform refused a request (4xx): its stable error ``code`` and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Receipt:
    """A sealed receipt as the app keeps it: what was sent, the log leaf and the status."""

    meeting: str
    holder_no: str
    status: str  # counted, superseded, overridden_by_proxy (ballots); revoked (revocations)
    leaf_index: int
    tree_size: int
    payload_sha256: str
    cms_sha256: str
    sealed: dict[str, Any] = field(repr=False)  # the server's answer, signature included


@dataclass(frozen=True)
class Confirmation:
    """After the meeting: the ballot's final status and whether the phone checked its proof."""

    status: str
    leaf_index: int
    tree_size: int
    included: bool  # the inclusion proof leads to the root of the published signed tree head


class Phone:
    """One investor's app: a device key in memory, the owner's PIN, an HTTP client."""

    def __init__(self, http: httpx.Client, *, pin: str) -> None:
        self._http = http
        self._pin = pin
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id: str | None = None
        self._holdings: dict[str, str] = {}  # meeting public id -> holder number

    # Activation ---------------------------------------------------------------------------

    def activate(self, activation_id: str, code: str) -> str:
        """Redeem the activation code from the broker: register this device, set the PIN."""
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        message = devices.activation_message(activation_id, ra_secrets.normalise_code(code), der)
        body = self._post("/ra/activation/redeem", {
            "activation_id": activation_id, "code": code, "device_public_key": base64.b64encode(der).decode(),
            "device_signature": self._device_signature(message), "pin": self._pin})
        self.credential_id = body["credential_id"]
        return self.credential_id

    def holds(self, meeting: str, holder_no: str) -> None:
        """The owner is holder ``holder_no`` of ``meeting`` (what the app's meeting list says)."""
        self._holdings[meeting] = holder_no

    # Voting -------------------------------------------------------------------------------

    def vote(self, meeting: str, choices: Mapping[str, object]) -> Receipt:
        """Build, sign (PIN + device proof) and submit a ballot; the sealed receipt."""
        holder_no = self._holdings[meeting]
        payload = build_ballot(meeting, holder_no, choices, new_nonce(), utcnow())
        cms = self._sign(payload)
        answer = self._post("/voting/ballots", _submission(payload, cms))
        statement = answer["receipt"]
        return self._receipt(meeting, holder_no, answer["status"], statement, payload, cms, answer)

    def revoke(self, meeting: str) -> Receipt:
        """Revoke the owner's e-vote (to attend in person, or to vote again); the sealed receipt."""
        holder_no = self._holdings[meeting]
        payload = build_revocation(meeting, holder_no, new_nonce(), utcnow())
        cms = self._sign(payload)
        answer = self._post("/voting/revocations", _submission(payload, cms))
        return self._receipt(meeting, holder_no, "revoked", answer["receipt"], payload, cms, answer)

    def confirm(self, receipt: Receipt) -> Confirmation:
        """After the meeting: was the ballot recorded and counted? The phone recomputes the
        leaf from what it sent and checks the inclusion proof against the signed tree head."""
        found = self._get(f"/voting/log/{receipt.meeting}/ballots/{receipt.payload_sha256}")
        head = self._get(f"/voting/log/{receipt.meeting}/tree-head")
        received_at = dt.datetime.fromisoformat(found["received_at"].replace("Z", "+00:00"))
        leaf = merkle.leaf_hash(log_entry(receipt.meeting, receipt.holder_no, receipt.payload_sha256,
                                          receipt.cms_sha256, received_at))
        root = base64.b64decode(found["root_hash"])
        included = (found["tree_size"] == head["tree_size"] and root == base64.b64decode(head["root_hash"])
                    and merkle.verify_inclusion(leaf, found["leaf_index"], found["tree_size"],
                                                [base64.b64decode(h) for h in found["inclusion_proof"]], root))
        return Confirmation(found["status"], found["leaf_index"], found["tree_size"], included)

    # The app's plumbing ---------------------------------------------------------------------

    def _sign(self, payload: bytes) -> bytes:
        """A detached CMS over ``payload`` by the owner's HSM-held key: one PIN entry."""
        digest = hashlib.sha256(payload).digest()
        credential = self.credential_id or ""
        challenge = self._post("/ra/app/challenges", {"credential_id": credential})
        message = devices.challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]),
                                            authorization_action("sha256", [digest]), credential)
        signed = self._post("/signing/cms", {
            "credential_id": credential, "digest": base64.b64encode(digest).decode(), "digest_algorithm": "sha256",
            "pin": self._pin, "challenge_id": challenge["challenge_id"],
            "device_signature": self._device_signature(message), "purpose": "ballot"})
        return base64.b64decode(signed["cms"])

    def _device_signature(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()

    @staticmethod
    def _receipt(meeting: str, holder_no: str, status: str, statement: dict[str, Any], payload: bytes, cms: bytes,
                 answer: dict[str, Any]) -> Receipt:
        payload_sha256 = hashlib.sha256(payload).hexdigest()
        named = statement.get("ballot_sha256", statement.get("revocation_sha256"))
        if named != payload_sha256 or statement.get("meeting") != meeting:
            raise PhoneRefused(200, "receipt_mismatch", "the receipt names something else than what was sent")
        return Receipt(meeting, holder_no, status, statement["leaf_index"], statement["tree_head"]["tree_size"],
                       payload_sha256, hashlib.sha256(cms).hexdigest(), answer)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _answer(self._http.post(path, json=body))

    def _get(self, path: str) -> dict[str, Any]:
        return _answer(self._http.get(path))


def _submission(payload: bytes, cms: bytes) -> dict[str, str]:
    return {"payload": base64.b64encode(payload).decode(), "cms": base64.b64encode(cms).decode()}


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", response.text[:200]
        raise PhoneRefused(response.status_code, code, message)
    return response.json()
