"""Detached CAdES-BES CMS for benchmarks, byte-identical to ``signing.cms``'s but cheap.

asn1crypto takes ~30 ms to encode each CMS; a benchmark that needs 100,000 of them builds one
template per signer with ``signing.cms.build_signed_attributes`` and ``assemble_detached_cms``
and puts the digest, signing time and signature in place. ``sign(..., check=True)`` asserts
the result equals what those functions produce (benchmarks do so every few thousand).
"""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from signing.cms import assemble_detached_cms, build_signed_attributes


class CmsTemplate:
    """Detached CMS for one signer, byte-identical to ``signing.cms``'s (see the docstring)."""

    def __init__(self, certificate: x509.Certificate, chain: list[x509.Certificate], key: ec.EllipticCurvePrivateKey,
                 ) -> None:
        self.certificate, self.chain, self.key = certificate, chain, key
        self.digest0 = hashlib.sha256(b"template").digest()
        self.time0 = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        self.attributes0 = build_signed_attributes(self.digest0, "sha256", certificate, self.time0)
        self.digest_at = self._unique(self.attributes0, self.digest0)
        self.time_at = self._unique(self.attributes0, b"300102030405Z")
        self.assemblies: dict[int, tuple[bytes, int]] = {}

    @staticmethod
    def _unique(data: bytes, part: bytes) -> int:
        at = data.find(part)
        assert at >= 0 and data.find(part, at + 1) < 0, "a template field is not unique"
        return at

    def attributes(self, digest: bytes, when: dt.datetime) -> bytes:
        data = bytearray(self.attributes0)
        data[self.digest_at:self.digest_at + 32] = digest
        data[self.time_at:self.time_at + 13] = when.astimezone(dt.timezone.utc).strftime("%y%m%d%H%M%SZ").encode()
        return bytes(data)

    def sign(self, payload: bytes, when: dt.datetime, *, check: bool = False) -> bytes:
        digest = hashlib.sha256(payload).digest()
        attributes = self.attributes(digest, when)
        signature = self.key.sign(hashlib.sha256(attributes).digest(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        template = self.assemblies.get(len(signature))
        if template is None:
            dummy = b"\x5a" * len(signature)
            assembled = assemble_detached_cms(self.attributes0, dummy, self.certificate, self.chain, "sha256", "ECDSA")
            assert assembled.endswith(dummy)
            template = self.assemblies[len(signature)] = (assembled[:-len(signature)],
                                                           self._unique(assembled, self.attributes0[1:]))
        prefix, at = template
        cms = prefix[:at] + attributes[1:] + prefix[at + len(attributes) - 1:] + signature
        if check:
            assert attributes == build_signed_attributes(digest, "sha256", self.certificate, when)
            assert cms == assemble_detached_cms(attributes, signature, self.certificate, self.chain, "sha256", "ECDSA")
        return cms
