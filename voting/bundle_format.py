"""The auditor bundle's file names, record shapes and writer (the format is described in
:mod:`voting.bundle`).

Pure: the service writes a bundle from the database (:func:`voting.bundle.write_bundle`), the
benchmark from memory, both through :class:`BundleWriter`; the offline verifier
(:mod:`voting.audit_verify`) reads the same names. Nothing here touches a database or an HSM:
the writer is handed a ``seal`` function for the manifest.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO
from zipfile import ZIP_DEFLATED, ZipFile

import rfc8785

from voting.log_records import log_time

FORMAT = "cloudseal.audit-bundle/1"
MANIFEST_SEAL_TYPE = "cloudseal.manifest-seal/1"
MANIFEST = "manifest.json"
MANIFEST_SEAL = "manifest.sig"
REGISTER = "register.jsonl"
BALLOTS = "ballots.jsonl"
REVOCATIONS = "revocations.jsonl"
OCSP_RESPONSES = "ocsp-responses.jsonl"
TREE_HEADS = "tree-heads.jsonl"
ROOM = "room.json"
TALLY = "tally.json"
ROOT_PEM = "certificates/root.pem"
ISSUING_PEM = "certificates/issuing-ca.pem"
OCSP_SIGNERS_PEM = "certificates/ocsp-signers.pem"
SEALS_PEM = "certificates/seals.pem"
INVESTORS_PEM = "certificates/investors.pem"
CRL_DIRECTORY = "crls/"
BALLOT_STATUSES = ("counted", "superseded", "revoked", "overridden_by_proxy")
# Compressed fast: a bundle of a million ballots is written while a host waits for it.
_COMPRESS_LEVEL = 1
_FLUSH_BYTES = 1 << 16

Seal = Callable[[bytes], tuple[bytes, str]]


def b64(data: bytes) -> str:
    """Standard base64 with padding, as every binary field of the bundle is written."""
    return base64.b64encode(data).decode("ascii")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def crl_name(ca_name: str, crl_number: int) -> str:
    """The member holding one CRL (DER), e.g. ``crls/issuing-12.crl``."""
    return f"{CRL_DIRECTORY}{ca_name}-{crl_number}.crl"


def holder_record(holder_no: str, shares: int, non_voting_shares: int, nominee: bool,
                  investor: str | None = None) -> dict[str, Any]:
    """One line of ``register.jsonl`` (share counts as decimal strings: they may exceed 2**53).

    ``investor`` is the investor reference (the subject serialNumber of their certificates)
    the platform matched to the holder through the keyed identity hash, or None when no
    enrolled investor has the holder's identity: a verifier checks each signer against it."""
    return {"holder": holder_no, "shares": str(shares), "non_voting_shares": str(non_voting_shares),
            "nominee": bool(nominee), "investor": investor}


def ballot_record(*, leaf_index: int, holder_no: str, received_at: dt.datetime, status: str, payload: bytes,
                  cms: bytes, ocsp_sha256: str | None, voided_items: Mapping[str, str] | None = None
                  ) -> dict[str, Any]:
    """One line of ``ballots.jsonl``."""
    return {"leaf_index": leaf_index, "holder": holder_no, "received_at": log_time(received_at), "status": status,
            "payload": b64(payload), "cms": b64(cms), "ocsp_sha256": ocsp_sha256,
            "voided_items": dict(voided_items or {})}


def revocation_record(*, leaf_index: int | None, holder_no: str, received_at: dt.datetime, payload: bytes,
                      cms: bytes, revoked: list[str], ocsp_sha256: str | None) -> dict[str, Any]:
    """One line of ``revocations.jsonl``; ``revoked`` lists the revoked ballots' SHA-256, in log order."""
    return {"leaf_index": leaf_index, "holder": holder_no, "received_at": log_time(received_at),
            "payload": b64(payload), "cms": b64(cms), "revoked": list(revoked), "ocsp_sha256": ocsp_sha256}


def tree_head_record(*, tree_size: int, root_hash: bytes, issued_at: dt.datetime, signature: bytes,
                     seal_serial: str) -> dict[str, Any]:
    """One line of ``tree-heads.jsonl``."""
    return {"tree_size": tree_size, "root_hash": b64(root_hash), "issued_at": log_time(issued_at),
            "signature": b64(signature), "seal_serial": seal_serial}


