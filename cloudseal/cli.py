"""The ``cloudseal`` command: migrate, init, serve, tokens, staff accounts, API clients,
audit verification, PKI upkeep."""

from __future__ import annotations

import datetime as dt
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from ca import bootstrap as pki_bootstrap
from cloudseal.migrate import upgrade
from cloudseal.platform import build_platform
from core import accounts, api_clients, audit
from core.auth import Actor, Role
from core.db import make_engine, session_scope
from core.errors import AppError
from core.models import StaffUser
from core.settings import get_settings
from ra import service as ra_service
from voting.register import RegisterRejected, import_register

app = typer.Typer(help="cloudseal: shared RA/CA, remote signing and shareholder e-voting.",
                  no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log, and auditor bundles of frozen meetings.",
                        no_args_is_help=True)
pki_app = typer.Typer(help="PKI upkeep.", no_args_is_help=True)
token_app = typer.Typer(help="Access tokens for staff (operators bootstrap with these).",
                        no_args_is_help=True)
staff_app = typer.Typer(help="Staff accounts (operators, RA officers, back offices, hosts, "
                        "auditors).", no_args_is_help=True)
brokers_app = typer.Typer(help="Brokers: the RA's tenants.", no_args_is_help=True)
clients_app = typer.Typer(help="Broker API clients (client-credentials flow).", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(pki_app, name="pki")
app.add_typer(token_app, name="token")
app.add_typer(staff_app, name="staff")
app.add_typer(brokers_app, name="brokers")
app.add_typer(clients_app, name="clients")
console = Console(stderr=True)

CLI_ACTOR = Actor(subject="cli", role=Role.OPERATOR)
T = TypeVar("T")


@contextmanager
def _exit_on_refusal() -> Iterator[None]:
    """Print a refusal (exit 1) or a database that is not migrated (exit 2)."""
    try:
        yield
    except RegisterRejected as exc:  # name the bad lines, not just the verdict
        for error in exc.errors[:50]:
            column = escape(f" [{error.column}]") if error.column else ""
            console.print(f"line {error.line}{column}: {escape(error.message)}")
        if exc.error_count > 50:
            console.print(f"… and {exc.error_count - 50} more")
        console.print(f"[red]register rejected: {exc.error_count} problem(s); nothing was imported[/red] "
                      f"({exc.code})")
        raise typer.Exit(1) from None
    except AppError as exc:
        console.print(f"[red]{escape(exc.message)}[/red] ({exc.code})")
        raise typer.Exit(1) from None
    except DBAPIError as exc:
        console.print(f"[red]the database is not ready ({escape(str(exc.orig))}); "
                      "run `cloudseal migrate` first[/red]")
        raise typer.Exit(2) from None


def _change(apply: Callable[[Session], T]) -> T:
    """Run one service call in a transaction; print refusals and exit non-zero."""
    engine = make_engine(get_settings().database_url)
    try:
        with _exit_on_refusal(), session_scope(engine) as session:
            return apply(session)
    finally:
        engine.dispose()


@app.command()
def migrate() -> None:
    """Apply the database migrations (idempotent)."""
    upgrade(get_settings().database_url)
    console.print("[green]database schema is up to date[/green]")


@app.command()
def init() -> None:
    """Create the PKI and platform keys if missing; a second run changes nothing."""
    platform = build_platform(get_settings())
    try:
        keys = platform.ensure_keys()
        with session_scope(platform.engine) as session:
            created = pki_bootstrap.bootstrap(session, platform.pki)
        created += [f"HSM key {label}" for label in keys]
    except DBAPIError as exc:
        console.print(f"[red]the database is not ready ({exc.orig}); run `cloudseal migrate` first[/red]")
        raise typer.Exit(2) from None
    finally:
        platform.close()
    if created:
        console.print("created: " + ", ".join(created))
    else:
        console.print("PKI already initialised; nothing changed")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8000, help="TCP port"),
    workers: int = typer.Option(1, help="worker processes (stateless; share the database)"),
) -> None:
    """Serve the platform over HTTP."""
    import uvicorn

    from cloudseal.workers import reuse_port_supported, serve_workers

    if workers > 1 and reuse_port_supported():
        if port == 0:
            raise typer.BadParameter("several workers need a fixed port", param_hint="--port")
        serve_workers(host, port, workers)  # one listening socket per worker: connections spread evenly
        return
    uvicorn.run("cloudseal.asgi:app", host=host, port=port, workers=workers,
                log_level="info", access_log=False)


@app.command()
def demo(
    investors: int = typer.Option(1000, min=20, help="investors to enrol; every one of them votes"),
    var: Path = typer.Option(Path("var"), "--var", help="the demo writes into VAR/demo/<time>/ (its own "
                                                        "database and HSM; VAR/demo/latest points to it)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars (the summary is still printed)"),
) -> None:
    """Run the platform end to end on fresh data: enrolment, a meeting voted from phones over
    HTTP, the sealed report, the auditor bundle verified offline; then a summary."""
    from cloudseal.demo import run_demo

    raise typer.Exit(run_demo(investors=investors, var=var, quiet=quiet))


