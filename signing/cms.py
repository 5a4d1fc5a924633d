"""Detached CMS SignedData with CAdES-BES attributes: building, assembly, verification.

The format every ballot and broker order signature uses (RFC 5652, RFC 5035, ETSI EN 319
122-1 CAdES-BES): detached content of type id-data; signed attributes contentType,
messageDigest, signingTime and signingCertificateV2; the signer certificate and its chain in
``certificates``; one SignerInfo identified by issuer and serial number.

Signing is split the way the HSM needs it: :func:`build_signed_attributes`, then
:func:`signed_attributes_digest` is what the key signs (e.g. through CSC ``signHash``), then
:func:`assemble_detached_cms` wraps the signature. :func:`verify_cms_signature` and
:func:`chain_to` are the cryptographic core of verification; validity periods and
revocation belong to :mod:`signing.verifier`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import threading
from collections import OrderedDict, deque

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding

from signing.cms_parse import (
    ECDSA,
    RSA_PKCS1V15,
    RSA_PSS,
    CmsError,
    ParsedCms,
    digest_name,
    hash_for,
    parse_detached_cms,
)

__all__ = [
    "ECDSA", "RSA_PKCS1V15", "RSA_PSS", "CmsError", "ParsedCms", "assemble_detached_cms",
    "build_signed_attributes", "chain_to", "digest_name", "parse_detached_cms", "sign_detached",
    "signed_attributes_digest", "verify_cms_signature",
]

# A leaf, at most a few intermediates, a root: longer paths are refused, not explored.
MAX_CHAIN_LENGTH = 6
MAX_SIGNATURE_CHECKS = 32
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _hash(data: bytes, digest_algorithm: str) -> bytes:
    hasher = hashes.Hash(hash_for(digest_algorithm))
    hasher.update(data)
    return hasher.finalize()


def build_signed_attributes(
    digest: bytes, digest_algorithm: str, signer_cert: x509.Certificate, signing_time: dt.datetime
) -> bytes:
    """DER of the SET OF CAdES-BES signed attributes over a document ``digest``.

    contentType id-data, messageDigest, signingTime (UTC, second precision) and
    signingCertificateV2 (SHA-256 of the signer certificate, with issuerSerial).
    """
    name = digest_name(digest_algorithm)
    if len(digest) != hash_for(name).digest_size:
        raise ValueError(f"a {name} digest is {hash_for(name).digest_size} bytes, got {len(digest)}")
    if signing_time.tzinfo is None:
        raise ValueError("signing_time must be timezone-aware")
    cert = asn1_x509.Certificate.load(signer_cert.public_bytes(Encoding.DER))
    ess_cert_id = asn1_tsp.ESSCertIDv2({
        "hash_algorithm": {"algorithm": "sha256"},
        "cert_hash": _hash(cert.dump(), "sha256"),
        "issuer_serial": {
            "issuer": [asn1_x509.GeneralName(name="directory_name", value=cert.issuer)],
            "serial_number": cert.serial_number,
        },
    })
    # Encoded on its own, then loaded back: built in place inside the attributes, asn1crypto
    # re-encodes this nested value dozens of times (about 10 ms a signature); same bytes.
    signing_certificate = asn1_tsp.SigningCertificateV2.load(
        asn1_tsp.SigningCertificateV2({"certs": [ess_cert_id]}).dump())
    when = signing_time.astimezone(dt.timezone.utc).replace(microsecond=0)
    time_type = "utc_time" if 1950 <= when.year < 2050 else "generalized_time"  # RFC 5652 §11.3
    attributes = asn1_cms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "message_digest", "values": [bytes(digest)]},
        {"type": "signing_time", "values": [asn1_cms.Time(name=time_type, value=when)]},
        {"type": "signing_certificate_v2", "values": [signing_certificate]},
    ])
    return attributes.dump()


def signed_attributes_digest(signed_attrs_der: bytes, digest_algorithm: str) -> bytes:
    """The digest the signer's key signs: the hash of the DER SET OF signed attributes."""
    return _hash(signed_attrs_der, digest_algorithm)


def _scheme_name(scheme: object) -> str:
    """``ECDSA``/``RSA_PKCS1V15``/``RSA_PSS`` from a name or an ``hsm_sim`` Mechanism."""
    return str(getattr(scheme, "value", scheme)).upper()


def _signature_algorithm_id(scheme: str, algorithm_name: str) -> asn1_algos.SignedDigestAlgorithm:
    scheme = _scheme_name(scheme)
    if scheme == ECDSA:  # RFC 5758: no parameters
        return asn1_algos.SignedDigestAlgorithm({"algorithm": f"{algorithm_name}_ecdsa"})
    if scheme == RSA_PKCS1V15:  # RFC 4055: NULL parameters
        return asn1_algos.SignedDigestAlgorithm(
            {"algorithm": f"{algorithm_name}_rsa", "parameters": asn1_core.Null()})
    if scheme == RSA_PSS:  # MGF1 with the same hash, salt as long as the digest (as the HSM signs)
        return asn1_algos.SignedDigestAlgorithm({
            "algorithm": "rsassa_pss",
            "parameters": asn1_algos.RSASSAPSSParams({
                "hash_algorithm": {"algorithm": algorithm_name},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": algorithm_name}},
                "salt_length": hash_for(algorithm_name).digest_size,
            }),
        })
    raise CmsError("unsupported_algorithm", f"signature algorithm {scheme!r} is not supported")


