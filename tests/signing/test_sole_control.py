"""Sole control: PIN + device proof over the hashes, single-use SADs bound to exactly what
was authorised, and the signature log."""

from __future__ import annotations

import datetime as dt
import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import func, select, update
from sqlmodel import Session

from cloudseal.platform import Platform
from core.db import committing_refusals, session_scope
from core.errors import AppError
from ra import devices
from ra.models import Credential
from signing import service
from signing.models import SignatureAuthorization, SignatureRecord
from tests.ra.factories import Phone
from tests.ra.service_flow import activated

PIN = "482916"


def _challenge(platform: Platform, credential_id: str) -> tuple[str, bytes]:
    with session_scope(platform.engine) as session:
        challenge = devices.issue_challenge(session, credential_id)
        return challenge.id, challenge.nonce


def _proof(platform: Platform, phone: Phone, digests: list[bytes], algorithm: str = "sha256") -> tuple[str, str]:
    challenge_id, nonce = _challenge(platform, phone.credential_id or "")
    message = devices.challenge_message(challenge_id, nonce, service.authorization_action(algorithm, digests),
                                        phone.credential_id or "")
    return challenge_id, phone.sign(message)


def authorize(platform: Platform, phone: Phone, digests: list[bytes], *, pin: str = PIN,
              proof: tuple[str, str] | None = None, algorithm: str = "sha256") -> str:
    challenge_id, signature = proof or _proof(platform, phone, digests, algorithm)
    with Session(platform.engine, expire_on_commit=False) as session, committing_refusals(session):
        sad, _ = service.authorize(session, platform.pki, credential_id=phone.credential_id or "", pin=pin,
                                   challenge_id=challenge_id, device_signature=signature, hash_algorithm=algorithm,
                                   digests=digests, client="test-app", purpose="order")
        session.commit()
        return sad


def sign(platform: Platform, credential_id: str, sad: str, digests: list[bytes], algorithm: str = "sha256"):
    with session_scope(platform.engine) as session:
        return service.sign_hash(session, platform.keystore, sad=sad, credential_id=credential_id,
                                 hash_algorithm=algorithm, digests=digests, client="test-app")


def error_code(call) -> str:
    try:
        call()
    except AppError as exc:
        return exc.code
    return "ok"


def certificate(platform: Platform, credential_id: str) -> x509.Certificate:
    from ca.service import get_certificate
    with session_scope(platform.engine) as session:
        serial = session.execute(select(Credential.certificate_serial).where(
            Credential.credential_id == credential_id)).scalar_one()
        return x509.load_der_x509_certificate(get_certificate(session, serial).der)


DOC_A, DOC_B = hashlib.sha256(b"buy 1000 TSMC").digest(), hashlib.sha256(b"sell 1000 TSMC").digest()


def test_authorised_hash_is_signed_by_the_certified_key_and_logged(any_platform: Platform) -> None:
    credential_id, phone = activated(any_platform)
    signed = sign(any_platform, credential_id, authorize(any_platform, phone, [DOC_A]), [DOC_A])
    certificate(any_platform, credential_id).public_key().verify(
        signed[0].signature, DOC_A, ec.ECDSA(Prehashed(hashes.SHA256())))
    with session_scope(any_platform.engine) as session:
        logged = service.signatures_of(session, DOC_A)
    assert [r.credential_id for r in logged] == [credential_id] and logged[0].client == "test-app"


def test_a_sad_is_single_use(platform: Platform) -> None:
    credential_id, phone = activated(platform)
    sad = authorize(platform, phone, [DOC_A])
    sign(platform, credential_id, sad, [DOC_A])
    assert error_code(lambda: sign(platform, credential_id, sad, [DOC_A])) == "invalid_sad"


def test_a_sad_for_hash_a_cannot_sign_hash_b(platform: Platform) -> None:
    credential_id, phone = activated(platform)
    sad = authorize(platform, phone, [DOC_A])
    assert error_code(lambda: sign(platform, credential_id, sad, [DOC_B])) == "invalid_sad"
    assert len(sign(platform, credential_id, sad, [DOC_A])) == 1  # the refusal spent nothing


def test_an_expired_sad_is_refused(platform: Platform) -> None:
    credential_id, phone = activated(platform)
    sad = authorize(platform, phone, [DOC_A])
    with session_scope(platform.engine) as session:
        session.execute(update(SignatureAuthorization).values(
            expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    assert error_code(lambda: sign(platform, credential_id, sad, [DOC_A])) == "invalid_sad"


def test_investor_xs_sad_cannot_sign_with_investor_ys_credential(platform: Platform) -> None:
    x_credential, x_phone = activated(platform)
    y_credential, _ = activated(platform, id_number="F131104093")
    sad = authorize(platform, x_phone, [DOC_A])
    assert error_code(lambda: sign(platform, y_credential, sad, [DOC_A])) == "invalid_sad"


def test_twenty_threads_racing_one_sad_make_exactly_one_signature(any_platform: Platform) -> None:
    credential_id, phone = activated(any_platform)
    sad = authorize(any_platform, phone, [DOC_A])
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda _: error_code(lambda: sign(any_platform, credential_id, sad, [DOC_A])),
                                 range(20)))
    assert outcomes.count("ok") == 1 and outcomes.count("invalid_sad") == 19
    with session_scope(any_platform.engine) as session:
        assert session.execute(select(func.count()).select_from(SignatureRecord)).scalar_one() == 1


