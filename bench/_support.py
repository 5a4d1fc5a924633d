"""Helpers shared by the benchmarks: a fresh platform in a temporary directory, reporting."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing import Barrier, Process
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cloudseal.migrate import upgrade  # noqa: E402
from cloudseal.platform import Platform, build_platform  # noqa: E402
from core.db import session_scope  # noqa: E402
from core.settings import Settings  # noqa: E402


def fresh_platform(database_url: str | None = None, *, public_url: str = "http://127.0.0.1:8000") -> tuple[Platform, Path]:
    """Migrate and bootstrap a platform on SQLite + software HSM in a new temporary directory."""
    from ca.bootstrap import bootstrap

    workdir = Path(tempfile.mkdtemp(prefix="cloudseal-bench-"))
    settings = Settings(database_url=database_url or f"sqlite:///{workdir}/bench.db",
                        hsm=f"soft:{workdir}/hsm", public_url=public_url)
    upgrade(settings.database_url)
    platform = build_platform(settings)
    platform.ensure_keys()
    with session_scope(platform.engine) as session:
        bootstrap(session, platform.pki)
    return platform, workdir


def timed_processes(target: Callable[..., None], per_process_args: list[tuple]) -> float:
    """Start one process per argument tuple, release them together, return the seconds until
    all have finished. ``target`` receives the tuple's items and then a Barrier to wait on
    once warmed up."""
    ready = Barrier(len(per_process_args) + 1)
    workers = [Process(target=target, args=(*args, ready)) for args in per_process_args]
    for worker in workers:
        worker.start()
    ready.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def report(name: str, measured: float, target: float, unit: str, extra: str = "") -> None:
    """Print one figure beside its target."""
    verdict = "meets" if measured >= target else "BELOW"
    print(f"{name}: {measured:,.0f} {unit} (target {target:,.0f} {unit}: {verdict}){'  ' + extra if extra else ''}")


def python_loop_seconds() -> float:
    """Seconds this host takes for ten million additions in a Python loop (about 0.5 s on a
    quiet modern core): printed beside figures, since a shared host's speed varies."""
    started, total = time.perf_counter(), 0
    for n in range(10_000_000):
        total += n
    return time.perf_counter() - started


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` and its live children (Linux
    /proc; 0 elsewhere). Read before and after a run: the difference is what the server
    spent, whatever else the shared host was doing."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    pids = [pid]
    try:
        pids += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return 0.0
    total = 0
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks
