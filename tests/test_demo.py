"""``cloudseal demo``: run end to end (as a user runs it, in a subprocess) on a small cast, then
check its figures add up, the sealed PDF and the auditor bundle stand up to the outside tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloudseal.cli import app as cli
from cloudseal.demo_scenario import build_scenario

CLOUDSEAL = [sys.executable, "-m", "cloudseal"]
INVESTORS = 40


@dataclass
class DemoRun:
    var: Path
    result: subprocess.CompletedProcess[str]
    directory: Path  # this run's own directory (VAR/demo/latest when it finished)

    @property
    def summary(self) -> dict:
        return json.loads((self.directory / "summary.json").read_text())


def latest(var: Path) -> Path:
    return (var / "demo" / "latest").resolve()


def run_demo(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("CLOUDSEAL_DATABASE_URL", None)
    return subprocess.run([*CLOUDSEAL, "demo", "--var", str(var), *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    var = tmp_path_factory.mktemp("demo-var")
    result = run_demo(var, "--investors", str(INVESTORS))
    return DemoRun(var, result, latest(var))


def test_the_demo_runs_to_the_end_and_says_so(demo: DemoRun) -> None:
    assert demo.result.returncode == 0, demo.result.stdout[-3000:] + demo.result.stderr[-3000:]
    out = demo.result.stdout
    assert "the bundle verifies" in out and "FAILED" not in out
    for heading in ("Investors", "Ballots and the room", "Resolutions", "election of 5 directors", "Ballot log",
                    "Files", "Simulated in time", "Time per phase"):
        assert heading in out
    assert "voting_closed" in out and "revocation_too_late" in out and "evote_stands" in out
    assert out.count("elected") >= 5


def test_every_figure_matches_the_script(demo: DemoRun) -> None:
    summary = demo.summary
    assert summary["agrees"], summary["disagreements"]
    assert summary["measured"] == summary["expected"] == build_scenario(INVESTORS).expected()


def test_counted_ballots_are_the_investors_less_those_revoked_without_a_new_vote_and_those_proxied(
        demo: DemoRun) -> None:
    ballots = demo.summary["ballots"]
    revoted = ballots["ballots_received"] - INVESTORS - ballots["superseded"]
    assert 0 < revoted < ballots["revoked"]
    assert ballots["counted"] == INVESTORS - (ballots["revoked"] - revoted) - ballots["overridden_by_proxy"]
    assert ballots["ballots_received"] == sum(ballots[s] for s in ("counted", "superseded", "revoked",
                                                                    "overridden_by_proxy"))
    assert ballots["late_ballots_refused"] == 1 and ballots["refusal_codes"]["late_ballot"] == "voting_closed"


def test_the_results_follow_from_the_votes(demo: DemoRun) -> None:
    summary = demo.summary
    attendance = summary["attendance"]
    assert sum(mode["shares"] for mode in attendance["modes"].values()) == attendance["present_shares"]
    for item in summary["items"]:
        assert item["for"] + item["against"] + item["abstain"] + item["not_voted"] == attendance["present_shares"]
        assert item["adopted"] == (2 * item["for"] > item["denominator"])  # quorum met: more than half for
    assert [item["key"] for item in summary["items"] if item["adopted"]] == ["R1", "R3"]
    election = summary["election"]
    elected = [c for c in election["candidates"] if c["elected"]]
    assert len(elected) == 5 and min(c["votes"] for c in elected) > max(
        c["votes"] for c in election["candidates"] if not c["elected"])
    assert all(check["included"] for check in summary["receipts_checked"])
    assert {check["final"] for check in summary["receipts_checked"]} == {
        "counted", "superseded", "revoked", "overridden_by_proxy"}


def test_pdfsig_finds_the_sealed_report_valid(demo: DemoRun) -> None:
    if shutil.which("pdfsig") is None:
        pytest.skip("pdfsig not installed (apt-get install poppler-utils)")
    output = subprocess.run(["pdfsig", str(demo.directory / "report.pdf")], capture_output=True, text=True,
                            timeout=60, check=False).stdout
    assert "Signature Validation: Signature is Valid." in output
    assert "cloudseal Platform Seal" in output


def test_the_bundle_verifies_offline_with_the_audit_command(demo: DemoRun) -> None:
    verified = subprocess.run([*CLOUDSEAL, "audit", "verify", str(demo.directory / "bundle.zip"),
                               "--root", str(demo.directory / "root.crt")],
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "the bundle verifies" in verified.stdout


def test_a_second_run_gets_its_own_directory_and_leaves_the_first_alone(demo: DemoRun) -> None:
    again = run_demo(demo.var, "--investors", "20", "--quiet")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second = latest(demo.var)
    assert second != demo.directory and (demo.directory / "bundle.zip").is_file()
    assert json.loads((second / "summary.json").read_text())["investors"]["enrolled"] == 20
    assert demo.summary["investors"]["enrolled"] == INVESTORS
    assert len([d for d in (demo.var / "demo").iterdir() if not d.is_symlink()]) == 2


def test_too_few_investors_is_refused_before_anything_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--investors", "5", "--var", str(tmp_path)])
    assert result.exit_code == 2 and not (tmp_path / "demo").exists()


def test_the_script_gives_each_holder_at_most_one_part_to_play() -> None:
    scenario = build_scenario(1000)
    parts = [list(scenario.second_choices), scenario.revokers, scenario.proxied,
             [scenario.late_voter, scenario.late_revoker, scenario.void_election]]
    everyone = [no for part in parts for no in part]
    assert len(everyone) == len(set(everyone)) and scenario.investors[0].holder_no not in everyone
    assert set(scenario.revoters) < set(scenario.revokers)
    expected = scenario.expected()
    assert expected["counted"] == 1000 - (expected["revoked"] - len(scenario.revoters)) - len(scenario.proxied)
