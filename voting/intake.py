"""Group commit for ballots received over HTTP: one transaction for the ballots that arrive together.

A request checks its ballot on its own thread (signature, certificate, holder, choices: no
lock needed), then hands it to the process's :class:`BallotIntake` and waits. One recorder
thread takes every ballot waiting at that moment and records them with
:func:`voting.ballots.record_ballots` in one transaction: the meeting lock, the reads, the
inserts and the commit (SQLite's single writer, PostgreSQL's fsync) are paid once per group
instead of once per ballot, and the recorder does not queue behind the request threads for
each of its statements. Nothing else changes: each ballot keeps its own leaf, sealed tree
head and sealed receipt, and the rules run in the order of receipt.

A ballot refused under the lock (deadline, duplicate) gets its own refusal; the others of its
group are recorded. If the group's transaction fails as a whole, its ballots are recorded one
by one, so one ballot's fault never refuses another.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future

from sqlalchemy.engine import Engine
from sqlmodel import Session

from ca.context import Pki
from voting.ballots import CheckedBallot, Receipt, record_ballots

log = logging.getLogger(__name__)

_Pending = tuple[CheckedBallot, "Future[Receipt]"]


class BallotIntake:
    """Records checked ballots in groups on one recorder thread (started on demand, and gone
    after ``idle_seconds`` without ballots)."""

    def __init__(self, engine: Engine, pki: Pki, *, max_group: int = 256, idle_seconds: float = 10.0) -> None:
        self._engine = engine
        self._pki = pki
        self._max_group = max_group
        self._idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._recorder: threading.Thread | None = None

    def submit(self, checked: CheckedBallot) -> Receipt:
        """Record ``checked`` with whatever else is waiting; its receipt, or its refusal raised."""
        return self._enqueue(checked).result()

    async def submit_async(self, checked: CheckedBallot) -> Receipt:
        """:meth:`submit` for the event loop: waits without holding a thread."""
        return await asyncio.wrap_future(self._enqueue(checked))

    def _enqueue(self, checked: CheckedBallot) -> Future[Receipt]:
        future: Future[Receipt] = Future()
        with self._lock:
            self._queue.put((checked, future))
            if self._recorder is None:
                self._recorder = threading.Thread(target=self._run, name="ballot-intake", daemon=True)
                self._recorder.start()
        return future

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:  # a submit puts under this lock: nothing can slip in unseen
                    if self._queue.empty():
                        self._recorder = None
                        return
                continue
            group = [first]
            while len(group) < self._max_group:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._record(group)

    def _record(self, group: list[_Pending]) -> None:
        try:
            with Session(self._engine, expire_on_commit=False) as session:
                outcomes = record_ballots(session, self._pki, [checked for checked, _ in group])
                session.commit()
        except BaseException as failure:  # noqa: BLE001 - reported to the waiting requests
            if len(group) == 1:
                group[0][1].set_exception(failure)
                return
            log.warning("a group of %d ballots failed as a whole; recording them one by one", len(group))
            for pending in group:
                self._record([pending])
            return
        for (_, future), outcome in zip(group, outcomes):
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
