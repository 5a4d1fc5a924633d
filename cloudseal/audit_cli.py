"""``cloudseal audit verify BUNDLE --root root.crt`` and ``cloudseal audit bundle``: progress
bars on the long steps, then the first disagreement (if any), the checks, the counts and the
figures per item, in tables a person reads.

Verifying reads only the bundle and the root: no settings, database or HSM are touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from voting.audit_report import FAILED, PASSED, AuditReport
from voting.audit_verify import load_root, verify_bundle

_MARK = {PASSED: "[green]passed[/green]", FAILED: "[red bold]FAILED[/red bold]", "skipped": "[dim]skipped[/dim]"}


@contextmanager
def progress_bars(console: Console) -> Iterator[Any]:
    """A ``progress(step, done, total)`` callback drawing one rich bar per step."""
    with Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bars:
        tasks: dict[str, TaskID] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bars.add_task(step, total=total)
            bars.update(tasks[step], completed=done, total=total)

        yield update


def read_root(path: Path) -> Any:
    """The root certificate at ``path`` (PEM or DER); ``ValueError`` when it is neither."""
    return load_root(path.read_bytes())


def verify_bundle_command(bundle: Path, root: Path, workers: int, *, out: Console, err: Console) -> int:
    """Verify ``bundle`` against the root certificate file ``root``; print the report; return the exit code."""
    try:
        anchor = read_root(root)
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read the root certificate {escape(str(root))}: {escape(str(exc))}[/red]")
        return 2
    if not bundle.is_file():
        err.print(f"[red]no such bundle file: {escape(str(bundle))}[/red]")
        return 2
    with progress_bars(err) as progress:
        report = verify_bundle(bundle, anchor, workers=workers, progress=progress)
    print_report(report, out)
    return 0 if report.ok else 1


def print_report(report: AuditReport, console: Console) -> None:
    """The first disagreement first, then the checks, the counts and the recomputed figures."""
    meeting = report.meeting
    if meeting:
        issuer = meeting.get("issuer") or {}
        console.print(f"[bold]{escape(str(meeting.get('title') or ''))}[/bold] — {escape(str(issuer.get('code', '')))} "
                      f"{escape(str(issuer.get('name', '')))}, meeting {escape(str(meeting.get('public_id')))}")
    if report.disagreement is not None:
        first = report.disagreement
        console.print(f"[red bold]FIRST DISAGREEMENT[/red bold] ({first.check}): {escape(str(first))}")
        for other in report.more_disagreements[:5]:
            console.print(f"  also: {escape(str(other))}")
    checks = Table(title="Checks", title_justify="left")
    for column in ("#", "check", "result", "detail"):
        checks.add_column(column)
    for number, check in enumerate(report.checks, start=1):
        checks.add_row(str(number), check.title, _MARK.get(check.status, check.status), escape(check.detail))
    console.print(checks)
    if report.counts:
        counts = Table(title="Counts", title_justify="left")
        counts.add_column("what")
        counts.add_column("number", justify="right")
        for name, value in report.counts.items():
            counts.add_row(name.replace("_", " "), f"{value:,}")
        console.print(counts)
    if report.figures is not None:
        console.print(_figures(report.figures))
    for note in report.notes:
        console.print(f"[yellow]note[/yellow]: {escape(note)}")
    verdict = "[green bold]the bundle verifies: every figure recomputed equals the frozen tally[/green bold]" \
        if report.ok else "[red bold]the bundle does NOT verify[/red bold]"
    console.print(f"{verdict} ({report.seconds:.1f} s)")


def _figures(figures: dict[str, Any]) -> Table:
    table = Table(title=f"Figures (outstanding {figures['outstanding_shares']:,} shares, present "
                        f"{figures['present_shares']:,})", title_justify="left")
    for column in ("item", "kind", "for", "against", "abstain", "not voted", "outcome"):
        table.add_column(column, justify="right" if column in ("for", "against", "abstain", "not voted") else "left")
    for item in figures["items"]:
        if item["kind"] == "election":
            ranked = ", ".join(f"{c['candidate_id']} {c['votes']:,}{' *' if c['elected'] else ''}"
                               for c in item["candidates"])
            outcome = f"elected {', '.join(item['elected']) or 'none'}" + (
                f"; lots among {', '.join(item['tie_for_last_seat'])}" if item["tie_for_last_seat"] else "")
            table.add_row(item["item_id"], "election", "", "", "", "", f"{outcome} ({ranked})")
        else:
            table.add_row(item["item_id"], item["kind"], f"{item['for_votes']:,}", f"{item['against_votes']:,}",
                          f"{item['abstain_votes']:,}", f"{item['not_voted']:,}",
                          f"{'adopted' if item['adopted'] else 'not adopted'} ({item['rule']})")
    return table


def write_bundle_command(meeting: str, out: Path, *, err: Console) -> dict[str, Any]:
    """Write the bundle of the frozen meeting ``meeting`` (public id) from the configured
    database to ``out`` (written beside it first, then renamed: never a partial file)."""
    from cloudseal.platform import build_platform
    from core.db import session_scope
    from core.settings import get_settings
    from voting import bundle

    platform = build_platform(get_settings())
    partial = out.with_name(f".{out.name}.partial")
    try:
        with progress_bars(err) as progress, session_scope(platform.engine) as session:
            manifest = bundle.write_bundle(session, platform.pki, bundle.meeting_by_public_id(session, meeting),
                                           partial, progress=progress)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
        platform.close()
    return manifest
