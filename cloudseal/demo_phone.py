"""The investors' phones: one :class:`mobile_api.client.MobileClient` each, over ``/mobile/v1``.

Each phone is the mobile API's reference client, exactly as tests and the app use it: a P-256
device key generated in memory, the PIN its owner types (from the script), and nothing else.
All phones share one ``httpx.Client`` (tokens travel per request) and one
:class:`~mobile_api.proofs.TrustStore`, built once from ``GET /mobile/v1/pki`` against the
platform root the app pins. The journey:

* :func:`activate`: redeem the broker's activation code (device key, PIN; signed in at once);
* :func:`open_apps`: later, device-bound login (the device signs a challenge) and the list
  of my meetings, which gives the holder number each phone votes as;
* :func:`vote`: ballots (prepare + submit with the PIN; the client checks the sealed
  receipt), double votes, revocations (``revoke_vote``) and re-votes;
* :func:`prepare_late_ballot`, :func:`after_deadline`: a ballot prepared in time whose PIN
  comes after the deadline, and a revocation after it — both refused, with the codes of the
  voting service's rules (``voting_closed``, ``revocation_too_late``);
* :func:`confirm`: after the freeze, a few phones check on their own that their ballot was
  recorded and counted (``verify_counted``: the leaf, the inclusion proof, the tree head's seal).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from cryptography import x509

from cloudseal.demo_scenario import Person, Scenario, revote_choices
from mobile_api.client import MobileApiError, MobileClient, Prepared
from mobile_api.proofs import TrustStore, VerificationError

# Phones talking at once. Phones and server share one process (one GIL) and the platform
# serialises writes (SQLite), so threads only overlap one request's waits with another's work:
# with 300 investors on 2 cores, 1 thread took 20 s, 2 and 3 some 16 s, 4 18 s (noisy).
PHONE_THREADS = 2

Advance = Callable[[int], None]
Submitted = dict[str, Any]  # ``POST /mobile/v1/submissions/{id}``: status, payload_sha256, cms, sealed receipt
T = TypeVar("T")


def shared_trust(http: httpx.Client, root: x509.Certificate) -> TrustStore:
    """The platform's seal certificates, fetched once and checked against the pinned root."""
    return MobileClient(http, pinned_root=root).trust()


def activate(http: httpx.Client, trust: TrustStore, person: Person, activation_id: str, code: str) -> MobileClient:
    """A new phone (fresh P-256 device key) redeems the code the broker sent and sets the PIN."""
    phone = MobileClient(http, trust=trust)
    phone.activate(activation_id, code, person.pin)
    return phone


def each(holders: Iterable[str], act: Callable[[str], T], advance: Advance) -> list[T]:
    """``act`` for each holder's phone, :data:`PHONE_THREADS` at a time; results in order."""
    def one(holder_no: str) -> T:
        outcome = act(holder_no)
        advance(1)
        return outcome

    with ThreadPoolExecutor(PHONE_THREADS) as pool:
        return list(pool.map(one, holders))


def open_apps(phones: dict[str, MobileClient], meeting: str, advance: Advance) -> dict[str, list[str]]:
    """Each owner opens the app: device-bound login, then my meetings. The holder numbers
    each phone lists for ``meeting`` (none if the meeting is missing or already voted on)."""
    def open_app(holder_no: str) -> list[str]:
        phone = phones[holder_no]
        phone.login()
        listed = next((m for m in phone.iter_meetings() if m["public_id"] == meeting), None)
        if listed is None or listed["status"] != "not_voted":
            return []
        return [h["holder_no"] for h in listed["holdings"]]

    return dict(zip(phones, each(phones, open_app, advance)))


@dataclass
class Voting:
    """What the phones were told: submissions accepted per holder and the refusals."""

    receipts: dict[str, list[Submitted]] = field(default_factory=lambda: defaultdict(list))
    refusals: dict[str, str] = field(default_factory=dict)  # what -> error code
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        """Ballots and revocations accepted."""
        return sum(len(receipts) for receipts in self.receipts.values())


