"""Shared, serialised, logged-in PKCS#11 sessions for :mod:`hsm_sim.pkcs11`.

python-pkcs11 calls ``C_Initialize(NULL)``, which promises the library that the application
will not call it from several threads at once (SoftHSM2 then switches its own locking off),
and releases the GIL inside every call. So all calls into one library go through one
process-wide lock. Login state is per application in PKCS#11 (a second ``C_Login`` fails with
USER_ALREADY_LOGGED_IN), so every store of the process on one token shares one session.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pkcs11
from pkcs11 import exceptions as p11e

from hsm_sim.base import HsmError, KeyLocked, KeyNotFound

# The session itself is gone (token reset, network HSM dropped it): reopen once and retry.
_SESSION_LOST = (p11e.SessionClosed, p11e.SessionHandleInvalid, p11e.UserNotLoggedIn)
# The object was destroyed (possibly by another process) after it was looked up.
_OBJECT_GONE = (p11e.ObjectHandleInvalid, p11e.KeyHandleInvalid)
_PIN_ERRORS = (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange, p11e.PinExpired)

_T = TypeVar("_T")


def _pin_digest(pin: str) -> bytes:
    # Only to tell whether a second store of the process was given the same PIN.
    return hashlib.sha256(b"cloudseal-pin-check\x00" + pin.encode()).digest()


@dataclass(eq=False)
class TokenConnection:
    """One logged-in session on one token, shared by every store of the process.

    ``cache`` belongs to the key store layer: object handles found in this session, cleared
    whenever the session is reopened. Use it only inside :func:`run`.
    """

    lock: threading.RLock
    token: Any
    pin: str = field(repr=False)
    session: Any = None
    users: int = 0
    cache: dict[str, Any] = field(default_factory=dict)

    def open(self) -> None:
        """(Re)open the session and log in; cached object handles die with the old one."""
        self.cache.clear()
        if self.session is not None:
            try:
                self.session.close()
            except p11e.PKCS11Error:
                pass
            self.session = None
        try:
            self.session = self.token.open(rw=True, user_pin=self.pin)
        except p11e.UserAlreadyLoggedIn:
            # Logged in through another session of this process (python-pkcs11 leaves the
            # session it opened for the refused login behind; C_Finalize reclaims it).
            self.session = self.token.open(rw=True)
        except _PIN_ERRORS:
            raise KeyLocked("the PKCS#11 token rejected the user PIN") from None
        except p11e.PinLocked:
            raise KeyLocked("the PKCS#11 token's user PIN is locked") from None
        except p11e.PKCS11Error as exc:
            raise KeyLocked(f"cannot open a PKCS#11 session: {type(exc).__name__}") from None


_registry_lock = threading.Lock()
_library_locks: dict[str, threading.RLock] = {}
_connections: dict[tuple[str, str], TokenConnection] = {}


def connect(library_path: str, token_label: str, user_pin: str) -> TokenConnection:
    """The process's logged-in connection to the token (opened on first use)."""
    with _registry_lock:
        lock = _library_locks.setdefault(library_path, threading.RLock())
    with lock:
        with _registry_lock:
            conn = _connections.get((library_path, token_label))
        if conn is None:
            try:
                lib = pkcs11.lib(library_path)
                token = lib.get_token(token_label=token_label)
            except p11e.NoSuchToken:
                raise KeyLocked(f"no PKCS#11 token labelled {token_label!r}") from None
            except p11e.PKCS11Error as exc:
                raise KeyLocked(
                    f"cannot use PKCS#11 library {library_path}: {type(exc).__name__}"
                ) from None
            conn = TokenConnection(lock=lock, token=token, pin=user_pin)
            conn.open()
            with _registry_lock:
                _connections[(library_path, token_label)] = conn
        elif not hmac.compare_digest(_pin_digest(conn.pin), _pin_digest(user_pin)):
            raise KeyLocked("the PKCS#11 token rejected the user PIN")
        conn.users += 1
        return conn


def release(conn: TokenConnection) -> None:
    """Drop one user of ``conn``; the last one closes the session (and so logs out)."""
    with conn.lock:
        conn.users -= 1
        if conn.users > 0:
            return
        with _registry_lock:
            for key, value in list(_connections.items()):
                if value is conn:
                    del _connections[key]
        conn.cache.clear()
        try:
            conn.session.close()
        except p11e.PKCS11Error:
            pass


def run(conn: TokenConnection, operation: Callable[[TokenConnection], _T]) -> _T:
    """Run ``operation(conn)`` under the library lock, mapping PKCS#11 errors to ours."""
    with conn.lock:
        try:
            try:
                return operation(conn)
            except _SESSION_LOST:
                conn.open()
                return operation(conn)
        except _OBJECT_GONE:
            conn.cache.clear()
            raise KeyNotFound("the key was destroyed while in use") from None
        except (p11e.PinLocked, *_PIN_ERRORS, *_SESSION_LOST):
            raise KeyLocked("the PKCS#11 token is not logged in") from None
        except p11e.PKCS11Error as exc:
            raise HsmError(f"PKCS#11 operation failed: {type(exc).__name__}") from None
