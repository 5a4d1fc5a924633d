"""Staff accounts and broker API clients: passwords, lockout, rotating refresh tokens.

Every function takes the session and explicit arguments; the caller owns the transaction.
Some refusals leave bookkeeping behind that must outlive the refused call (a failure counter,
a revoked token family, the audit entry of a failed login): they raise
:class:`CommittedRefusal`, and the caller commits before passing the error on
(:func:`committing_refusals` does that).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core import audit
from core.auth import Actor, Role, require_role
from core.db import UTCDateTime, utcnow
from core.errors import BadRequest, CommittedRefusal, Conflict, NotFound, Unauthorized
from core.models import RefreshToken, StaffUser

MAX_FAILED_LOGINS = 10
LOCKOUT = dt.timedelta(minutes=15)
REFRESH_TOKEN_LIFETIME = dt.timedelta(hours=8)
PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024
TENANT_ROLES = frozenset({Role.RA_OFFICER, Role.BROKER_BACKOFFICE, Role.ISSUER_HOST})
STAFF_ROLES = TENANT_ROLES | {Role.OPERATOR, Role.AUDITOR}
ANONYMOUS = "anonymous"

# argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile). Tests swap in cheaper
# parameters; the dummy hash below always follows the hasher in use.
PASSWORD_HASHER = PasswordHasher()

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_TENANT = re.compile(r"[A-Z0-9]{2,32}")

Mint = Callable[[Actor, dt.timedelta], str]
"""Signs an access token for an actor with a lifetime (e.g. ``Platform.mint_token``)."""


class LoginRefused(CommittedRefusal):
    """A refused login or token grant (its failure bookkeeping is committed)."""

    status_code = 401
    code = "invalid_grant"


@dataclass(frozen=True)
class IssuedTokens:
    """What a successful grant returns; ``refresh_token`` is None for API clients."""

    actor: Actor
    access_token: str
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_at: dt.datetime | None = None


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and looked up in lower case."""
    return username.strip().lower()


def staff_actor(user: StaffUser) -> Actor:
    """The actor an access token names for a staff user."""
    return Actor(subject=user.username, role=Role(user.role), tenant=user.tenant)


def check_password_policy(password: str) -> None:
    """Refuse passwords shorter than 12 characters (or absurdly long ones)."""
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise BadRequest(f"a password has {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters",
                         code="weak_password")


def _tenant_for(role: Role, tenant: str | None) -> str | None:
    """The normalised tenant code ``role`` requires, or None for platform-wide roles."""
    if role not in TENANT_ROLES:
        if tenant:
            raise BadRequest(f"the {role.value} role belongs to no tenant", code="tenant_not_allowed")
        return None
    if not tenant:
        raise BadRequest(f"the {role.value} role needs a tenant (broker or issuer code)",
                         code="tenant_required")
    code = tenant.strip().upper()
    if not _TENANT.fullmatch(code):
        raise BadRequest("a tenant code is 2 to 32 letters or digits", code="invalid_tenant")
    return code


def _password_matches(stored_hash: str, password: str) -> bool:
    try:
        return PASSWORD_HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))


def _spend_verification(password: str) -> None:
    """Cost as much as a real check, so timing does not tell which usernames exist."""
    _password_matches(_dummy_hash(PASSWORD_HASHER), password)


# Staff users ---------------------------------------------------------------------------

def create_staff_user(session: Session, *, actor: Actor, username: str, password: str,
                      role: Role | str, tenant: str | None = None,
                      now: dt.datetime | None = None) -> StaffUser:
    """Create a staff account (operators only); the password is kept as an argon2id hash."""
    require_role(actor, Role.OPERATOR)
    name = normalise_username(username)
    if not _USERNAME.fullmatch(name):
        raise BadRequest("a username is 1 to 64 letters, digits or . _ @ -", code="invalid_username")
    if role not in {r.value for r in STAFF_ROLES}:
        raise BadRequest(f"{role!r} is not a staff role", code="invalid_role")
    role = Role(role)
    tenant_code = _tenant_for(role, tenant)
    check_password_policy(password)
    # Hash before the first statement: on SQLite that opens the write transaction.
    password_hash = PASSWORD_HASHER.hash(password)
    taken = Conflict(f"the username {name!r} is taken", code="username_taken")
    if session.execute(select(StaffUser.id).where(StaffUser.username == name)).first():
        raise taken
    user = StaffUser(username=name, password_hash=password_hash, role=role.value,
                     tenant=tenant_code, created_at=now or utcnow())
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # created concurrently
        raise taken from exc
    audit.record(session, actor=actor.label, tenant=tenant_code, action="staff.create",
                 object_type="staff_user", object_id=name, details={"role": role.value})
    return user


