"""Open the key store named by a ``CLOUDSEAL_HSM`` URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from hsm_sim.base import KeyLocked, KeyStore
from hsm_sim.pkcs11 import Pkcs11KeyStore
from hsm_sim.soft import SoftKeyStore


def open_keystore(url: str, *, pin: str | None, master_key_file: Path | None) -> KeyStore:
    """Open the key store named by ``url``.

    * ``soft:PATH`` — the software HSM in directory ``PATH``, with its master key in
      ``master_key_file`` (default ``PATH/master.key``, created on first use).
    * ``pkcs11:/path/to/lib.so?token=LABEL`` — a PKCS#11 token, logged in with ``pin``.
    """
    scheme, sep, rest = url.partition(":")
    if not sep or not rest:
        raise ValueError(f"HSM URL {url!r} must look like 'soft:PATH' or 'pkcs11:LIB?token=LABEL'")
    if scheme == "soft":
        directory = Path(rest)
        return SoftKeyStore(directory, master_key_file or directory / "master.key")
    if scheme == "pkcs11":
        library, _, query = rest.partition("?")
        tokens = parse_qs(query).get("token", [])
        if not library or len(tokens) != 1 or not tokens[0]:
            raise ValueError(
                f"PKCS#11 HSM URL {url!r} needs a library path and one token, e.g. "
                "'pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=cloudseal'"
            )
        if pin is None:
            raise KeyLocked(
                f"the PKCS#11 token {tokens[0]!r} needs a user PIN (set CLOUDSEAL_HSM_PIN)"
            )
        return Pkcs11KeyStore(library, tokens[0], pin)
    raise ValueError(f"unknown HSM URL scheme {scheme!r} in {url!r}: use 'soft:' or 'pkcs11:'")
