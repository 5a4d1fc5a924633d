"""What the offline auditor trusts in a bundle: only what chains to the root it was given.

:class:`TrustStore` starts from that root and admits the bundle's certificates one by one:
an issuing CA the root issued, OCSP signers and platform seals an admitted CA issued (with
the right key usage), CRLs an admitted CA signed. Anything else in the bundle is data to be
checked against them, never a source of trust.

It also reads the OCSP responses kept as evidence at each receipt: a response counts when
the issuing CA or an OCSP signer it certified (valid and unrevoked when it produced the
response) signed it, it is about the signer's certificate, and it covers the receipt
(``thisUpdate <= received_at + 5 min`` and ``received_at < nextUpdate``). Answers are cached
by response digest, so a bundle of many ballots by few signers reads each response once.
:class:`BundleRevocation` offers the same answers as a :class:`signing.status.RevocationSource`
for :class:`signing.verifier.Verifier`; :mod:`voting.audit_checks` uses them per submission.

Pure: cryptography and the standard library.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from signing.cms import issued_by
from signing.status import CLOCK_SKEW, GOOD, ON_HOLD, REVOKED, UNKNOWN, CertificateStatus, signature_valid

# Certificate policy suffixes under the operator's policy arc (``ca.profiles``; a test keeps them equal).
INVESTOR_POLICY_SUFFIX, PLATFORM_POLICY_SUFFIX = "1", "2"

_OCSP_SOURCE, _CRL_SOURCE = "bundle_ocsp", "bundle_crl"


class TrustError(Exception):
    """A certificate or CRL of the bundle that does not chain to the given root."""


def describe(certificate: x509.Certificate) -> str:
    """A certificate as a person identifies it: subject and serial."""
    return f"{certificate.subject.rfc4514_string()} (serial {certificate.serial_number:x})"


def fingerprint(certificate: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER."""
    return certificate.fingerprint(hashes.SHA256())


def _extension(certificate: x509.Certificate, kind: type) -> object | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(certificate: x509.Certificate) -> bool:
    constraints = _extension(certificate, x509.BasicConstraints)
    usage = _extension(certificate, x509.KeyUsage)
    return bool(constraints and constraints.ca) and (usage is None or usage.key_cert_sign)  # type: ignore[attr-defined]


def _policies(certificate: x509.Certificate) -> set[str]:
    policies = _extension(certificate, x509.CertificatePolicies)
    return {p.policy_identifier.dotted_string for p in policies or []}  # type: ignore[attr-defined]


def may_sign(certificate: x509.Certificate) -> bool:
    constraints = _extension(certificate, x509.BasicConstraints)
    if constraints is not None and constraints.ca:  # type: ignore[attr-defined]
        return False
    usage = _extension(certificate, x509.KeyUsage)
    return usage is None or bool(usage.digital_signature or usage.content_commitment)  # type: ignore[attr-defined]


def _key_bits(certificate: x509.Certificate) -> bytes:
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return key.public_bytes(Encoding.DER, PublicFormat.PKCS1)  # type: ignore[union-attr]


def valid_at(certificate: x509.Certificate, when: dt.datetime) -> bool:
    return certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc


@dataclass(frozen=True)
class Revoked:
    """A CRL entry: when and why a certificate was revoked (or put on hold)."""

    at: dt.datetime
    reason: str

    @property
    def status(self) -> str:
        return ON_HOLD if self.reason == "certificateHold" else REVOKED


@dataclass(frozen=True)
class _Answer:
    """An authenticated OCSP answer about one certificate."""

    status: str
    this_update: dt.datetime
    next_update: dt.datetime | None
    revocation_time: dt.datetime | None
    reason: str | None


@dataclass(frozen=True)
class TrustState:
    """The DER of everything a :class:`TrustStore` admitted: what worker processes rebuild it from."""

    root: bytes
    issuing: tuple[bytes, ...]
    ocsp_signers: tuple[bytes, ...]
    seals: tuple[bytes, ...]
    crls: tuple[bytes, ...]


