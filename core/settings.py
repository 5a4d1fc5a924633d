"""Configuration from ``CLOUDSEAL_*`` environment variables, with embedded defaults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of a cloudseal process. Secrets come from the environment or files
    outside the repository, never from code."""

    model_config = SettingsConfigDict(env_prefix="CLOUDSEAL_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./var/cloudseal.db",
        description="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
    )
    hsm: str = Field(
        default="soft:./var/hsm",
        description="soft:DIR or pkcs11:/path/to/lib.so?token=LABEL",
    )
    hsm_pin: SecretStr | None = Field(default=None, description="PKCS#11 user PIN (kept out of reprs)")
    master_key_file: Path | None = Field(
        default=None, description="software HSM master key file (default DIR/master.key)"
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="base URL placed in AIA, CRL distribution point and OCSP URLs",
    )
    max_body_bytes: int = Field(default=1_048_576, description="largest accepted request body")
    jwt_audience: str = "cloudseal"
    jwt_ttl_seconds: int = 900
    crl_validity_hours: int = 24
    ocsp_validity_hours: int = 24
    refresh_interval_seconds: float = 300
    policy_arc: str = Field(
        default="1.3.6.1.4.1.32473.1",
        pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$",
        description="OID arc under which certificate policy OIDs are minted",
    )
    organization: str = "cloudseal"
    tsa_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="RFC 3161 timestamp authority (http/https URL) for sealed PDF reports (PAdES B-LTA); "
                    "its certificate must chain to the platform root",
    )
    country: str = "TW"

    @property
    def public_base(self) -> str:
        """The public URL without a trailing slash."""
        return self.public_url.rstrip("/")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
