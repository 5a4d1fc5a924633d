"""``MobileClient``: an httpx client that behaves like the shareholder app.

It keeps a P-256 device key in memory (generated on first use, never sent anywhere but its
public half), redeems the activation code, signs in by signing challenges, refreshes its
tokens, and votes in two calls (``prepare`` + ``submit``) with one PIN. It checks what the
server hands it: that the prepared bytes are the ballot it asked for, that receipts are
sealed by the platform, and after the meeting that its ballot is in the sealed log
(:mod:`mobile_api.proofs`).

Give it an ``httpx.Client`` (a FastAPI ``TestClient`` works), or a ``base_url`` (and
optionally a ``transport``). Many clients may share one ``httpx.Client`` and one
:class:`~mobile_api.proofs.TrustStore` (``trust=``): tokens travel per request, and the seal
certificates are then fetched and checked once for all of them::

    app = MobileClient(base_url="http://127.0.0.1:8000")
    app.activate(activation_id, code, pin="482916")
    meeting = app.meetings()["items"][0]
    submitted = app.vote(meeting["public_id"], {"1": "CFOR"}, pin="482916")
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mobile_api.proofs import CountedCheck, TrustStore, VerificationError, check_counted, check_receipt

PREFIX = "/mobile/v1"
LOGIN_ACTION = "mobile_login"
_REFRESH_MARGIN = dt.timedelta(seconds=30)


class MobileApiError(Exception):
    """The API refused a call; ``code`` is the stable error code, ``message`` localised."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, dict(details or {})


def challenge_message(challenge_id: str, nonce: bytes, action: str, credential_id: str) -> bytes:
    """What the device signs to prove possession for one action on one credential."""
    return b"cloudseal/app\n" + "\n".join((challenge_id, action, credential_id)).encode() + b"\n" + nonce


def activation_message(activation_id: str, code: str, device_key_der: bytes) -> bytes:
    """What the device signs when it redeems an activation code (``code`` as the broker sent it)."""
    normalised = "".join(c for c in code.upper() if c.isalnum())
    return (b"cloudseal/activate\n" + activation_id.encode() + b"\n" + normalised.encode() + b"\n"
            + hashlib.sha256(device_key_der).digest())


def authorization_action(digest: bytes, algorithm: str = "sha256") -> str:
    """The action a signing authorisation signs: it binds the device proof to this digest."""
    return "authorize:" + hashlib.sha256(algorithm.encode() + digest).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """A ballot or revocation the server built, checked by the client, waiting for the PIN."""

    submission_id: str
    kind: str
    meeting: str
    holder_no: str
    payload: bytes
    payload_sha256: str
    challenge_id: str
    nonce: bytes