@pki_app.command("refresh")
def pki_refresh() -> None:
    """Re-issue CRLs past half their validity and renew an ageing OCSP signer."""
    platform = build_platform(get_settings())
    try:
        with session_scope(platform.engine) as session:
            done = pki_bootstrap.refresh(session, platform.pki)
    finally:
        platform.close()
    console.print("refreshed: " + ", ".join(done) if done else "everything is current")


@pki_app.command("rotate-ocsp-signer")
def pki_rotate_ocsp_signer(
    reason: str = typer.Option("superseded", help="RFC 5280 reason for the old signer, e.g. keyCompromise"),
) -> None:
    """Issue a new OCSP signer, revoke the current one and drop the answers it signed."""
    platform = build_platform(get_settings())
    try:
        with session_scope(platform.engine) as session:
            serial = pki_bootstrap.rotate_ocsp_signer(session, platform.pki, actor=CLI_ACTOR, reason=reason)
    except AppError as exc:
        console.print(f"[red]{escape(exc.message)}[/red] ({exc.code})")
        raise typer.Exit(1) from None
    finally:
        platform.close()
    console.print(f"new OCSP signer {serial}")


@brokers_app.command("create")
def brokers_create(
    code: str = typer.Option(..., help="the broker's market code, e.g. 9800"),
    name: str = typer.Option(..., help="the broker's name"),
    dual_control: bool = typer.Option(False, help="enrolments need a second officer's approval"),
) -> None:
    """Register a broker (a tenant of the RA)."""
    broker = _change(lambda session: ra_service.create_broker(
        session, actor=CLI_ACTOR, code=code, name=name, dual_control=dual_control))
    console.print(f"broker {broker.code} created ({'dual control' if broker.dual_control else 'single approval'})")


@audit_app.command("verify")
def audit_verify(
    bundle: Path = typer.Argument(None, help="an auditor bundle (.zip) to re-verify offline; without it, "
                                              "the audit log's hash chain is verified", show_default=False),
    root: Path = typer.Option(None, "--root", help="the platform's root certificate (PEM or DER) the bundle "
                                                   "must chain to (needed with BUNDLE)", show_default=False),
    workers: int = typer.Option(2, min=0, max=64, help="processes checking signatures (0: none)"),
) -> None:
    """Recompute the audit chain; exit 1 if any entry was edited, inserted or deleted.

    With BUNDLE and --root: re-verify a meeting's auditor bundle offline (signatures, OCSP
    evidence, the Merkle log, the Company Act rules, every figure of the frozen tally) using
    nothing but the bundle and the root; exit 0 when everything agrees, 1 on any difference.
    """
    if bundle is not None:
        if root is None:
            raise typer.BadParameter("give the root certificate to verify the bundle against", param_hint="--root")
        from cloudseal.audit_cli import verify_bundle_command

        raise typer.Exit(verify_bundle_command(bundle, root, workers, out=Console(), err=console))
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            report = audit.verify_chain(session)
    finally:
        engine.dispose()
    if report.ok:
        console.print(f"[green]audit log intact[/green]: {report.entries} entries")
        return
    for problem in report.problems:
        console.print(f"[red]{problem}[/red]")
    console.print(f"audit log BROKEN: {len(report.problems)} problem(s) in {report.entries} entries")
    sys.exit(1)


@audit_app.command("bundle")
def audit_bundle(
    meeting: str = typer.Option(..., "--meeting", help="the frozen meeting's public id"),
    out: Path = typer.Option(..., "--out", help="where to write the bundle (.zip)"),
) -> None:
    """Write the auditor bundle of a frozen meeting from the configured database (sealed by
    the platform; verify it with `cloudseal audit verify BUNDLE --root root.crt`)."""
    from cloudseal.audit_cli import write_bundle_command

    with _exit_on_refusal():
        manifest = write_bundle_command(meeting, out, err=console)
    counts = manifest["counts"]
    console.print(f"bundle of meeting {escape(meeting)} written to {escape(str(out))}: {counts['holders']:,} holders, "
                  f"{counts['ballots']:,} ballots, {counts['revocations']:,} revocations, "
                  f"{counts['tree_heads']:,} tree heads")


