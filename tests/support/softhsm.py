"""Throwaway SoftHSM2 tokens for tests (PKCS#11 backend)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOFTHSM_LIBRARY_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


def softhsm_library() -> str | None:
    """Path of libsofthsm2.so (``SOFTHSM2_LIB`` overrides the usual locations), or None."""
    override = os.environ.get("SOFTHSM2_LIB")
    candidates = (override,) if override else SOFTHSM_LIBRARY_CANDIDATES
    return next((path for path in candidates if path and Path(path).is_file()), None)


def softhsm_available() -> bool:
    """Tell whether both the SoftHSM2 library and ``softhsm2-util`` are installed."""
    return softhsm_library() is not None and shutil.which("softhsm2-util") is not None


# SoftHSM2 reads its configuration once per process, at C_Initialize: every token this
# process makes lives under the first configuration, and tokens are remembered by label.
_conf: Path | None = None
_tokens: dict[str, dict] = {}


def make_softhsm_token(tmp_dir: Path, label: str = "cloudseal", pin: str = "1234") -> dict:
    """Initialise a fresh SoftHSM2 token and return ``{"library", "token", "pin"}``.

    The first call writes ``tmp_dir/softhsm2.conf`` (tokens under ``tmp_dir/tokens``) and
    points ``SOFTHSM2_CONF`` at it. Later calls in the same process add their token next to
    the first ones (SoftHSM2 cannot switch configuration under loaded sessions) and return
    the same token again for a label already made. If python-pkcs11 already loaded the
    library, it is re-initialised so that the new token is visible; sessions opened before
    are invalidated (``Pkcs11KeyStore`` reopens its session on next use).
    """
    global _conf
    library = softhsm_library()
    if library is None or shutil.which("softhsm2-util") is None:
        raise RuntimeError("SoftHSM2 is not installed (libsofthsm2.so / softhsm2-util)")
    if label in _tokens:
        if _tokens[label]["pin"] != pin:
            raise ValueError(f"token {label!r} was already made with another PIN")
        return dict(_tokens[label])
    if _conf is None:
        tokens = Path(tmp_dir) / "tokens"
        tokens.mkdir(parents=True, exist_ok=True)
        _conf = Path(tmp_dir) / "softhsm2.conf"
        _conf.write_text(
            f"directories.tokendir = {tokens}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
    os.environ["SOFTHSM2_CONF"] = str(_conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--pin", pin, "--so-pin", pin + "-so"],
        check=True,
        capture_output=True,
    )
    _refresh_loaded_library(library)
    _tokens[label] = {"library": library, "token": label, "pin": pin}
    return dict(_tokens[label])


def _refresh_loaded_library(library: str) -> None:
    import pkcs11

    loaded = pkcs11._loaded.get(library)  # python-pkcs11 caches one handle per library path
    if loaded is not None and loaded.initialized:
        loaded.reinitialize()
