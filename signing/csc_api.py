"""The Cloud Signature Consortium API v1 (1.0.4.0) under ``/csc/v1/``.

Field names, base64 encodings, OIDs and the error format (``{"error", "error_description"}``)
follow the specification, so existing CSC clients sign with an investor's credential
unchanged. Sole control: ``credentials/authorize`` needs the credential PIN plus the
enrolled device's signature over a fresh challenge and the hashes, passed in ``clientData``
as ``{"challenge_id": …, "device_signature": …}`` (challenges from ``/ra/app/challenges``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Coroutine
from typing import Any

from asn1crypto import algos as asn1_algos
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import Session

from ca.models import IssuedCertificate
from core.auth import Actor, Role, verify_token
from core.db import committing_refusals, utcnow
from core.errors import AppError, Unauthorized
from core.web import ReadSessionDep, SessionDep, request_sessions
from hsm_sim.base import DigestAlgorithm, KeyAlgorithm, Mechanism
from ra import credentials as ra_credentials
from ra.models import Credential, Investor
from signing import service

CSC_VERSION = "1.0.4.0"
TOKEN_TTL = dt.timedelta(minutes=15)


class CscRoute(APIRoute):
    """Answers errors in the CSC format instead of the platform's envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def csc_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
                return _csc_error("invalid_request", f"{where}: {first.get('msg', 'invalid')}".strip(": "), 400)
            except AppError as exc:
                code = _CSC_CODES.get(exc.code, "invalid_request")
                return _csc_error(code, exc.message, 401 if code == "invalid_token" else 400)

        return csc_handler


# Our stable codes → the CSC error codes clients branch on.
_CSC_CODES = {
    "missing_token": "invalid_token", "invalid_token": "invalid_token", "token_expired": "invalid_token",
    "wrong_pin": "invalid_pin", "pin_locked": "access_denied", "bad_device_proof": "invalid_otp",
    "invalid_challenge": "invalid_otp", "invalid_otp": "invalid_otp", "invalid_sad": "invalid_request", "unknown_credential": "invalid_request",
    "credential_suspended": "invalid_request", "credential_not_active": "invalid_request",
}


def _csc_error(code: str, description: str, status: int) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status)


csc_router = APIRouter(prefix="/csc/v1", tags=["csc"], route_class=CscRoute)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class InfoIn(_Body):
    lang: str | None = None


class LoginIn(_Body):
    rememberMe: bool = False  # noqa: N815 - CSC field name


class ListIn(_Body):
    userID: str | None = Field(default=None, max_length=64)  # noqa: N815
    maxResults: int = Field(default=10, ge=1, le=100)  # noqa: N815


class InfoCredentialIn(_Body):
    credentialID: str = Field(pattern=r"^[0-9a-f]{1,64}$")  # noqa: N815
    certificates: str = Field(default="single", pattern="^(none|single|chain)$")
    certInfo: bool = False  # noqa: N815
    authInfo: bool = False  # noqa: N815


class AuthorizeIn(_Body):
    credentialID: str = Field(pattern=r"^[0-9a-f]{1,64}$")  # noqa: N815
    numSignatures: int = Field(ge=1, le=service.MAX_HASHES)  # noqa: N815
    hash: list[str] = Field(min_length=1, max_length=service.MAX_HASHES)
    PIN: str | None = Field(default=None, max_length=32, repr=False)
    OTP: str | None = Field(default=None, max_length=16, repr=False)
    hashAlgo: str = Field(default="2.16.840.1.101.3.4.2.1", max_length=64)  # noqa: N815
    description: str | None = Field(default=None, max_length=500)
    clientData: str | None = Field(default=None, max_length=2048)  # noqa: N815


class SignHashIn(_Body):
    credentialID: str = Field(pattern=r"^[0-9a-f]{1,64}$")  # noqa: N815
    SAD: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$", repr=False)
    hash: list[str] = Field(min_length=1, max_length=service.MAX_HASHES)
    hashAlgo: str = Field(max_length=64)  # noqa: N815
    signAlgo: str = Field(max_length=64)  # noqa: N815
    signAlgoParams: str | None = Field(default=None, max_length=512)  # noqa: N815
    clientData: str | None = Field(default=None, max_length=2048)  # noqa: N815


def _b64_digests(values: list[str]) -> list[bytes]:
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except (binascii.Error, ValueError) as exc:
        raise AppError("hash must be base64", code="invalid_request") from exc


def _hash_name(oid: str) -> str:
    name = service.HASH_OIDS.get(oid)
    if name is None:
        raise AppError(f"unsupported hashAlgo {oid}", code="invalid_request")
    return name


