"""The broker SDK against a real server: the investor's phone approves, the order is signed."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cloudseal.app import create_app
from cloudseal.platform import Platform
from signing.client import SigningClient, SigningError, device_proof_message
from signing.cms import parse_detached_cms, verify_cms_signature
from tests.ra.service_flow import activated
from tests.support.servers import LiveServer

ORDER = b'{"order": 7, "side": "sell", "symbol": "2317", "quantity": 200}'


def test_sdk_signs_an_order_the_phone_approved(platform: Platform) -> None:
    _, phone = activated(platform)
    with LiveServer(create_app(platform=platform, background_refresh=False)) as server:
        sdk = SigningClient(server.url)
        challenge = sdk.challenge(phone.credential_id or "")
        approval = phone.sign(device_proof_message(challenge, hashlib.sha256(ORDER).digest()))
        cms = sdk.sign_order(ORDER, challenge=challenge, device_signature=approval, pin="482916")
        parsed = parse_detached_cms(cms)
        verify_cms_signature(parsed, hashlib.sha256(ORDER).digest())
        with pytest.raises(SigningError) as refused:
            sdk.sign_order(ORDER, challenge=challenge, device_signature=approval, pin="482916")
        assert refused.value.code == "invalid_challenge"
        sdk.close()
    assert isinstance(parsed.signer_certificate.public_key(), ec.EllipticCurvePublicKey)
