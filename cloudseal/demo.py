"""``cloudseal demo``: the whole platform end to end on fresh data, with nothing else running.

Every run gets its own directory ``VAR/demo/<Taipei time>/`` with its own SQLite database and
software HSM (``VAR/demo/latest`` points to the newest), so a run never touches the database
``make run`` serves and two runs never collide. In it the demo bootstraps the PKI, creates
two brokers and an issuer, enrols the investors through the RA (dual control; each phone
redeems its activation code over HTTP), publishes a meeting whose register is imported from
CSV, lets every investor vote from their phone over HTTP (the in-process app on a free
localhost port), plays the unusual cases (double votes, revocations and re-votes, a proxy, a
late ballot and a late revocation), enters the room's votes, freezes the tally (sealed PDF),
writes the auditor bundle, verifies it offline as ``cloudseal audit verify`` does, and
prints what happened with the time each phase took.

Simulated in time: e-voting is really open while the phones vote (notice five days ago,
meeting in ten days); then the deadline is moved to "now" in the database, so the late
ballot, the late revocation, the room and the freeze happen after it on the real clock.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloudseal import demo_steps as steps
from cloudseal.app import create_app
from cloudseal.demo_phone import Phone, PhoneRefused, Receipt
from cloudseal.demo_scenario import AGENDA, CANDIDATES, ISSUER, MEETING_TITLE, Scenario, build_scenario, revote_choices
from cloudseal.demo_summary import print_summary
from cloudseal.platform import Platform
from core.errors import AppError
from voting.audit_report import AuditReport
from voting.calendar import TAIPEI

# Phones talking at once. The platform serialises writes (SQLite), so threads overlap one
# request's disk flush with another's work but add no more than that: 1, 2 and 4 measured the
# same within noise on 2 cores; 2 keeps requests concurrent, as many phones are.
PHONE_THREADS = 2


@dataclass
class Phases:
    """Wall-clock seconds per phase, and a progress bar per phase."""

    bars: Progress
    seconds: list[tuple[str, float]] = field(default_factory=list)
    current: str = ""

    @contextmanager
    def phase(self, name: str, total: int = 1) -> Iterator[Callable[[int], None]]:
        task = self.bars.add_task(name, total=total)
        self.current = name
        started = time.perf_counter()
        yield lambda count: self.bars.advance(task, count)
        self.seconds.append((name, time.perf_counter() - started))
        finished = next(t for t in self.bars.tasks if t.id == task)
        self.bars.update(task, description=name, completed=finished.total)

    def steps(self) -> Callable[[str, int, int], None]:
        """A ``progress(step, done, total)`` callback (bundle, verification) drawn on the current bar."""
        task = self.bars.task_ids[-1]
        name = next(t for t in self.bars.tasks if t.id == task).description

        def update(step: str, done: int, total: int) -> None:
            self.bars.update(task, description=f"{name}: {step}"[:40], completed=done, total=total)
        return update


@dataclass
class Voting:
    """What the phones were told: receipts per holder and the refusals."""

    receipts: dict[str, list[Receipt]] = field(default_factory=lambda: defaultdict(list))
    refusals: dict[str, str] = field(default_factory=dict)  # what -> error code
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        """Ballots and revocations accepted."""
        return sum(len(receipts) for receipts in self.receipts.values())


def _each(phones: dict[str, Phone], holders: list[str], act: Callable[[Phone, str], Receipt], voting: Voting,
          advance: Callable[[int], None]) -> None:
    def one(holder_no: str) -> Receipt:
        receipt = act(phones[holder_no], holder_no)
        advance(1)
        return receipt

    with ThreadPoolExecutor(PHONE_THREADS) as pool:
        for holder_no, receipt in zip(holders, pool.map(one, holders)):
            voting.receipts[holder_no].append(receipt)


def vote(phones: dict[str, Phone], scenario: Scenario, meeting: str, advance: Callable[[int], None]) -> Voting:
    """Every investor votes; some vote twice; some revoke, half of those vote again."""
    voting = Voting()
    started = time.perf_counter()
    _each(phones, list(phones), lambda phone, no: phone.vote(meeting, scenario.first_choices[no]), voting, advance)
    _each(phones, list(scenario.second_choices),
          lambda phone, no: phone.vote(meeting, scenario.second_choices[no]), voting, advance)
    _each(phones, scenario.revokers, lambda phone, no: phone.revoke(meeting), voting, advance)
    _each(phones, scenario.revoters, lambda phone, no: phone.vote(meeting, revote_choices(scenario, no)), voting,
          advance)
    voting.seconds = time.perf_counter() - started
    return voting


def after_deadline(phones: dict[str, Phone], scenario: Scenario, meeting: str, voting: Voting) -> None:
    """A second ballot and a revocation sent after the deadline: both must be refused."""
    attempts: dict[str, Callable[[], Receipt]] = {
        "late_ballot": lambda: phones[scenario.late_voter].vote(meeting, scenario.first_choices[scenario.late_voter]),
        "late_revocation": lambda: phones[scenario.late_revoker].revoke(meeting),
    }
    for what, attempt in attempts.items():
        try:
            attempt()
            voting.refusals[what] = "accepted"
        except PhoneRefused as refused:
            voting.refusals[what] = refused.code


def _samples(scenario: Scenario, voting: Voting) -> list[tuple[str, str, Receipt]]:
    """Receipts whose holders check them after the meeting, one per final status."""
    stays_revoked = [no for no in scenario.revokers if no not in scenario.revoters]
    nominee = scenario.investors[0].holder_no
    picks = [("nominee's split vote", nominee, 0), ("second ballot", next(iter(scenario.second_choices)), 1),
             ("revoked e-vote", stays_revoked[0], 0), ("vote after revoking", scenario.revoters[0], -1),
             ("e-vote, then a proxy", scenario.proxied[0], 0)]
    return [(what, no, voting.receipts[no][index]) for what, no, index in picks]


def run_demo(*, investors: int, var: Path, quiet: bool, out: Console | None = None,
             err: Console | None = None) -> int:
    """Run the demo; print the summary; 0 when every figure agrees and the bundle verifies."""
    out = out or Console()
    err = err or Console(stderr=True)
    started = time.perf_counter()
    scenario = build_scenario(investors)
    columns = (TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=quiet) as bars, ExitStack() as cleanup:
        phases = Phases(bars)
        try:
            with phases.phase("bootstrap: migrate, init (PKI, HSM keys)"):
                directory = steps.new_run_directory(var)
                sock = steps.free_socket()
                host, port = sock.getsockname()[:2]
                platform, _ = steps.bootstrap(steps.demo_settings(directory, f"http://{host}:{port}"))
                cleanup.callback(platform.close)
            with phases.phase("in-process HTTP server"):
                app = create_app(platform=platform, background_refresh=False)
                http = cleanup.enter_context(steps.http_client(cleanup.enter_context(steps.serving(app, sock)),
                                                               PHONE_THREADS * 2))
            result = _run(phases, platform, http, scenario, directory)
        except (AppError, PhoneRefused) as exc:  # a refusal the script did not expect: say where
            bars.stop()
            err.print(f"[red bold]the demo stopped[/red bold] in “{escape(phases.current)}”: {escape(str(exc))}")
            return 1
    latest = steps.point_latest(directory)
    summary = _summary(scenario, result, phases.seconds, time.perf_counter() - started, latest)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    print_summary(summary, out)
    return 0 if summary["agrees"] and summary["verification"]["ok"] else 1


@dataclass
class _Result:
    """What the run did and found, for the summary."""

    directory: Path
    meeting: steps.MeetingRef
    voting: Voting
    room: steps.RoomEntries
    deadline_moved_to: dt.datetime
    statuses: tuple[dict[str, int], int]
    tally: dict[str, Any]
    brokers: tuple[dict[str, int], int, int]
    outputs: steps.Outputs
    tree_head: dict[str, Any]
    confirmations: list[dict[str, Any]]
    report: AuditReport


def _run(phases: Phases, platform: Platform, http: httpx.Client, scenario: Scenario, directory: Path) -> _Result:
    with phases.phase("brokers and issuer"):
        steps.create_tenants(platform)
    with phases.phase("enrolment (RA, dual control, app)", len(scenario.investors)) as advance:
        phones = steps.enrol(platform, http, scenario, threads=PHONE_THREADS, advance=advance)
    with phases.phase("meeting, register (CSV), publish"):
        meeting = steps.prepare_meeting(platform, scenario, directory)
        people = {p.holder_no for p in scenario.investors}
        for holder_no, phone in phones.items():
            if holder_no in people:
                phone.holds(meeting.public_id, holder_no)
    sends = len(phones) + len(scenario.second_choices) + len(scenario.revokers) + len(scenario.revoters)
    with phases.phase("e-voting: phones over HTTP; proxies", sends) as advance:
        voting = vote(phones, scenario, meeting.public_id, advance)
        steps.register_proxies(platform, meeting, scenario.proxied)
    with phases.phase("deadline passes (simulated); late tries"):
        moved_to = steps.pass_deadline(platform, meeting)
        after_deadline(phones, scenario, meeting.public_id, voting)
    with phases.phase("meeting room: in person, proxies"):
        room = steps.enter_room(platform, meeting, scenario)
    with phases.phase("freeze the tally, seal the PDF report"):
        steps.freeze(platform, meeting)
    with phases.phase("report, auditor bundle"):
        outputs = steps.write_outputs(platform, meeting, directory, phases.steps())
    samples = _samples(scenario, voting)
    with phases.phase("receipts checked by phones", len(samples)) as advance:
        confirmations = []
        for what, holder_no, receipt in samples:
            confirmed = phones[holder_no].confirm(receipt)
            confirmations.append({"what": what, "holder": holder_no, "at_receipt": receipt.status,
                                  "final": confirmed.status, "leaf": confirmed.leaf_index,
                                  "tree_size": confirmed.tree_size, "included": confirmed.included})
            advance(1)
        tree_head = http.get(f"/voting/log/{meeting.public_id}/tree-head").json()
    with phases.phase("offline verification of the bundle"):
        report = steps.verify_offline(outputs, phases.steps())
    return _Result(directory, meeting, voting, room, moved_to, steps.ballot_statuses(platform, meeting),
                   steps.frozen_tally(platform, meeting), steps.broker_figures(platform), outputs, tree_head,
                   confirmations, report)


def _taipei(moment: dt.datetime | str) -> str:
    """A moment (or an API's ISO 8601 UTC time) as a person in Taipei reads it."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return f"{moment.astimezone(TAIPEI):%Y-%m-%d %H:%M:%S} (Asia/Taipei)"


def _summary(scenario: Scenario, result: _Result, phases: list[tuple[str, float]], elapsed: float,
             latest: Path) -> dict[str, Any]:
    """Everything the run did, as JSON-able figures (``summary.json``, and what is printed)."""
    expected = scenario.expected()
    (statuses, revocations), voting, room, tally = result.statuses, result.voting, result.room, result.tally
    by_broker, both, certificates = result.brokers
    items = {item["item_id"]: item for item in tally["items"]}
    titles = {item.key: item for item in AGENDA}
    names = dict(CANDIDATES)
    election = items["E1"]
    measured = {
        "investors": certificates, "linked_to_both_brokers": both,
        "ballots_received": sum(statuses.values()), "counted": statuses.get("counted", 0),
        "superseded": statuses.get("superseded", 0), "revoked": statuses.get("revoked", 0),
        "overridden_by_proxy": statuses.get("overridden_by_proxy", 0),
        "revocations": revocations,
        "late_ballots_refused": int(voting.refusals.get("late_ballot") == "voting_closed"),
        "late_revocations_refused": int(voting.refusals.get("late_revocation") == "revocation_too_late"),
        "in_person": room.in_person, "by_proxy": room.by_proxy,
        "room_votes_refused": sum(1 for code in room.refused.values() if code == "evote_stands"),
    }
    disagreements = [f"{name}: expected {expected[name]:,}, got {measured[name]:,}"
                     for name in expected if measured[name] != expected[name]]
    disagreements += [f"receipt check of the {c['what']} failed" for c in result.confirmations if not c["included"]]
    report = result.report
    outputs = result.outputs
    meeting = result.meeting
    return {
        "directory": str(result.directory), "latest": str(latest),
        "elapsed_seconds": round(elapsed, 2),
        "phases": [{"phase": name, "seconds": round(seconds, 2)} for name, seconds in phases],
        "ballots_per_second": round(voting.sent / voting.seconds, 1) if voting.seconds else None,
        "issuer": {"code": ISSUER[0], "name": ISSUER[1]},
        "meeting": {"public_id": meeting.public_id, "id": meeting.id, "title": MEETING_TITLE,
                    "meeting_date": meeting.meeting_date.isoformat(), "deadline": _taipei(meeting.deadline),
                    "deadline_moved_to": _taipei(result.deadline_moved_to)},
        "investors": {"enrolled": certificates, "by_broker": by_broker, "linked_to_both_brokers": both},
        "register": {"holders": meeting.register.holders, "total_shares": meeting.register.total_shares,
                     "voting_shares": meeting.register.voting_shares,
                     "non_voting_shares": meeting.register.non_voting_shares, "sha256": meeting.register.sha256},
        "ballots": {**{key: measured[key] for key in ("ballots_received", "counted", "superseded", "revoked",
                                                      "overridden_by_proxy", "revocations", "late_ballots_refused",
                                                      "late_revocations_refused")},
                    "refusal_codes": voting.refusals, "void_elections": int(election["void_ballots"])},
        "room": {"in_person": room.in_person, "by_proxy": room.by_proxy, "votes_refused": room.refused},
        "attendance": {"outstanding_shares": int(tally["outstanding_shares"]),
                       "present_shares": int(tally["present_shares"]),
                       "modes": {mode: {"holders": f["holders"], "shares": int(f["shares"])}
                                 for mode, f in tally["attendance"].items()}},
        "items": [_item(items[key], titles[key].title, titles[key].article) for key in ("R1", "R2", "R3")],
        "election": {"seats": election["seats"], "rule": election["rule"], "votes_cast": int(election["votes_cast"]),
                     "void_ballots": election["void_ballots"],
                     "candidates": [{"key": c["candidate_id"], "name": names[c["candidate_id"]],
                                     "votes": int(c["votes"]), "elected": c["elected"]}
                                    for c in election["candidates"]],
                     "tie_for_last_seat": election["tie_for_last_seat"]},
        "tree_head": {"tree_size": result.tree_head["tree_size"], "root_hash": result.tree_head["root_hash"],
                      "issued_at": _taipei(result.tree_head["issued_at"])},
        "receipts_checked": result.confirmations,
        "files": {"report": str(outputs.report), "report_sha256": outputs.report_sha256,
                  "bundle": str(outputs.bundle), "bundle_counts": outputs.manifest_counts,
                  "root": str(outputs.root), "register": str(outputs.register),
                  "database": str(result.directory / "cloudseal.db"), "hsm": str(result.directory / "hsm")},
        "verification": {"ok": report.ok, "checks": len(report.checks),
                         "passed": sum(1 for c in report.checks if c.status == "passed"),
                         "seconds": round(report.seconds, 2),
                         "disagreement": str(report.disagreement) if report.disagreement else None,
                         "command": f"cloudseal audit verify {outputs.bundle} --root {outputs.root}"},
        "simulated": [
            f"e-voting really open while the phones voted (notice published 5 days ago; the real deadline is "
            f"{_taipei(meeting.deadline)})",
            f"the deadline was then moved to {_taipei(result.deadline_moved_to)} in the database: the late ballot, "
            f"the late revocation, the room and the freeze happened after it on the real clock",
            f"the meeting keeps its date {meeting.meeting_date.isoformat()}; it is held and frozen now",
        ],
        "expected": expected, "measured": measured, "agrees": not disagreements, "disagreements": disagreements,
    }


def _item(item: dict[str, Any], title: str, article: str | None) -> dict[str, Any]:
    return {"key": item["item_id"], "kind": item["kind"], "title": title, "article": article,
            "rule": item["rule"], "quorum_required": item["quorum_required"],
            "majority_required": item["majority_required"], "quorum_met": item["quorum_met"],
            "for": int(item["for_votes"]), "against": int(item["against_votes"]),
            "abstain": int(item["abstain_votes"]), "not_voted": int(item["not_voted"]),
            "denominator": int(item["denominator"]), "adopted": item["adopted"]}
