"""The reference client: its message formats are the server's, it checks what it is handed
(prepared bytes, receipts, proofs) on its own, and it runs against a real server too."""

from __future__ import annotations

import base64
import copy
import hashlib

import httpx
import pytest
from fastapi.testclient import TestClient

from cloudseal.app import create_app
from cloudseal.platform import Platform
from mobile_api import client as app_side
from mobile_api.client import MobileClient
from mobile_api.proofs import TrustStore, VerificationError, check_counted, check_receipt, verify_inclusion
from ra import devices
from ra import secrets as ra_secrets
from signing.service import authorization_action
from tests.mobile.factories import (
    CHOICES,
    NATIONAL_IDS,
    PIN,
    activation_for,
    close_window,
    freeze,
    new_investor,
    publish_meeting,
)
from tests.support.servers import LiveServer
from voting import merkle


def test_the_clients_message_formats_are_the_servers() -> None:
    digest = hashlib.sha256(b"ballot").digest()
    assert app_side.authorization_action(digest) == authorization_action("sha256", [digest])
    assert app_side.challenge_message("ab12", b"\x00nonce", "mobile_login", "cd34") == devices.challenge_message(
        "ab12", b"\x00nonce", "mobile_login", "cd34")
    for typed in ("abcd-efgh 1234", "ABCDEFGH1234"):
        assert app_side.activation_message("ef56", typed, b"spki") == devices.activation_message(
            "ef56", ra_secrets.normalise_code(typed), b"spki")


def test_the_clients_inclusion_check_agrees_with_the_log() -> None:
    leaves = [merkle.leaf_hash(f"entry {n}".encode()) for n in range(33)]
    for size in range(1, 34):
        root = merkle.root_hash(leaves[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(leaves, index, size)
            assert verify_inclusion(leaves[index], index, size, proof, root)
            assert not verify_inclusion(leaves[index], index, size, proof, leaves[index - 1])
            variants = [(index, size + 1, proof), (index ^ 1, size, proof), (index, size, proof[:-1]),
                        (index, size, [bytes(32), *proof[1:]]), (size, size, proof)]
            for other_index, other_size, path in variants:  # same verdict as the log's own verifier
                assert verify_inclusion(leaves[index], other_index, other_size, path, root) == merkle.verify_inclusion(
                    leaves[index], other_index, other_size, path, root)


def test_the_client_refuses_tampered_receipts_and_proofs(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, meeting_id = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    submitted = alice.vote(public_id, CHOICES, PIN)
    trust, receipt = alice.trust(), submitted["receipt"]
    mine = {"meeting": public_id, "holder_no": "H001", "payload_sha256": submitted["payload_sha256"]}
    check_receipt(trust, receipt, **mine)
    for change in ({"status": "superseded"}, {"leaf_index": 7}, {"ballot_sha256": "0" * 64}):
        forged = copy.deepcopy(receipt)
        forged["receipt"].update(change)
        with pytest.raises(VerificationError):
            check_receipt(trust, forged, **mine)
    forged = copy.deepcopy(receipt)
    forged["receipt"]["tree_head"]["tree_size"] = 9
    with pytest.raises(VerificationError):
        check_receipt(trust, forged, **mine)
    with pytest.raises(VerificationError):
        check_receipt(trust, receipt, **{**mine, "holder_no": "H002"})

    close_window(platform, meeting_id)
    freeze(client, platform, meeting_id)
    proof = client.get(f"/mobile/v1/meetings/{public_id}/ballots/{submitted['payload_sha256']}/proof",
                       headers=alice.headers()).json()
    cms_sha256 = hashlib.sha256(base64.b64decode(submitted["cms"])).hexdigest()
    ok = check_counted(trust, proof, meeting=public_id, ballot_sha256=submitted["payload_sha256"], holder_no="H001",
                       cms_sha256=cms_sha256, leaf_index=0)
    assert ok.counted and ok.tree_size == 1
    tampered = [("entry", "holder", "H999"), ("entry", "received_at", "2026-01-01T00:00:00.000000Z"),
                ("tree_head", "root_hash", base64.b64encode(bytes(32)).decode()),
                ("tree_head", "issued_at", "2020-01-01T00:00:00.000000Z"), (None, "leaf_index", 1),
                (None, "inclusion_proof", [base64.b64encode(bytes(32)).decode()])]
    for part, name, value in tampered:
        forged = copy.deepcopy(proof)
        (forged[part] if part else forged)[name] = value
        with pytest.raises(VerificationError):
            check_counted(trust, forged, meeting=public_id, ballot_sha256=submitted["payload_sha256"])
    with pytest.raises(VerificationError):
        check_counted(trust, proof, meeting=public_id, ballot_sha256=submitted["payload_sha256"], cms_sha256="0" * 64)


def test_the_client_refuses_a_prepared_ballot_other_than_the_one_it_asked_for(client: TestClient,
                                                                              platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])

    def swap_choice(request: httpx.Request) -> httpx.Response:
        answer = client.request(request.method, str(request.url), content=request.content,
                                headers=dict(request.headers))
        body = answer.json()
        if request.url.path.endswith("/ballots/prepare"):
            payload = base64.b64decode(body["payload"]).replace(b'"CFOR"', b'"CAGS"')
            body.update(payload=base64.b64encode(payload).decode(), payload_sha256=hashlib.sha256(payload).hexdigest())
        return httpx.Response(answer.status_code, json=body)

    hostile = MobileClient(httpx.Client(base_url="http://testserver", transport=httpx.MockTransport(swap_choice)),
                           device_key=alice.device_key)
    hostile.credential_id = alice.credential_id
    hostile.login()
    with pytest.raises(VerificationError):
        hostile.prepare_ballot(public_id, {"1": "CFOR"})


def test_the_client_drives_a_real_server(platform: Platform) -> None:
    app = create_app(platform=platform, background_refresh=False)
    with TestClient(app) as staff, LiveServer(app) as server:
        activation = activation_for(staff, platform, NATIONAL_IDS[0])
        public_id, _ = publish_meeting(staff, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
        pinned = TrustStore.from_published(staff.get("/mobile/v1/pki").json()).root
        phone = MobileClient(base_url=server.url, pinned_root=pinned, language="zh-TW")
        phone.activate(activation["activation_id"], activation["code"], PIN)
        assert [m["public_id"] for m in phone.iter_meetings(page_size=1)] == [public_id]
        assert phone.vote(public_id, CHOICES, PIN)["status"] == "counted"
        assert [n["title"] for n in phone.inbox()] == ["已收到您的選票", "新的股東會"]  # receipt stored at once
