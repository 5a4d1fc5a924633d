"""``cloudseal demo``: the whole platform end to end on fresh data, with nothing else running.

Every run gets its own directory ``VAR/demo/<Taipei time>/`` with its own SQLite database and
software HSM (``VAR/demo/latest`` points to the newest), so a run never touches the database
``make run`` serves and two runs never collide. In it the demo bootstraps the PKI, creates
two brokers and an issuer, enrols the investors through the RA (dual control), publishes a
meeting whose register is imported from CSV, and lets every investor act from their phone —
the mobile API's reference client (:class:`mobile_api.client.MobileClient`) over HTTP to the
in-process app on a free localhost port, ``/mobile/v1`` only: redeeming the activation code,
device-bound login, my meetings, ballots with one PIN entry, double votes, revocations and
re-votes, a late ballot and a late revocation. Staff play a proxy and the room's votes, freeze
the tally (sealed PDF), write the auditor bundle; a few phones check that their ballot was
recorded and counted; the bundle is verified offline as ``cloudseal audit verify`` does; and
the demo prints what happened with the time each phase took.

Simulated in time: e-voting is really open while the phones vote (notice five days ago,
meeting in ten days); then the deadline is moved to "now" in the database, so the late
ballot, the late revocation, the room and the freeze happen after it on the real clock.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloudseal import demo_phone
from cloudseal import demo_steps as steps
from cloudseal.app import create_app
from cloudseal.demo_phone import PHONE_THREADS, Voting
from cloudseal.demo_scenario import AGENDA, CANDIDATES, ISSUER, MEETING_TITLE, Scenario, build_scenario
from cloudseal.demo_summary import print_summary
from cloudseal.platform import Platform
from core.errors import AppError
from mobile_api.client import MobileApiError
from mobile_api.proofs import TrustStore, VerificationError
from voting.audit_report import AuditReport
from voting.calendar import TAIPEI

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


class ScriptDiffers(Exception):
    """The platform answered, but not what the script says it must (the demo cannot go on)."""


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
            with phases.phase("in-process HTTP server; the app's trust"):
                app = create_app(platform=platform, background_refresh=False)
                http = cleanup.enter_context(steps.http_client(cleanup.enter_context(steps.serving(app, sock)),
                                                               PHONE_THREADS * 2))
                trust = demo_phone.shared_trust(http, steps.root_certificate(platform))
            result = _run(phases, platform, http, trust, scenario, directory)
        # A refusal or a check the script did not expect: say where.
        except (AppError, MobileApiError, VerificationError, ScriptDiffers) as exc:
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


def _run(phases: Phases, platform: Platform, http: httpx.Client, trust: TrustStore, scenario: Scenario,
         directory: Path) -> _Result:
    with phases.phase("brokers and issuer"):
        steps.create_tenants(platform)
    with phases.phase("enrolment (RA, dual control; app activation)", len(scenario.investors)) as advance:
        phones = steps.enrol(platform, scenario, lambda person, activation_id, code: demo_phone.activate(
            http, trust, person, activation_id, code), threads=PHONE_THREADS, advance=advance)
    with phases.phase("meeting, register (CSV), publish"):
        meeting = steps.prepare_meeting(platform, scenario, directory)
    with phases.phase("apps: device login, my meetings", len(phones)) as advance:
        listed = demo_phone.open_apps(phones, meeting.public_id, advance)
        wrong = {no: numbers for no, numbers in listed.items() if numbers != [no]}
        if wrong:
            no, numbers = next(iter(wrong.items()))
            raise ScriptDiffers(f"{len(wrong)} phones do not list the meeting with their holder number "
                                f"(the phone of {no} lists {numbers or 'nothing to vote on'})")
        holdings = {no: numbers[0] for no, numbers in listed.items()}
    sends = len(phones) + len(scenario.second_choices) + len(scenario.revokers) + len(scenario.revoters)
    with phases.phase("e-voting: phones (mobile API); proxies", sends) as advance:
        voting = demo_phone.vote(phones, holdings, scenario, meeting.public_id, advance)
        steps.register_proxies(platform, meeting, scenario.proxied)
    with phases.phase("deadline passes (simulated); late tries"):
        late_ballot = demo_phone.prepare_late_ballot(phones, holdings, scenario, meeting.public_id)
        moved_to = steps.pass_deadline(platform, meeting)
        demo_phone.after_deadline(phones, holdings, scenario, meeting.public_id, late_ballot, voting)
    with phases.phase("meeting room: in person, proxies"):
        room = steps.enter_room(platform, meeting, scenario)
    with phases.phase("freeze the tally, seal the PDF report"):
        steps.freeze(platform, meeting)
    with phases.phase("report, auditor bundle"):
        outputs = steps.write_outputs(platform, meeting, directory, phases.steps())
    samples = demo_phone.samples(scenario, voting)
    with phases.phase("phones verify their ballot was counted", len(samples)) as advance:
        confirmations = demo_phone.confirm(phones, meeting.public_id, samples, advance)
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
    disagreements += [f"the phone's check of the {c['what']} failed" for c in result.confirmations
                      if not c["included"] or c["tree_size"] != result.tree_head["tree_size"]]
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
