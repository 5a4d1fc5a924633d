"""The composition root: builds the process's collaborators from the settings."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine, make_url

from ca.context import Pki
from ca.responder import OcspService
from core.auth import Actor, issue_token
from core.db import make_engine
from core.settings import Settings
from hsm_sim.base import KeyAlgorithm, KeyStore
from hsm_sim.facade import hsm_private_key
from hsm_sim.factory import open_keystore
from ra.secrets import ensure_ra_keys
from signing.totp import ensure_totp_key

JWT_KEY = ("platform/jwt", "platform:jwt")


@dataclass
class Platform:
    """Everything a cloudseal process shares between requests."""

    settings: Settings
    engine: Engine
    read_engine: Engine
    keystore: KeyStore
    pki: Pki
    ocsp: OcspService

    @functools.cached_property
    def check_engine(self) -> Engine:
        """For reads that need no snapshot, e.g. a ballot's checks (each statement sees what
        is committed, as under READ COMMITTED; the recording re-reads under the lock). On
        PostgreSQL its connections, from the engine's pool, run in autocommit: no BEGIN and
        ROLLBACK round trips around the reads (measured: half the database's CPU per ballot).
        On SQLite the read engine already reads outside a transaction."""
        if self.read_engine is not self.engine:
            return self.read_engine
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def token_issuer(self) -> str:
        return self.settings.public_base + "/auth"

    def ensure_jwt_key(self) -> None:
        """Create the access-token signing key in the HSM if missing."""
        label, owner = JWT_KEY
        if not self.keystore.has_key(label):
            self.keystore.generate_key_pair(label, owner, KeyAlgorithm.EC_P256)

    def ensure_keys(self) -> list[str]:
        """Create the platform's HSM secrets if missing: token signing, identity and PIN
        HMAC keys, the TOTP derivation key (idempotent)."""
        created = [] if self.keystore.has_key(JWT_KEY[0]) else [JWT_KEY[0]]
        self.ensure_jwt_key()
        return created + ensure_ra_keys(self.keystore) + ensure_totp_key(self.keystore)

    def jwt_public_key(self) -> ec.EllipticCurvePublicKey:
        """The key access tokens are verified with."""
        return self.keystore.public_key(JWT_KEY[0])  # type: ignore[return-value]

    def mint_token(self, actor: Actor, ttl: dt.timedelta | None = None) -> str:
        """Sign an access token for ``actor`` with the HSM-held platform key."""
        key = hsm_private_key(self.keystore, *JWT_KEY)
        return issue_token(
            key,  # type: ignore[arg-type]
            actor=actor,
            issuer=self.token_issuer,
            audience=self.settings.jwt_audience,
            ttl=ttl or dt.timedelta(seconds=self.settings.jwt_ttl_seconds),
        )

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
        self.keystore.close()


def build_platform(settings: Settings) -> Platform:
    """Open the database and the HSM named by ``settings``."""
    engine = make_engine(settings.database_url)
    read_engine = (
        make_engine(settings.database_url, read_only=True)
        if make_url(settings.database_url).get_backend_name() == "sqlite"
        else engine
    )
    keystore = open_keystore(
        settings.hsm,
        pin=settings.hsm_pin.get_secret_value() if settings.hsm_pin else None,
        master_key_file=Path(settings.master_key_file) if settings.master_key_file else None,
    )
    pki = Pki(
        keystore=keystore,
        public_base=settings.public_base,
        organization=settings.organization,
        country=settings.country,
        policy_arc=settings.policy_arc,
        read_engine=read_engine,
        crl_validity=dt.timedelta(hours=settings.crl_validity_hours),
        ocsp_validity=dt.timedelta(hours=settings.ocsp_validity_hours),
        tsa_url=settings.tsa_url,
    )
    return Platform(
        settings=settings, engine=engine, read_engine=read_engine, keystore=keystore, pki=pki,
        ocsp=OcspService(pki, read_engine, engine),
    )
