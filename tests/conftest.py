"""Shared fixtures: databases (SQLite always, PostgreSQL when installed), HSMs, the app."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ca.bootstrap import bootstrap
from cloudseal.app import create_app
from cloudseal.migrate import upgrade
from cloudseal.platform import Platform, build_platform
from core.auth import Actor, Role
from core.db import session_scope
from core.settings import Settings
from tests.support.postgres import PostgresCluster, find_pg_bin
from tests.support.softhsm import make_softhsm_token, softhsm_available

PG_MISSING = "PostgreSQL server binaries not installed (apt-get install postgresql): PostgreSQL variant skipped"
SOFTHSM_MISSING = "SoftHSM2 not installed (apt-get install softhsm2): PKCS#11 variant skipped"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster | None]:
    """One throwaway PostgreSQL cluster per test run, or None when not installed."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        yield None
        return
    cluster = PostgresCluster(bin_dir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str] | None:
    """A fresh SoftHSM2 token for this run, or None when SoftHSM2 is not installed."""
    if not softhsm_available():
        return None
    return make_softhsm_token(tmp_path_factory.mktemp("softhsm-ca"), label="cloudseal-ca")


def _database_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/cloudseal.db"
        return
    cluster: PostgresCluster | None = request.getfixturevalue("pg_cluster")
    if cluster is None:
        pytest.skip(PG_MISSING)
    url = cluster.create_database()
    try:
        yield url
    finally:
        cluster.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once per backend."""
    yield from _database_url(request.param, tmp_path, request)


def make_settings(tmp_path: Path, database_url: str, hsm: str | None = None, **overrides: object) -> Settings:
    """Settings for a test, independent of the caller's environment."""
    return Settings(
        database_url=database_url,
        hsm=hsm or f"soft:{tmp_path}/hsm",
        public_url="http://127.0.0.1:8000",
        **overrides,  # type: ignore[arg-type]
    )


def make_platform(settings: Settings) -> Platform:
    """Migrate, open and bootstrap a platform, as ``make run`` does."""
    upgrade(settings.database_url)
    platform = build_platform(settings)
    platform.ensure_keys()
    with session_scope(platform.engine) as session:
        bootstrap(session, platform.pki)
    return platform


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """The embedded default: SQLite and the software HSM."""
    p = make_platform(make_settings(tmp_path, f"sqlite:///{tmp_path}/cloudseal.db"))
    yield p
    p.close()


@pytest.fixture
def platform_on_each_database(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    """The platform on SQLite and on PostgreSQL (when installed), with the software HSM."""
    platform = make_platform(make_settings(tmp_path, database_url))
    yield platform
    platform.close()


_VARIANTS = ["sqlite-soft", "postgresql-soft", "sqlite-pkcs11"]


@pytest.fixture(params=_VARIANTS)
def any_platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """The platform on every database and HSM backend this machine has."""
    db_kind, hsm_kind = request.param.split("-")
    hsm = None
    if hsm_kind == "pkcs11":
        token = request.getfixturevalue("softhsm_token")
        if token is None:
            pytest.skip(SOFTHSM_MISSING)
        hsm = f"pkcs11:{token['library']}?token={token['token']}"
        extra = {"hsm_pin": token["pin"]}
        # One token serves the run: each test's keys get a distinct organisation prefix.
    else:
        extra = {}
    urls = _database_url(db_kind, tmp_path, request)
    url = next(urls)
    settings = make_settings(tmp_path, url, hsm, **extra)
    p = make_platform(settings)
    yield p
    p.close()
    next(urls, None)


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    """An HTTP client on the app (no background refresh: tests drive time themselves)."""
    app = create_app(platform=platform, background_refresh=False)
    with TestClient(app) as test_client:
        yield test_client


def bearer(platform: Platform, role: Role = Role.OPERATOR, *, subject: str = "alice",
           tenant: str | None = None, ttl: dt.timedelta | None = None) -> dict[str, str]:
    """Authorization header for an actor."""
    token = platform.mint_token(Actor(subject=subject, role=role, tenant=tenant), ttl)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def operator_headers(platform: Platform) -> dict[str, str]:
    return bearer(platform)
