"""Parsing detached CMS SignedData (RFC 5652) as the platform and its clients produce it.

The parser accepts DER, base64 or PEM, and turns any input it cannot use into a
:class:`CmsError` with a stable code: ``malformed`` or ``unsupported_algorithm``. It checks
structure only; :mod:`signing.cms` verifies what the structure claims.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import re
from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import tsp as _asn1_tsp  # noqa: F401 - registers signingCertificateV2's value type
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.errors import BadRequest

# Signature schemes, named like ``hsm_sim.base.Mechanism`` values so either can be passed.
ECDSA = "ECDSA"
RSA_PKCS1V15 = "RSA_PKCS1V15"
RSA_PSS = "RSA_PSS"

DIGEST_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# asn1crypto names of the signature algorithms that carry their hash in the OID.
_HASHED_SIGNATURE_ALGORITHMS: dict[str, tuple[str, str]] = {
    f"{name}_{suffix}": (scheme, name)
    for name in DIGEST_HASHES
    for suffix, scheme in (("ecdsa", ECDSA), ("rsa", RSA_PKCS1V15))
}
# Far above any real signature with its chain; refuses absurd inputs before decoding them.
MAX_CMS_BYTES = 256 * 1024
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_LABELS = frozenset({b"CMS", b"PKCS7", b"PKCS #7 SIGNED DATA"})
_BASE64_ALPHABET = re.compile(rb"^[A-Za-z0-9+/=_\-\s]+$")


class CmsError(BadRequest):
    """A CMS that cannot be used, with a stable reason ``code``.

    Codes: ``malformed``, ``unsupported_algorithm``, ``digest_mismatch``, ``bad_signature``,
    ``untrusted_chain``. A subclass of :class:`core.errors.BadRequest`, so one that reaches
    an API handler becomes a 400 with the same code.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


def digest_name(digest_algorithm: object) -> str:
    """``sha256``/``sha384``/``sha512`` from a name or an ``hsm_sim`` DigestAlgorithm member."""
    name = str(getattr(digest_algorithm, "value", digest_algorithm)).lower()
    if name not in DIGEST_HASHES:
        raise CmsError("unsupported_algorithm", f"digest algorithm {digest_algorithm!r} is not supported")
    return name


def hash_for(digest_algorithm: object) -> hashes.HashAlgorithm:
    """The cryptography hash of a supported digest algorithm; else ``unsupported_algorithm``."""
    return DIGEST_HASHES[digest_name(digest_algorithm)]()


@dataclass(frozen=True)
class ParsedCms:
    """What a detached CMS SignedData claims; nothing here has been verified yet."""

    signer_certificate: x509.Certificate
    certificates: tuple[x509.Certificate, ...]  # every other certificate the CMS carries
    digest_algorithm: str  # "sha256", "sha384" or "sha512"
    signature_algorithm: str  # ECDSA, RSA_PKCS1V15 or RSA_PSS
    pss_salt_length: int | None
    signature: bytes
    signed_attributes: bytes  # DER of the SET OF, as the signature covers it
    message_digest: bytes
    signing_time: dt.datetime | None  # the signer's own claim, aware UTC
    signing_certificate_hash: bytes | None  # from signingCertificateV2
    signing_certificate_hash_algorithm: str | None
    signing_certificate_serial: int | None  # issuerSerial of signingCertificateV2, if any


def parse_detached_cms(der_or_base64: bytes | str) -> ParsedCms:
    """Parse a detached CMS SignedData with exactly one signer.

    Accepts DER, base64 (standard or URL-safe) or PEM (``CMS``/``PKCS7``). Raises
    :class:`CmsError` ``malformed`` or ``unsupported_algorithm``, never another exception.
    """
    if type(der_or_base64) in (bytes, str) and len(der_or_base64) <= _REMEMBERED_MAX_LENGTH:
        return _parse_remembered(der_or_base64)
    return _parse_input(der_or_base64)


