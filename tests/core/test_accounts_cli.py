"""Staff accounts and API clients made from the command line, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from core import accounts, api_clients
from core.db import make_engine, session_scope
from core.models import AuditEvent, StaffUser

PASSWORD = "a long passphrase nobody guesses"


def cloudseal(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
           "CLOUDSEAL_HSM": f"soft:{tmp_path}/hsm", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cloudseal", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    assert cloudseal(tmp_path, "migrate").returncode == 0
    broker = cloudseal(tmp_path, "brokers", "create", "--code", "9800", "--name", "Test Securities")
    assert broker.returncode == 0, broker.stderr
    return tmp_path


def test_staff_and_clients_of_an_unknown_broker_are_refused(migrated: Path) -> None:
    staff = cloudseal(migrated, "staff", "create", "--username", "ghost", "--role", "ra_officer",
                      "--tenant", "1111", "--password-stdin", stdin=PASSWORD + "\n")
    assert staff.returncode == 1 and "unknown_broker" in staff.stderr
    client = cloudseal(migrated, "clients", "create", "--tenant", "1111", "--name", "x")
    assert client.returncode == 1 and "unknown_broker" in client.stderr


def test_staff_create_reads_the_password_from_stdin_and_never_shows_it(migrated: Path) -> None:
    created = cloudseal(migrated, "staff", "create", "--username", "Officer.Lin", "--role",
                        "ra_officer", "--tenant", "9800", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    engine = make_engine(f"sqlite:///{migrated}/c.db")
    try:
        with session_scope(engine) as session:
            user = accounts.authenticate_password(session, username="officer.lin", password=PASSWORD)
            assert (user.role, user.tenant) == ("ra_officer", "9800")
        with Session(engine) as session:
            stored = session.execute(select(StaffUser)).scalar_one()
            details = " ".join(e.details for e in session.execute(select(AuditEvent)).scalars())
        assert PASSWORD not in stored.password_hash and PASSWORD not in details
    finally:
        engine.dispose()
    deactivated = cloudseal(migrated, "staff", "deactivate", "--username", "officer.lin")
    assert deactivated.returncode == 0, deactivated.stderr


def test_staff_create_refuses_a_short_password_and_a_misplaced_tenant(migrated: Path) -> None:
    short = cloudseal(migrated, "staff", "create", "--username", "bob", "--role", "auditor",
                      "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "weak_password" in short.stderr
    tenant = cloudseal(migrated, "staff", "create", "--username", "bob", "--role", "operator",
                       "--tenant", "9800", "--password-stdin", stdin=PASSWORD + "\n")
    assert tenant.returncode == 1 and "tenant_not_allowed" in tenant.stderr


def test_clients_create_prints_the_secret_once_and_revoke_stops_it(migrated: Path) -> None:
    created = cloudseal(migrated, "clients", "create", "--tenant", "9800", "--name", "order checks")
    assert created.returncode == 0, created.stderr
    printed = dict(line.split(": ", 1) for line in created.stdout.splitlines())
    client_id, secret = printed["client_id"], printed["client_secret"]
    assert secret not in created.stderr
    engine = make_engine(f"sqlite:///{migrated}/c.db")
    try:
        with session_scope(engine) as session:
            actor = api_clients.authenticate_client(session, client_id=client_id, client_secret=secret)
        assert (actor.subject, actor.tenant) == (f"client:{client_id}", "9800")
        assert cloudseal(migrated, "clients", "revoke", "--client-id", client_id).returncode == 0
        with pytest.raises(accounts.CommittedRefusal), session_scope(engine) as session:
            api_clients.authenticate_client(session, client_id=client_id, client_secret=secret)
    finally:
        engine.dispose()
    again = cloudseal(migrated, "clients", "revoke", "--client-id", client_id)
    assert again.returncode == 1 and "already_revoked" in again.stderr
    assert cloudseal(migrated, "audit", "verify").returncode == 0


def test_account_commands_before_migrate_explain_themselves(tmp_path: Path) -> None:
    result = cloudseal(tmp_path, "clients", "create", "--tenant", "9800", "--name", "x")
    assert result.returncode == 2 and "run `cloudseal migrate` first" in result.stderr
