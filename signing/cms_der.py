"""A lean DER reader for the common form of a detached CMS SignedData.

The platform's signatures (and most others) take one narrow form: DER, one signer, the
X.509 certificates alongside, ECDSA or RSA PKCS#1 v1.5 over SHA-2, and the CAdES-BES signed
attributes (contentType, messageDigest, signingTime as UTCTime, signingCertificateV2).
:func:`read_common_form` reads exactly that form with a few dozen slices of the input and
answers the same :class:`signing.cms_parse.ParsedCms` as the general parser, or ``None``
whenever the input strays from the form in any way: BER lengths, other certificate or
attribute kinds, RSA-PSS, a GeneralizedTime, a name that only matches after RFC 5280
normalisation, anything malformed. The general (asn1crypto) parser then decides, so every
verdict, error code and message stays its own; this reader never refuses an input, and it
accepts only what the general parser accepts with the same result (the tests check both on
the platform's signatures, other producers' and thousands of damaged ones).

Why: the general parser builds some fifty asn1crypto objects per CMS, which was the largest
single cost of receiving a ballot.
"""

from __future__ import annotations

import datetime as dt
import functools

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signing.cms_parse import DIGEST_HASHES, ECDSA, RSA_PKCS1V15, ParsedCms, _load_certificate


def _oid(dotted: str) -> bytes:
    """The DER contents of an OBJECT IDENTIFIER."""
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


_SIGNED_DATA = _oid("1.2.840.113549.1.7.2")
_CONTENT_TYPE = _oid("1.2.840.113549.1.9.3")
_MESSAGE_DIGEST = _oid("1.2.840.113549.1.9.4")
_SIGNING_TIME = _oid("1.2.840.113549.1.9.5")
_SIGNING_CERTIFICATE_V2 = _oid("1.2.840.113549.1.9.16.2.47")
_DIGESTS = {_oid("2.16.840.1.101.3.4.2.1"): "sha256", _oid("2.16.840.1.101.3.4.2.2"): "sha384",
            _oid("2.16.840.1.101.3.4.2.3"): "sha512"}
# Signature algorithm → (scheme, the digest it carries, or None: the signer's digest algorithm).
_SIGNATURES = {
    _oid("1.2.840.10045.4.3.2"): (ECDSA, "sha256"), _oid("1.2.840.10045.4.3.3"): (ECDSA, "sha384"),
    _oid("1.2.840.10045.4.3.4"): (ECDSA, "sha512"),
    _oid("1.2.840.113549.1.1.11"): (RSA_PKCS1V15, "sha256"), _oid("1.2.840.113549.1.1.12"): (RSA_PKCS1V15, "sha384"),
    _oid("1.2.840.113549.1.1.13"): (RSA_PKCS1V15, "sha512"), _oid("1.2.840.113549.1.1.1"): (RSA_PKCS1V15, None),
}
_NULL = b"\x05\x00"
# Universal tags of the form (constructed where the form is).
_INTEGER, _OCTET_STRING, _OID, _UTC_TIME, _SEQUENCE, _SET = 0x02, 0x04, 0x06, 0x17, 0x30, 0x31
_CONTEXT_0, _CONTEXT_1, _CONTEXT_0_PRIMITIVE = 0xA0, 0xA1, 0x80


class _NotCommon(Exception):
    """The input is not in the common form: the general parser decides."""


_Element = tuple[int, int, int, int]  # tag, offset of the header, offset of the contents, end


def _element(data: bytes, offset: int, end: int) -> _Element:
    """The DER element at ``offset``: a low tag number and minimal definite length only."""
    if offset + 2 > end:
        raise _NotCommon
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise _NotCommon
    if first < 0x80:
        start, length = offset + 2, first
    else:
        count = first & 0x7F
        start = offset + 2 + count
        if count == 0 or count > 3 or start > end or data[offset + 2] == 0:
            raise _NotCommon
        length = int.from_bytes(data[offset + 2:start], "big")
        if length < 0x80:
            raise _NotCommon
    if start + length > end:
        raise _NotCommon
    return tag, offset, start, start + length


def _children(data: bytes, parent: _Element) -> list[_Element]:
    """The elements that make up ``parent``'s contents, exactly."""
    found, offset, end = [], parent[2], parent[3]
    while offset < end:
        child = _element(data, offset, end)
        found.append(child)
        offset = child[3]
    return found


def _expect(element: _Element, tag: int) -> _Element:
    if element[0] != tag:
        raise _NotCommon
    return element


def _contents(data: bytes, element: _Element) -> bytes:
    return data[element[2]:element[3]]


