"""PAdES sealing of report PDFs by the platform seal, whose key never leaves the HSM.

pyHanko builds the signature (PAdES baseline, ``ETSI.CAdES.detached``); only the raw ECDSA
over the signed attributes is made by the HSM, through :class:`HsmSealSigner`. The seal
certificate, the issuing CA and the root travel in the CMS, and the validation material the
signature needs years from now is written to the document security store (PAdES B-LT): a
fresh OCSP response for the seal (and for the issuing CA) and the newest CRLs of both CAs,
all from the platform's own stores, checked first by pyHanko's path validation with fetching
off. That material is known before signing, so the DSS is written in the signed revision
itself: the signature covers the whole file and ``pdfsig`` says "Total document signed".
With a timestamp authority configured (``CLOUDSEAL_TSA_URL``) the signature gets a signature
timestamp and the document a document timestamp in a later revision (PAdES B-LTA); the TSA's
certificate must chain to the platform root so its status is known offline too.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, Signer
from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError
from pyhanko_certvalidator.registry import SimpleCertificateStore
from sqlalchemy import select
from sqlmodel import Session

from ca import crl, ocsp
from ca.bootstrap import SEAL_OWNER, current_seal
from ca.context import Pki
from ca.models import CrlRecord, IssuedCertificate, OcspResponseRecord
from ca.service import serial_hex
from core.errors import Conflict
from hsm_sim.base import DigestAlgorithm, KeyStore, Mechanism

SIGNATURE_FIELD = "CloudsealSeal"


@dataclass(frozen=True)
class SealMaterial:
    """The seal's HSM key label, its certificate chain and the revocation data to embed."""

    key_label: str
    certificate: asn1_x509.Certificate
    issuing_ca: asn1_x509.Certificate
    root_ca: asn1_x509.Certificate
    ocsp_responses: tuple[bytes, ...]
    crls: tuple[bytes, ...]


class HsmSealSigner(Signer):
    """A pyHanko signer whose raw ECDSA signature is made by the HSM under the seal's owner
    (the seal key is EC, see ``cloudseal init``)."""

    def __init__(self, keystore: KeyStore, material: SealMaterial) -> None:
        super().__init__(
            signing_cert=material.certificate, embed_roots=True,
            cert_registry=SimpleCertificateStore.from_certs([material.issuing_ca, material.root_ca]))
        self._keystore, self._key_label = keystore, material.key_label
        # The longest DER ECDSA signature of the key's size: what a dry run reserves room for.
        field_bytes = (material.certificate.public_key.bit_size + 7) // 8
        self._placeholder = bytes(2 * field_bytes + 9)

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        """ECDSA with SHA-256 over ``data`` by the HSM (a placeholder of the largest size on a dry run)."""
        if digest_algorithm != "sha256":
            raise SigningError(f"the platform seal signs with SHA-256, not {digest_algorithm}")
        if dry_run:
            return self._placeholder
        digest = hashlib.sha256(data).digest()
        return self._keystore.sign(self._key_label, SEAL_OWNER, digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)


def _fresh(pki: Pki, record: OcspResponseRecord | CrlRecord | None) -> bool:
    """Whether a stored OCSP response or CRL is in the first half of its validity (as served)."""
    return record is not None and pki.clock() < record.this_update + (record.next_update - record.this_update) / 2


def _ocsp_response(session: Session, pki: Pki, certificate: IssuedCertificate) -> bytes:
    """The stored SHA-256 CertID response about ``certificate``, re-signed first when ageing."""
    def stored() -> OcspResponseRecord | None:
        return session.execute(
            select(OcspResponseRecord).where(OcspResponseRecord.ca_name == certificate.ca_name)
            .where(OcspResponseRecord.serial_hex == certificate.serial_hex)
            .where(OcspResponseRecord.hash_algorithm == "sha256")).scalar_one_or_none()

    record = stored()
    if not _fresh(pki, record):
        ocsp.publish_status(session, pki, certificate)
        record = stored()
    if record is None:
        raise Conflict("no OCSP responder can vouch for the seal right now", code="seal_status_unavailable")
    return record.der