def vote(phones: dict[str, MobileClient], holdings: dict[str, str], scenario: Scenario, meeting: str,
         advance: Advance) -> Voting:
    """Every investor votes; some vote twice; some revoke, half of those vote again.
    ``holdings``: phone (the script's holder) → the holder number its meeting list gave."""
    voting = Voting()
    pins = {p.holder_no: p.pin for p in scenario.investors}

    def ballot(choices: Callable[[str], dict[str, object]]) -> Callable[[str], Submitted]:
        return lambda no: phones[no].vote(meeting, choices(no), pins[no], holder_no=holdings[no])

    def revocation(no: str) -> Submitted:
        return phones[no].revoke_vote(meeting, pins[no], holder_no=holdings[no])

    rounds: list[tuple[list[str], Callable[[str], Submitted]]] = [
        (list(holdings), ballot(lambda no: scenario.first_choices[no])),
        (list(scenario.second_choices), ballot(lambda no: scenario.second_choices[no])),
        (scenario.revokers, revocation),
        (scenario.revoters, ballot(lambda no: revote_choices(scenario, no))),
    ]
    started = time.perf_counter()
    for holders, act in rounds:
        for holder_no, submitted in zip(holders, each(holders, act, advance)):
            voting.receipts[holder_no].append(submitted)
    voting.seconds = time.perf_counter() - started
    return voting


def prepare_late_ballot(phones: dict[str, MobileClient], holdings: dict[str, str], scenario: Scenario,
                        meeting: str) -> Prepared:
    """While voting is open, the late voter's phone prepares a second ballot (the PIN comes later)."""
    late_voter = scenario.late_voter
    return phones[late_voter].prepare_ballot(meeting, scenario.first_choices[late_voter], holdings[late_voter])


def after_deadline(phones: dict[str, MobileClient], holdings: dict[str, str], scenario: Scenario, meeting: str,
                   late_ballot: Prepared, voting: Voting) -> None:
    """After the deadline: the PIN for the ballot prepared in time, and a revocation. Both
    must be refused (``voting.refusals`` keeps the error codes the mobile API returned)."""
    late_voter, late_revoker = scenario.late_voter, scenario.late_revoker
    pins = {p.holder_no: p.pin for p in scenario.investors}
    attempts: dict[str, Callable[[], Submitted]] = {
        "late_ballot": lambda: phones[late_voter].submit(late_ballot, pins[late_voter]),
        "late_revocation": lambda: phones[late_revoker].revoke_vote(meeting, pins[late_revoker],
                                                                    holder_no=holdings[late_revoker]),
    }
    for what, attempt in attempts.items():
        try:
            attempt()
            voting.refusals[what] = "accepted"
        except MobileApiError as refused:
            voting.refusals[what] = refused.code


def samples(scenario: Scenario, voting: Voting) -> list[tuple[str, str, Submitted]]:
    """Ballots whose holders check them after the meeting, one per final status."""
    stays_revoked = [no for no in scenario.revokers if no not in scenario.revoters]
    nominee = scenario.investors[0].holder_no
    picks = [("nominee's split vote", nominee, 0), ("second ballot", next(iter(scenario.second_choices)), 1),
             ("revoked e-vote", stays_revoked[0], 0), ("vote after revoking", scenario.revoters[0], -1),
             ("e-vote, then a proxy", scenario.proxied[0], 0)]
    return [(what, no, voting.receipts[no][index]) for what, no, index in picks]


def confirm(phones: dict[str, MobileClient], meeting: str, picked: list[tuple[str, str, Submitted]],
            advance: Advance) -> list[dict[str, Any]]:
    """After the freeze: each sampled phone fetches the proof for its ballot and checks it
    itself (``verify_counted``); ``included`` is False when the check fails."""
    confirmations = []
    for what, holder_no, submitted in picked:
        row: dict[str, Any] = {"what": what, "holder": holder_no, "at_receipt": submitted["status"]}
        try:
            check = phones[holder_no].verify_counted(meeting, submitted["payload_sha256"])
            row.update(final=check.status, counted=check.counted, leaf=check.leaf_index, tree_size=check.tree_size,
                       included=True)
        except VerificationError as failed:
            row.update(final=f"not verified: {failed}", counted=False,
                       leaf=submitted["receipt"]["receipt"]["leaf_index"], tree_size=0, included=False)
        confirmations.append(row)
        advance(1)
    return confirmations
