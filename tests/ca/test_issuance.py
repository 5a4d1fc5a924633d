"""Issuance: profiles, serial numbers and the bootstrap, on every database and HSM."""

from __future__ import annotations

import datetime as dt
import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import func, select

from ca import service
from ca.bootstrap import bootstrap
from ca.models import CertificateAuthority, IssuedCertificate
from ca.profiles import INVESTOR_SIGNING_POLICY, policy_oid
from cloudseal.platform import Platform
from core.db import session_scope
from core.errors import BadRequest, NotFound
from tests.factories import OPERATOR, investor_subject, issue_investor_certificate, load


def _ca_cert(platform: Platform, name: str) -> x509.Certificate:
    with session_scope(platform.engine) as session:
        return platform.pki.ca_certificate(session.get(CertificateAuthority, name))


def test_bootstrap_creates_the_hierarchy_once(any_platform: Platform) -> None:
    with session_scope(any_platform.engine) as session:
        count_before = session.execute(select(func.count()).select_from(IssuedCertificate)).scalar_one()
        assert bootstrap(session, any_platform.pki) == []
        count_after = session.execute(select(func.count()).select_from(IssuedCertificate)).scalar_one()
    assert count_before == count_after == 4  # root, issuing, OCSP signer, seal


def test_root_and_issuing_ca_follow_their_profiles(any_platform: Platform) -> None:
    root, issuing = _ca_cert(any_platform, "root"), _ca_cert(any_platform, "issuing")
    for cert in (root, issuing):
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp384r1"
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.issuer == root.subject
    assert issuing.issuer == root.subject
    assert issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert (root.not_valid_after_utc - root.not_valid_before_utc).days >= 20 * 365
    assert (issuing.not_valid_after_utc - issuing.not_valid_before_utc).days >= 10 * 365
    issuing.verify_directly_issued_by(root)


def test_investor_certificate_follows_the_signing_profile(any_platform: Platform) -> None:
    cert = load(issue_investor_certificate(any_platform))
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_cert_sign
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [policy_oid(any_platform.pki.policy_arc, INVESTOR_SIGNING_POLICY)]
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == "http://127.0.0.1:8000/pki/crl/issuing.crl"
    aia = {d.access_method: d.access_location.value
           for d in cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value}
    assert aia[x509.AuthorityInformationAccessOID.OCSP] == "http://127.0.0.1:8000/pki/ocsp"
    assert aia[x509.AuthorityInformationAccessOID.CA_ISSUERS] == "http://127.0.0.1:8000/pki/issuing.crt"
    issuing = _ca_cert(any_platform, "issuing")
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc) >= dt.timedelta(days=730)
    cert.verify_directly_issued_by(issuing)


def test_ocsp_signer_carries_ocsp_signing_and_nocheck(platform: Platform) -> None:
    with session_scope(platform.engine) as session:
        row = session.execute(select(IssuedCertificate).where(IssuedCertificate.profile == "ocsp_signer")).scalar_one()
    cert = load(row)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.OCSP_SIGNING])
    assert cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=31)


def test_serial_numbers_are_positive_and_carry_at_least_64_random_bits(platform: Platform) -> None:
    serials = [load(issue_investor_certificate(platform, reference=f"INV-{i}")).serial_number for i in range(20)]
    assert all(0 < s < 2**160 for s in serials)
    assert len(set(serials)) == 20
    assert max(s.bit_length() for s in serials) >= 64 + 32  # random_serial_number draws 159 bits


def test_serial_collision_is_caught_by_the_database_and_redrawn(platform: Platform) -> None:
    first = issue_investor_certificate(platform)
    repeats = itertools.chain([int(first.serial_hex, 16)], itertools.repeat(0x1234567890ABCDEF1234))
    platform.pki.serial_source = lambda: next(repeats)
    second = issue_investor_certificate(platform, reference="INV-000002")
    assert second.serial_hex == "1234567890abcdef1234"


def test_concurrent_issuance_yields_unique_serials(any_platform: Platform) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(lambda i: issue_investor_certificate(any_platform, reference=f"INV-{i}"), range(24)))
    assert len({r.serial_hex for r in rows}) == 24
    with session_scope(any_platform.engine) as session:
        stored = session.execute(select(func.count(func.distinct(IssuedCertificate.serial_hex)))).scalar_one()
    assert stored == 24 + 4


def test_unknown_ca_and_profile_are_refused(platform: Platform) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with session_scope(platform.engine) as session:
        with pytest.raises(NotFound) as unknown_ca:
            service.issue_certificate(session, platform.pki, actor=OPERATOR, ca_name="nope",
                                      profile_name="investor_signing", subject=investor_subject(), public_key=key)
        with pytest.raises(BadRequest) as unknown_profile:
            service.issue_certificate(session, platform.pki, actor=OPERATOR, ca_name="issuing",
                                      profile_name="root_ca", subject=investor_subject(), public_key=key)
    assert unknown_ca.value.code == "unknown_ca"
    assert unknown_profile.value.code == "profile_not_allowed"


@pytest.mark.parametrize("curve", [ec.SECP521R1(), ec.SECP256K1()])
def test_keys_outside_the_allowed_set_are_refused(platform: Platform, curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve).public_key()
    with session_scope(platform.engine) as session, pytest.raises(BadRequest) as err:
        service.issue_certificate(session, platform.pki, actor=OPERATOR, ca_name="issuing",
                                  profile_name="investor_signing", subject=investor_subject(), public_key=key)
    assert err.value.code == "unsupported_key"


def test_investor_subject_needs_a_serial_number_attribute(platform: Platform) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "No Reference")])
    with session_scope(platform.engine) as session, pytest.raises(BadRequest) as err:
        service.issue_certificate(session, platform.pki, actor=OPERATOR, ca_name="issuing",
                                  profile_name="investor_signing", subject=subject, public_key=key)
    assert err.value.code == "invalid_subject"