def _small_integer(data: bytes, element: _Element) -> int:
    """A one-byte non-negative INTEGER (a version)."""
    if element[0] != _INTEGER or element[3] - element[2] != 1 or data[element[2]] >= 0x80:
        raise _NotCommon
    return data[element[2]]


def _integer(data: bytes, element: _Element) -> int:
    """A minimally encoded INTEGER of any size."""
    raw = _contents(data, _expect(element, _INTEGER))
    if not raw or (len(raw) > 1 and ((raw[0] == 0 and raw[1] < 0x80) or (raw[0] == 0xFF and raw[1] >= 0x80))):
        raise _NotCommon
    return int.from_bytes(raw, "big", signed=True)


def _algorithm(data: bytes, element: _Element, *, null_allowed: bool) -> bytes:
    """The OID of an AlgorithmIdentifier whose parameters are absent (or NULL if allowed)."""
    parts = _children(data, _expect(element, _SEQUENCE))
    if not parts or len(parts) > 2 or (len(parts) == 2 and not (
            null_allowed and data[parts[1][1]:parts[1][3]] == _NULL)):
        raise _NotCommon
    return _contents(data, _expect(parts[0], _OID))


def read_common_form(der: bytes) -> ParsedCms | None:
    """``der`` read as a detached SignedData of the common form, or None (see the module
    docstring): never raises."""
    try:
        return _read(der)
    except Exception:  # noqa: BLE001 - _NotCommon, or input this reader did not foresee
        return None


def _read(data: bytes) -> ParsedCms:
    content_info = _element(data, 0, len(data))
    if content_info[0] != _SEQUENCE or content_info[3] != len(data):
        raise _NotCommon
    content_type, explicit = _children(data, content_info)
    if _contents(data, _expect(content_type, _OID)) != _SIGNED_DATA:
        raise _NotCommon
    (signed_data,) = _children(data, _expect(explicit, _CONTEXT_0))
    parts = _children(data, _expect(signed_data, _SEQUENCE))
    if len(parts) < 4:
        raise _NotCommon
    version, digest_algorithms, encap = parts[0], parts[1], parts[2]
    if _small_integer(data, version) not in (1, 3):
        raise _NotCommon
    for algorithm in _children(data, _expect(digest_algorithms, _SET)):
        _algorithm(data, algorithm, null_allowed=True)
    (encap_type,) = _children(data, _expect(encap, _SEQUENCE))  # no eContent: detached
    encap_type_oid = _contents(data, _expect(encap_type, _OID))
    rest = parts[3:]
    certificates = []
    if rest and rest[0][0] == _CONTEXT_0:
        certificates = [_load_certificate(data[c[1]:c[3]]) for c in
                        (_expect(c, _SEQUENCE) for c in _children(data, rest[0]))]
        rest = rest[1:]
    if rest and rest[0][0] == _CONTEXT_1:  # CRLs: not used by the verifier
        rest = rest[1:]
    if len(rest) != 1:
        raise _NotCommon
    (signer_info,) = _children(data, _expect(rest[0], _SET))
    return _signer(data, signer_info, encap_type_oid, certificates)