def _newest_crl(session: Session, pki: Pki, ca_name: str) -> bytes:
    """The CA's newest CRL, re-issued first when past half its validity (as the refresh does)."""
    record = crl.current_crl(session, ca_name)
    if not _fresh(pki, record):
        record = crl.publish_crl(session, pki, ca_name)
    assert record is not None
    return record.der


def seal_material(session: Session, pki: Pki) -> SealMaterial:
    """The current seal, its chain and fresh revocation data; 409 ``seal_missing`` without a seal."""
    seal = current_seal(session, pki)
    if seal is None or seal.key_label is None:
        raise Conflict("the platform has no valid seal certificate: run cloudseal init", code="seal_missing")
    issuing = pki.ca_certificate(pki.load_ca(session, "issuing"))
    root = pki.ca_certificate(pki.load_ca(session, "root"))
    issuing_row = session.execute(select(IssuedCertificate).where(
        IssuedCertificate.serial_hex == serial_hex(issuing.serial_number))).scalar_one()
    return SealMaterial(
        key_label=seal.key_label,
        certificate=asn1_x509.Certificate.load(seal.der),
        issuing_ca=asn1_x509.Certificate.load(issuing.public_bytes(Encoding.DER)),
        root_ca=asn1_x509.Certificate.load(root.public_bytes(Encoding.DER)),
        ocsp_responses=(_ocsp_response(session, pki, seal), _ocsp_response(session, pki, issuing_row)),
        crls=(_newest_crl(session, pki, "issuing"), _newest_crl(session, pki, "root")),
    )


def validation_context(material: SealMaterial) -> ValidationContext:
    """Trust the platform root only; revocation data from ``material``, nothing fetched, and
    every certificate below the root must have its status in it ("require")."""
    return ValidationContext(
        trust_roots=[material.root_ca], other_certs=[material.issuing_ca], crls=list(material.crls),
        ocsps=list(material.ocsp_responses), allow_fetching=False, revocation_mode="require")


def seal_pdf(session: Session, pki: Pki, pdf: bytes, *, reason: str) -> bytes:
    """``pdf`` with the platform seal's PAdES signature (B-LT; B-LTA with a configured TSA).

    409 ``report_not_sealed`` when pyHanko refuses (e.g. the TSA cannot be reached or its
    certificate is not trusted): freezing is then refused and can be retried.
    """
    material = seal_material(session, pki)
    timestamper = HTTPTimeStamper(pki.tsa_url) if pki.tsa_url else None
    context = validation_context(material)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    try:
        if timestamper is None:
            _check_seal_path(material, context)
            DocumentSecurityStore.supply_dss_in_writer(
                writer, None, certs=[material.certificate, material.issuing_ca, material.root_ca],
                ocsps=[asn1_ocsp.OCSPResponse.load(der) for der in material.ocsp_responses],
                crls=[asn1_crl.CertificateList.load(der) for der in material.crls])
        # With a TSA, pyHanko adds the DSS itself (it must also hold the TSA's validation data).
        metadata = PdfSignatureMetadata(
            field_name=SIGNATURE_FIELD, md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES,
            reason=reason, location="Taiwan", embed_validation_info=timestamper is not None,
            validation_context=context, use_pades_lta=timestamper is not None, signer_key_usage={"non_repudiation"})
        signer = PdfSigner(metadata, HsmSealSigner(pki.keystore, material), timestamper=timestamper)
        signed = signer.sign_pdf(writer)
    except (SigningError, TimestampRequestError, PathBuildingError, PathValidationError) as exc:
        raise Conflict(f"the report could not be sealed: {exc}", code="report_not_sealed") from exc
    return signed.getvalue()


def _check_seal_path(material: SealMaterial, context: ValidationContext) -> None:
    """Validate the seal's path to the root with the material about to be embedded (every
    status required), as pyHanko does before an embedding signature; raises its errors."""
    validator = CertificateValidator(material.certificate, validation_context=context)
    asyncio.run(validator.async_validate_usage({"non_repudiation"}))

