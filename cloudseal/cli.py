"""The ``cloudseal`` command: migrate, init, serve, tokens, audit verification, PKI upkeep."""

from __future__ import annotations

import datetime as dt
import sys

import typer
from sqlalchemy.exc import DBAPIError
from rich.console import Console

from ca import bootstrap as pki_bootstrap
from cloudseal.migrate import upgrade
from cloudseal.platform import build_platform
from core import audit
from core.auth import Actor, Role
from core.db import make_engine, session_scope
from core.settings import get_settings

app = typer.Typer(help="cloudseal: shared RA/CA, remote signing and shareholder e-voting.",
                  no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
pki_app = typer.Typer(help="PKI upkeep.", no_args_is_help=True)
token_app = typer.Typer(help="Access tokens for staff (operators bootstrap with these).",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(pki_app, name="pki")
app.add_typer(token_app, name="token")
console = Console(stderr=True)


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
        platform.ensure_jwt_key()
        with session_scope(platform.engine) as session:
            created = pki_bootstrap.bootstrap(session, platform.pki)
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

    uvicorn.run("cloudseal.asgi:app", host=host, port=port, workers=workers,
                log_level="info", access_log=False)


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


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the audit chain; exit 1 if any entry was edited, inserted or deleted."""
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
