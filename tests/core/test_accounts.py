"""Staff accounts, lockout, rotating refresh tokens and API clients, at the service level."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from cloudseal.migrate import upgrade
from core import accounts, api_clients, audit
from core.accounts import CommittedRefusal
from core.auth import Actor, Role
from core.db import committing_refusals, make_engine, session_scope, utcnow
from core.errors import AppError, BadRequest, Conflict, Forbidden
from core.models import ApiClient, AuditEvent, RefreshToken, StaffUser

OPERATOR = Actor(subject="root", role=Role.OPERATOR)
PASSWORD = "correct horse battery staple"
TTL = dt.timedelta(minutes=15)


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with parameters cheap enough for many logins per test."""
    monkeypatch.setattr(accounts, "PASSWORD_HASHER",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def mint(actor: Actor, ttl: dt.timedelta) -> str:
    return f"access:{actor.role.value}:{actor.subject}:{actor.tenant}:{int(ttl.total_seconds())}"


def run(engine: Engine, service: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a service in its own transaction, keeping what refusals record (as the API does)."""
    with session_scope(engine) as session, committing_refusals(session):
        return service(session, **kwargs)


def make_user(engine: Engine, username: str = "alice", role: Role | str = Role.RA_OFFICER,
              tenant: str | None = "9800") -> StaffUser:
    return run(engine, accounts.create_staff_user, actor=OPERATOR, username=username,
               password=PASSWORD, role=role, tenant=tenant)


def login(engine: Engine, password: str = PASSWORD, username: str = "alice",
          now: dt.datetime | None = None) -> StaffUser:
    return run(engine, accounts.authenticate_password, username=username, password=password, now=now)


def refusal_code(call: Callable[[], Any]) -> str:
    with pytest.raises(AppError) as caught:
        call()
    return caught.value.code


def open_session(engine: Engine) -> accounts.IssuedTokens:
    user = login(engine)
    return run(engine, accounts.issue_token_pair, user=user, mint=mint, access_ttl=TTL)


def refresh(engine: Engine, token: str, now: dt.datetime | None = None) -> accounts.IssuedTokens:
    return run(engine, accounts.rotate_refresh_token, refresh_token=token, mint=mint,
               access_ttl=TTL, now=now)


def rows(engine: Engine, statement: Any) -> list[Any]:
    with Session(engine) as session:
        return list(session.execute(statement).scalars().all())


# Accounts ------------------------------------------------------------------------------

def test_password_is_kept_only_as_an_argon2id_hash(engine: Engine) -> None:
    make_user(engine)
    (user,) = rows(engine, select(StaffUser))
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert (user.role, user.tenant, user.active, user.failed_logins) == ("ra_officer", "9800", True, 0)


def test_password_shorter_than_twelve_characters_is_refused(engine: Engine) -> None:
    assert refusal_code(lambda: run(engine, accounts.create_staff_user, actor=OPERATOR,
                                    username="bob", password="eleven-char", role=Role.AUDITOR)) == "weak_password"


@pytest.mark.parametrize(("role", "tenant", "code"), [
    (Role.RA_OFFICER, None, "tenant_required"),
    (Role.BROKER_BACKOFFICE, "", "tenant_required"),
    (Role.ISSUER_HOST, None, "tenant_required"),
    (Role.OPERATOR, "9800", "tenant_not_allowed"),
    (Role.AUDITOR, "9800", "tenant_not_allowed"),
    (Role.RA_OFFICER, "98 00", "invalid_tenant"),
])
def test_role_and_tenant_must_agree(tmp_path, role: Role, tenant: str | None, code: str) -> None:
    url = f"sqlite:///{tmp_path}/roles.db"
    upgrade(url)
    engine = make_engine(url)
    try:
        assert refusal_code(lambda: make_user(engine, role=role, tenant=tenant)) == code
    finally:
        engine.dispose()


@pytest.mark.parametrize("role", ["superuser", *(r.value for r in Role if r not in accounts.STAFF_ROLES)])
def test_only_staff_roles_are_accepted(engine: Engine, role: str) -> None:
    assert refusal_code(lambda: make_user(engine, role=role, tenant=None)) == "invalid_role"


def test_usernames_are_unique_whatever_their_case(engine: Engine) -> None:
    make_user(engine, "alice")
    with pytest.raises(Conflict) as caught:
        make_user(engine, "ALICE")
    assert caught.value.code == "username_taken"
    assert login(engine, username="Alice").username == "alice"


def test_only_operators_create_accounts_and_clients(engine: Engine) -> None:
    officer = Actor(subject="x", role=Role.RA_OFFICER, tenant="9800")
    with pytest.raises(Forbidden):
        run(engine, accounts.create_staff_user, actor=officer, username="bob", password=PASSWORD,
            role=Role.RA_OFFICER, tenant="9800")
    with pytest.raises(Forbidden):
        run(engine, api_clients.create_api_client, actor=officer, tenant="9800", name="x")


# Passwords and lockout -----------------------------------------------------------------

def test_wrong_password_and_unknown_user_are_refused_alike(engine: Engine) -> None:
    make_user(engine)
    wrong = refusal_code(lambda: login(engine, "not the password!"))
    unknown = refusal_code(lambda: login(engine, username="nobody"))
    assert wrong == unknown == "invalid_grant"


def test_ten_consecutive_failures_lock_the_account_for_fifteen_minutes(engine: Engine) -> None:
    make_user(engine)
    start = utcnow()
    for _ in range(9):
        assert refusal_code(lambda: login(engine, "wrong password!", now=start)) == "invalid_grant"
    assert refusal_code(lambda: login(engine, "wrong password!", now=start)) == "account_locked"
    assert refusal_code(lambda: login(engine, now=start + dt.timedelta(minutes=14))) == "account_locked"
    assert login(engine, now=start + dt.timedelta(minutes=15, seconds=1)).failed_logins == 0


def test_a_success_restarts_the_failure_count(engine: Engine) -> None:
    make_user(engine)
    for _ in range(9):
        refusal_code(lambda: login(engine, "wrong password!"))
    login(engine)
    for _ in range(9):
        assert refusal_code(lambda: login(engine, "wrong password!")) == "invalid_grant"
    assert login(engine).username == "alice"


def test_while_locked_even_the_right_password_is_refused(engine: Engine) -> None:
    make_user(engine)
    for _ in range(10):
        refusal_code(lambda: login(engine, "wrong password!"))
    assert refusal_code(lambda: login(engine)) == "account_locked"
    assert refusal_code(lambda: login(engine, "another guess!")) == "account_locked"


@pytest.mark.parametrize(("attempts", "locked"), [(9, False), (10, True)])
def test_concurrent_failures_each_count_once(engine: Engine, attempts: int, locked: bool) -> None:
    make_user(engine)
    barrier = threading.Barrier(attempts)

    def attempt(_: int) -> str:
        barrier.wait()
        return refusal_code(lambda: login(engine, "wrong password!"))

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        codes = list(pool.map(attempt, range(attempts)))
    assert codes.count("account_locked") == (1 if locked else 0)
    if locked:
        assert refusal_code(lambda: login(engine)) == "account_locked"
    else:
        assert login(engine).failed_logins == 0


def test_disabled_account_is_told_so_only_with_the_right_password(engine: Engine) -> None:
    make_user(engine)
    run(engine, accounts.deactivate_staff_user, actor=OPERATOR, username="alice")
    assert refusal_code(lambda: login(engine, "wrong password!")) == "invalid_grant"
    assert refusal_code(lambda: login(engine)) == "account_disabled"


def test_failed_logins_are_audited_without_the_password(engine: Engine) -> None:
    make_user(engine)
    refusal_code(lambda: login(engine, "Hunter2-wrong-guess"))
    refusal_code(lambda: login(engine, "Hunter2-other-guess", username="mallory"))
    events = rows(engine, select(AuditEvent).where(AuditEvent.action == "staff.login"))
    assert [(e.object_id, e.outcome) for e in events] == [("alice", "failure"), ("mallory", "failure")]
    assert all("Hunter2" not in e.details for e in events)
    with Session(engine) as session:
        assert audit.verify_chain(session).ok


# Refresh tokens ------------------------------------------------------------------------

def test_token_pair_carries_role_and_tenant_and_stores_only_a_hash(engine: Engine) -> None:
    make_user(engine)
    pair = open_session(engine)
    assert pair.access_token == "access:ra_officer:alice:9800:900" and pair.expires_in == 900
    assert len(pair.refresh_token) >= 43  # 32 random bytes, base64url
    (stored,) = rows(engine, select(RefreshToken))
    assert stored.token_hash == hashlib.sha256(pair.refresh_token.encode()).hexdigest()
    assert stored.expires_at - stored.issued_at == dt.timedelta(hours=8)


def test_each_login_opens_a_new_family(engine: Engine) -> None:
    make_user(engine)
    open_session(engine)
    open_session(engine)
    assert len({t.family_id for t in rows(engine, select(RefreshToken))}) == 2


def test_refresh_rotates_and_each_token_works_once(engine: Engine) -> None:
    make_user(engine)
    first = open_session(engine)
    second = refresh(engine, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    third = refresh(engine, second.refresh_token)
    assert third.refresh_expires_at == first.refresh_expires_at  # the family's end does not slide


def test_reusing_a_rotated_token_revokes_the_whole_family(engine: Engine) -> None:
    make_user(engine)
    first = open_session(engine)
    second = refresh(engine, first.refresh_token)
    with pytest.raises(CommittedRefusal):
        refresh(engine, first.refresh_token)
    assert refusal_code(lambda: refresh(engine, second.refresh_token)) == "invalid_grant"
    assert all(t.revoked_at is not None for t in rows(engine, select(RefreshToken)))
    reuse = rows(engine, select(AuditEvent).where(AuditEvent.outcome == "failure"))[0]
    assert reuse.action == "staff.session.refresh" and '"reason":"reuse"' in reuse.details
    assert '"tokens_revoked":2' in reuse.details  # the used token and the live one


def test_concurrent_refresh_of_one_token_yields_exactly_one_pair(engine: Engine) -> None:
    make_user(engine)
    token = open_session(engine).refresh_token
    barrier = threading.Barrier(8)

    def attempt(_: int) -> accounts.IssuedTokens | str:
        barrier.wait()
        try:
            return refresh(engine, token)
        except AppError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(8)))
    pairs = [r for r in results if isinstance(r, accounts.IssuedTokens)]
    assert len(pairs) == 1 and results.count("invalid_grant") == 7
    assert refusal_code(lambda: refresh(engine, pairs[0].refresh_token)) == "invalid_grant"
    assert all(t.revoked_at is not None for t in rows(engine, select(RefreshToken)))


def test_expired_refresh_token_is_refused_without_revoking_the_family(engine: Engine) -> None:
    make_user(engine)
    pair = open_session(engine)
    later = utcnow() + dt.timedelta(hours=8, seconds=1)
    assert refusal_code(lambda: refresh(engine, pair.refresh_token, now=later)) == "invalid_grant"
    assert all(t.revoked_at is None and t.used_at is None for t in rows(engine, select(RefreshToken)))


def test_unknown_refresh_token_is_refused(engine: Engine) -> None:
    assert refusal_code(lambda: refresh(engine, "made-up")) == "invalid_grant"


def test_revoking_a_refresh_token_ends_its_session_only(engine: Engine) -> None:
    make_user(engine)
    ended, kept = open_session(engine), open_session(engine)
    assert run(engine, accounts.revoke_refresh_token, refresh_token=ended.refresh_token) is True
    assert run(engine, accounts.revoke_refresh_token, refresh_token=ended.refresh_token) is False
    assert refusal_code(lambda: refresh(engine, ended.refresh_token)) == "invalid_grant"
    refresh(engine, kept.refresh_token)


def test_deactivation_revokes_every_refresh_token(engine: Engine) -> None:
    make_user(engine)
    pair = open_session(engine)
    user = run(engine, accounts.deactivate_staff_user, actor=OPERATOR, username="alice")
    assert user.active is False
    assert all(t.revoked_at is not None for t in rows(engine, select(RefreshToken)))
    assert refusal_code(lambda: refresh(engine, pair.refresh_token)) == "invalid_grant"
    assert refusal_code(lambda: run(engine, accounts.deactivate_staff_user, actor=OPERATOR,
                                    username="alice")) == "already_inactive"


# API clients ---------------------------------------------------------------------------

def test_api_client_secret_is_stored_as_sha256_and_authenticates(engine: Engine) -> None:
    created = run(engine, api_clients.create_api_client, actor=OPERATOR, tenant="9800", name="orders")
    assert len(created.client_secret) >= 43
    (stored,) = rows(engine, select(ApiClient))
    assert stored.secret_hash == hashlib.sha256(created.client_secret.encode()).hexdigest()
    actor = run(engine, api_clients.authenticate_client, client_id=created.client_id,
                client_secret=created.client_secret)
    assert actor == Actor(subject=f"client:{created.client_id}", role=Role.BROKER_BACKOFFICE,
                          tenant="9800")


def test_wrong_secret_unknown_and_revoked_clients_are_refused(engine: Engine) -> None:
    created = run(engine, api_clients.create_api_client, actor=OPERATOR, tenant="9800", name="orders")

    def authenticate(client_id: str, secret: str) -> str:
        return refusal_code(lambda: run(engine, api_clients.authenticate_client, client_id=client_id,
                                        client_secret=secret))

    assert authenticate(created.client_id, "wrong") == "invalid_client"
    assert authenticate("bc_unknown", created.client_secret) == "invalid_client"
    run(engine, api_clients.revoke_api_client, actor=OPERATOR, client_id=created.client_id)
    assert authenticate(created.client_id, created.client_secret) == "invalid_client"
    reasons = [e.details for e in rows(engine, select(AuditEvent)
                                       .where(AuditEvent.action == "api_client.authenticate"))]
    assert reasons == ['{"reason":"wrong_secret"}', '{"reason":"unknown_client"}', '{"reason":"revoked"}']


def test_api_client_needs_a_valid_broker_code(engine: Engine) -> None:
    with pytest.raises(BadRequest):
        run(engine, api_clients.create_api_client, actor=OPERATOR, tenant="", name="orders")


def test_every_change_is_audited_with_actor_tenant_and_outcome(engine: Engine) -> None:
    make_user(engine)
    pair = open_session(engine)
    refresh(engine, pair.refresh_token)
    created = run(engine, api_clients.create_api_client, actor=OPERATOR, tenant="9800", name="orders")
    run(engine, api_clients.revoke_api_client, actor=OPERATOR, client_id=created.client_id)
    run(engine, accounts.deactivate_staff_user, actor=OPERATOR, username="alice")
    events = rows(engine, select(AuditEvent).order_by(AuditEvent.seq))
    assert [(e.action, e.actor, e.tenant, e.outcome) for e in events] == [
        ("staff.create", "operator:root", "9800", "success"),
        ("staff.login", "ra_officer:alice", "9800", "success"),
        ("staff.session.open", "ra_officer:alice", "9800", "success"),
        ("staff.session.refresh", "ra_officer:alice", "9800", "success"),
        ("api_client.create", "operator:root", "9800", "success"),
        ("api_client.revoke", "operator:root", "9800", "success"),
        ("staff.deactivate", "operator:root", "9800", "success"),
    ]
    with Session(engine) as session:
        assert audit.verify_chain(session).ok