def deactivate_staff_user(session: Session, *, actor: Actor, username: str,
                          now: dt.datetime | None = None) -> StaffUser:
    """Disable a staff account (operators only) and revoke all its refresh tokens."""
    require_role(actor, Role.OPERATOR)
    now = now or utcnow()
    name = normalise_username(username)
    user = session.execute(select(StaffUser).where(StaffUser.username == name)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no staff user {name!r}", code="unknown_user")
    changed = session.execute(
        update(StaffUser).where(StaffUser.id == user.id, StaffUser.active.is_(True))  # type: ignore[attr-defined]
        .values(active=False).execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        raise Conflict(f"the staff user {name!r} is already inactive", code="already_inactive")
    revoked = session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))  # type: ignore[union-attr]
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount
    audit.record(session, actor=actor.label, tenant=user.tenant, action="staff.deactivate",
                 object_type="staff_user", object_id=name, details={"refresh_tokens_revoked": revoked})
    session.refresh(user)
    return user


def _wrong_credentials() -> LoginRefused:
    return LoginRefused("the username or password is wrong", code="invalid_grant")


def _locked() -> LoginRefused:
    return LoginRefused("too many failed logins: the account is locked for a while",
                            code="account_locked")


def _record_login(session: Session, *, user: StaffUser | None, name: str, outcome: str,
                  **details: object) -> None:
    audit.record(
        session,
        actor=staff_actor(user).label if user and outcome == "success" else ANONYMOUS,
        tenant=user.tenant if user else None, action="staff.login", object_type="staff_user",
        object_id=user.username if user else name[:64], outcome=outcome, details=details,
    )


def _count_failure(session: Session, user: StaffUser, now: dt.datetime) -> bool:
    """Count one wrong password atomically; True when the account is (now) locked.

    One UPDATE reads and writes the counter, so concurrent attempts on any number of workers
    each count once; the tenth locks the account and restarts the count.
    """
    reaches_limit = StaffUser.failed_logins + 1 >= MAX_FAILED_LOGINS
    row = session.execute(
        update(StaffUser)
        .where(StaffUser.id == user.id,
               or_(StaffUser.locked_until.is_(None), StaffUser.locked_until <= now))  # type: ignore[union-attr,operator]
        .values(
            failed_logins=case((reaches_limit, 0), else_=StaffUser.failed_logins + 1),
            locked_until=case((reaches_limit, literal(now + LOCKOUT, UTCDateTime())),
                              else_=literal(None, UTCDateTime())),
        )
        .returning(StaffUser.locked_until)
        .execution_options(synchronize_session=False)
    ).first()
    # No row: a concurrent attempt locked the account since it was read.
    return row is None or row.locked_until is not None


def authenticate_password(session: Session, *, username: str, password: str,
                          now: dt.datetime | None = None) -> StaffUser:
    """Check a staff member's password; return the account or refuse.

    A wrong password answers ``invalid_grant`` whether or not the username exists (unknown
    names cost a dummy argon2 check). Ten consecutive wrong passwords lock the account for
    15 minutes; while locked, every attempt is refused with ``account_locked`` without
    looking at the password, so the lock cannot be used to confirm a guess. A disabled
    account with the right password answers ``account_disabled``. Refusals are audited.
    """
    now = now or utcnow()
    name = normalise_username(username)
    user = None
    if _USERNAME.fullmatch(name):
        user = session.execute(select(StaffUser).where(StaffUser.username == name)).scalar_one_or_none()
    if user is None:
        _spend_verification(password)
        _record_login(session, user=None, name=name, outcome="failure", reason="unknown_user")
        raise _wrong_credentials()
    if user.locked_until is not None and user.locked_until > now:
        _spend_verification(password)
        _record_login(session, user=user, name=name, outcome="failure", reason="locked")
        raise _locked()
    if not _password_matches(user.password_hash, password):
        if not user.active:
            _record_login(session, user=user, name=name, outcome="failure", reason="wrong_password")
            raise _wrong_credentials()
        locked = _count_failure(session, user, now)
        _record_login(session, user=user, name=name, outcome="failure", reason="wrong_password",
                      locked=locked)
        raise _locked() if locked else _wrong_credentials()
    if not user.active:
        _record_login(session, user=user, name=name, outcome="failure", reason="inactive")
        raise LoginRefused("this account is disabled", code="account_disabled")
    changes: dict[str, object] = {}
    if user.failed_logins or user.locked_until is not None:
        changes.update(failed_logins=0, locked_until=None)
    if PASSWORD_HASHER.check_needs_rehash(user.password_hash):
        changes["password_hash"] = PASSWORD_HASHER.hash(password)
    if changes:
        session.execute(update(StaffUser).where(StaffUser.id == user.id).values(**changes)
                        .execution_options(synchronize_session=False))
        session.refresh(user)
    _record_login(session, user=user, name=name, outcome="success")
    return user


# Token pairs ---------------------------------------------------------------------------