def test_wrong_pins_count_toward_the_ra_lockout(platform: Platform) -> None:
    credential_id, phone = activated(platform)
    codes = [error_code(lambda: authorize(platform, phone, [DOC_A], pin="000111")) for _ in range(5)]
    assert codes == ["wrong_pin"] * 4 + ["pin_locked"]
    assert error_code(lambda: authorize(platform, phone, [DOC_A])) == "pin_locked"


@pytest.mark.parametrize("state", ["suspend", "revoke"])
def test_a_suspended_or_revoked_credential_signs_nothing(platform: Platform, state: str) -> None:
    from core.auth import Actor, Role
    from ra import credentials as ra_credentials

    credential_id, phone = activated(platform)
    sad = authorize(platform, phone, [DOC_A])
    with session_scope(platform.engine) as session:
        credential = ra_credentials.get_credential(session, credential_id)
        operator = Actor("ops", Role.OPERATOR)
        if state == "suspend":
            ra_credentials.suspend_credential(session, platform.pki, actor=operator, credential=credential)
        else:
            ra_credentials.revoke_credential(session, platform.pki, actor=operator, credential=credential,
                                             reason="keyCompromise")
    assert error_code(lambda: sign(platform, credential_id, sad, [DOC_A])) in {
        "credential_suspended", "credential_not_active", "invalid_sad"}
    assert error_code(lambda: authorize(platform, phone, [DOC_B])) in {
        "credential_suspended", "credential_not_active", "unknown_credential"}


def test_device_proofs_for_other_hashes_or_replayed_are_refused(platform: Platform) -> None:
    credential_id, phone = activated(platform)
    other = _proof(platform, phone, [DOC_B])
    assert error_code(lambda: authorize(platform, phone, [DOC_A], proof=other)) == "bad_device_proof"
    proof = _proof(platform, phone, [DOC_A])
    authorize(platform, phone, [DOC_A], proof=proof)
    assert error_code(lambda: authorize(platform, phone, [DOC_A], proof=proof)) == "invalid_challenge"
    impostor = Phone()
    challenge_id, nonce = _challenge(platform, credential_id)
    forged = impostor.sign(devices.challenge_message(challenge_id, nonce,
                                                     service.authorization_action("sha256", [DOC_A]), credential_id))
    assert error_code(lambda: authorize(platform, phone, [DOC_A], proof=(challenge_id, forged))) == "bad_device_proof"


def test_malformed_hashes_are_refused(platform: Platform) -> None:
    _, phone = activated(platform)
    assert error_code(lambda: authorize(platform, phone, [b"short"])) == "invalid_hashes"
    assert error_code(lambda: authorize(platform, phone, [DOC_A], algorithm="md5")) == "unsupported_algorithm"
    assert error_code(lambda: authorize(platform, phone, [DOC_A, DOC_A])) == "invalid_hashes"


def _cms_code(platform: Platform, phone: Phone, digest: bytes, pin: str, proof: tuple[str, str]) -> str:
    try:
        with Session(platform.engine, expire_on_commit=False) as session, committing_refusals(session):
            service.sign_cms(session, platform.pki, credential_id=phone.credential_id or "", pin=pin, digest=digest,
                             hash_algorithm="sha256", client="test-app", purpose="order", challenge_id=proof[0],
                             device_signature=proof[1])
            session.commit()
    except AppError as exc:
        return exc.code
    return "signed"


def _failures(platform: Platform, credential_id: str) -> int:
    with session_scope(platform.engine) as session:
        return session.execute(select(Credential.pin_failures).where(
            Credential.credential_id == credential_id)).scalar_one()


def test_a_replayed_proof_gives_no_pin_guesses_through_the_cms_endpoint(platform: Platform) -> None:
    """Every PIN tried on /signing/cms is counted before the HSM signs: a used challenge is
    refused before any PIN check, so replaying one can neither guess nor time the PIN."""
    credential_id, phone = activated(platform)
    proof = _proof(platform, phone, [DOC_A])
    assert _cms_code(platform, phone, DOC_A, PIN, proof) == "signed"
    replays = {_cms_code(platform, phone, DOC_A, guess, proof) for guess in ("000000", "111111", PIN)}
    assert replays == {"invalid_challenge"}
    assert _cms_code(platform, phone, DOC_A, "135790", _proof(platform, phone, [DOC_A])) == "wrong_pin"
    assert _failures(platform, credential_id) == 1


def test_a_sad_issued_before_the_pin_locked_signs_nothing(platform: Platform) -> None:
    credential_id, phone = activated(platform)
    sad = authorize(platform, phone, [DOC_A])
    for _ in range(5):
        assert error_code(lambda: authorize(platform, phone, [DOC_B], pin="000000")) in ("wrong_pin", "pin_locked")
    assert error_code(lambda: sign(platform, credential_id, sad, [DOC_A])) == "pin_locked"


def test_a_credential_renewed_while_signing_gives_a_conflict_not_a_500(platform: Platform) -> None:
    from ra import credentials as ra_credentials
    from core.auth import Actor, Role

    credential_id, phone = activated(platform)
    sad = authorize(platform, phone, [DOC_A])
    with session_scope(platform.engine) as session:
        stale = service.load_signing_credential(session, credential_id)
    with session_scope(platform.engine) as session:
        ra_credentials.renew_credential(session, platform.pki, actor=Actor("olivia", Role.RA_OFFICER, "B001"),
                                        credential=ra_credentials.get_credential(session, credential_id))

    def sign_with_stale_read() -> None:
        with session_scope(platform.engine) as session:
            service.sign_hash(session, platform.keystore, sad=sad, credential_id=credential_id, hash_algorithm="sha256",
                              digests=[DOC_A], client="test-app", loaded=stale)

    assert error_code(sign_with_stale_read) == "credential_changed"
