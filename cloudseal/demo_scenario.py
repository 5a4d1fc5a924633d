"""The demo's cast and script, as plain data: who the investors are, which broker enrols
them, what the register holds, how each holder votes, and who does something unusual
(votes twice, revokes, sends a ballot too late, is represented by a proxy).

Pure and deterministic (a fixed seed): no database, HSM or HTTP here, so the figures the
demo must end with follow from this module alone (:meth:`Scenario.expected`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.errors import BadRequest
from ra.devices import check_pin_policy
from ra.identity import business_number_is_valid, national_id_is_valid
from voting.service import AgendaItemIn, CandidateIn

SEED = 2026
LOT = 1_000  # shares trade in lots of a thousand
BROKERS = (("9801", "Formosa Securities"), ("9802", "Harbour Securities"))
ISSUER = ("6801", "蓮華精密工業股份有限公司 (Lotus Precision Industries)")
MEETING_TITLE = "2026 Annual General Meeting"
SEATS = 5
CANDIDATES = (("D1", "林志明 Lin Chih-ming"), ("D2", "陳美玲 Chen Mei-ling"), ("D3", "黃建國 Huang Chien-kuo"),
              ("D4", "張雅婷 Chang Ya-ting"), ("D5", "李宗翰 Lee Tsung-han"), ("D6", "王淑芬 Wang Shu-fen"),
              ("D7", "吳俊傑 Wu Chun-chieh"), ("D8", "劉家豪 Liu Chia-hao"))
# How much support each candidate draws (the tally, not this table, decides who is elected).
_POPULARITY = (22, 18, 16, 14, 12, 9, 6, 3)
AGENDA = [
    AgendaItemIn("R1", "ordinary", "Distribution of 2025 earnings: cash dividend of NT$3.0 per share"),
    AgendaItemIn("R2", "ordinary", "Amendment of the procedures for lending funds to others"),
    AgendaItemIn("R3", "special", "Amendment of the Articles of Incorporation", article="277"),
    AgendaItemIn("E1", "election", f"Election of {SEATS} directors (cumulative voting)", seats=SEATS,
                 candidates=tuple(CandidateIn(key, name) for key, name in CANDIDATES)),
]
# Chance of CFOR / CAGS / ABST on each resolution: R2 is meant to fail.
_LEANING = {"R1": (80, 12, 8), "R2": (30, 52, 18), "R3": (68, 22, 10)}
_SURNAMES = "陳林黃張李王吳劉蔡楊許鄭謝洪郭邱曾廖賴徐周葉蘇莊呂江何蕭羅高"
_GIVEN = "志明美玲建國雅婷宗翰淑芬俊傑家豪怡君冠宇佳穎承恩思妤柏翰欣怡彥廷詩涵振華秀英"


@dataclass(frozen=True)
class Person:
    """Someone on the register; an investor when ``broker`` is set (enrolled, with the app)."""

    holder_no: str
    id_kind: str  # national_id or business_number
    id_number: str
    name: str
    shares: int
    birth_date: dt.date | None = None
    broker: str | None = None  # the broker that enrols them
    also_at: str | None = None  # a second broker that links an account of theirs
    pin: str = ""
    nominee: bool = False
    non_voting_shares: int = 0

    @property
    def is_investor(self) -> bool:
        return self.broker is not None

    def account(self, broker: str) -> str:
        return f"{broker}-{self.holder_no[1:]}"


@dataclass
class Scenario:
    """The cast (register order) and the roles some of them play."""

    people: list[Person]
    first_choices: dict[str, dict[str, object]]  # every investor's first ballot
    second_choices: dict[str, dict[str, object]]  # double voters: recorded, superseded
    revokers: list[str]  # revoke their e-vote before the deadline …
    revoters: list[str]  # … of whom these vote again (counted); the others attend in person
    proxied: list[str]  # e-voters whose proxy is registered: the proxy's votes count instead
    late_voter: str  # sends a second ballot after the deadline: refused
    late_revoker: str  # revokes after the deadline: refused, the e-vote stands
    void_election: str  # over-allocates the election: that election is void on their ballot
    room_choices: dict[str, dict[str, object]] = field(default_factory=dict)  # in person or by proxy

    @property
    def investors(self) -> list[Person]:
        return [p for p in self.people if p.is_investor]

    @property
    def in_person(self) -> list[str]:
        """Holders who vote in the room: revokers who did not vote again, and holders without the app."""
        return [no for no in self.room_choices if no not in self.proxied]

    def expected(self) -> dict[str, int]:
        """The figures the run must end with (what the demo's summary and test compare against)."""
        investors = len(self.investors)
        stays_revoked = len(self.revokers) - len(self.revoters)
        return {
            "investors": investors,
            "linked_to_both_brokers": sum(1 for p in self.people if p.also_at),
            "ballots_received": investors + len(self.second_choices) + len(self.revoters),
            "counted": investors - stays_revoked - len(self.proxied),
            "superseded": len(self.second_choices),
            "revoked": len(self.revokers),
            "overridden_by_proxy": len(self.proxied),
            "revocations": len(self.revokers),
            "late_ballots_refused": 1,
            "late_revocations_refused": 1,
            "in_person": len(self.in_person) + 1,  # the late revoker comes too: present, the e-vote stands
            "by_proxy": len(self.proxied),
            "room_votes_refused": 1,
        }


def national_ids(rng: random.Random, count: int) -> list[str]:
    """Distinct valid national IDs (the check digit computed, not guessed)."""
    found: dict[str, None] = {}
    while len(found) < count:
        base = rng.choice("ABCDEFGHJKLMNPQRSTUVXYWZIO") + rng.choice("12") + f"{rng.randrange(10**7):07d}"
        for check in "0123456789":
            if national_id_is_valid(base + check):
                found[base + check] = None
                break
    return list(found)


def business_number(rng: random.Random) -> str:
    """A valid unified business number."""
    while True:
        number = f"{rng.randrange(10**8):08d}"
        if business_number_is_valid(number):
            return number


def _name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.sample(_GIVEN, 2))