def assemble_detached_cms(
    signed_attrs_der: bytes,
    signature: bytes,
    signer_cert: x509.Certificate,
    chain: list[x509.Certificate],
    digest_algorithm: str,
    signature_algorithm: str,
) -> bytes:
    """DER ContentInfo of a detached SignedData (version 1) around a ready ``signature``.

    ``signature_algorithm`` is ``ECDSA`` (DER signature), ``RSA_PKCS1V15`` or ``RSA_PSS``;
    ``hsm_sim.base.Mechanism`` members work too. The certificates carry the signer and
    ``chain`` (duplicates dropped).
    """
    algorithm_name = digest_name(digest_algorithm)
    try:
        signed_attrs = asn1_cms.CMSAttributes.load(bytes(signed_attrs_der), strict=True)
        len(signed_attrs)  # parse now: a bad value fails here, not in dump()
    except ValueError as exc:
        raise CmsError("malformed", f"the signed attributes are not DER: {exc}") from None
    signer = asn1_x509.Certificate.load(signer_cert.public_bytes(Encoding.DER))
    certificates, seen = [], set()
    for cert in [signer_cert, *chain]:
        der = cert.public_bytes(Encoding.DER)
        if der not in seen:
            seen.add(der)
            certificates.append(asn1_cms.CertificateChoices(name="certificate",
                                                            value=asn1_x509.Certificate.load(der)))
    signer_info = asn1_cms.SignerInfo({
        "version": "v1",
        "sid": asn1_cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": signer.issuer, "serial_number": signer.serial_number}),
        "digest_algorithm": {"algorithm": algorithm_name},
        "signed_attrs": signed_attrs,
        "signature_algorithm": _signature_algorithm_id(signature_algorithm, algorithm_name),
        "signature": bytes(signature),
    })
    signed_data = asn1_cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": algorithm_name}],
        "encap_content_info": {"content_type": "data"},
        "certificates": certificates,
        "signer_infos": [signer_info],
    })
    return asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def sign_detached(
    digest: bytes,
    digest_algorithm: str,
    signer_cert: x509.Certificate,
    chain: list[x509.Certificate],
    private_key: SigningKey,
    signing_time: dt.datetime | None = None,
    *,
    signature_algorithm: str | None = None,
) -> bytes:
    """Detached CAdES-BES CMS over ``digest``, signed with a cryptography private key.

    The key may be an HSM facade (``hsm_sim.facade.hsm_private_key``). EC keys sign ECDSA;
    RSA keys PKCS#1 v1.5 unless ``signature_algorithm`` is ``RSA_PSS``.
    """
    if private_key.public_key() != signer_cert.public_key():
        raise ValueError("the private key does not belong to the signer certificate")
    algorithm_name = digest_name(digest_algorithm)
    when = signing_time or dt.datetime.now(dt.timezone.utc)
    signed_attrs = build_signed_attributes(digest, algorithm_name, signer_cert, when)
    to_sign = signed_attributes_digest(signed_attrs, algorithm_name)
    prehashed = utils.Prehashed(hash_for(algorithm_name))
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        scheme = _scheme_name(signature_algorithm or ECDSA)
        if scheme != ECDSA:
            raise CmsError("unsupported_algorithm", f"EC keys cannot sign with {scheme!r}")
        signature = private_key.sign(to_sign, ec.ECDSA(prehashed))
    else:
        scheme = _scheme_name(signature_algorithm or RSA_PKCS1V15)
        signature = private_key.sign(to_sign, _rsa_padding(scheme, algorithm_name, None), prehashed)
    return assemble_detached_cms(signed_attrs, signature, signer_cert, chain, algorithm_name, scheme)


def _rsa_padding(scheme: str, algorithm_name: str, salt_length: int | None) -> padding.AsymmetricPadding:
    if scheme == RSA_PKCS1V15:
        return padding.PKCS1v15()
    if scheme == RSA_PSS:
        size = hash_for(algorithm_name).digest_size if salt_length is None else salt_length
        return padding.PSS(mgf=padding.MGF1(hash_for(algorithm_name)), salt_length=size)
    raise CmsError("unsupported_algorithm", f"RSA keys cannot sign with {scheme!r}")


