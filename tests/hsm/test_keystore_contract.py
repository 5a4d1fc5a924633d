"""The key-store contract: both backends behave the same, error for error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from hsm_sim import (
    DEFAULT_MECHANISMS,
    DigestAlgorithm,
    HsmEcPrivateKey,
    HsmRsaPrivateKey,
    KeyAlgorithm,
    KeyExists,
    KeyInfo,
    KeyNotFound,
    KeyStore,
    Mechanism,
    PolicyViolation,
    hsm_private_key,
)

Label = Callable[..., str]
ASYMMETRIC = [a for a in KeyAlgorithm if not a.is_secret]
HASHES = {
    DigestAlgorithm.SHA256: hashes.SHA256,
    DigestAlgorithm.SHA384: hashes.SHA384,
    DigestAlgorithm.SHA512: hashes.SHA512,
}


def digest_of(data: bytes, algorithm: DigestAlgorithm) -> bytes:
    hasher = hashes.Hash(HASHES[algorithm]())
    hasher.update(data)
    return hasher.finalize()


def verify(public, signature: bytes, digest: bytes, algorithm: DigestAlgorithm, mech: Mechanism):
    """Verify with cryptography; raises InvalidSignature on failure."""
    prehashed = utils.Prehashed(HASHES[algorithm]())
    if mech is Mechanism.ECDSA:
        public.verify(signature, digest, ec.ECDSA(prehashed))
    elif mech is Mechanism.RSA_PKCS1V15:
        public.verify(signature, digest, padding.PKCS1v15(), prehashed)
    else:
        pss = padding.PSS(mgf=padding.MGF1(HASHES[algorithm]()), salt_length=algorithm.size)
        public.verify(signature, digest, pss, prehashed)


@pytest.mark.parametrize("algorithm", ASYMMETRIC, ids=lambda a: a.value)
def test_every_allowed_mechanism_and_digest_gives_a_verifiable_signature(
    keystore: KeyStore, new_label: Label, algorithm: KeyAlgorithm
) -> None:
    label = new_label()
    info = keystore.generate_key_pair(label, "ca:issuing", algorithm)
    public = keystore.public_key(label)
    assert info == KeyInfo(label, "ca:issuing", algorithm, DEFAULT_MECHANISMS[algorithm])
    for mech in sorted(DEFAULT_MECHANISMS[algorithm]):
        for digest_alg in DigestAlgorithm:
            digest = digest_of(f"{mech}/{digest_alg}".encode(), digest_alg)
            signature = keystore.sign(label, "ca:issuing", digest, digest_alg, mech)
            verify(public, signature, digest, digest_alg, mech)


def test_public_key_matches_the_algorithm(keystore: KeyStore, new_label: Label) -> None:
    ec_label, rsa_label = new_label("ec"), new_label("rsa")
    keystore.generate_key_pair(ec_label, "o", KeyAlgorithm.EC_P384)
    keystore.generate_key_pair(rsa_label, "o", KeyAlgorithm.RSA_2048)
    ec_public = keystore.public_key(ec_label)
    rsa_public = keystore.public_key(rsa_label)
    assert isinstance(ec_public, ec.EllipticCurvePublicKey) and ec_public.curve.name == "secp384r1"
    assert isinstance(rsa_public, rsa.RSAPublicKey) and rsa_public.key_size == 2048
    assert rsa_public.public_numbers().e == 65537


def test_hmac_is_32_bytes_deterministic_and_depends_on_the_key(
    keystore: KeyStore, new_label: Label
) -> None:
    first, second = new_label("pin-mac"), new_label("pin-mac")
    info = keystore.generate_secret_key(first, "ra:pins")
    keystore.generate_secret_key(second, "ra:pins")
    mac = keystore.hmac_sha256(first, "ra:pins", b"123456")
    assert info.algorithm is KeyAlgorithm.HMAC_SHA256
    assert info.mechanisms == frozenset({Mechanism.HMAC_SHA256})
    assert len(mac) == 32
    assert keystore.hmac_sha256(first, "ra:pins", b"123456") == mac
    assert keystore.hmac_sha256(first, "ra:pins", b"123457") != mac
    assert keystore.hmac_sha256(second, "ra:pins", b"123456") != mac


def test_secret_key_has_no_public_key(keystore: KeyStore, new_label: Label) -> None:
    label = new_label()
    keystore.generate_secret_key(label, "o")
    with pytest.raises(PolicyViolation):
        keystore.public_key(label)


def test_a_second_key_under_the_same_label_is_refused(keystore: KeyStore, new_label: Label) -> None:
    label, secret_label = new_label(), new_label()
    keystore.generate_key_pair(label, "o", KeyAlgorithm.EC_P256)
    keystore.generate_secret_key(secret_label, "o")
    with pytest.raises(KeyExists):
        keystore.generate_key_pair(label, "o", KeyAlgorithm.EC_P256)
    with pytest.raises(KeyExists):
        keystore.generate_secret_key(label, "o")
    with pytest.raises(KeyExists):
        keystore.generate_key_pair(secret_label, "o", KeyAlgorithm.EC_P256)
    assert keystore.key_info(label).algorithm is KeyAlgorithm.EC_P256


def test_unknown_label_is_key_not_found_everywhere(keystore: KeyStore, new_label: Label) -> None:
    label = new_label("missing")
    digest = bytes(32)
    assert not keystore.has_key(label)
    for call in (
        lambda: keystore.key_info(label),
        lambda: keystore.public_key(label),
        lambda: keystore.sign(label, "o", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA),
        lambda: keystore.hmac_sha256(label, "o", b"x"),
        lambda: keystore.destroy(label),
    ):
        with pytest.raises(KeyNotFound):
            call()


def test_only_the_owner_may_use_a_key(keystore: KeyStore, new_label: Label) -> None:
    pair, secret = new_label(), new_label()
    keystore.generate_key_pair(pair, "investor:42", KeyAlgorithm.EC_P256)
    keystore.generate_secret_key(secret, "investor:42")
    digest = digest_of(b"ballot", DigestAlgorithm.SHA256)
    with pytest.raises(PolicyViolation):
        keystore.sign(pair, "investor:43", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)
    with pytest.raises(PolicyViolation):
        keystore.hmac_sha256(secret, "investor:43", b"x")


def test_mechanism_outside_the_allow_list_is_refused(keystore: KeyStore, new_label: Label) -> None:
    label = new_label()
    keystore.generate_key_pair(label, "o", KeyAlgorithm.RSA_2048, frozenset({Mechanism.RSA_PSS}))
    digest = digest_of(b"order", DigestAlgorithm.SHA256)
    assert keystore.key_info(label).mechanisms == frozenset({Mechanism.RSA_PSS})
    with pytest.raises(PolicyViolation):
        keystore.sign(label, "o", digest, DigestAlgorithm.SHA256, Mechanism.RSA_PKCS1V15)
    with pytest.raises(PolicyViolation):
        keystore.sign(label, "o", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)
    signature = keystore.sign(label, "o", digest, DigestAlgorithm.SHA256, Mechanism.RSA_PSS)
    verify(keystore.public_key(label), signature, digest, DigestAlgorithm.SHA256, Mechanism.RSA_PSS)


@pytest.mark.parametrize(
    ("algorithm", "mechanisms"),
    [
        (KeyAlgorithm.EC_P256, {Mechanism.RSA_PSS}),
        (KeyAlgorithm.RSA_2048, {Mechanism.ECDSA, Mechanism.RSA_PSS}),
        (KeyAlgorithm.EC_P384, {Mechanism.HMAC_SHA256}),
        (KeyAlgorithm.EC_P384, set()),
        (KeyAlgorithm.HMAC_SHA256, None),
    ],
)
def test_key_pair_requests_must_suit_the_key_type(
    keystore: KeyStore, new_label: Label, algorithm: KeyAlgorithm, mechanisms: set | None
) -> None:
    label = new_label()
    allowed = None if mechanisms is None else frozenset(mechanisms)
    with pytest.raises(PolicyViolation):
        keystore.generate_key_pair(label, "o", algorithm, allowed)
    assert not keystore.has_key(label)


def test_secret_key_request_with_an_asymmetric_algorithm_is_refused(
    keystore: KeyStore, new_label: Label
) -> None:
    with pytest.raises(PolicyViolation):
        keystore.generate_secret_key(new_label(), "o", KeyAlgorithm.EC_P256)


@pytest.mark.parametrize("length", [0, 31, 33, 48, 64])
def test_digest_length_must_match_the_digest_algorithm(
    keystore: KeyStore, new_label: Label, length: int
) -> None:
    label = new_label()
    keystore.generate_key_pair(label, "o", KeyAlgorithm.EC_P256)
    with pytest.raises(PolicyViolation):
        keystore.sign(label, "o", bytes(length), DigestAlgorithm.SHA256, Mechanism.ECDSA)


def test_hmac_with_a_key_pair_and_signing_with_a_secret_key_are_refused(
    keystore: KeyStore, new_label: Label
) -> None:
    pair, secret = new_label(), new_label()
    keystore.generate_key_pair(pair, "o", KeyAlgorithm.EC_P256)
    keystore.generate_secret_key(secret, "o")
    digest = bytes(32)
    with pytest.raises(PolicyViolation):
        keystore.hmac_sha256(pair, "o", b"x")
    for mech in Mechanism:
        with pytest.raises(PolicyViolation):
            keystore.sign(secret, "o", digest, DigestAlgorithm.SHA256, mech)
    with pytest.raises(PolicyViolation):
        keystore.sign(pair, "o", digest, DigestAlgorithm.SHA256, Mechanism.HMAC_SHA256)


@pytest.mark.parametrize("label", ["", "x" * 129, "line\nbreak", "tab\there", None])
def test_unusable_labels_are_refused(keystore: KeyStore, label: object) -> None:
    with pytest.raises(PolicyViolation):
        keystore.generate_key_pair(label, "o", KeyAlgorithm.EC_P256)  # type: ignore[arg-type]


def test_longest_allowed_label_works(keystore: KeyStore, new_label: Label) -> None:
    label = new_label()[:100].ljust(128, "é")
    keystore.generate_secret_key(label, "o")
    assert keystore.key_info(label).label == label


def test_a_destroyed_key_is_gone_and_its_label_free(keystore: KeyStore, new_label: Label) -> None:
    label = new_label()
    keystore.generate_key_pair(label, "o", KeyAlgorithm.EC_P256)
    digest = bytes(32)
    keystore.sign(label, "o", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)
    keystore.destroy(label)
    assert not keystore.has_key(label)
    with pytest.raises(KeyNotFound):
        keystore.sign(label, "o", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)
    with pytest.raises(KeyNotFound):
        keystore.destroy(label)
    keystore.generate_key_pair(label, "other", KeyAlgorithm.EC_P384)
    assert keystore.key_info(label).owner == "other"


def test_signing_from_many_threads_at_once(keystore: KeyStore, new_label: Label) -> None:
    labels = [new_label() for _ in range(2)]
    for label in labels:
        keystore.generate_key_pair(label, "o", KeyAlgorithm.EC_P256)
    results: list[tuple[str, bytes, bytes]] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                label = labels[(n + i) % 2]
                digest = digest_of(f"{n}/{i}".encode(), DigestAlgorithm.SHA256)
                signature = keystore.sign(
                    label, "o", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA
                )
                results.append((label, digest, signature))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 8 * 40
    publics = {label: keystore.public_key(label) for label in labels}
    for label, digest, signature in results:
        verify(publics[label], signature, digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)


def test_keys_beyond_the_cache_size_stay_usable(
    keystore: KeyStore, new_label: Label, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hsm_sim.soft.CACHE_SIZE", 2)
    monkeypatch.setattr("hsm_sim.pkcs11.CACHE_SIZE", 2)
    labels = [new_label() for _ in range(5)]
    for label in labels:
        keystore.generate_secret_key(label, "o")
    first_round = [keystore.hmac_sha256(label, "o", b"x") for label in labels]
    assert [keystore.hmac_sha256(label, "o", b"x") for label in labels] == first_round
    assert len(set(first_round)) == 5


# -- cryptography facades -------------------------------------------------------------------


def self_signed(key, algorithm: hashes.HashAlgorithm, rsa_padding=None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudseal test root")])
    now = datetime.now(timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, algorithm, rsa_padding=rsa_padding)
    )


@pytest.mark.parametrize(
    ("algorithm", "hash_alg", "rsa_padding"),
    [
        (KeyAlgorithm.EC_P384, hashes.SHA384(), None),
        (KeyAlgorithm.RSA_3072, hashes.SHA256(), None),
        (
            KeyAlgorithm.RSA_3072,
            hashes.SHA384(),
            padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=padding.PSS.DIGEST_LENGTH),
        ),
    ],
    ids=["ec-p384", "rsa-3072-pkcs1", "rsa-3072-pss"],
)
def test_facade_signs_a_certificate_that_verifies(
    keystore: KeyStore, new_label: Label, algorithm, hash_alg, rsa_padding
) -> None:
    label = new_label("root")
    keystore.generate_key_pair(label, "ca:root", algorithm)
    key = hsm_private_key(keystore, label, "ca:root")
    assert isinstance(key, HsmEcPrivateKey if algorithm.is_ec else HsmRsaPrivateKey)
    cert = self_signed(key, hash_alg, rsa_padding)
    cert.verify_directly_issued_by(cert)
    assert cert.public_key() == keystore.public_key(label)


def test_facade_signs_crls_and_ocsp_responses(keystore: KeyStore, new_label: Label) -> None:
    label = new_label("issuing")
    keystore.generate_key_pair(label, "ca:issuing", KeyAlgorithm.EC_P256)
    key = hsm_private_key(keystore, label, "ca:issuing")
    issuer = self_signed(key, hashes.SHA256())
    now = datetime.now(timezone.utc)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)
        .next_update(now + timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    assert crl.is_signature_valid(key.public_key())
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=issuer,
            issuer=issuer,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        .sign(key, hashes.SHA256())
    )
    key.public_key().verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256())
    )


def test_facade_signs_raw_data_and_prehashed_digests(keystore: KeyStore, new_label: Label) -> None:
    label = new_label()
    keystore.generate_key_pair(label, "o", KeyAlgorithm.EC_P256)
    key = hsm_private_key(keystore, label, "o")
    signature = key.sign(b"data", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA256()))
    digest = digest_of(b"data", DigestAlgorithm.SHA512)
    signature = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA512())))
    key.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA512()))
    assert key.curve.name == "secp256r1" and key.key_size == 256


def test_facade_offers_no_export_path(keystore: KeyStore, new_label: Label) -> None:
    ec_label, rsa_label = new_label(), new_label()
    keystore.generate_key_pair(ec_label, "o", KeyAlgorithm.EC_P256)
    keystore.generate_key_pair(rsa_label, "o", KeyAlgorithm.RSA_2048)
    ec_key = hsm_private_key(keystore, ec_label, "o")
    rsa_key = hsm_private_key(keystore, rsa_label, "o")
    from cryptography.hazmat.primitives import serialization as ser

    for key in (ec_key, rsa_key):
        with pytest.raises(PolicyViolation):
            key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
        with pytest.raises(PolicyViolation):
            key.private_numbers()
    with pytest.raises(PolicyViolation):
        ec_key.exchange(ec.ECDH(), ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(PolicyViolation):
        rsa_key.decrypt(b"\x00" * 256, padding.PKCS1v15())


def test_facade_enforces_owner_and_pss_parameters(keystore: KeyStore, new_label: Label) -> None:
    label, secret = new_label(), new_label()
    keystore.generate_key_pair(label, "ca:root", KeyAlgorithm.RSA_2048)
    keystore.generate_secret_key(secret, "ca:root")
    with pytest.raises(PolicyViolation):
        hsm_private_key(keystore, label, "investor:1")
    with pytest.raises(PolicyViolation):
        hsm_private_key(keystore, secret, "ca:root")
    key = hsm_private_key(keystore, label, "ca:root")
    for bad in (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20),
        padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=32),
    ):
        with pytest.raises(PolicyViolation):
            key.sign(b"data", bad, hashes.SHA256())
    with pytest.raises(PolicyViolation):
        key.sign(b"data", padding.PKCS1v15(), hashes.SHA1())
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    key.public_key().verify(key.sign(b"data", pss, hashes.SHA256()), b"data", pss, hashes.SHA256())