def _sign_mechanism(credential: service.SigningCredential, hash_name: str, sign_algo: str, params_b64: str | None) -> Mechanism:
    """The HSM mechanism a CSC ``signAlgo`` (and ``signAlgoParams``) asks of this key.

    EC keys: ``ecdsa-with-SHA*`` matching ``hashAlgo``, or ``ecPublicKey``. RSA keys:
    ``rsaEncryption`` or ``sha*WithRSAEncryption`` matching ``hashAlgo`` for PKCS#1 v1.5, and
    ``id-RSASSA-PSS`` whose parameters, when sent, must be what the HSM signs: the hash of
    ``hashAlgo``, MGF1 with that hash, a salt as long as the digest, trailer field 1.
    """
    if KeyAlgorithm(credential.key_algorithm).is_ec:
        if sign_algo in (service.ECDSA_WITH[hash_name], service.EC_PUBLIC_KEY):
            return Mechanism.ECDSA
    elif sign_algo in (service.RSA_WITH[hash_name], service.RSA_ENCRYPTION):
        return Mechanism.RSA_PKCS1V15
    elif sign_algo == service.RSASSA_PSS:
        if params_b64 is not None:
            _check_pss_params(params_b64, hash_name)
        return Mechanism.RSA_PSS
    raise AppError(f"signAlgo {sign_algo} with hashAlgo {hash_name} is not available for this key",
                   code="invalid_request")


def _check_pss_params(params_b64: str, hash_name: str) -> None:
    try:
        params = asn1_algos.RSASSAPSSParams.load(base64.b64decode(params_b64, validate=True), strict=True)
        hash_algorithm = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        mgf_hash = mgf["parameters"]["algorithm"].native
        salt_length, trailer = params["salt_length"].native, params["trailer_field"].native
        mgf_name = mgf["algorithm"].native
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise AppError("signAlgoParams is not DER RSASSA-PSS-params", code="invalid_request") from exc
    size = DigestAlgorithm(hash_name).size
    if (hash_algorithm, mgf_name, mgf_hash, salt_length, trailer) != (hash_name, "mgf1", hash_name, size,
                                                                       "trailer_field_bc"):
        raise AppError(f"RSASSA-PSS here is {hash_name} with MGF1-{hash_name}, a {size}-byte salt and trailer 1",
                       code="invalid_request")


def _investor(request: Request) -> Actor:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise Unauthorized("a bearer access token is required", code="missing_token")
    settings = request.app.state.settings
    actor = verify_token(header[7:], public_key=request.app.state.jwt_public_key,
                         issuer=settings.public_base + "/auth", audience=settings.jwt_audience)
    if actor.role is not Role.INVESTOR:
        raise Unauthorized("this API is for credential holders", code="invalid_token")
    return actor


def _own_credential(reader: Session, actor: Actor, credential_id: str) -> service.SigningCredential:
    credential = service.load_signing_credential(reader, credential_id)
    if credential.investor_reference != actor.subject:
        raise AppError("unknown credentialID", code="unknown_credential", status_code=400)
    return credential


@csc_router.post("/info", summary="Service information (CSC)")
def info(body: InfoIn | None = None) -> dict[str, Any]:
    return {
        "specs": CSC_VERSION, "name": "cloudseal", "logo": "", "region": "TW", "lang": "en-US",
        "description": "Remote signing with cloud-held investor keys",
        "authType": ["basic"],
        "methods": ["auth/login", "credentials/list", "credentials/info", "credentials/authorize",
                    "signatures/signHash"],
    }


@csc_router.post("/auth/login", summary="Access token from HTTP Basic: investor reference and PIN (CSC)")
def login(request: Request, session: SessionDep, body: LoginIn | None = None) -> dict[str, Any]:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        raise Unauthorized("HTTP Basic authentication is required", code="invalid_token")
    try:
        reference, _, pin = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise Unauthorized("HTTP Basic authentication is required", code="invalid_token") from exc
    if not reference.isprintable() or not pin.isdigit():
        raise Unauthorized("unknown user or wrong PIN", code="wrong_pin")
    investor = session.execute(select(Investor).where(Investor.reference == reference)).scalar_one_or_none()
    current = None if investor is None else session.execute(
        select(Credential).where(Credential.investor_id == investor.id).where(Credential.current == 1)
    ).scalar_one_or_none()
    if investor is None or current is None:
        raise Unauthorized("unknown user or wrong PIN", code="wrong_pin")
    with committing_refusals(session):
        ra_credentials.verify_pin(session, request.app.state.pki, ra_credentials.get_credential(
            session, current.credential_id), pin)
    session.commit()
    token = request.app.state.mint_token(Actor(subject=investor.reference, role=Role.INVESTOR), TOKEN_TTL)
    return {"access_token": token, "expires_in": int(TOKEN_TTL.total_seconds())}


@csc_router.post("/credentials/list", summary="The caller's credentials (CSC)")
def credentials_list(request: Request, session: ReadSessionDep, body: ListIn | None = None) -> dict[str, Any]:
    actor = _investor(request)
    ids = session.execute(
        select(Credential.credential_id).join(Investor, Investor.id == Credential.investor_id)
        .where(Investor.reference == actor.subject).where(Credential.current == 1)
    ).scalars().all()
    return {"credentialIDs": list(ids)}