@token_app.command("issue")
def token_issue(
    subject: str = typer.Option(..., help="who the token names"),
    role: Role = typer.Option(Role.OPERATOR, help="the role it carries"),
    tenant: str = typer.Option(None, help="tenant (broker or issuer code), if any"),
    ttl_minutes: int = typer.Option(15, min=1, max=24 * 60, help="lifetime"),
) -> None:
    """Print a signed access token (needs access to the HSM)."""
    platform = build_platform(get_settings())
    try:
        token = platform.mint_token(Actor(subject=subject, role=role, tenant=tenant),
                                    dt.timedelta(minutes=ttl_minutes))
    finally:
        platform.close()
    print(token)


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or a hidden prompt typed twice."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)


@staff_app.command("create")
def staff_create(
    username: str = typer.Option(..., help="sign-in name: letters, digits, . _ @ - (case-insensitive)"),
    role: Role = typer.Option(..., help="the staff member's role"),
    tenant: str = typer.Option(None, help="broker code (ra_officer, broker_backoffice) or issuer "
                                          "code (issuer_host); none for operator and auditor"),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="read the password from the first line of stdin"),
) -> None:
    """Create a staff account; the password is asked for (hidden) and never shown."""
    password = _read_password(password_stdin)

    def create(session: Session) -> StaffUser:
        if role in (Role.RA_OFFICER, Role.BROKER_BACKOFFICE) and tenant:
            ra_service.get_broker(session, tenant.upper())  # a broker's staff needs the broker
        return accounts.create_staff_user(session, actor=CLI_ACTOR, username=username, password=password,
                                          role=role, tenant=tenant)

    user = _change(create)
    where = f" of {user.tenant}" if user.tenant else ""
    console.print(f"created {user.role} [bold]{escape(user.username)}[/bold]{where}")


@staff_app.command("deactivate")
def staff_deactivate(username: str = typer.Option(..., help="the account to disable")) -> None:
    """Disable a staff account and end its sessions (refresh tokens revoked)."""
    user = _change(lambda session: accounts.deactivate_staff_user(
        session, actor=CLI_ACTOR, username=username))
    console.print(f"deactivated [bold]{escape(user.username)}[/bold]")


@clients_app.command("create")
def clients_create(
    tenant: str = typer.Option(..., help="the broker code the client acts for"),
    name: str = typer.Option(..., help="what the client is, e.g. 'order verification'"),
) -> None:
    """Create a broker API client; prints its client_id and secret (shown only this once)."""
    def create(session: Session) -> api_clients.NewApiClient:
        ra_service.get_broker(session, tenant.upper())
        return api_clients.create_api_client(session, actor=CLI_ACTOR, tenant=tenant, name=name)

    created = _change(create)
    print(f"client_id: {created.client_id}")
    print(f"client_secret: {created.client_secret}")
    console.print(f"API client for broker {created.tenant} created; store the secret now: "
                  "it cannot be shown again")


@clients_app.command("revoke")
def clients_revoke(client_id: str = typer.Option(..., help="the client to revoke")) -> None:
    """Revoke a broker API client: its secret stops working at once."""
    _change(lambda session: api_clients.revoke_api_client(session, actor=CLI_ACTOR, client_id=client_id))
    console.print(f"revoked API client {escape(client_id)}")


register_app = typer.Typer(help="Shareholder registers at book closure.", no_args_is_help=True)
app.add_typer(register_app, name="register")


@register_app.command("import")
def register_import(
    meeting_id: int = typer.Argument(..., help="the meeting's number"),
    file: typer.FileBinaryRead = typer.Argument(..., help="the register: CSV, UTF-8, with a header row "
                                                         "(- for standard input)"),
    replace: bool = typer.Option(False, "--replace", help="replace a different register imported before"),
    as_user: str = typer.Option(None, "--as", help="act as this staff account (default: an operator)"),
) -> None:
    """Import a meeting's shareholder register; a file with any bad line imports nothing."""
    status = os.fstat(file.fileno())
    platform = build_platform(get_settings())
    try:
        with _exit_on_refusal(), file as stream, Progress(
            TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        ) as bar:
            task = bar.add_task("import", total=status.st_size if stat.S_ISREG(status.st_mode) else None)
            with session_scope(platform.engine) as session:
                actor = CLI_ACTOR
                if as_user:
                    name = accounts.normalise_username(as_user)
                    user = session.execute(select(StaffUser).where(StaffUser.username == name)).scalar_one_or_none()
                    if user is None or not user.active:
                        raise AppError(f"no active staff user {name!r}", code="unknown_user")
                    actor = accounts.staff_actor(user)
                summary = import_register(
                    session, platform.keystore, actor=actor, meeting_id=meeting_id, stream=stream,
                    replace=replace, progress=lambda done: bar.update(task, completed=done))
    finally:
        platform.close()
    if summary.unchanged:
        console.print("the same register was imported before; nothing changed")
    console.print(f"{summary.holders:,} holders, {summary.total_shares:,} shares "
                  f"({summary.voting_shares:,} voting, {summary.non_voting_shares:,} without voting rights)")
    console.print(f"sha256 {summary.sha256}")