def _pin(rng: random.Random, birth_date: dt.date) -> str:
    while True:
        pin = f"{rng.randrange(10**6):06d}"
        try:
            check_pin_policy(pin, birth_date)
        except BadRequest:  # too easy to guess: the app would refuse it too
            continue
        return pin


def _lots(rng: random.Random, mu: float, sigma: float) -> int:
    return max(1, int(rng.lognormvariate(mu, sigma))) * LOT


def resolution_choice(rng: random.Random, item: str) -> str:
    return rng.choices(("CFOR", "CAGS", "ABST"), weights=_LEANING[item])[0]


def election_choice(rng: random.Random, shares: int) -> dict[str, object]:
    """Cumulative votes: shares × seats, concentrated on one to five candidates."""
    available = shares * SEATS
    keys = [key for key, _ in CANDIDATES]
    picked: list[str] = []
    for _ in range(rng.randint(1, SEATS)):
        choice = rng.choices(keys, weights=_POPULARITY)[0]
        if choice not in picked:
            picked.append(choice)
    share, rest = divmod(available, len(picked))
    allocations = {key: share for key in picked}
    allocations[picked[0]] += rest
    return {"allocations": allocations}


def choices_for(rng: random.Random, person: Person) -> dict[str, object]:
    """A whole ballot: every resolution and the election (a nominee splits its resolutions)."""
    choices: dict[str, object] = {}
    for item in ("R1", "R2", "R3"):
        if person.nominee:  # Art. 181: a nominee splits its votes as its clients instructed
            weights = _LEANING[item]
            parts = [person.shares * w // 100 for w in weights]
            choices[item] = {"CFOR": parts[0], "CAGS": parts[1], "ABST": parts[2]}
        else:
            choices[item] = resolution_choice(rng, item)
    choices["E1"] = election_choice(rng, person.shares - person.non_voting_shares)
    return choices


def build_scenario(investors: int, *, seed: int = SEED) -> Scenario:
    """The cast for ``investors`` investors (at least 20), and a few holders without the app."""
    if investors < 20:
        raise ValueError("the demo needs at least 20 investors")
    rng = random.Random(seed)
    in_room, absent = max(3, investors // 50), max(3, investors // 10)
    ids = national_ids(rng, investors + in_room + absent)
    people: list[Person] = []
    for n in range(investors):
        number = f"H{n + 1:06d}"
        birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(50 * 365))
        broker = BROKERS[n % 2][0]
        other = BROKERS[(n + 1) % 2][0] if rng.random() < 0.15 else None
        if n == 0:  # a custodian bank voting as nominee for its clients (Art. 181)
            people.append(Person(number, "business_number", business_number(rng), "福爾摩沙託管銀行 (nominee)",
                                 shares=investors * 8 * LOT, broker=broker, also_at=other,
                                 pin=_pin(rng, birth), nominee=True))
            continue
        people.append(Person(number, "national_id", ids[n], _name(rng), _lots(rng, 2.3, 1.1), birth_date=birth,
                             broker=broker, also_at=other, pin=_pin(rng, birth)))
    for n in range(in_room + absent):  # holders without the app: some come to the meeting, most do not
        number = f"H{investors + n + 1:06d}"
        people.append(Person(number, "national_id", ids[investors + n], _name(rng),
                             _lots(rng, 2.3, 1.1) if n < in_room else _lots(rng, 1.0, 0.8)))
    total = sum(p.shares for p in people)
    people.append(Person(f"H{len(people) + 1:06d}", "business_number", business_number(rng), ISSUER[1],
                         shares=total // 50 // LOT * LOT or LOT, non_voting_shares=total // 50 // LOT * LOT or LOT))

    regular = [p.holder_no for p in people[1:investors]]  # the nominee plays no special part
    rng.shuffle(regular)
    cast = iter(regular)
    extra = max(2, investors // 100)

    def take(count: int) -> list[str]:
        return sorted(next(cast) for _ in range(count))

    second, revokers, proxied = take(extra), take(extra), take(max(1, investors // 200))
    late_voter, late_revoker, void = take(1)[0], take(1)[0], take(1)[0]
    by_no = {p.holder_no: p for p in people}
    first = {p.holder_no: choices_for(rng, p) for p in people if p.is_investor}
    first[void]["E1"] = {"allocations": {"D8": by_no[void].shares * SEATS + 1}}  # one vote too many
    scenario = Scenario(
        people=people, first_choices=first,
        second_choices={no: choices_for(rng, by_no[no]) for no in second},
        revokers=revokers, revoters=revokers[: len(revokers) // 2], proxied=proxied,
        late_voter=late_voter, late_revoker=late_revoker, void_election=void,
    )
    for no in [*revokers[len(revokers) // 2:], *proxied]:
        scenario.room_choices[no] = choices_for(rng, by_no[no])
    for person in people[investors:investors + in_room]:
        scenario.room_choices[person.holder_no] = choices_for(rng, person)
    return scenario


def revote_choices(scenario: Scenario, holder_no: str) -> dict[str, object]:
    """What a revoker votes when voting again (deterministic per holder)."""
    person = next(p for p in scenario.people if p.holder_no == holder_no)
    return choices_for(random.Random(f"{SEED}-{holder_no}"), person)


def register_csv(people: Sequence[Person]) -> bytes:
    """The register at book closure in the import format (:data:`voting.register.COLUMNS`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("holder_no", "id_number", "name", "shares", "non_voting_shares", "non_voting_reason", "nominee"))
    for p in people:
        writer.writerow((p.holder_no, p.id_number, p.name, p.shares, p.non_voting_shares,
                         "treasury" if p.non_voting_shares else "", "Y" if p.nominee else "N"))
    return out.getvalue().encode("utf-8")