# A ballot's CMS is about 2.5 KB: the remembered inputs take a few MiB at most.
_REMEMBERED_MAX_LENGTH = 16 * 1024


@functools.lru_cache(maxsize=256)
def _parse_remembered(der_or_base64: bytes | str) -> ParsedCms:
    # A request that reads ahead of its verification (a ballot's checks) parses the same CMS
    # twice; the result is immutable, so the second parse is a lookup. Failures are not kept.
    return _parse_input(der_or_base64)


def _parse_input(der_or_base64: bytes | str) -> ParsedCms:
    from signing.cms_der import read_common_form  # imports this module: imported on first use

    der = _decode_input(der_or_base64)
    common = read_common_form(der)  # the usual form, read without asn1crypto; None otherwise
    if common is not None:
        return common
    try:
        return _parse(der)
    except CmsError:
        raise
    except Exception as exc:  # asn1crypto parses lazily and raises many types on bad input
        raise CmsError("malformed", f"the CMS cannot be parsed: {type(exc).__name__}") from None


def _received_contents(value: asn1_core.Asn1Value) -> bytes:
    # asn1crypto's ``contents`` property re-checks every child for changes and re-encodes
    # (most of a verification's time); ``_contents`` holds the bytes as they were received.
    raw = getattr(value, "_contents", None)
    return raw if isinstance(raw, bytes) else value.contents


