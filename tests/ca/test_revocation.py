"""Revocation, hold and release, CRLs and OCSP statuses, and their refresh schedule."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import select

from ca import crl, service
from ca.bootstrap import refresh
from ca.models import CertificateAuthority, IssuedCertificate
from cloudseal.platform import Platform
from core.db import session_scope, utcnow
from core.errors import AppError, Conflict, NotFound
from tests.factories import OPERATOR, issue_investor_certificate, load, revoke


def current_crl(platform: Platform, ca_name: str = "issuing") -> x509.CertificateRevocationList:
    with session_scope(platform.engine) as session:
        return x509.load_der_x509_crl(crl.current_crl(session, ca_name).der)


def issuing_cert(platform: Platform) -> x509.Certificate:
    with session_scope(platform.engine) as session:
        return platform.pki.ca_certificate(session.get(CertificateAuthority, "issuing"))


def ocsp_query(platform: Platform, cert: x509.Certificate, *, algorithm: hashes.HashAlgorithm = hashes.SHA1(),
               nonce: bytes | None = None) -> x509_ocsp.OCSPResponse:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuing_cert(platform), algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    der = builder.build().public_bytes(serialization.Encoding.DER)
    return x509_ocsp.load_der_ocsp_response(platform.ocsp.respond(der).der)


def test_revocation_lands_in_crl_and_ocsp_at_once(any_platform: Platform) -> None:
    row = issue_investor_certificate(any_platform)
    cert = load(row)
    assert ocsp_query(any_platform, cert).certificate_status == x509_ocsp.OCSPCertStatus.GOOD
    number_before = current_crl(any_platform).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    revoke(any_platform, row.serial_hex, "keyCompromise")
    listed = current_crl(any_platform).get_revoked_certificate_by_serial_number(cert.serial_number)
    assert listed is not None
    assert listed.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert current_crl(any_platform).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number_before
    answer = ocsp_query(any_platform, cert)
    assert answer.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.key_compromise


def test_crls_are_signed_by_their_ca(any_platform: Platform) -> None:
    with session_scope(any_platform.engine) as session:
        for name in ("root", "issuing"):
            ca_cert = any_platform.pki.ca_certificate(session.get(CertificateAuthority, name))
            the_crl = x509.load_der_x509_crl(crl.current_crl(session, name).der)
            assert the_crl.is_signature_valid(ca_cert.public_key())
            assert the_crl.issuer == ca_cert.subject
            assert the_crl.next_update_utc > the_crl.last_update_utc


def test_hold_and_release_move_in_and_out_of_the_crl(platform: Platform) -> None:
    row = issue_investor_certificate(platform)
    cert = load(row)
    revoke(platform, row.serial_hex, "certificateHold")
    entry = current_crl(platform).get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.certificate_hold
    assert ocsp_query(platform, cert).revocation_reason == x509.ReasonFlags.certificate_hold
    with session_scope(platform.engine) as session:
        released = service.release_hold(session, platform.pki, actor=OPERATOR, serial=row.serial_hex)
    assert released.status == "good"
    assert current_crl(platform).get_revoked_certificate_by_serial_number(cert.serial_number) is None
    assert ocsp_query(platform, cert).certificate_status == x509_ocsp.OCSPCertStatus.GOOD


def test_held_certificate_can_be_revoked_for_good(platform: Platform) -> None:
    row = issue_investor_certificate(platform)
    held = revoke(platform, row.serial_hex, "certificateHold")
    final = revoke(platform, row.serial_hex, "cessationOfOperation")
    assert final.status == "revoked" and final.revoked_at == held.revoked_at
    with pytest.raises(Conflict) as err, session_scope(platform.engine) as session:
        service.release_hold(session, platform.pki, actor=OPERATOR, serial=row.serial_hex)
    assert err.value.code == "not_on_hold"


def test_double_revocation_is_a_conflict(platform: Platform) -> None:
    row = issue_investor_certificate(platform)
    revoke(platform, row.serial_hex)
    with pytest.raises(Conflict) as err:
        revoke(platform, row.serial_hex)
    assert err.value.code == "already_revoked"


def test_racing_revocations_revoke_once(any_platform: Platform) -> None:
    row = issue_investor_certificate(any_platform)

    def attempt(_: int) -> str:
        try:
            revoke(any_platform, row.serial_hex, "superseded")
            return "ok"
        except AppError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = sorted(pool.map(attempt, range(6)))
    assert outcomes == ["already_revoked"] * 5 + ["ok"]


def test_unknown_serial_and_bad_reason_are_refused(platform: Platform) -> None:
    with pytest.raises(NotFound) as unknown:
        revoke(platform, "1234abcd")
    assert unknown.value.code == "unknown_certificate"
    row = issue_investor_certificate(platform)
    for bad in ("removeFromCRL", "because"):
        with pytest.raises(AppError) as err:
            revoke(platform, row.serial_hex, bad)
        assert err.value.code == "invalid_reason"


def test_invalidity_date_is_published(platform: Platform) -> None:
    row = issue_investor_certificate(platform)
    when = dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.timezone.utc)
    with session_scope(platform.engine) as session:
        service.revoke_certificate(session, platform.pki, actor=OPERATOR, serial=row.serial_hex,
                                   reason="keyCompromise", invalidity_date=when)
    entry = current_crl(platform).get_revoked_certificate_by_serial_number(int(row.serial_hex, 16))
    assert entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc == when


def test_ocsp_answers_sha256_cert_ids_and_unknown_serials(platform: Platform) -> None:
    cert = load(issue_investor_certificate(platform))
    answer = ocsp_query(platform, cert, algorithm=hashes.SHA256())
    assert answer.certificate_status == x509_ocsp.OCSPCertStatus.GOOD
    assert answer.hash_algorithm.name == "sha256"
    request = x509_ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        answer.issuer_name_hash, answer.issuer_key_hash, 0xDEADBEEF, hashes.SHA256()).build()
    unknown = x509_ocsp.load_der_ocsp_response(platform.ocsp.respond(request.public_bytes(serialization.Encoding.DER)).der)
    assert unknown.certificate_status == x509_ocsp.OCSPCertStatus.UNKNOWN


def test_ocsp_echoes_the_nonce_and_is_signed_by_the_delegated_responder(platform: Platform) -> None:
    cert = load(issue_investor_certificate(platform))
    answer = ocsp_query(platform, cert, nonce=b"0123456789abcdef")
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
    responder = answer.certificates[0]
    assert x509.ExtendedKeyUsageOID.OCSP_SIGNING in responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    responder.public_key().verify(answer.signature, answer.tbs_response_bytes,
                                  ec.ECDSA(answer.signature_hash_algorithm))
    responder.verify_directly_issued_by(issuing_cert(platform))


def test_ocsp_without_nonce_serves_the_pre_generated_response(platform: Platform) -> None:
    cert = load(issue_investor_certificate(platform))
    der = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuing_cert(platform), hashes.SHA1()).build().public_bytes(serialization.Encoding.DER)
    assert platform.ocsp.respond(der).der == platform.ocsp.respond(der).der


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01", b"not an ocsp request", b"\x30" * 500])
def test_malformed_ocsp_request_gets_malformed_request(platform: Platform, garbage: bytes) -> None:
    answer = x509_ocsp.load_der_ocsp_response(platform.ocsp.respond(garbage).der)
    assert answer.response_status == x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_for_another_issuer_is_unauthorized(platform: Platform) -> None:
    request = x509_ocsp.OCSPRequestBuilder().add_certificate_by_hash(b"\x01" * 20, b"\x02" * 20, 42, hashes.SHA1()).build()
    answer = x509_ocsp.load_der_ocsp_response(platform.ocsp.respond(request.public_bytes(serialization.Encoding.DER)).der)
    assert answer.response_status == x509_ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_ageing_responses_and_crls_are_re_signed_before_next_update(platform: Platform) -> None:
    cert = load(issue_investor_certificate(platform))
    first = ocsp_query(platform, cert)
    first_crl = current_crl(platform)
    later = utcnow() + dt.timedelta(hours=13)
    platform.pki.clock = lambda: later
    second = ocsp_query(platform, cert)
    assert second.this_update_utc > first.this_update_utc
    assert second.next_update_utc > later
    with session_scope(platform.engine) as session:
        done = refresh(session, platform.pki)
    assert "issuing CRL" in done and "root CRL" in done
    assert current_crl(platform).next_update_utc > first_crl.next_update_utc


def test_ocsp_signer_is_renewed_when_a_third_of_its_life_remains(platform: Platform) -> None:
    later = utcnow() + dt.timedelta(days=21)
    platform.pki.clock = lambda: later
    with session_scope(platform.engine) as session:
        assert "OCSP signer" in refresh(session, platform.pki)
        signers = session.execute(select(IssuedCertificate).where(IssuedCertificate.profile == "ocsp_signer")).scalars().all()
        assert len(signers) == 2
        assert refresh(session, platform.pki) == []
