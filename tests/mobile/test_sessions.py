"""App sessions: a refresh token and a login challenge work once, also when raced; a
challenge is bound to its credential and action; sessions end on sign-out and expiry, and a
sign-out racing a refresh leaves nothing alive (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlmodel import Session

from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.db import session_scope, utcnow
from mobile_api import auth, web
from mobile_api.client import LOGIN_ACTION, MobileClient, challenge_message
from mobile_api.models import MobileRefreshToken
from tests.conftest import make_platform, make_settings
from tests.mobile.factories import NATIONAL_IDS, new_investor
from tests.support.servers import LiveServer


def signed_login(client: TestClient, app: MobileClient, *, challenge_for: str | None = None,
                 action: str = LOGIN_ACTION) -> dict[str, str]:
    """A login body: a fresh challenge (of ``challenge_for``'s credential) signed by ``app``'s device."""
    challenge = client.post("/mobile/v1/auth/challenge", json={"credential_id": challenge_for or app.credential_id})
    assert challenge.status_code == 201, challenge.text
    issued = challenge.json()
    message = challenge_message(issued["challenge_id"], base64.b64decode(issued["nonce"]), action,
                                app.credential_id or "")
    return {"credential_id": app.credential_id or "", "challenge_id": issued["challenge_id"],
            "device_signature": base64.b64encode(app.device_key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()}


def code_of(answer: httpx.Response) -> tuple[int, str | None]:
    return answer.status_code, answer.json()["error"]["code"] if answer.status_code >= 400 else None


def test_racing_refreshes_and_logins_with_one_token_or_challenge_let_exactly_one_through(
        any_platform: Platform) -> None:
    app = create_app(platform=any_platform, background_refresh=False)
    with TestClient(app) as client, LiveServer(app) as server:
        alice = new_investor(client, any_platform, NATIONAL_IDS[0])
        login = signed_login(client, alice)
        refresh_token, start = alice._refresh, threading.Barrier(8)

        def race(path: str, body: dict[str, str]) -> list[tuple[int, str | None]]:
            def send(_: int) -> tuple[int, str | None]:
                start.wait()
                return code_of(httpx.post(f"{server.url}/mobile/v1{path}", json=body, timeout=60))
            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(send, range(8)))

        refreshed = race("/auth/refresh", {"refresh_token": refresh_token or ""})
        assert refreshed.count((200, None)) == 1, refreshed
        assert all(answer in ((200, None), (401, "refresh_token_reused")) for answer in refreshed), refreshed
        with session_scope(any_platform.engine) as session:  # the activation's session is the only one
            issued = session.execute(select(func.count()).select_from(MobileRefreshToken)).scalar_one()
            live = session.execute(select(func.count()).select_from(MobileRefreshToken)
                                   .where(MobileRefreshToken.revoked_at.is_(None))).scalar_one()
        assert (issued, live) == (2, 0)  # one successor only, and the reuse closed the session

        logged_in = race("/auth/login", login)
        assert logged_in.count((200, None)) == 1, logged_in
        assert all(answer in ((200, None), (401, "invalid_challenge")) for answer in logged_in), logged_in


def test_a_login_challenge_works_once_for_its_credential_and_action(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    bob = new_investor(client, platform, NATIONAL_IDS[1])
    body = signed_login(client, alice)
    assert code_of(client.post("/mobile/v1/auth/login", json=body)) == (200, None)
    assert code_of(client.post("/mobile/v1/auth/login", json=body)) == (401, "invalid_challenge")
    bobs_challenge = signed_login(client, alice, challenge_for=bob.credential_id)  # Alice signs Bob's challenge
    assert code_of(client.post("/mobile/v1/auth/login", json=bobs_challenge)) == (401, "invalid_challenge")
    as_bob = {**bobs_challenge, "credential_id": bob.credential_id or ""}  # and presents it as Bob
    assert code_of(client.post("/mobile/v1/auth/login", json=as_bob)) == (401, "bad_device_proof")
    for_revoke = signed_login(client, alice, action="revoke")
    assert code_of(client.post("/mobile/v1/auth/login", json=for_revoke)) == (401, "bad_device_proof")
    assert code_of(client.post("/mobile/v1/auth/login", json=signed_login(client, alice))) == (200, None)


def test_a_session_ends_when_it_expires(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    headers = alice.headers()
    with session_scope(platform.engine) as session:
        session.execute(update(MobileRefreshToken).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert code_of(client.get("/mobile/v1/me", headers=headers)) == (401, "session_revoked")
    answer = client.post("/mobile/v1/auth/refresh", json={"refresh_token": alice._refresh})
    assert code_of(answer) == (401, "invalid_refresh_token")
    alice.login()
    assert alice.me()["investor_reference"] == alice.investor_reference


def test_a_sign_out_racing_a_refresh_leaves_no_live_token(database_url: str, tmp_path: Path) -> None:
    """The refresh has rotated (not committed) when the sign-out starts: on PostgreSQL the
    sign-out waits for the rotated token's row and cannot see the new one being inserted."""
    platform = make_platform(make_settings(tmp_path, database_url))
    try:
        app = create_app(platform=platform, background_refresh=False)
        with TestClient(app) as client:
            alice = new_investor(client, platform, NATIONAL_IDS[0])
            issuer = web.token_issuer(app)
            with Session(platform.read_engine) as reader:
                caller = auth.authenticate(reader, issuer, alice.headers()["Authorization"].split()[1])
            with Session(platform.engine, expire_on_commit=False) as refreshing:
                rotated = auth.rotate(refreshing, issuer, refresh_token=alice._refresh or "")

                def sign_out() -> None:
                    with session_scope(platform.engine) as session:
                        auth.close_session(session, caller)

                signing_out = threading.Thread(target=sign_out)
                signing_out.start()
                time.sleep(0.5)  # the sign-out is now waiting for the refresh's lock
                refreshing.commit()
            signing_out.join(30)
            access = client.get("/mobile/v1/me", headers={"Authorization": f"Bearer {rotated.access_token}"})
            assert code_of(access) == (401, "session_revoked")
            again = client.post("/mobile/v1/auth/refresh", json={"refresh_token": rotated.refresh_token})
            assert code_of(again) == (401, "invalid_refresh_token")
    finally:
        platform.close()
