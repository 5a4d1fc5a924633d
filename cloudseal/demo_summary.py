"""The demo's summary in tables a person reads (from the figures ``summary.json`` keeps)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def _n(value: int) -> str:
    return f"{value:,}"


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """Investors, ballots, results, elected directors, the tree head, files, verification, timings."""
    meeting, ballots, room = summary["meeting"], summary["ballots"], summary["room"]
    console.print(f"[bold]{escape(meeting['title'])}[/bold] of {escape(summary['issuer']['name'])} "
                  f"({summary['issuer']['code']}), meeting {meeting['public_id']}")

    investors = _table("Investors", "what", "number", right=("number",))
    investors.add_row("enrolled (certificate in the HSM, app activated)", _n(summary["investors"]["enrolled"]))
    for broker, count in sorted(summary["investors"]["by_broker"].items()):
        investors.add_row(f"with an account at broker {broker}", _n(count))
    investors.add_row("linked to both brokers (one identity, one certificate)",
                      _n(summary["investors"]["linked_to_both_brokers"]))
    register = summary["register"]
    investors.add_row("holders on the register (CSV import)", _n(register["holders"]))
    investors.add_row("shares: total / without voting rights (treasury)",
                      f"{_n(register['total_shares'])} / {_n(register['non_voting_shares'])}")
    console.print(investors)

    table = _table("Ballots and the room", "what", "number", "rule", right=("number",))
    table.add_row("ballots received, signed and logged", _n(ballots["ballots_received"]), "each gets a sealed receipt")
    table.add_row("counted", _n(ballots["counted"]), "the first ballot received counts (Art. 177-2)")
    table.add_row("superseded", _n(ballots["superseded"]), "a later ballot is recorded, not counted")
    table.add_row("revoked", _n(ballots["revoked"]), "revoked before the deadline; the next ballot counts")
    table.add_row("overridden by a proxy", _n(ballots["overridden_by_proxy"]),
                  "a registered proxy overrides the e-vote")
    table.add_row("revocations accepted", _n(ballots["revocations"]), "logged, with a sealed receipt")
    table.add_row("late ballots refused", _n(ballots["late_ballots_refused"]),
                  escape(ballots["refusal_codes"].get("late_ballot", "")))
    table.add_row("late revocations refused", _n(ballots["late_revocations_refused"]),
                  escape(ballots["refusal_codes"].get("late_revocation", "")) + ": the e-vote stays in force")
    table.add_row("elections void on a ballot", _n(ballots["void_elections"]), "votes beyond shares × seats (Art. 198)")
    table.add_row("room: recorded present in person", _n(room["in_person"]),
                  "an e-voter who did not revoke in time is present; the e-vote counts")
    table.add_row("room: represented by a proxy", _n(room["by_proxy"]), "the proxy's votes count")
    table.add_row("room: in-room votes refused", _n(len(room["votes_refused"])),
                  escape(", ".join(sorted(set(room["votes_refused"].values())))) + ": the e-vote stands (Art. 177-2)")
    console.print(table)
    attendance = summary["attendance"]
    modes = ", ".join(f"{mode.replace('_', ' ')} {_n(f['holders'])} ({_n(f['shares'])} shares)"
                      for mode, f in attendance["modes"].items())
    console.print(f"Present in the tally (holders and shares): {modes}; {_n(attendance['present_shares'])} of "
                  f"{_n(attendance['outstanding_shares'])} outstanding shares (e-voters count as present, "
                  "Art. 177-1)")

    results = _table(f"Resolutions (outstanding {_n(attendance['outstanding_shares'])} shares, present "
                     f"{_n(attendance['present_shares'])})", "item", "for", "against", "abstain", "not voted",
                     "result", right=("for", "against", "abstain", "not voted"))
    for item in summary["items"]:
        outcome = "[green]adopted[/green]" if item["adopted"] else "[red]not adopted[/red]"
        results.add_row(f"{item['key']} {item['kind']}", _n(item["for"]), _n(item["against"]), _n(item["abstain"]),
                        _n(item["not_voted"]), outcome)
    console.print(results)
    for item in summary["items"]:
        article = f" (Art. {item['article']})" if item["article"] else ""
        console.print(f"  {item['key']}{article} {escape(item['title'])} — rule [italic]{item['rule']}[/italic]: "
                      f"quorum {item['quorum_required']} of the outstanding shares present "
                      f"({'met' if item['quorum_met'] else 'not met'}); needs {item['majority_required']} of the "
                      f"{_n(item['denominator'])} votes present for")

    election = summary["election"]
    directors = _table(f"E1 election of {election['seats']} directors ({election['rule']}: the most votes win; "
                       f"{_n(election['votes_cast'])} votes cast)", "candidate", "votes", "elected",
                       right=("votes",))
    for candidate in election["candidates"]:
        directors.add_row(f"{candidate['key']} {escape(candidate['name'])}", _n(candidate["votes"]),
                          "[green]elected[/green]" if candidate["elected"] else "")
    console.print(directors)
    if election["tie_for_last_seat"]:
        console.print(f"tie for the last seat, to be drawn by lot: {', '.join(election['tie_for_last_seat'])}")

    head = summary["tree_head"]
    console.print(f"[bold]Ballot log[/bold]: signed tree head of size {_n(head['tree_size'])}, root hash "
                  f"{head['root_hash']}, issued {head['issued_at']}")
    proofs = _table("Ballots checked by their phones after the meeting (my leaf, its inclusion proof, the tree head's seal)",
                    "receipt", "holder", "at receipt", "final", "leaf", "included", right=("leaf",))
    for check in summary["receipts_checked"]:
        proofs.add_row(check["what"], check["holder"], check["at_receipt"], check["final"], _n(check["leaf"]),
                       "[green]yes[/green]" if check["included"] else "[red]NO[/red]")
    console.print(proofs)

    files = summary["files"]
    paths = _table("Files", "what", "where")
    paths.add_row("signed PDF report (PAdES)", f"{escape(files['report'])}  sha256 {files['report_sha256'][:16]}…")
    counts = files["bundle_counts"]
    paths.add_row("auditor bundle", f"{escape(files['bundle'])}  {_n(counts['ballots'])} ballots, "
                  f"{_n(counts['revocations'])} revocations, {_n(counts['tree_heads'])} tree heads, "
                  f"{_n(counts['signers'])} signers' certificates")
    paths.add_row("root certificate", escape(files["root"]))
    paths.add_row("register (CSV)", escape(files["register"]))
    paths.add_row("database, software HSM", f"{escape(files['database'])}, {escape(files['hsm'])}")
    paths.add_row("these figures", escape(f"{summary['directory']}/summary.json") + f" (latest: {summary['latest']})")
    console.print(paths)

    verification = summary["verification"]
    if verification["ok"]:
        console.print(f"[green bold]offline verification: the bundle verifies[/green bold] — "
                      f"{verification['passed']}/{verification['checks']} checks passed, every figure recomputed "
                      f"from the signed ballots equals the frozen tally ({verification['seconds']:.1f} s)")
    else:
        console.print(f"[red bold]offline verification FAILED[/red bold]: {escape(str(verification['disagreement']))}")
    console.print(f"  again: {escape(verification['command'])}")

    console.print("[bold]Simulated in time[/bold]")
    for line in summary["simulated"]:
        console.print(f"  • {escape(line)}")
    if summary["disagreements"]:
        console.print("[red bold]figures that differ from the script[/red bold]")
        for line in summary["disagreements"]:
            console.print(f"  • {escape(line)}")

    timings = _table("Time per phase", "phase", "seconds", right=("seconds",))
    for phase in summary["phases"]:
        timings.add_row(escape(phase["phase"]), f"{phase['seconds']:.2f}")
    timings.add_row("[bold]total[/bold]", f"[bold]{summary['elapsed_seconds']:.2f}[/bold]")
    console.print(timings)
    if summary["ballots_per_second"]:
        console.print(f"e-voting: {summary['ballots_per_second']:.1f} signed ballots and revocations per second "
                      "through the mobile API (prepare; PIN + device signature → HSM-signed CMS, "
                      "sealed receipt checked by the phone)")
