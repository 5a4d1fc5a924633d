"""Key custody: keys are generated and used inside an HSM and never leave it.

``open_keystore(url, ...)`` returns a :class:`KeyStore`: the software HSM (``soft:PATH``,
the embedded default) or a PKCS#11 token (``pkcs11:LIB?token=LABEL``). ``hsm_private_key``
wraps a key as a cryptography private key for the X.509/CRL/OCSP builders.
"""

from hsm_sim.base import (
    DEFAULT_MECHANISMS,
    DigestAlgorithm,
    HsmError,
    KeyAlgorithm,
    KeyExists,
    KeyInfo,
    KeyLocked,
    KeyNotFound,
    KeyStore,
    Mechanism,
    PolicyViolation,
    PublicKey,
)
from hsm_sim.facade import HsmEcPrivateKey, HsmRsaPrivateKey, hsm_private_key
from hsm_sim.factory import open_keystore
from hsm_sim.pkcs11 import Pkcs11KeyStore
from hsm_sim.policy import KeyIntegrityError
from hsm_sim.soft import SoftKeyStore

__all__ = [
    "DEFAULT_MECHANISMS",
    "DigestAlgorithm",
    "HsmEcPrivateKey",
    "HsmError",
    "HsmRsaPrivateKey",
    "KeyAlgorithm",
    "KeyExists",
    "KeyInfo",
    "KeyIntegrityError",
    "KeyLocked",
    "KeyNotFound",
    "KeyStore",
    "Mechanism",
    "Pkcs11KeyStore",
    "PolicyViolation",
    "PublicKey",
    "SoftKeyStore",
    "hsm_private_key",
    "open_keystore",
]

