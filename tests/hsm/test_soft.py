"""Software HSM specifics: files on disk, master key, several processes on one directory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from hsm_sim import (
    DigestAlgorithm,
    KeyAlgorithm,
    KeyExists,
    KeyIntegrityError,
    KeyLocked,
    KeyNotFound,
    Mechanism,
    SoftKeyStore,
)

DIGEST = hashlib.sha256(b"order").digest()


def key_file(directory: Path, label: str) -> Path:
    return directory / (hashlib.sha256(label.encode()).hexdigest() + ".json")


def sign(store: SoftKeyStore, label: str, owner: str = "o") -> bytes:
    return store.sign(label, owner, DIGEST, DigestAlgorithm.SHA256, Mechanism.ECDSA)


def run_in_threads(count: int, target: Callable[[int], object]) -> list[object]:
    """Start ``count`` threads together; return each one's result or exception."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = target(n)
        except Exception as exc:  # returned to the test
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_master_key_is_created_private(tmp_path: Path) -> None:
    master = tmp_path / "secrets" / "nested" / "master.key"
    SoftKeyStore(tmp_path / "hsm", master)
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    assert len(master.read_bytes()) == 32
    assert stat.S_IMODE(master.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "hsm").stat().st_mode) == 0o700


def test_existing_master_key_is_reused(tmp_path: Path) -> None:
    master = tmp_path / "master.key"
    first = SoftKeyStore(tmp_path / "hsm", master)
    first.generate_key_pair("k", "o", KeyAlgorithm.EC_P256)
    before = master.read_bytes()
    second = SoftKeyStore(tmp_path / "hsm", master)
    assert master.read_bytes() == before
    sign(second, "k")


def test_processes_racing_to_create_the_master_key_agree_on_one(tmp_path: Path) -> None:
    master = tmp_path / "race" / "master.key"
    stores = run_in_threads(8, lambda n: SoftKeyStore(tmp_path / "hsm", master))
    assert all(isinstance(store, SoftKeyStore) for store in stores)
    stores[0].generate_key_pair("k", "o", KeyAlgorithm.EC_P256)  # type: ignore[union-attr]
    for store in stores:
        sign(store, "k")  # type: ignore[arg-type]
    assert [p.name for p in master.parent.iterdir()] == ["master.key"]  # no temp files left


@pytest.mark.parametrize("content", [b"", b"short", os.urandom(33)])
def test_a_master_key_file_of_the_wrong_size_locks_the_store(
    tmp_path: Path, content: bytes
) -> None:
    master = tmp_path / "master.key"
    master.write_bytes(content)
    with pytest.raises(KeyLocked):
        SoftKeyStore(tmp_path / "hsm", master)


def test_key_file_holds_the_policy_in_clear_and_the_key_only_wrapped(
    soft_store: SoftKeyStore, tmp_path: Path
) -> None:
    soft_store.generate_key_pair("ca:root", "ca", KeyAlgorithm.RSA_2048)
    path = key_file(tmp_path / "hsm", "ca:root")
    record = json.loads(path.read_text())
    assert set(record) == {
        "format", "label", "owner", "algorithm", "mechanisms", "public_key", "nonce", "wrapped",
    }
    assert (record["label"], record["owner"], record["algorithm"]) == ("ca:root", "ca", "RSA_2048")
    assert record["mechanisms"] == ["RSA_PKCS1V15", "RSA_PSS"]
    assert len(base64.b64decode(record["nonce"])) == 12
    public = serialization.load_der_public_key(base64.b64decode(record["public_key"]))
    assert public == soft_store.public_key("ca:root")
    # The only other binary field is the ciphertext, and it does not parse as a key.
    wrapped = base64.b64decode(record["wrapped"])
    with pytest.raises(ValueError):
        serialization.load_der_private_key(wrapped, password=None)
    assert b"PRIVATE KEY" not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("owner", "attacker"),
        ("mechanisms", ["RSA_PKCS1V15", "RSA_PSS"]),  # widening the allow-list
        ("label", "other"),
        ("algorithm", "RSA_3072"),
        ("wrapped", base64.b64encode(b"\x00" * 1300).decode()),
        ("public_key", None),
    ],
)
def test_an_edited_key_file_is_never_used(
    soft_store: SoftKeyStore, tmp_path: Path, field: str, value: object
) -> None:
    soft_store.generate_key_pair(
        "k", "o", KeyAlgorithm.RSA_2048, frozenset({Mechanism.RSA_PSS})
    )
    soft_store.sign("k", "o", DIGEST, DigestAlgorithm.SHA256, Mechanism.RSA_PSS)  # now cached
    path = key_file(tmp_path / "hsm", "k")
    record = json.loads(path.read_text())
    record[field] = value
    path.write_text(json.dumps(record))
    for store in (soft_store, SoftKeyStore(tmp_path / "hsm", tmp_path / "hsm" / "master.key")):
        for mechanism in (Mechanism.RSA_PSS, Mechanism.RSA_PKCS1V15):
            with pytest.raises(KeyIntegrityError):
                store.sign("k", str(record["owner"]), DIGEST, DigestAlgorithm.SHA256, mechanism)
        with pytest.raises(KeyIntegrityError):
            store.public_key("k")