def _line(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode() + b"\n"


class _Member:
    """A member being written: hashed and counted as it goes."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._sha256 = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self.size = 0
        self.lines = 0

    def write(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= _FLUSH_BYTES:
            self.flush()

    def record(self, record: Mapping[str, Any]) -> None:
        """Append one JSON Lines record."""
        self.write(_line(record))
        self.lines += 1

    def flush(self) -> None:
        data = b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        self._sha256.update(data)
        self.size += len(data)
        self._stream.write(data)

    @property
    def digest(self) -> str:
        return self._sha256.hexdigest()


class BundleWriter:
    """Writes one bundle: members first, then the manifest (their hashes) and its seal.

    ``out`` is a path or a binary stream (it may be unseekable: an HTTP response). Use
    :meth:`lines` for JSON Lines members, :meth:`add` for whole files, :meth:`add_ocsp` to
    collect an OCSP response once (``ocsp-responses.jsonl`` is written by :meth:`finish`).
    """

    def __init__(self, out: BinaryIO | str | Path) -> None:
        self._zip = ZipFile(out, "w", compression=ZIP_DEFLATED, allowZip64=True, compresslevel=_COMPRESS_LEVEL)
        self._files: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        # OCSP responses wait in a temporary file until finish(): one per signer, they would
        # otherwise hold a kilobyte or two of memory per voter. Only where each lies is kept.
        self._ocsp_spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by finish or abort)
        self._ocsp: dict[str, tuple[int, int]] = {}
        self._closed = False

    @contextmanager
    def lines(self, name: str) -> Iterator[_Member]:
        """A JSON Lines member, streamed: ``with writer.lines(BALLOTS) as out: out.record({...})``."""
        with self._zip.open(name, "w", force_zip64=True) as stream:
            member = _Member(stream)
            yield member
            member.flush()
        self._files[name] = {"sha256": member.digest, "bytes": member.size}
        self._counts[name] = member.lines

    def add(self, name: str, data: bytes) -> None:
        """A whole member."""
        self._zip.writestr(name, data)
        self._files[name] = {"sha256": sha256_hex(data), "bytes": len(data)}

    def add_json(self, name: str, value: object) -> None:
        """A JSON member (compact, keys sorted)."""
        self.add(name, json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode())

    def add_ocsp(self, der: bytes | None) -> str | None:
        """Keep an OCSP response for ``ocsp-responses.jsonl``; its SHA-256 (None for None)."""
        if der is None:
            return None
        digest = sha256_hex(der)
        if digest not in self._ocsp:
            self._ocsp[digest] = (self._ocsp_spool.seek(0, io.SEEK_END), len(der))
            self._ocsp_spool.write(der)
        return digest

    def finish(self, manifest: Mapping[str, Any], seal: Seal, sealed_at: dt.datetime) -> dict[str, Any]:
        """Write the OCSP responses, the manifest (``manifest`` plus format, counts, file
        hashes and ``sealed_at``) and the platform seal's signature over the manifest's bytes;
        close the archive and return the manifest."""
        with self.lines(OCSP_RESPONSES) as out:
            for digest in sorted(self._ocsp):
                offset, size = self._ocsp[digest]
                self._ocsp_spool.seek(offset)
                out.record({"sha256": digest, "der": b64(self._ocsp_spool.read(size))})
        self._ocsp_spool.close()
        document = {**manifest, "format": FORMAT, "sealed_at": log_time(sealed_at),
                    "counts": {**dict(manifest.get("counts", {})), "lines": dict(sorted(self._counts.items()))},
                    "files": dict(sorted(self._files.items()))}
        data = rfc8785.dumps(document)
        signature, serial = seal(data)
        self._zip.writestr(MANIFEST, data)
        self._zip.writestr(MANIFEST_SEAL, rfc8785.dumps(
            {"type": MANIFEST_SEAL_TYPE, "seal_serial": serial, "signature": b64(signature)}))
        self._zip.close()
        self._closed = True
        return document

    def abort(self) -> None:
        """Close the archive without a manifest (a bundle that failed half-way verifies as broken)."""
        self._ocsp_spool.close()
        if not self._closed:
            self._zip.close()
            self._closed = True