def _signer(data: bytes, signer_info: _Element, encap_type_oid: bytes,
            certificates: list[x509.Certificate]) -> ParsedCms:
    parts = _children(data, _expect(signer_info, _SEQUENCE))
    if len(parts) not in (6, 7) or (len(parts) == 7 and parts[6][0] != _CONTEXT_1):
        raise _NotCommon
    version, sid, digest_algorithm, signed_attrs, signature_algorithm, signature = parts[:6]
    by_issuer_serial = sid[0] == _SEQUENCE
    if _small_integer(data, version) != (1 if by_issuer_serial else 3):
        raise _NotCommon
    digest = _DIGESTS[_algorithm(data, digest_algorithm, null_allowed=True)]
    scheme, hashed_with = _SIGNATURES[_algorithm(data, signature_algorithm, null_allowed=True)]
    if hashed_with is not None and hashed_with != digest:
        raise _NotCommon
    attributes = _attributes(data, _expect(signed_attrs, _CONTEXT_0), encap_type_oid, digest)
    signer_index = _find_signer(data, sid, certificates)
    signer = certificates[signer_index]
    if not isinstance(signer.public_key(), (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise _NotCommon
    message_digest, signing_time, ess = attributes
    return ParsedCms(
        signer_certificate=signer,
        certificates=tuple(c for i, c in enumerate(certificates) if i != signer_index),
        digest_algorithm=digest, signature_algorithm=scheme, pss_salt_length=None,
        signature=_contents(data, _expect(signature, _OCTET_STRING)),
        # The SET OF as the signature covers it: the [0] IMPLICIT element with the SET tag.
        signed_attributes=bytes([_SET]) + data[signed_attrs[1] + 1:signed_attrs[3]],
        message_digest=message_digest, signing_time=signing_time,
        signing_certificate_hash=ess[0] if ess else None, signing_certificate_hash_algorithm=ess[1] if ess else None,
        signing_certificate_serial=ess[2] if ess else None)


_Attributes = tuple[bytes, dt.datetime | None, tuple[bytes, str, int | None] | None]


def _attributes(data: bytes, signed_attrs: _Element, encap_type_oid: bytes, digest: str) -> _Attributes:
    """messageDigest, signingTime and signingCertificateV2 of the four known attributes."""
    values: dict[bytes, _Element] = {}
    for attribute in _children(data, signed_attrs):
        kind, value_set = _children(data, _expect(attribute, _SEQUENCE))
        oid = _contents(data, _expect(kind, _OID))
        if oid in values or oid not in (_CONTENT_TYPE, _MESSAGE_DIGEST, _SIGNING_TIME, _SIGNING_CERTIFICATE_V2):
            raise _NotCommon
        (values[oid],) = _children(data, _expect(value_set, _SET))
    if _contents(data, _expect(values[_CONTENT_TYPE], _OID)) != encap_type_oid:
        raise _NotCommon
    message_digest = _contents(data, _expect(values[_MESSAGE_DIGEST], _OCTET_STRING))
    if len(message_digest) != DIGEST_HASHES[digest].digest_size:
        raise _NotCommon
    signing_time = _utc_time(data, values[_SIGNING_TIME]) if _SIGNING_TIME in values else None
    ess = _ess_cert_id(data, values[_SIGNING_CERTIFICATE_V2]) if _SIGNING_CERTIFICATE_V2 in values else None
    return message_digest, signing_time, ess


def _utc_time(data: bytes, element: _Element) -> dt.datetime:
    """A UTCTime of the form YYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.1: 50-99 are 19xx)."""
    text = _contents(data, _expect(element, _UTC_TIME))
    if len(text) != 13 or text[12] != 0x5A or not text[:12].isdigit():
        raise _NotCommon
    year = int(text[0:2])
    return dt.datetime(year + (1900 if year >= 50 else 2000), int(text[2:4]), int(text[4:6]), int(text[6:8]),
                       int(text[8:10]), int(text[10:12]), tzinfo=dt.timezone.utc)


def _ess_cert_id(data: bytes, element: _Element) -> tuple[bytes, str, int | None]:
    """Hash, hash algorithm and issuerSerial serial of the first ESSCertIDv2 (RFC 5035)."""
    parts = _children(data, _expect(element, _SEQUENCE))
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1][0] != _SEQUENCE):  # certs, policies
        raise _NotCommon
    cert_ids = _children(data, _expect(parts[0], _SEQUENCE))
    for cert_id in cert_ids:
        _expect(cert_id, _SEQUENCE)
    fields = _children(data, cert_ids[0])
    algorithm = "sha256"  # the DEFAULT, when the field is absent
    if fields and fields[0][0] == _SEQUENCE:
        algorithm = _DIGESTS[_algorithm(data, fields[0], null_allowed=True)]
        fields = fields[1:]
    if not fields or len(fields) > 2:
        raise _NotCommon
    cert_hash = _contents(data, _expect(fields[0], _OCTET_STRING))
    serial = None
    if len(fields) == 2:
        issuer_names, serial_number = _children(data, _expect(fields[1], _SEQUENCE))
        _expect(issuer_names, _SEQUENCE)
        serial = _integer(data, serial_number)
    return cert_hash, algorithm, serial


@functools.lru_cache(maxsize=4096)
def _name_der(certificate: x509.Certificate) -> bytes:
    return certificate.issuer.public_bytes()


def _find_signer(data: bytes, sid: _Element, certificates: list[x509.Certificate]) -> int:
    """The index of the certificate the sid names by identical issuer bytes and serial, or
    by subject key identifier."""
    if sid[0] == _SEQUENCE:
        issuer, serial_number = _children(data, sid)
        issuer_der, serial = data[issuer[1]:issuer[3]], _integer(data, serial_number)
        for index, certificate in enumerate(certificates):
            if certificate.serial_number == serial:
                if _name_der(certificate) != issuer_der:
                    raise _NotCommon  # perhaps equal after RFC 5280 name matching: the general parser looks
                return index
        raise _NotCommon
    key_id = _contents(data, _expect(sid, _CONTEXT_0_PRIMITIVE))
    for index, certificate in enumerate(certificates):
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            continue
        if ski == key_id:
            return index
    raise _NotCommon
