"""The investor-facing API the mobile app calls, and the reference client that behaves like it.

It composes the RA (activation, devices, PINs, certificate lifecycle), the signing service
(PIN + device proof, CMS signatures in the HSM) and the voting service (ballots, revocations,
receipts, proofs) under ``/mobile/v1``; it adds none of their rules.
"""
