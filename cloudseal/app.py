"""The FastAPI application factory: mounts every context's router on one platform."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ca.api import ca_router, pki_router
from ca.bootstrap import refresh
from ca.ocsp_http import OcspFastPath
from cloudseal.platform import Platform, build_platform
from console import console_router
from core.auth_api import auth_router
from core.db import session_scope
from core.settings import Settings, get_settings
from core.web import BodyLimitMiddleware, install_error_handlers
from mobile_api.api import mobile_router
from ra import service as ra_service
from ra.api import app_router as ra_app_router
from ra.api import ra_router
from signing.api import signing_router
from signing.csc_api import csc_router
from signing.verify_api import verify_router
from voting.api import voting_router
from voting.ballot_http import BallotFastPath, CheckReader
from voting.intake import BallotIntake

log = logging.getLogger("cloudseal.app")


def _refresh_loop(platform: Platform, stop: threading.Event) -> None:
    """Keep CRLs and the OCSP signer fresh; several workers doing this at once is safe."""
    while not stop.wait(platform.settings.refresh_interval_seconds):
        try:
            with session_scope(platform.engine) as session:
                done = refresh(session, platform.pki)
            with session_scope(platform.engine) as session:
                ra_service.wipe_stale_codes(session)
            if done:
                log.info("PKI refresh: %s", ", ".join(done))
        except Exception:  # keep the loop alive; the next round retries
            log.exception("PKI refresh failed")


def create_app(settings: Settings | None = None, platform: Platform | None = None,
               *, background_refresh: bool = True) -> FastAPI:
    """Build the application. Tests pass a ready ``platform``; ``serve`` builds one."""
    settings = settings or (platform.settings if platform else get_settings())
    owned = platform is None
    platform = platform or build_platform(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Everything built at startup (routes, models, compiled statements) lives as long as
        # the process: keep it out of the collector's full passes, which otherwise rescan it.
        gc.collect()
        gc.freeze()
        stop = threading.Event()
        worker = None
        if background_refresh:
            worker = threading.Thread(target=_refresh_loop, args=(platform, stop), daemon=True)
            worker.start()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=5)
            _app.state.ballot_intake.close()
            _app.state.check_reader.close()
            if owned:
                platform.close()

    app = FastAPI(
        title="cloudseal",
        version="0.1.0",
        summary="Shared RA/CA, cloud-held remote signing and shareholder e-voting",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.platform = platform
    app.state.engine = platform.engine
    app.state.read_engine = platform.read_engine
    app.state.check_reader = CheckReader(platform.check_engine)
    app.state.pki = platform.pki
    app.state.ocsp = platform.ocsp
    app.state.jwt_public_key = platform.jwt_public_key()
    app.state.mint_token = platform.mint_token
    app.state.ballot_intake = BallotIntake(platform.engine, platform.pki)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Ballots first: a request is matched against the routers in order, and ballots are the
    # platform's busiest write.
    app.include_router(voting_router)
    app.include_router(auth_router)
    app.include_router(pki_router)
    app.include_router(ca_router)
    app.include_router(ra_router)
    app.include_router(ra_app_router)
    app.include_router(csc_router)
    app.include_router(signing_router)
    app.include_router(verify_router)
    app.include_router(console_router)
    app.include_router(mobile_router)

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Outermost: OCSP requests are answered before the framework stack (see ca.ocsp_http).
    app.add_middleware(OcspFastPath, responder=platform.ocsp, max_body_bytes=settings.max_body_bytes)
    # Likewise well-formed ballots, the busiest write (see voting.ballot_http).
    app.add_middleware(BallotFastPath, state=app.state, max_body_bytes=settings.max_body_bytes)
    return app
