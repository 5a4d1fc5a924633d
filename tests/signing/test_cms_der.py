"""The lean DER reader answers exactly as the general parser, or leaves the input to it."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509

from cloudseal.platform import Platform
from hsm_sim.base import KeyAlgorithm, Mechanism
from signing.cms_der import read_common_form
from signing.cms_parse import CmsError, ParsedCms, _parse, parse_detached_cms
from tests.signing.test_cms import DOCUMENT, hsm_signer, openssl_signed, rebuild, sign


def general(der: bytes) -> ParsedCms | str:
    """What the general (asn1crypto) parser makes of ``der``: its result or its error code."""
    try:
        return _parse(der)
    except CmsError as exc:
        return exc.code
    except Exception:  # noqa: BLE001 - parse_detached_cms turns these into "malformed"
        return "malformed"


def assert_agrees(der: bytes) -> ParsedCms | None:
    """The lean reader declines ``der`` or reads it exactly as the general parser does."""
    lean = read_common_form(der)
    if lean is not None:
        assert lean == general(der)
    return lean


@pytest.mark.parametrize("digest_algorithm", ["sha256", "sha384", "sha512"])
def test_the_platforms_ecdsa_signatures_are_read_by_the_lean_reader_alike(
    platform: Platform, digest_algorithm: str
) -> None:
    der = sign(hsm_signer(platform), digest_algorithm=digest_algorithm)
    lean = assert_agrees(der)
    assert lean is not None and lean.digest_algorithm == digest_algorithm
    assert lean.signing_certificate_hash is not None and lean.signing_time is not None
    assert parse_detached_cms(der) == lean


@pytest.mark.parametrize("mechanism", [Mechanism.RSA_PKCS1V15, Mechanism.RSA_PSS])
def test_rsa_signatures_agree_and_pss_is_left_to_the_general_parser(platform: Platform, mechanism: Mechanism) -> None:
    der = sign(hsm_signer(platform, KeyAlgorithm.RSA_2048), digest_algorithm="sha384", signature_algorithm=mechanism)
    lean = assert_agrees(der)
    assert (lean is not None) == (mechanism is Mechanism.RSA_PKCS1V15)
    assert parse_detached_cms(der).signature_algorithm == mechanism.value


def test_a_cms_made_by_openssl_agrees(tmp_path: Path) -> None:
    der = openssl_signed(tmp_path, "sha256")
    assert_agrees(der)  # openssl adds SMIMECapabilities: the general parser reads it
    assert parse_detached_cms(der).digest_algorithm == "sha256"


def test_variants_of_the_form_agree(platform: Platform) -> None:
    signer = hsm_signer(platform)
    der = sign(signer)

    def attributes(change: object) -> object:
        def edit(sd: asn1_cms.SignedData) -> None:
            signer_info = sd["signer_infos"][0]
            signer_info["signed_attrs"] = asn1_cms.CMSAttributes(change([a for a in signer_info["signed_attrs"]]))
        return edit

    def signing_time(when: dt.datetime, kind: str = "utc_time") -> object:
        def change(attrs: list) -> list:
            return [a if a["type"].native != "signing_time" else asn1_cms.CMSAttribute(
                {"type": "signing_time", "values": [asn1_cms.Time(name=kind, value=when)]}) for a in attrs]
        return attributes(change)

    def ess(edit_cert_id: object) -> object:
        def change(attrs: list) -> list:
            out = []
            for attribute in attrs:
                if attribute["type"].native == "signing_certificate_v2":
                    value = attribute["values"][0].copy()
                    edit_cert_id(value["certs"][0])
                    attribute = asn1_cms.CMSAttribute({"type": "signing_certificate_v2", "values": [value]})
                out.append(attribute)
            return out
        return attributes(change)

    def drop(name: str) -> object:
        return attributes(lambda attrs: [a for a in attrs if a["type"].native != name])

    def duplicate(name: str) -> object:
        return attributes(lambda attrs: attrs + [a for a in attrs if a["type"].native == name])

    def no_issuer_serial(cert_id: object) -> None:
        cert_id["issuer_serial"] = None  # type: ignore[index]

    def other_serial(cert_id: object) -> None:
        cert_id["issuer_serial"]["serial_number"] = 12345  # type: ignore[index]

    def by_key_identifier(sd: asn1_cms.SignedData) -> None:
        signer_info = sd["signer_infos"][0]
        signer_info["version"] = "v3"
        signer_info["sid"] = asn1_cms.SignerIdentifier(
            name="subject_key_identifier",
            value=signer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)

    def signer_version(version: str) -> object:
        def change(sd: asn1_cms.SignedData) -> None:
            sd["signer_infos"][0]["version"] = version
        return change

    def with_unsigned_attributes(sd: asn1_cms.SignedData) -> None:
        sd["signer_infos"][0]["unsigned_attrs"] = [{"type": "content_type", "values": ["data"]}]

    def signed_data_v3(sd: asn1_cms.SignedData) -> None:
        sd["version"] = "v3"

    def signed_data_v2(sd: asn1_cms.SignedData) -> None:
        sd["version"] = "v2"

    def signer_last(sd: asn1_cms.SignedData) -> None:
        sd["certificates"] = list(reversed(list(sd["certificates"])))

    def digest_with_null(sd: asn1_cms.SignedData) -> None:
        sd["signer_infos"][0]["digest_algorithm"] = {"algorithm": "sha256", "parameters": None}

    variants = {
        "1999": signing_time(dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)),
        "2049": signing_time(dt.datetime(2049, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)),
        "generalized": signing_time(dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc), "generalized_time"),
        "no signing time": drop("signing_time"), "no ESS": drop("signing_certificate_v2"),
        "no content type": drop("content_type"), "no digest": drop("message_digest"),
        "two digests": duplicate("message_digest"), "no issuer serial": ess(no_issuer_serial),
        "other serial": ess(other_serial), "key identifier": by_key_identifier,
        "unsigned attributes": with_unsigned_attributes, "v3": signed_data_v3, "v2": signed_data_v2,
        "signer last": signer_last, "digest NULL": digest_with_null, "signer v3 by issuer": signer_version("v3"),
    }
    read = {name: assert_agrees(rebuild(der, change)) is not None for name, change in variants.items()}
    assert general(rebuild(der, variants["two digests"])) == "malformed"  # RFC 5652 §11.2: one messageDigest
    assert read == {**{name: True for name in variants}, "generalized": False, "no content type": False,
                    "no digest": False, "two digests": False, "v2": False,
                    "signer v3 by issuer": False}


# Damaged certificates may carry a serial that is not positive, which cryptography warns about.
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_thousands_of_damaged_signatures_agree(platform: Platform) -> None:
    """Bit flips, changed, inserted and deleted bytes, truncations: the lean reader never
    accepts what the general parser refuses, nor reads anything differently."""
    der = sign(hsm_signer(platform))
    rng = random.Random(20261204)
    damaged = [der[:cut] for cut in range(0, len(der), 3)] + [der + b"\0"]
    for _ in range(4000):
        data = bytearray(der)
        for _ in range(rng.choice((1, 1, 2, 3))):
            at = rng.randrange(len(data))
            how = rng.randrange(4)
            if how == 0:
                data[at] ^= 1 << rng.randrange(8)
            elif how == 1:
                data[at] = rng.randrange(256)
            elif how == 2:
                data.insert(at, rng.randrange(256))
            else:
                del data[at]
        damaged.append(bytes(data))
    read = sum(assert_agrees(data) is not None for data in damaged)
    assert read > 100  # flips inside the signature or a certificate's unsigned parts still read
    digest = hashlib.sha256(DOCUMENT).digest()
    assert parse_detached_cms(der).message_digest == digest