def _as_set(contents: bytes) -> bytes:
    """The signed attributes as the signature covers them: their received content bytes
    under a SET OF tag (RFC 5652 §5.4), never re-encoded (re-encoding could change them and
    cost most of a verification)."""
    length = len(contents)
    if length < 0x80:
        header = bytes([length])
    else:
        size = length.to_bytes((length.bit_length() + 7) // 8, "big")
        header = bytes([0x80 | len(size)]) + size
    return b"\x31" + header + contents


def _malformed(message: str) -> CmsError:
    return CmsError("malformed", message)


def _decode_input(data: bytes | str) -> bytes:
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise _malformed("a text CMS must be base64 or PEM") from None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _malformed("the CMS must be bytes or text")
    data = bytes(data)
    if len(data) > MAX_CMS_BYTES * 2:
        raise _malformed(f"the CMS is larger than {MAX_CMS_BYTES} bytes")
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        match = _PEM.search(stripped)
        if match is None or match.group(1) not in _PEM_LABELS:
            raise _malformed("PEM input must be one CMS or PKCS7 block")
        data = _b64decode(match.group(2))
    elif stripped and _BASE64_ALPHABET.match(stripped):
        # DER of a SignedData always has length octets >= 0x80, outside this alphabet.
        data = _b64decode(stripped)
    if not data:
        raise _malformed("the CMS is empty")
    if len(data) > MAX_CMS_BYTES:
        raise _malformed(f"the CMS is larger than {MAX_CMS_BYTES} bytes")
    return data


def _b64decode(text: bytes) -> bytes:
    compact = re.sub(rb"\s+", b"", text).replace(b"-", b"+").replace(b"_", b"/")
    compact += b"=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("the CMS is not valid base64") from None


def _parse(der: bytes) -> ParsedCms:
    content_info = asn1_cms.ContentInfo.load(der, strict=True)
    if content_info["content_type"].native != "signed_data":
        raise _malformed("the CMS is not SignedData")
    signed_data = content_info["content"]
    encap = signed_data["encap_content_info"]
    if not isinstance(encap["content"], asn1_core.Void):
        raise _malformed("the CMS carries its content; a detached signature is expected")
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise _malformed(f"expected exactly one signer, found {len(signer_infos)}")
    signer_info = signer_infos[0]
    # RFC 5652 §5.1, §5.3: v1 goes with issuerAndSerialNumber, v3 with subjectKeyIdentifier.
    expected_version = "v1" if signer_info["sid"].name == "issuer_and_serial_number" else "v3"
    if signer_info["version"].native != expected_version or signed_data["version"].native not in ("v1", "v3"):
        raise _malformed("the SignedData or SignerInfo version does not fit its contents")

    digest_algorithm = signer_info["digest_algorithm"]["algorithm"].native
    if digest_algorithm not in DIGEST_HASHES:
        raise CmsError("unsupported_algorithm", f"digest algorithm {digest_algorithm!r} is not supported")
    if signer_info["digest_algorithm"]["parameters"].native is not None:  # absent or NULL only
        raise _malformed("the digest algorithm has parameters")
    scheme, salt_length = _signature_scheme(signer_info["signature_algorithm"], digest_algorithm)

    attributes = _signed_attributes(signer_info)
    content_type = _single_value(attributes, "content_type")
    if content_type.native != encap["content_type"].native:
        raise _malformed("the contentType attribute differs from the encapsulated content type")
    message_digest = _single_value(attributes, "message_digest").native
    if len(message_digest) != hash_for(digest_algorithm).digest_size:
        raise _malformed("the messageDigest length does not fit the digest algorithm")
    signing_time = _signing_time(attributes)
    ess = _signing_certificate_v2(attributes)

    certificates = _certificates(signed_data)
    signer_index = _find_signer(signer_info["sid"], certificates)
    signer = certificates[signer_index]
    if not isinstance(signer.public_key(), (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise CmsError("unsupported_algorithm", "the signer's key is neither EC nor RSA")
    return ParsedCms(
        signer_certificate=signer,
        certificates=tuple(c for i, c in enumerate(certificates) if i != signer_index),
        digest_algorithm=digest_algorithm,
        signature_algorithm=scheme,
        pss_salt_length=salt_length,
        signature=signer_info["signature"].native,
        signed_attributes=_as_set(_received_contents(signer_info["signed_attrs"])),
        message_digest=message_digest,
        signing_time=signing_time,
        signing_certificate_hash=ess[0] if ess else None,
        signing_certificate_hash_algorithm=ess[1] if ess else None,
        signing_certificate_serial=ess[2] if ess else None,
    )


def _signature_scheme(algorithm: asn1_core.Sequence, digest_algorithm: str) -> tuple[str, int | None]:
    """The scheme (and PSS salt length); its hash must be the signer's digest algorithm."""
    name = algorithm["algorithm"].native
    if name in _HASHED_SIGNATURE_ALGORITHMS:
        scheme, hash_name = _HASHED_SIGNATURE_ALGORITHMS[name]
        if hash_name != digest_algorithm:
            raise CmsError("unsupported_algorithm", f"{name} does not match digest {digest_algorithm}")
        return scheme, None
    if name == "rsassa_pkcs1v15":  # rsaEncryption: the hash is the digest algorithm
        return RSA_PKCS1V15, None
    if name == "rsassa_pss":
        params = algorithm["parameters"]
        mgf = params["mask_gen_algorithm"]
        if (params["hash_algorithm"]["algorithm"].native != digest_algorithm
                or mgf["algorithm"].native != "mgf1"
                or mgf["parameters"]["algorithm"].native != digest_algorithm
                or params["trailer_field"].native != "trailer_field_bc"):
            raise CmsError("unsupported_algorithm", "RSA-PSS must use MGF1 and the digest's hash")
        salt_length = params["salt_length"].native
        if not 0 <= salt_length <= 1024:
            raise _malformed("the RSA-PSS salt length is out of range")
        return RSA_PSS, salt_length
    raise CmsError("unsupported_algorithm", f"signature algorithm {name!r} is not supported")


def _signed_attributes(signer_info: asn1_cms.SignerInfo) -> dict[str, asn1_core.SetOf]:
    """The signed attributes by type; each type at most once (RFC 5652 §5.3)."""
    signed_attrs = signer_info["signed_attrs"]
    if isinstance(signed_attrs, asn1_core.Void):
        raise _malformed("the signer has no signed attributes")
    attributes: dict[str, asn1_core.SetOf] = {}
    for attribute in signed_attrs:
        kind = attribute["type"].native
        if kind in attributes:
            raise _malformed(f"signed attribute {kind} appears twice")
        attributes[kind] = attribute["values"]
    return attributes


def _single_value(attributes: dict[str, asn1_core.SetOf], name: str) -> asn1_core.Asn1Value:
    values = attributes.get(name)
    if values is None:
        raise _malformed(f"the {name} signed attribute is missing")
    if len(values) != 1:
        raise _malformed(f"the {name} signed attribute must have exactly one value")
    return values[0]


def _signing_time(attributes: dict[str, asn1_core.SetOf]) -> dt.datetime | None:
    if "signing_time" not in attributes:
        return None
    claimed = _single_value(attributes, "signing_time").native
    if not isinstance(claimed, dt.datetime) or claimed.tzinfo is None:
        raise _malformed("the signingTime attribute is not a UTC time")
    return claimed.astimezone(dt.timezone.utc)


def _signing_certificate_v2(
    attributes: dict[str, asn1_core.SetOf],
) -> tuple[bytes, str, int | None] | None:
    """Hash, hash algorithm and serial of the first ESSCertIDv2 (the signer's, RFC 5035)."""
    if "signing_certificate_v2" not in attributes:
        return None
    certs = _single_value(attributes, "signing_certificate_v2")["certs"]
    if len(certs) == 0:
        raise _malformed("signingCertificateV2 names no certificate")
    cert_id = certs[0]
    hash_algorithm = cert_id["hash_algorithm"]["algorithm"].native
    if hash_algorithm not in DIGEST_HASHES:
        raise CmsError("unsupported_algorithm", f"signingCertificateV2 uses {hash_algorithm!r}")
    issuer_serial = cert_id["issuer_serial"]
    serial = None if isinstance(issuer_serial, asn1_core.Void) else issuer_serial["serial_number"].native
    return cert_id["cert_hash"].native, hash_algorithm, serial


def _certificates(signed_data: asn1_cms.SignedData) -> list[x509.Certificate]:
    """Each X.509 certificate of the CMS (other kinds are skipped), parsed by cryptography
    from its received bytes (asn1crypto's lazy parse of each certificate costs far more)."""
    found = []
    certificates = signed_data["certificates"]
    for choice in [] if isinstance(certificates, asn1_core.Void) else certificates:
        if choice.name == "certificate":
            try:
                found.append(_load_certificate(choice.chosen.dump()))
            except ValueError:
                raise _malformed("a certificate in the CMS cannot be parsed") from None
    return found


@functools.lru_cache(maxsize=4096)
def _load_certificate(der: bytes) -> x509.Certificate:
    """A certificate whose fields are all decoded now (cryptography decodes lazily).

    Cached by its DER: certificates are immutable, and the same signer and CA certificates
    arrive in CMS after CMS.
    """
    cert = x509.load_der_x509_certificate(der)
    _ = cert.subject, cert.issuer, cert.serial_number, cert.extensions
    return cert


def _same_name(name: x509.Name, wanted: asn1_x509.Name) -> bool:
    """RFC 5280 name matching; identical encodings (the usual case) skip its string prep."""
    der = name.public_bytes()
    return der == wanted.dump() or asn1_x509.Name.load(der) == wanted


def _key_identifier(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _find_signer(sid: asn1_cms.SignerIdentifier, certificates: list[x509.Certificate]) -> int:
    """Index of the certificate named by the SignerInfo's sid."""
    for index, cert in enumerate(certificates):
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if cert.serial_number == wanted["serial_number"].native and _same_name(cert.issuer, wanted["issuer"]):
                return index
        else:
            key_id = _key_identifier(cert)
            if key_id is not None and key_id == sid.chosen.native:
                return index
    raise _malformed("the signer's certificate is not in the CMS")