def verify_cms_signature(parsed: ParsedCms, document_digest: bytes) -> None:
    """Check that ``parsed`` is a signature by its signer certificate over ``document_digest``.

    Raises :class:`CmsError` ``digest_mismatch`` when the messageDigest attribute is not
    ``document_digest``, ``bad_signature`` when the signature over the signed attributes
    does not verify with the certificate's key, or signingCertificateV2 names another
    certificate. Says nothing about the certificate's trust, validity or revocation.
    """
    if not hmac.compare_digest(parsed.message_digest, bytes(document_digest)):
        raise CmsError("digest_mismatch", "the signature is over another document")
    public_key = parsed.signer_certificate.public_key()
    to_verify = signed_attributes_digest(parsed.signed_attributes, parsed.digest_algorithm)
    prehashed = utils.Prehashed(hash_for(parsed.digest_algorithm))
    try:
        if parsed.signature_algorithm == ECDSA and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(parsed.signature, to_verify, ec.ECDSA(prehashed))
        elif parsed.signature_algorithm != ECDSA and isinstance(public_key, rsa.RSAPublicKey):
            pad = _rsa_padding(parsed.signature_algorithm, parsed.digest_algorithm, parsed.pss_salt_length)
            public_key.verify(parsed.signature, to_verify, pad, prehashed)
        else:
            raise CmsError("bad_signature", "the signature algorithm does not fit the signer's key")
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        raise CmsError("bad_signature", "the signature does not verify with the signer certificate") from None
    if parsed.signing_certificate_hash is not None:
        cert_der = parsed.signer_certificate.public_bytes(Encoding.DER)
        algorithm = parsed.signing_certificate_hash_algorithm or "sha256"
        serial = parsed.signing_certificate_serial
        if (not hmac.compare_digest(_hash(cert_der, algorithm), parsed.signing_certificate_hash)
                or (serial is not None and serial != parsed.signer_certificate.serial_number)):
            raise CmsError("bad_signature", "signingCertificateV2 names another certificate")


def chain_to(parsed: ParsedCms, trust_anchors: list[x509.Certificate]) -> list[x509.Certificate]:
    """The path signer → intermediates → anchor, built from the CMS certificates.

    Each link is checked with ``verify_directly_issued_by`` and every issuer must be a CA
    (basicConstraints cA, keyCertSign when key usage is present). Validity periods and
    revocation are left to the caller. Raises :class:`CmsError` ``untrusted_chain`` when no
    path reaches one of ``trust_anchors``.

    The path is a function of the certificates alone (they never change), so a path built
    once is remembered for the same signer, CMS certificates and anchors; a refusal is not.
    """
    key = (parsed.signer_certificate, tuple(parsed.certificates), tuple(trust_anchors))
    with _built_paths_lock:
        path = _BUILT_PATHS.get(key)
        if path is not None:
            _BUILT_PATHS.move_to_end(key)
            return list(path)
    built = _build_path(parsed, trust_anchors)
    with _built_paths_lock:
        _BUILT_PATHS[key] = tuple(built)
        if len(_BUILT_PATHS) > _BUILT_PATHS_MAX:
            _BUILT_PATHS.popitem(last=False)
    return built


# Keyed by the certificate objects themselves: they hash and compare by their DER.
_BUILT_PATHS: OrderedDict[tuple[object, ...], tuple[x509.Certificate, ...]] = OrderedDict()
_BUILT_PATHS_MAX = 4096
_built_paths_lock = threading.Lock()


def _build_path(parsed: ParsedCms, trust_anchors: list[x509.Certificate]) -> list[x509.Certificate]:
    anchors = {a.public_bytes(Encoding.DER) for a in trust_anchors}
    candidates = list(trust_anchors) + [
        c for c in parsed.certificates if c.public_bytes(Encoding.DER) not in anchors]
    leaf = parsed.signer_certificate
    if leaf.public_bytes(Encoding.DER) in anchors:
        return [leaf]
    # Breadth first, each certificate reached once, and a bounded number of signature checks:
    # a CMS stuffed with look-alike CA certificates costs little.
    paths, reached, checks_left = deque([[leaf]]), {leaf}, MAX_SIGNATURE_CHECKS
    while paths:
        path = paths.popleft()
        if len(path) >= MAX_CHAIN_LENGTH:
            continue
        for issuer in candidates:
            if issuer in reached or issuer.subject != path[-1].issuer or not _is_ca(issuer):
                continue
            checks_left -= 1
            if checks_left < 0:
                raise CmsError("untrusted_chain", "too many candidate issuers in the CMS")
            if not issued_by(path[-1], issuer):
                continue
            if issuer.public_bytes(Encoding.DER) in anchors:
                return [*path, issuer]
            reached.add(issuer)
            paths.append([*path, issuer])
    raise CmsError("untrusted_chain", "the signer certificate does not chain to a trust anchor")


_VERIFIED_LINKS: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
_VERIFIED_LINKS_MAX = 8192
_verified_links_lock = threading.Lock()


def issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``child``'s signature verifies under ``issuer``'s key. A link that verified once is
    remembered (by both certificates' fingerprints): certificates never change, and the
    same signer and CA certificates come back in CMS after CMS."""
    link = (child.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
    with _verified_links_lock:
        if link in _VERIFIED_LINKS:
            _VERIFIED_LINKS.move_to_end(link)
            return True
    try:
        child.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    with _verified_links_lock:
        _VERIFIED_LINKS[link] = None
        if len(_VERIFIED_LINKS) > _VERIFIED_LINKS_MAX:
            _VERIFIED_LINKS.popitem(last=False)
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except (x509.ExtensionNotFound, ValueError):
        return False
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False