class MobileClient:
    """The app's side of ``/mobile/v1``; see the module docstring."""

    def __init__(self, http: httpx.Client | None = None, *, base_url: str | None = None,
                 transport: httpx.BaseTransport | None = None, language: str = "en",
                 device_key: ec.EllipticCurvePrivateKey | None = None, trust: TrustStore | None = None,
                 pinned_root: x509.Certificate | None = None, timeout: float = 30.0) -> None:
        self._owns_http = http is None
        if http is None:
            if base_url is None:
                raise ValueError("give an httpx.Client or a base_url")
            http = httpx.Client(base_url=base_url, transport=transport, timeout=timeout)
        self.http = http
        self.language = language
        self.device_key = device_key or ec.generate_private_key(ec.SECP256R1())
        self.credential_id: str | None = None
        self.investor_reference: str | None = None
        self.inbox_cursor: str | None = None
        self._access: str | None = None
        self._access_until = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        self._refresh: str | None = None
        self._trust, self._pinned_root = trust, pinned_root
        # What the app remembers of each ballot it sent: CMS SHA-256, holder number, leaf index.
        self._sent: dict[str, tuple[str, str, int]] = {}

    def close(self) -> None:
        """Close the HTTP client if this client made it (a given one is the caller's to close)."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> MobileClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Plumbing -----------------------------------------------------------------------------

    @property
    def device_public_key_der(self) -> bytes:
        """The device's public key (SubjectPublicKeyInfo, DER): all the server ever sees of it."""
        return self.device_key.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)

    def _sign(self, message: bytes) -> str:
        return base64.b64encode(self.device_key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()

    def headers(self) -> dict[str, str]:
        """The headers the app sends on an authenticated call (bearer token, language)."""
        return {"Accept-Language": self.language, "Authorization": f"Bearer {self._token()}"}

    def _call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None,
              authenticated: bool = True) -> Any:
        headers = self.headers() if authenticated else {"Accept-Language": self.language}
        query = {k: v for k, v in (params or {}).items() if v is not None}
        response = self.http.request(method, PREFIX + path, json=body, params=query, headers=headers)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                raise MobileApiError(response.status_code, "http_error", response.text[:200]) from None
            raise MobileApiError(response.status_code, error.get("code", "http_error"), error.get("message", ""),
                                 error.get("details"))
        return response.json() if response.content else None

    def _token(self) -> str:
        if self._access is None:
            raise MobileApiError(401, "missing_token", "activate or log in first")
        if dt.datetime.now(dt.timezone.utc) >= self._access_until - _REFRESH_MARGIN:
            try:
                self.refresh()
            except MobileApiError:
                self.login()
        return self._access  # type: ignore[return-value]

    def _keep_tokens(self, tokens: Mapping[str, Any]) -> None:
        self._access, self._refresh = tokens["access_token"], tokens["refresh_token"]
        self._access_until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=tokens["expires_in"])
        self.credential_id, self.investor_reference = tokens["credential_id"], tokens["investor_reference"]

    def _proof(self, action: str) -> dict[str, str]:
        challenge = self._call("POST", "/auth/challenge", body={"credential_id": self.credential_id},
                               authenticated=False)
        message = challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]), action,
                                    self.credential_id or "")
        return {"challenge_id": challenge["challenge_id"], "device_signature": self._sign(message)}

    # Activation and sign-in ---------------------------------------------------------------

    def activate(self, activation_id: str, code: str, pin: str) -> dict[str, Any]:
        """Redeem the broker's activation code: register this device's key, set the PIN; signs in."""
        der = self.device_public_key_der
        activated = self._call("POST", "/activation/redeem", authenticated=False, body={
            "activation_id": activation_id, "code": code, "device_public_key": base64.b64encode(der).decode(),
            "device_signature": self._sign(activation_message(activation_id, code, der)), "pin": pin})
        self._keep_tokens(activated)
        return activated

    def login(self) -> None:
        """Sign in with the device key (a signed challenge; no password)."""
        if self.credential_id is None:
            raise MobileApiError(401, "unknown_credential", "activate first")
        proof = self._proof(LOGIN_ACTION)
        self._keep_tokens(self._call("POST", "/auth/login", authenticated=False,
                                     body={"credential_id": self.credential_id, **proof}))

    def refresh(self) -> None:
        """Rotate the refresh token for a new pair."""
        if self._refresh is None:
            raise MobileApiError(401, "invalid_refresh_token", "no session to refresh")
        self._keep_tokens(self._call("POST", "/auth/refresh", body={"refresh_token": self._refresh},
                                     authenticated=False))

    def logout(self) -> None:
        """Close this session on the server and forget its tokens."""
        self._call("POST", "/auth/logout")
        self._access = self._refresh = None

    # Me -----------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """My certificate (status, validity), linked brokers and devices."""
        return self._call("GET", "/me")

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """Change the PIN (device proof + the old PIN)."""
        self._call("POST", "/me/pin", body={**self._proof("pin_change"), "old_pin": old_pin, "new_pin": new_pin})

    def revoke_certificate(self, pin: str, reason: str = "unspecified") -> dict[str, Any]:
        """Revoke my certificate (device proof + PIN); every session of it ends."""
        revoked = self._call("POST", "/me/revoke", body={**self._proof("revoke"), "pin": pin, "reason": reason})
        self._access = self._refresh = None
        return revoked

    def renew_certificate(self, pin: str) -> dict[str, Any]:
        """A new certificate and HSM key for my credential (device proof + PIN)."""
        return self._call("POST", "/me/renew", body={**self._proof("renew"), "pin": pin})

    # Meetings and voting ------------------------------------------------------------------

    def meetings(self, when: str = "upcoming", limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of the meetings I hold shares in (``upcoming``, ``past`` or ``all``)."""
        return self._call("GET", "/meetings", params={"when": when, "limit": limit, "cursor": cursor})

    def iter_meetings(self, when: str = "upcoming", page_size: int = 50) -> Iterator[dict[str, Any]]:
        """Every meeting of :meth:`meetings`, page after page."""
        cursor = None
        while True:
            page = self.meetings(when, page_size, cursor)
            yield from page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def meeting(self, public_id: str) -> dict[str, Any]:
        """A meeting's agenda, candidates and my votable shares."""
        return self._call("GET", f"/meetings/{public_id}")

    def result(self, public_id: str) -> dict[str, Any]:
        """The frozen result of a meeting."""
        return self._call("GET", f"/meetings/{public_id}/result")

    def _prepared(self, answer: Mapping[str, Any]) -> Prepared:
        payload = base64.b64decode(answer["payload"])
        if hashlib.sha256(payload).hexdigest() != answer["payload_sha256"]:
            raise VerificationError("the prepared bytes do not match their digest")
        challenge = answer["challenge"]
        return Prepared(answer["submission_id"], answer["kind"], answer["meeting"], answer["holder_no"], payload,
                        answer["payload_sha256"], challenge["challenge_id"], base64.b64decode(challenge["nonce"]))

    def prepare_ballot(self, public_id: str, choices: Mapping[str, Any], holder_no: str | None = None) -> Prepared:
        """Have the server build my ballot; refuse it unless it is exactly these choices."""
        prepared = self._prepared(self._call("POST", f"/meetings/{public_id}/ballots/prepare",
                                             body={"holder_no": holder_no, "choices": dict(choices)}))
        ballot = json.loads(prepared.payload)
        if (ballot.get("type"), ballot.get("meeting"), ballot.get("choices")) != (
                "cloudseal.ballot/1", public_id, json.loads(json.dumps(dict(choices)))) or (
                holder_no is not None and ballot.get("holder") != holder_no):
            raise VerificationError("the server prepared another ballot than the one asked for")
        return prepared

    def prepare_revocation(self, public_id: str, holder_no: str | None = None) -> Prepared:
        """Have the server build the revocation of my e-vote."""
        prepared = self._prepared(self._call("POST", f"/meetings/{public_id}/revocation/prepare",
                                             body={"holder_no": holder_no}))
        revocation = json.loads(prepared.payload)
        if (revocation.get("type"), revocation.get("meeting")) != ("cloudseal.revocation/1", public_id):
            raise VerificationError("the server prepared another revocation than the one asked for")
        return prepared

    def submit(self, prepared: Prepared, pin: str, *, verify: bool = True) -> dict[str, Any]:
        """PIN + the device's signature over the challenge and *these bytes' digest*; the
        server signs in the HSM and submits. The receipt is checked unless ``verify`` is False."""
        action = authorization_action(hashlib.sha256(prepared.payload).digest())
        signature = self._sign(challenge_message(prepared.challenge_id, prepared.nonce, action,
                                                 self.credential_id or ""))
        submitted = self._call("POST", f"/submissions/{prepared.submission_id}",
                               body={"pin": pin, "device_signature": signature})
        self._sent[prepared.payload_sha256] = (hashlib.sha256(base64.b64decode(submitted["cms"])).hexdigest(),
                                               prepared.holder_no, int(submitted["receipt"]["receipt"]["leaf_index"]))
        if verify:
            check_receipt(self.trust(), submitted["receipt"], meeting=prepared.meeting, holder_no=prepared.holder_no,
                          payload_sha256=prepared.payload_sha256)
        return submitted

    def vote(self, public_id: str, choices: Mapping[str, Any], pin: str, *, holder_no: str | None = None,
             verify: bool = True) -> dict[str, Any]:
        """Prepare and submit a ballot: two round trips, one PIN."""
        return self.submit(self.prepare_ballot(public_id, choices, holder_no), pin, verify=verify)

    def revoke_vote(self, public_id: str, pin: str, *, holder_no: str | None = None,
                    verify: bool = True) -> dict[str, Any]:
        """Revoke my e-vote before the deadline: two round trips, one PIN."""
        return self.submit(self.prepare_revocation(public_id, holder_no), pin, verify=verify)

    # Ballots, receipts, proofs ------------------------------------------------------------

    def ballots(self, meeting: str | None = None, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of my ballots (newest first) with their receipts."""
        return self._call("GET", "/ballots", params={"meeting": meeting, "limit": limit, "cursor": cursor})

    def ballot(self, public_id: str, ballot_sha256: str) -> dict[str, Any]:
        """One of my ballots and its receipt."""
        return self._call("GET", f"/meetings/{public_id}/ballots/{ballot_sha256}")

    def receipts(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of my sealed receipts (ballots and revocations), newest first."""
        return self._call("GET", "/receipts", params={"limit": limit, "cursor": cursor})

    def trust(self) -> TrustStore:
        """The platform's seal certificates, checked against the root once and then kept."""
        if self._trust is None:
            self._trust = TrustStore.from_published(self._call("GET", "/pki", authenticated=False), self._pinned_root)
        return self._trust

    def verify_counted(self, public_id: str, ballot_sha256: str) -> CountedCheck:
        """After the meeting: fetch the proof for my ballot and check it here (the leaf from
        my own ballot, RFC 9162 inclusion, the tree head's seal). Raises
        :class:`~mobile_api.proofs.VerificationError`; ``.counted`` tells whether it counts."""
        proof = self._call("GET", f"/meetings/{public_id}/ballots/{ballot_sha256}/proof")
        cms_sha256, holder_no, leaf_index = self._sent.get(ballot_sha256, (None, None, None))
        return check_counted(self.trust(), proof, meeting=public_id, ballot_sha256=ballot_sha256,
                             cms_sha256=cms_sha256, holder_no=holder_no, leaf_index=leaf_index)

    # Inbox --------------------------------------------------------------------------------

    def inbox(self, limit: int = 50) -> list[dict[str, Any]]:
        """What is new since the last poll (the cursor is kept between calls)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", "/inbox", params={"since": self.inbox_cursor, "limit": limit})
            items.extend(page["items"])
            self.inbox_cursor = page["next_cursor"]
            if not page["has_more"]:
                return items
