"""Each ballot and revocation keeps the OCSP response about its signer that covered its receipt."""

from __future__ import annotations

import datetime as dt

from cryptography.x509 import ocsp
from sqlalchemy import select, update

from ca.models import OcspResponseRecord
from cloudseal.platform import Platform
from core.db import session_scope
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_attendance import revocation, revoke
from tests.voting.test_ballots import make_meeting, signed, submit, voter
from voting.models import BallotRevocation, BallotRow


def good_response_covering(der: bytes | None, serial: str, moment: dt.datetime) -> bool:
    assert der is not None
    response = ocsp.load_der_ocsp_response(der)
    return (response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            and response.certificate_status == ocsp.OCSPCertStatus.GOOD
            and format(response.serial_number, "x") == serial
            and response.this_update_utc <= moment + dt.timedelta(seconds=5) < response.next_update_utc + dt.timedelta(seconds=5))


def test_ballots_and_revocations_keep_the_signers_ocsp_response_at_receipt(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submit(platform, *signed(platform, alice, meeting, {"1": "CFOR"}))
    revoke(platform, *revocation(platform, alice, meeting))
    with session_scope(platform.engine) as session:
        ballot = session.execute(select(BallotRow)).scalar_one()
        revoked = session.execute(select(BallotRevocation)).scalar_one()
    assert good_response_covering(ballot.revocation_evidence, ballot.signer_serial, ballot.received_at)
    assert good_response_covering(revoked.revocation_evidence, ballot.signer_serial, revoked.received_at)


def test_a_stale_stored_response_is_signed_afresh_for_the_evidence(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, meeting, {"1": "CFOR"})
    with session_scope(platform.engine) as session:  # as if the refresh loop had stopped long ago
        session.execute(update(OcspResponseRecord).values(next_update=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)))
    submit(platform, payload, cms)
    with session_scope(platform.engine) as session:
        ballot = session.execute(select(BallotRow)).scalar_one()
    assert good_response_covering(ballot.revocation_evidence, ballot.signer_serial, ballot.received_at)