def test_a_substituted_public_key_is_detected(soft_store: SoftKeyStore, tmp_path: Path) -> None:
    soft_store.generate_key_pair("a", "o", KeyAlgorithm.EC_P256)
    soft_store.generate_key_pair("b", "o", KeyAlgorithm.EC_P256)
    path_a, path_b = key_file(tmp_path / "hsm", "a"), key_file(tmp_path / "hsm", "b")
    record = json.loads(path_a.read_text())
    record["public_key"] = json.loads(path_b.read_text())["public_key"]
    path_a.write_text(json.dumps(record))
    with pytest.raises(KeyIntegrityError):
        soft_store.public_key("a")


def test_another_master_key_cannot_unwrap(soft_store: SoftKeyStore, tmp_path: Path) -> None:
    soft_store.generate_secret_key("pins", "ra")
    other = SoftKeyStore(tmp_path / "hsm", tmp_path / "other-master.key")
    with pytest.raises(KeyIntegrityError):
        other.hmac_sha256("pins", "ra", b"1234")


def test_a_second_store_on_the_directory_sees_and_uses_the_key(
    soft_store: SoftKeyStore, tmp_path: Path
) -> None:
    other = SoftKeyStore(tmp_path / "hsm", tmp_path / "hsm" / "master.key")
    soft_store.generate_key_pair("k", "o", KeyAlgorithm.EC_P256)
    soft_store.generate_secret_key("mac", "o")
    assert other.key_info("k") == soft_store.key_info("k")
    assert other.public_key("k") == soft_store.public_key("k")
    public = other.public_key("k")
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(sign(other, "k"), DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert other.hmac_sha256("mac", "o", b"x") == soft_store.hmac_sha256("mac", "o", b"x")


def test_a_key_destroyed_by_another_process_stops_signing(
    soft_store: SoftKeyStore, tmp_path: Path
) -> None:
    other = SoftKeyStore(tmp_path / "hsm", tmp_path / "hsm" / "master.key")
    soft_store.generate_key_pair("k", "o", KeyAlgorithm.EC_P256)
    sign(other, "k")  # cached in the other store
    soft_store.destroy("k")
    with pytest.raises(KeyNotFound):
        sign(other, "k")
    soft_store.generate_key_pair("k", "new-owner", KeyAlgorithm.EC_P256)
    assert other.key_info("k").owner == "new-owner"
    assert other.public_key("k") == soft_store.public_key("k")


def test_concurrent_generation_of_one_label_has_exactly_one_winner(tmp_path: Path) -> None:
    master = tmp_path / "hsm" / "master.key"
    SoftKeyStore(tmp_path / "hsm", master)  # master key exists before the race
    stores = [SoftKeyStore(tmp_path / "hsm", master) for _ in range(8)]
    results = run_in_threads(
        8, lambda n: stores[n].generate_key_pair("investor:42", f"owner-{n}", KeyAlgorithm.EC_P256)
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, KeyExists) for r in results if r not in winners)
    owner = winners[0].owner  # type: ignore[attr-defined]
    for store in stores:
        sign(store, "investor:42", owner=owner)
    assert not [p for p in (tmp_path / "hsm").iterdir() if p.name.startswith(".tmp-")]
