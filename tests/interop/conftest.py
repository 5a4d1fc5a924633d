"""Interop fixtures: PKI material written to files for tools nobody here wrote."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from ca import crl
from ca.models import CertificateAuthority, IssuedCertificate
from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.db import session_scope
from tests.support.servers import LiveServer


@dataclass
class PkiFiles:
    """PEM files of the hierarchy in a temporary directory."""

    dir: Path
    root: Path
    issuing: Path
    chain: Path

    def write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path


def require_tool(name: str) -> str:
    """The path of an outside tool: the venv's own scripts first (pkilint), then PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture
def pki_files(platform: Platform, tmp_path: Path) -> PkiFiles:
    with session_scope(platform.engine) as session:
        certs = {n: platform.pki.ca_certificate(session.get(CertificateAuthority, n)) for n in ("root", "issuing")}
    files = PkiFiles(dir=tmp_path, root=tmp_path / "root.pem", issuing=tmp_path / "issuing.pem",
                     chain=tmp_path / "chain.pem")
    files.root.write_bytes(certs["root"].public_bytes(Encoding.PEM))
    files.issuing.write_bytes(certs["issuing"].public_bytes(Encoding.PEM))
    files.chain.write_bytes(files.issuing.read_bytes() + files.root.read_bytes())
    return files


@pytest.fixture
def live_server(platform: Platform) -> Iterator[LiveServer]:
    with LiveServer(create_app(platform=platform, background_refresh=False)) as server:
        yield server


def service_certificate(platform: Platform, profile: str) -> x509.Certificate:
    with session_scope(platform.engine) as session:
        row = session.execute(select(IssuedCertificate).where(IssuedCertificate.profile == profile)).scalars().first()
    return x509.load_der_x509_certificate(row.der)


def crl_der(platform: Platform, ca_name: str) -> bytes:
    with session_scope(platform.engine) as session:
        return crl.current_crl(session, ca_name).der
