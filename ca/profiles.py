"""Certificate profiles as data, and the one function that turns a profile into a builder."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

# Certificate policies are named by a suffix under the operator's policy arc (a setting,
# CLOUDSEAL_POLICY_ARC). The default arc sits under IANA's documentation enterprise number
# 32473 (RFC 5612) until the market operator's registered arc is configured.
DEFAULT_POLICY_ARC = "1.3.6.1.4.1.32473.1"
INVESTOR_SIGNING_POLICY = "1"
PLATFORM_POLICY = "2"


def policy_oid(arc: str, suffix: str) -> ObjectIdentifier:
    """The full policy OID for a profile's policy suffix."""
    return ObjectIdentifier(f"{arc}.{suffix}")

# Key usages by the names of cryptography's x509.KeyUsage arguments.
_KEY_USAGE_FIELDS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


@dataclass(frozen=True)
class CertificateProfile:
    """Everything that makes one kind of certificate what it is."""

    name: str
    validity: dt.timedelta
    key_usages: frozenset[str]
    is_ca: bool = False
    path_length: int | None = None
    extended_key_usages: tuple[ObjectIdentifier, ...] = ()
    policies: tuple[str, ...] = ()
    crl_distribution_point: bool = True
    authority_information_access: bool = True
    ocsp_no_check: bool = False
    required_subject: tuple[ObjectIdentifier, ...] = (NameOID.COMMON_NAME,)

    def key_usage_extension(self) -> x509.KeyUsage:
        """The KeyUsage extension value for this profile."""
        unknown = self.key_usages - set(_KEY_USAGE_FIELDS)
        if unknown:
            raise ValueError(f"unknown key usages in profile {self.name}: {sorted(unknown)}")
        flags = {name: name in self.key_usages for name in _KEY_USAGE_FIELDS}
        return x509.KeyUsage(**flags)


ROOT_CA = CertificateProfile(
    name="root_ca",
    validity=dt.timedelta(days=365 * 20 + 5),
    # digitalSignature: the root signs the OCSP responses about the issuing CA itself.
    key_usages=frozenset({"key_cert_sign", "crl_sign", "digital_signature"}),
    is_ca=True,
    crl_distribution_point=False,
    authority_information_access=False,
    required_subject=(NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME),
)

ISSUING_CA = CertificateProfile(
    name="issuing_ca",
    validity=dt.timedelta(days=365 * 10 + 2),
    key_usages=frozenset({"key_cert_sign", "crl_sign"}),
    is_ca=True,
    path_length=0,
    policies=(INVESTOR_SIGNING_POLICY, PLATFORM_POLICY),
    required_subject=(NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME),
)

INVESTOR_SIGNING = CertificateProfile(
    name="investor_signing",
    validity=dt.timedelta(days=730),
    key_usages=frozenset({"digital_signature", "content_commitment"}),
    policies=(INVESTOR_SIGNING_POLICY,),
    required_subject=(NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER),
)

OCSP_SIGNER = CertificateProfile(
    name="ocsp_signer",
    validity=dt.timedelta(days=30),
    key_usages=frozenset({"digital_signature"}),
    extended_key_usages=(ExtendedKeyUsageOID.OCSP_SIGNING,),
    policies=(PLATFORM_POLICY,),
    crl_distribution_point=False,
    authority_information_access=False,
    ocsp_no_check=True,
)

PLATFORM_SEAL = CertificateProfile(
    name="platform_seal",
    validity=dt.timedelta(days=365 * 3),
    key_usages=frozenset({"digital_signature", "content_commitment"}),
    policies=(PLATFORM_POLICY,),
    required_subject=(NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME),
)

PROFILES: dict[str, CertificateProfile] = {
    p.name: p for p in (ROOT_CA, ISSUING_CA, INVESTOR_SIGNING, OCSP_SIGNER, PLATFORM_SEAL)
}

# Profiles the issuance endpoint accepts; CA, responder and seal certificates (whose keys
# must be generated in the HSM) come only from init and the PKI commands.
REQUESTABLE_PROFILES = frozenset({INVESTOR_SIGNING.name})


@dataclass(frozen=True)
class IssuerContext:
    """What a builder needs to know of the issuing CA."""

    name: x509.Name
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    crl_url: str | None
    ca_issuers_url: str | None
    ocsp_url: str | None


def check_subject(profile: CertificateProfile, subject: x509.Name) -> None:
    """Raise ValueError when ``subject`` lacks an attribute the profile requires."""
    present = {attr.oid for attr in subject}
    missing = [oid._name for oid in profile.required_subject if oid not in present]
    if missing:
        raise ValueError(f"the subject lacks {', '.join(missing)} required by {profile.name}")
    for attr in subject:
        if isinstance(attr.value, str) and not attr.value.strip():
            raise ValueError("subject attributes must not be empty")


def build_certificate(
    profile: CertificateProfile,
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    serial_number: int,
    not_before: dt.datetime,
    issuer: IssuerContext | None,
    not_after_cap: dt.datetime | None = None,
    policy_arc: str = DEFAULT_POLICY_ARC,
) -> x509.CertificateBuilder:
    """Turn a profile, a subject and a public key into an unsigned certificate builder.

    ``issuer`` is None for a self-signed root. The validity is cut at ``not_after_cap``
    (the issuer's own expiry) so no certificate outlives its CA.
    """
    check_subject(profile, subject)
    not_after = not_before + profile.validity
    if not_after_cap is not None and not_after > not_after_cap:
        not_after = not_after_cap
    issuer_name = issuer.name if issuer else subject
    issuer_key = issuer.public_key if issuer else public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=profile.is_ca, path_length=profile.path_length),
            critical=True,
        )
        .add_extension(profile.key_usage_extension(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
    )
    if profile.extended_key_usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usages)), critical=False
        )
    if profile.policies:
        policies = [x509.PolicyInformation(policy_oid(policy_arc, p), None) for p in profile.policies]
        builder = builder.add_extension(x509.CertificatePolicies(policies), critical=False)
    if issuer is not None and profile.crl_distribution_point and issuer.crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(issuer.crl_url)], None, None, None)]
            ),
            critical=False,
        )
    if issuer is not None and profile.authority_information_access:
        access = []
        if issuer.ocsp_url:
            access.append(
                x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(issuer.ocsp_url),
                )
            )
        if issuer.ca_issuers_url:
            access.append(
                x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.CA_ISSUERS,
                    x509.UniformResourceIdentifier(issuer.ca_issuers_url),
                )
            )
        if access:
            builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if profile.ocsp_no_check:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    return builder