@csc_router.post("/credentials/info", summary="A credential's key, certificate and auth modes (CSC)")
def credentials_info(request: Request, body: InfoCredentialIn, session: ReadSessionDep) -> dict[str, Any]:
    actor = _investor(request)
    credential = _own_credential(session, actor, body.credentialID)
    row = session.execute(select(IssuedCertificate).where(
        IssuedCertificate.serial_hex == credential.certificate_serial)).scalar_one()
    leaf = x509.load_der_x509_certificate(row.der)
    pki = request.app.state.pki
    chain = [leaf] + ([pki.ca_certificate(pki.load_ca(session, n)) for n in ("issuing", "root")]
                      if body.certificates == "chain" else [])
    status = {"good": "valid", "on_hold": "suspended", "revoked": "revoked"}.get(row.status, "valid")
    if row.not_after <= utcnow():
        status = "expired"
    cert: dict[str, Any] = {"status": status}
    if body.certificates != "none":
        cert["certificates"] = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in chain]
    if body.certInfo:
        cert.update(issuerDN=leaf.issuer.rfc4514_string(), serialNumber=format(leaf.serial_number, "x"),
                    subjectDN=leaf.subject.rfc4514_string(),
                    validFrom=leaf.not_valid_before_utc.strftime("%Y%m%d%H%M%SZ"),
                    validTo=leaf.not_valid_after_utc.strftime("%Y%m%d%H%M%SZ"))
    result: dict[str, Any] = {
        "description": "cloudseal investor signing credential",
        "key": _key_info(credential, leaf),
        "cert": cert, "authMode": "explicit", "SCAL": "2", "multisign": service.MAX_HASHES, "lang": "en-US",
    }
    if body.authInfo:
        result["PIN"] = {"presence": "true", "format": "N", "label": "PIN",
                         "description": "The 6 to 12 digit PIN set in the cloudseal app"}
        result["OTP"] = {"presence": "true", "type": "online", "ID": "cloudseal-device", "provider": "cloudseal",
                         "format": "A", "label": "Device proof",
                         "description": "clientData {challenge_id, device_signature} from the enrolled device"}
    return result


def _key_info(credential: service.SigningCredential, leaf: x509.Certificate) -> dict[str, Any]:
    """CSC ``key``: status, the signature algorithm OIDs the key signs with, its length."""
    key: dict[str, Any] = {"status": "enabled" if credential.status == "active" else "disabled"}
    if KeyAlgorithm(credential.key_algorithm).is_ec:
        key.update(algo=[service.ECDSA_WITH[h] for h in _HASHES] + [service.EC_PUBLIC_KEY],
                   len=leaf.public_key().key_size, curve="1.2.840.10045.3.1.7")
    else:
        key.update(algo=[service.RSA_WITH[h] for h in _HASHES] + [service.RSA_ENCRYPTION, service.RSASSA_PSS],
                   len=leaf.public_key().key_size)
    return key


_HASHES = ("sha256", "sha384", "sha512")


@csc_router.post("/credentials/authorize", summary="SAD for these hashes: PIN + device proof (CSC)")
def credentials_authorize(request: Request, body: AuthorizeIn) -> dict[str, Any]:
    actor = _investor(request)
    with request_sessions(request) as (session, reader):
        return _authorize(request, body, actor, session, reader)


def _authorize(request: Request, body: AuthorizeIn, actor: Actor, session: Session, reader: Session) -> dict[str, Any]:
    credential = _own_credential(reader, actor, body.credentialID)
    digests = _b64_digests(body.hash)
    if body.numSignatures != len(digests):
        raise AppError("numSignatures must equal the number of hashes (SCAL 2)", code="invalid_request")
    challenge_id = device_signature = None
    if body.OTP is None:
        try:
            proof = json.loads(body.clientData or "{}")
            challenge_id, device_signature = str(proof["challenge_id"]), str(proof["device_signature"])
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise AppError("send an OTP, or clientData with challenge_id and device_signature",
                           code="invalid_request") from exc
    if body.PIN is None:
        raise AppError("the PIN is required", code="invalid_request")
    with committing_refusals(session):
        sad, expires = service.authorize(
            session, request.app.state.pki, credential_id=credential.credential_id, pin=body.PIN,
            challenge_id=challenge_id, device_signature=device_signature, otp=body.OTP,
            hash_algorithm=_hash_name(body.hashAlgo), digests=digests, client=f"csc:{actor.subject}",
            purpose="csc", reader=reader, loaded=credential)
    return {"SAD": sad, "expiresIn": int((expires - utcnow()).total_seconds())}


@csc_router.post("/signatures/signHash", summary="Sign authorised hashes (CSC)")
def signatures_sign_hash(request: Request, body: SignHashIn) -> dict[str, Any]:
    actor = _investor(request)
    with request_sessions(request) as (session, reader):
        credential = _own_credential(reader, actor, body.credentialID)
        hash_name = _hash_name(body.hashAlgo)
        mechanism = _sign_mechanism(credential, hash_name, body.signAlgo, body.signAlgoParams)
        signed = service.sign_hash(session, request.app.state.pki.keystore, sad=body.SAD,
                                   credential_id=credential.credential_id, hash_algorithm=hash_name,
                                   digests=_b64_digests(body.hash), client=f"csc:{actor.subject}",
                                   mechanism=mechanism, reader=reader, loaded=credential)
    return {"signatures": [base64.b64encode(s.signature).decode() for s in signed]}