class TrustStore:
    """The given root and what the bundle proves chains to it (see the module docstring).

    Raises :class:`TrustError`, naming the certificate or CRL, for anything that does not.
    """

    def __init__(self, root: x509.Certificate, *, issuing: Sequence[x509.Certificate],
                 ocsp_signers: Sequence[x509.Certificate] = (), seals: Sequence[x509.Certificate] = (),
                 crls: Sequence[x509.CertificateRevocationList] = (), bundle_root: x509.Certificate | None = None,
                 crl_names: Sequence[str] | None = None) -> None:
        self.root = root
        self.issuing: list[x509.Certificate] = []
        for certificate in issuing:
            if certificate == root:
                continue
            if not issued_by(certificate, root) or not _is_ca(certificate):
                hint = ""
                if bundle_root is not None and fingerprint(bundle_root) != fingerprint(root):
                    hint = (f"; the bundle was made under the root {describe(bundle_root)}, "
                            f"SHA-256 {fingerprint(bundle_root).hex()}")
                raise TrustError(f"the issuing CA {describe(certificate)} does not chain to the given root "
                                 f"{describe(root)}, SHA-256 {fingerprint(root).hex()}{hint}")
            self.issuing.append(certificate)
        if not self.issuing:
            raise TrustError("the bundle holds no issuing CA certificate")
        self.cas = [root, *self.issuing]
        self.ocsp_signers = {fingerprint(c): c for c in ocsp_signers}
        for certificate in ocsp_signers:
            self._admit(certificate, "OCSP signer", self._is_responder)
        self.seals: dict[str, x509.Certificate] = {}
        seal_issuers: dict[str, x509.Certificate] = {}
        for certificate in seals:
            serial = format(certificate.serial_number, "x")
            seal_issuers[serial] = self._admit(certificate, "platform seal", self._is_platform_seal)
            self.seals[serial] = certificate
        self._crl_der = tuple(crl.public_bytes(Encoding.DER) for crl in crls)
        self.revoked: dict[tuple[bytes, int], Revoked] = {}
        self.crl_count: dict[bytes, int] = {}
        for crl, name in zip(crls, crl_names or [f"CRL {n + 1}" for n in range(len(crls))]):
            self._index_crl(crl, name)
        # Per seal: its key and when a CRL says it was revoked (tree heads are checked by the 100,000).
        self._seal_state = {serial: (seal.public_key(), self.revoked_entry(seal, seal_issuers[serial]))
                            for serial, seal in self.seals.items()}
        self._answers: dict[tuple[bytes, int, bytes], _Answer | str] = {}
        self._responders: dict[tuple[bytes, bytes], str | None] = {}
        self._hashes: dict[tuple[bytes, str], tuple[bytes, bytes]] = {}

    # Admission ---------------------------------------------------------------------------
    def _issuer_of(self, certificate: x509.Certificate) -> x509.Certificate | None:
        return next((ca for ca in self.issuing if issued_by(certificate, ca)), None)

    def _is_platform_seal(self, certificate: x509.Certificate) -> bool:
        """A platform seal, not merely a certificate that may sign: the issuing CA also
        certifies every investor, whose HSM key signs any hash its holder asks for, so a seal
        must carry the platform policy (``{arc}.2``, under the one arc of its issuer's
        policies) and not the investor policy (``{arc}.1``), and have no extended key usage
        (the OCSP signer has one)."""
        issuer = self._issuer_of(certificate)
        arcs = {oid.rpartition(".")[0] for oid in _policies(issuer)} if issuer is not None else set()
        if len(arcs) != 1:
            return False
        arc = arcs.pop()
        policies = _policies(certificate)
        return (may_sign(certificate) and f"{arc}.{PLATFORM_POLICY_SUFFIX}" in policies
                and f"{arc}.{INVESTOR_POLICY_SUFFIX}" not in policies
                and _extension(certificate, x509.ExtendedKeyUsage) is None)

    @staticmethod
    def _is_responder(certificate: x509.Certificate) -> bool:
        usages = _extension(certificate, x509.ExtendedKeyUsage)
        return usages is not None and ExtendedKeyUsageOID.OCSP_SIGNING in usages  # type: ignore[operator]

    def _admit(self, certificate: x509.Certificate, role: str, fits: object) -> x509.Certificate:
        issuer = self._issuer_of(certificate)
        if issuer is None:
            raise TrustError(f"the {role} certificate {describe(certificate)} was not issued by an issuing CA "
                             f"that chains to the given root")
        if not fits(certificate):  # type: ignore[operator]
            raise TrustError(f"the {role} certificate {describe(certificate)} may not act as a {role}")
        return issuer

    def _index_crl(self, crl: x509.CertificateRevocationList, name: str) -> None:
        issuer = next((ca for ca in self.cas if ca.subject == crl.issuer), None)
        if issuer is None or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise TrustError(f"{name} was not signed by a CA that chains to the given root")
        key = fingerprint(issuer)
        self.crl_count[key] = self.crl_count.get(key, 0) + 1
        for entry in crl:
            reason = _extension_of_entry(entry)
            known = self.revoked.get((key, entry.serial_number))
            if known is None or entry.revocation_date_utc < known.at:
                self.revoked[(key, entry.serial_number)] = Revoked(entry.revocation_date_utc, reason)

    def state(self) -> TrustState:
        """What worker processes rebuild this store from (:meth:`from_state`)."""
        def der(certificates: Iterable[x509.Certificate]) -> tuple[bytes, ...]:
            return tuple(c.public_bytes(Encoding.DER) for c in certificates)
        return TrustState(self.root.public_bytes(Encoding.DER), der(self.issuing), der(self.ocsp_signers.values()),
                          der(self.seals.values()), self._crl_der)

    @classmethod
    def from_state(cls, state: TrustState) -> TrustStore:
        """The store :meth:`state` describes (admitted again: nothing is taken on faith)."""
        load = x509.load_der_x509_certificate
        return cls(load(state.root), issuing=[load(d) for d in state.issuing],
                   ocsp_signers=[load(d) for d in state.ocsp_signers], seals=[load(d) for d in state.seals],
                   crls=[x509.load_der_x509_crl(d) for d in state.crls])

    # Statuses ----------------------------------------------------------------------------
    def revoked_entry(self, certificate: x509.Certificate, issuer: x509.Certificate) -> Revoked | None:
        """The bundle's CRLs' entry for ``certificate`` (issued by ``issuer``), if any."""
        return self.revoked.get((fingerprint(issuer), certificate.serial_number))

    def crl_status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> CertificateStatus:
        """A certificate's status from the issuer's CRLs in the bundle (unknown without one)."""
        if not self.crl_count.get(fingerprint(issuer)):
            return CertificateStatus(UNKNOWN, source=_CRL_SOURCE,
                                     detail=f"the bundle holds no CRL of {describe(issuer)}")
        entry = self.revoked_entry(certificate, issuer)
        if entry is None:
            return CertificateStatus(GOOD, source=_CRL_SOURCE)
        return CertificateStatus(entry.status, entry.at, entry.reason, _CRL_SOURCE)

    def seal_problem(self, serial: str, at: dt.datetime) -> str | None:
        """Why the seal ``serial`` could not have sealed at ``at`` (None when it could)."""
        seal = self.seals.get(serial)
        if seal is None:
            return f"names the seal {serial}, which is not a platform seal certificate of the bundle"
        if not valid_at(seal, at):
            return f"was sealed at {at.isoformat()}, outside the validity of the seal {describe(seal)}"
        entry = self._seal_state[serial][1]
        if entry is not None and entry.at <= at:
            return f"was sealed after the seal {describe(seal)} was revoked ({entry.at.isoformat()})"
        return None

    def seal_verifies(self, serial: str, signature: bytes, data: bytes) -> bool:
        """Whether the seal ``serial`` made ``signature`` (ECDSA P-256, SHA-256) over ``data``."""
        state = self._seal_state.get(serial)
        return state is not None and signature_valid(state[0], signature, data, hashes.SHA256())

    def status_at_receipt(self, certificate: x509.Certificate, issuer: x509.Certificate, evidence: bytes | None,
                          received_at: dt.datetime) -> CertificateStatus:
        """``certificate``'s status at ``received_at`` by the OCSP response kept then (unknown,
        with the reason in ``detail``, when the response is missing, forged or not current)."""
        if evidence is None:
            return CertificateStatus(UNKNOWN, source=_OCSP_SOURCE, detail="is missing: the platform kept none")
        key = (hashlib.sha256(evidence).digest(), certificate.serial_number, fingerprint(issuer))
        answer = self._answers.get(key)
        if answer is None:
            answer = self._read_response(evidence, certificate, issuer)
            self._answers[key] = answer
        if isinstance(answer, str):
            return CertificateStatus(UNKNOWN, source=_OCSP_SOURCE, detail=answer)
        if answer.this_update > received_at + CLOCK_SKEW or answer.next_update is None \
                or received_at >= answer.next_update:
            window = f"{answer.this_update.isoformat()} to " + (
                answer.next_update.isoformat() if answer.next_update else "no nextUpdate")
            return CertificateStatus(UNKNOWN, source=_OCSP_SOURCE, detail=f"does not cover the receipt "
                                     f"({received_at.isoformat()}): it is valid from {window}")
        return CertificateStatus(answer.status, answer.revocation_time, answer.reason, _OCSP_SOURCE)

    def _issuer_hashes(self, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
        key = (fingerprint(issuer), algorithm.name)
        found = self._hashes.get(key)
        if found is None:
            name, bits = hashes.Hash(algorithm), hashes.Hash(algorithm)
            name.update(issuer.subject.public_bytes())
            bits.update(_key_bits(issuer))
            found = self._hashes[key] = (name.finalize(), bits.finalize())
        return found

    def _read_response(self, der: bytes, certificate: x509.Certificate, issuer: x509.Certificate) -> _Answer | str:
        """The authenticated answer about ``certificate`` in an OCSP response, or why there is none."""
        try:
            response = ocsp.load_der_ocsp_response(der)
            if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                return f"is not an answer (the responder said {response.response_status.name})"
            single = next((s for s in response.responses if s.serial_number == certificate.serial_number
                           and (s.issuer_name_hash, s.issuer_key_hash) == self._issuer_hashes(issuer, s.hash_algorithm)),
                          None)
            if single is None:
                return f"is about another certificate than {describe(certificate)}"
            problem = self._responder_problem(response, issuer)
            if problem is not None:
                return problem
            status = {ocsp.OCSPCertStatus.GOOD: GOOD, ocsp.OCSPCertStatus.REVOKED: REVOKED}.get(
                single.certificate_status, UNKNOWN)
            reason = single.revocation_reason.value if single.revocation_reason else None
            if status == REVOKED and single.revocation_reason is x509.ReasonFlags.certificate_hold:
                status = ON_HOLD
            elif status == REVOKED:
                reason = reason or "unspecified"
            return _Answer(status, single.this_update_utc, single.next_update_utc, single.revocation_time_utc, reason)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            return f"cannot be read ({type(exc).__name__})"

    def _responder_problem(self, response: ocsp.OCSPResponse, issuer: x509.Certificate) -> str | None:
        """None when the issuing CA signed, or an OCSP signer it certified, valid then."""
        candidates = [issuer, *response.certificates]
        if response.responder_key_hash is not None:
            responder = next((c for c in candidates if hashes_of_key(c) == response.responder_key_hash), None)
        else:
            responder = next((c for c in candidates if c.subject == response.responder_name), None)
        if responder is None:
            return "names a responder whose certificate it does not carry"
        key = (fingerprint(responder), fingerprint(issuer))
        if key not in self._responders:
            problem = None
            if responder != issuer and (not issued_by(responder, issuer) or not self._is_responder(responder)):
                problem = f"is signed by {describe(responder)}, not an OCSP signer the issuing CA certified"
            self._responders[key] = problem
        problem = self._responders[key]
        if problem is None and responder != issuer:
            produced = response.produced_at_utc
            entry = self.revoked_entry(responder, issuer)
            if not valid_at(responder, produced):
                problem = f"was produced ({produced.isoformat()}) outside its signer's validity"
            elif entry is not None and entry.at <= produced:
                problem = f"was produced after its signer {describe(responder)} was revoked"
        if problem is None and not signature_valid(responder.public_key(), response.signature,
                                                    response.tbs_response_bytes, response.signature_hash_algorithm):
            problem = "has a signature that does not verify"
        return problem


def hashes_of_key(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the certificate's public key bits (an OCSP ResponderID byKey)."""
    digest = hashes.Hash(hashes.SHA1())
    digest.update(_key_bits(certificate))
    return digest.finalize()


def _extension_of_entry(entry: x509.RevokedCertificate) -> str:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except x509.ExtensionNotFound:
        return "unspecified"


class BundleRevocation:
    """A :class:`signing.status.RevocationSource` answering offline from a bundle: end-entity
    certificates by the OCSP ``responses`` kept at the moment ``at`` (a submission's receipt),
    CA certificates by the bundle's CRLs. Never raises: what it cannot establish is unknown."""

    def __init__(self, trust: TrustStore, responses: Sequence[bytes], at: dt.datetime) -> None:
        self._trust, self._responses, self._at = trust, list(responses), at

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> CertificateStatus:
        """The status of ``certificate`` (issued by ``issuer``) as the bundle shows it at ``at``."""
        if _is_ca(certificate):
            return self._trust.crl_status(certificate, issuer)
        answer = CertificateStatus(UNKNOWN, source=_OCSP_SOURCE, detail="no OCSP response kept at receipt")
        for response in self._responses:
            answer = self._trust.status_at_receipt(certificate, issuer, response, self._at)
            if answer.status != UNKNOWN:
                return answer
        return answer
