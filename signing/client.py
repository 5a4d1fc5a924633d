"""A small broker SDK over httpx: have an investor sign an order, verify an order.

The investor authorises every signature on their phone: the order app obtains a challenge,
the phone signs it together with the order's digest (see :func:`device_proof_message`) and
the investor enters the PIN; :meth:`SigningClient.sign_order` then returns the detached
CAdES-BES CMS. The back office checks any order with :meth:`SigningClient.verify_order`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Challenge:
    """A single-use server challenge for the investor's device."""

    challenge_id: str
    nonce: bytes
    credential_id: str


class SigningError(Exception):
    """The platform refused; ``code`` is its stable error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def order_digest(order: bytes, algorithm: str = "sha256") -> bytes:
    """The digest an order is signed over."""
    return hashlib.new(algorithm, order).digest()


def authorization_action(algorithm: str, digests: list[bytes]) -> str:
    """The action the device signs (must match the server's binding of proof to hashes)."""
    bound = hashlib.sha256(algorithm.encode() + b"".join(digests)).hexdigest()
    return f"authorize:{bound}"


def device_proof_message(challenge: Challenge, digest: bytes, algorithm: str = "sha256") -> bytes:
    """What the investor's device signs (ECDSA P-256 / SHA-256) to approve this digest."""
    action = authorization_action(algorithm, [digest])
    return (b"cloudseal/app\n" + "\n".join((challenge.challenge_id, action, challenge.credential_id)).encode()
            + b"\n" + challenge.nonce)


class SigningClient:
    """Talks to one cloudseal deployment; ``token`` is the broker's access token."""

    def __init__(self, base_url: str, *, token: str | None = None, http: httpx.Client | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = http or httpx.Client(base_url=base_url, timeout=30, headers=headers)

    @classmethod
    def with_client_credentials(cls, base_url: str, client_id: str, client_secret: str) -> SigningClient:
        """Log in with the broker's API client and keep the access token."""
        response = httpx.post(f"{base_url.rstrip('/')}/auth/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
        token = _json(response)["access_token"]
        return cls(base_url, token=token)

    def challenge(self, credential_id: str) -> Challenge:
        """A fresh challenge to show the investor's device."""
        body = _json(self._http.post("/ra/app/challenges", json={"credential_id": credential_id}))
        return Challenge(body["challenge_id"], base64.b64decode(body["nonce"]), credential_id)

    def sign_order(self, order: bytes, *, challenge: Challenge, device_signature: str, pin: str,
                   algorithm: str = "sha256") -> bytes:
        """Authorise and sign in one call; returns the DER CMS."""
        body = _json(self._http.post("/signing/cms", json={
            "credential_id": challenge.credential_id, "pin": pin, "digest_algorithm": algorithm,
            "digest": base64.b64encode(order_digest(order, algorithm)).decode(), "purpose": "order",
            "challenge_id": challenge.challenge_id, "device_signature": device_signature}))
        return base64.b64decode(body["cms"])

    def verify_order(self, order: bytes, cms: bytes) -> dict[str, Any]:
        """The platform's verdict on an order signature (recorded as the broker's evidence)."""
        return _json(self._http.post("/signing/verify", json={
            "cms": base64.b64encode(cms).decode(), "content_base64": base64.b64encode(order).decode()}))

    def close(self) -> None:
        self._http.close()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise SigningError(response.status_code, "invalid_response", response.text[:200]) from exc
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if isinstance(error, dict):
            raise SigningError(response.status_code, error.get("code", "error"), error.get("message", ""))
        raise SigningError(response.status_code, str(error), str(body.get("error_description", "")))
    return body
