"""``open_keystore``: the CLOUDSEAL_HSM URL picks the backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsm_sim import KeyAlgorithm, KeyLocked, Pkcs11KeyStore, SoftKeyStore, open_keystore


def test_soft_url_opens_the_software_hsm_with_its_default_master_key(tmp_path: Path) -> None:
    store = open_keystore(f"soft:{tmp_path}/hsm", pin=None, master_key_file=None)
    assert isinstance(store, SoftKeyStore)
    assert (tmp_path / "hsm" / "master.key").stat().st_size == 32


def test_soft_url_uses_the_given_master_key_file(tmp_path: Path) -> None:
    master = tmp_path / "secrets" / "hsm-master.key"
    store = open_keystore(f"soft:{tmp_path}/hsm", pin=None, master_key_file=master)
    store.generate_secret_key("k", "o")
    assert master.exists() and not (tmp_path / "hsm" / "master.key").exists()


def test_pkcs11_url_without_pin_is_locked() -> None:
    with pytest.raises(KeyLocked, match="PIN"):
        open_keystore("pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=cloudseal", pin=None,
                      master_key_file=None)


@pytest.mark.parametrize(
    "url", ["hsm:/x", "soft", "soft:", "pkcs11:/lib.so", "pkcs11:?token=x", "/var/hsm"]
)
def test_malformed_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError, match="HSM URL"):
        open_keystore(url, pin="1234", master_key_file=None)


@pytest.mark.softhsm
def test_pkcs11_url_opens_the_token(hsm_token: dict) -> None:
    url = f"pkcs11:{hsm_token['library']}?token={hsm_token['token']}"
    store = open_keystore(url, pin=hsm_token["pin"], master_key_file=None)
    try:
        assert isinstance(store, Pkcs11KeyStore)
        store.generate_secret_key("test:factory", "o")
        assert store.key_info("test:factory").algorithm is KeyAlgorithm.HMAC_SHA256
        store.destroy("test:factory")
    finally:
        store.close()
