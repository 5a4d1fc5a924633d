"""Fixtures for the key-custody tests: every contract test runs on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hsm_sim import KeyStore, Pkcs11KeyStore, SoftKeyStore
from tests.support.softhsm import softhsm_library


@pytest.fixture(scope="session")
def hsm_token(softhsm_token: dict | None) -> dict:
    """The run's SoftHSM2 token (``softhsm_token`` in tests/conftest.py); skip if missing.

    SoftHSM2 reads its configuration once per process, so the HSM tests share the run's
    token with the other suites and keep apart from them by unique labels.
    """
    if softhsm_token is None:
        missing = "softhsm2-util not found" if softhsm_library() else "libsofthsm2.so not found"
        pytest.skip(f"SoftHSM2 not installed: {missing} (apt-get install softhsm2)")
    return softhsm_token


@pytest.fixture
def soft_store(tmp_path: Path) -> Iterator[SoftKeyStore]:
    store = SoftKeyStore(tmp_path / "hsm", tmp_path / "hsm" / "master.key")
    yield store
    store.close()


@pytest.fixture
def pkcs11_store(hsm_token: dict) -> Iterator[Pkcs11KeyStore]:
    store = Pkcs11KeyStore(hsm_token["library"], hsm_token["token"], hsm_token["pin"])
    yield store
    store.close()


@pytest.fixture(params=["soft", pytest.param("pkcs11", marks=pytest.mark.softhsm)])
def keystore(request: pytest.FixtureRequest) -> KeyStore:
    """The software HSM, then the PKCS#11 backend on SoftHSM2 (skipped when not installed)."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def new_label() -> Callable[[str], str]:
    """Labels unique across the run (the SoftHSM2 token is shared by all tests)."""
    return lambda purpose="key": f"test:{purpose}:{uuid.uuid4().hex}"