def _store_refresh_token(session: Session, *, user_id: int, family_id: str, now: dt.datetime,
                         expires_at: dt.datetime) -> str:
    token = secrets.token_urlsafe(32)
    session.add(RefreshToken(user_id=user_id, family_id=family_id, token_hash=_sha256(token),
                             issued_at=now, expires_at=expires_at))
    session.flush()
    return token


def issue_access_token(actor: Actor, *, mint: Mint, access_ttl: dt.timedelta) -> IssuedTokens:
    """An access token alone (API clients get no refresh token)."""
    return IssuedTokens(actor=actor, access_token=mint(actor, access_ttl),
                        expires_in=int(access_ttl.total_seconds()))


def _pair(actor: Actor, mint: Mint, access_ttl: dt.timedelta, refresh: str,
          refresh_expires_at: dt.datetime) -> IssuedTokens:
    return IssuedTokens(actor=actor, access_token=mint(actor, access_ttl),
                        expires_in=int(access_ttl.total_seconds()), refresh_token=refresh,
                        refresh_expires_at=refresh_expires_at)


def issue_token_pair(session: Session, *, user: StaffUser, mint: Mint, access_ttl: dt.timedelta,
                     now: dt.datetime | None = None) -> IssuedTokens:
    """Access token plus a refresh token opening a new family (one family per login).

    The family lives 8 hours from the login; rotated tokens inherit that end, so a session
    needs the password again after a working day however often it refreshes.
    """
    assert user.id is not None
    now = now or utcnow()
    family_id = uuid.uuid4().hex
    expires_at = now + REFRESH_TOKEN_LIFETIME
    refresh = _store_refresh_token(session, user_id=user.id, family_id=family_id, now=now,
                                   expires_at=expires_at)
    actor = staff_actor(user)
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="staff.session.open",
                 object_type="refresh_family", object_id=family_id)
    return _pair(actor, mint, access_ttl, refresh, expires_at)


def _revoke_family(session: Session, family_id: str, now: dt.datetime) -> int:
    return session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))  # type: ignore[union-attr]
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount


def rotate_refresh_token(session: Session, *, refresh_token: str, mint: Mint,
                         access_ttl: dt.timedelta, now: dt.datetime | None = None) -> IssuedTokens:
    """Exchange a refresh token for a new pair; each refresh token works once.

    The token is claimed by ``UPDATE … WHERE used_at IS NULL AND revoked_at IS NULL``, so of
    several concurrent presentations exactly one wins. Presenting a used or revoked token is
    taken as theft: the whole family is revoked (:class:`CommittedRefusal`).
    """
    now = now or utcnow()
    invalid = Unauthorized("the refresh token is not valid", code="invalid_grant")
    found = session.execute(
        select(RefreshToken, StaffUser).join(StaffUser, StaffUser.id == RefreshToken.user_id)  # type: ignore[arg-type]
        .where(RefreshToken.token_hash == _sha256(refresh_token))
    ).first()
    if found is None:
        raise invalid
    token, user = found
    if not user.active:
        raise invalid
    claimed = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None),  # type: ignore[union-attr]
               RefreshToken.revoked_at.is_(None), RefreshToken.expires_at > now)  # type: ignore[union-attr,operator]
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount
    actor = staff_actor(user)
    if not claimed:
        state = session.execute(select(RefreshToken.used_at, RefreshToken.revoked_at)
                                .where(RefreshToken.id == token.id)).one()
        if state.used_at is None and state.revoked_at is None:
            raise Unauthorized("the refresh token has expired: sign in again", code="invalid_grant")
        revoked = _revoke_family(session, token.family_id, now)
        audit.record(session, actor=ANONYMOUS, tenant=actor.tenant, action="staff.session.refresh",
                     object_type="refresh_family", object_id=token.family_id, outcome="failure",
                     details={"reason": "reuse", "user": user.username, "tokens_revoked": revoked})
        raise LoginRefused("the refresh token was already used: the session is revoked",
                               code="invalid_grant")
    refresh = _store_refresh_token(session, user_id=user.id, family_id=token.family_id, now=now,
                                   expires_at=token.expires_at)
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="staff.session.refresh",
                 object_type="refresh_family", object_id=token.family_id)
    return _pair(actor, mint, access_ttl, refresh, token.expires_at)


def revoke_refresh_token(session: Session, *, refresh_token: str,
                         now: dt.datetime | None = None) -> bool:
    """Sign out: revoke the family of ``refresh_token``. False when nothing was revoked."""
    now = now or utcnow()
    found = session.execute(
        select(RefreshToken.family_id, StaffUser.username, StaffUser.role, StaffUser.tenant)
        .join(StaffUser, StaffUser.id == RefreshToken.user_id)  # type: ignore[arg-type]
        .where(RefreshToken.token_hash == _sha256(refresh_token))
    ).first()
    if found is None or not _revoke_family(session, found.family_id, now):
        return False
    actor = Actor(subject=found.username, role=Role(found.role), tenant=found.tenant)
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="staff.session.revoke",
                 object_type="refresh_family", object_id=found.family_id)
    return True
