"""Group commit for ballots received over HTTP: the ballots checked in one turn of the event
loop are recorded in one transaction.

A ballot is checked on the event loop as its request arrives (signature, certificate, holder,
choices: no lock needed) and handed to the process's :class:`BallotIntake`. The first ballot
of a turn schedules the recording after the callbacks already due, so every request whose
bytes arrived meanwhile is checked first; then :func:`voting.ballots.record_ballots` records
them all in one transaction: the meeting lock, the reads, the inserts and the commit
(SQLite's single writer, PostgreSQL's fsync) are paid once per group instead of once per
ballot. Nothing else changes: each ballot keeps its own leaf, sealed tree head and sealed
receipt, and the rules run in the order of receipt.

The loop never waits for a lock: another request's transaction may hold it until a step that
only the loop can schedule (a dependency's commit runs in a later thread-pool hop).

* SQLite: the group is recorded on the loop once the write turn is taken without waiting
  (:meth:`core.db._WriteGate.try_take`); while another worker process or request writes, the
  loop goes on checking the ballots that arrive (they join the group) and tries again half a
  millisecond later. Recording on the loop spares the interpreter-lock hand-offs a recorder
  thread pays on every statement (measured: 5.5 ms of server CPU per ballot with one, 3.7 ms
  without).
* PostgreSQL: row locks cannot be tried that way, so the group is recorded on one recorder
  thread while the loop goes on; the next group gathers meanwhile.

A ballot refused under the lock (deadline, duplicate) gets its own refusal; the others of its
group are recorded. If the group's transaction fails as a whole, its ballots are recorded one
by one, so one ballot's fault never refuses another.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine
from sqlmodel import Session

from ca.context import Pki
from core.db import write_gate
from voting.ballots import CheckedBallot, Receipt, record_ballots

log = logging.getLogger(__name__)
_RETRY = 0.0005  # seconds between tries for SQLite's write turn

_Pending = tuple[CheckedBallot, "asyncio.Future[Receipt]"]
_Outcome = Receipt | Exception


class BallotIntake:
    """Records the ballots checked in one turn of the event loop as one group."""

    def __init__(self, engine: Engine, pki: Pki) -> None:
        self._engine = engine
        self._pki = pki
        self._gate = write_gate(engine)
        self._due: list[_Pending] = []
        self._scheduled = False  # a recording of the due ballots is scheduled on the loop
        self._recorder: ThreadPoolExecutor | None = None  # PostgreSQL: records off the loop
        self._recording = False  # PostgreSQL: a group is being recorded on the recorder thread

    async def submit(self, checked: CheckedBallot) -> Receipt:
        """Record ``checked`` with the other ballots of this turn; its receipt, or its refusal raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        self._due.append((checked, future))
        self._schedule(loop)
        return await future

    def close(self) -> None:
        """Stop the recorder thread (PostgreSQL), after the group it is recording."""
        if self._recorder is not None:
            self._recorder.shutdown(wait=True)
            self._recorder = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._due and not self._scheduled and not self._recording:
            self._scheduled = True
            loop.call_soon(self._record_due)

    def _record_due(self) -> None:
        loop = asyncio.get_running_loop()
        if self._gate is None:
            group, self._due, self._scheduled, self._recording = self._due, [], False, True
            if self._recorder is None:
                self._recorder = ThreadPoolExecutor(1, thread_name_prefix="ballot-recorder")
            recorded = loop.run_in_executor(self._recorder, self._outcomes, group)
            recorded.add_done_callback(lambda done: self._recorded(loop, group, done))
            return
        if not self._gate.try_take():  # another writer holds SQLite's turn: keep serving, try again
            loop.call_later(_RETRY, self._record_due)
            return
        group, self._due, self._scheduled = self._due, [], False
        try:
            outcomes = self._outcomes(group)
        finally:
            self._gate.give_back()
        _settle(group, outcomes)

    def _recorded(self, loop: asyncio.AbstractEventLoop, group: list[_Pending],
                  done: asyncio.Future[list[_Outcome]]) -> None:
        self._recording = False
        failure = done.exception()
        _settle(group, [failure] * len(group) if failure is not None else done.result())  # type: ignore[list-item]
        self._schedule(loop)

    def _outcomes(self, group: list[_Pending]) -> list[_Outcome]:
        """Record the group in one transaction, or one by one if it fails as a whole."""
        try:
            with Session(self._engine, expire_on_commit=False) as session:
                outcomes = record_ballots(session, self._pki, [checked for checked, _ in group])
                session.commit()
            return outcomes
        except Exception as failure:  # noqa: BLE001 - reported to the waiting requests
            if len(group) == 1:
                return [failure]
            log.warning("a group of %d ballots failed as a whole; recording them one by one", len(group))
            return [self._outcomes([pending])[0] for pending in group]


def _settle(group: list[_Pending], outcomes: list[_Outcome]) -> None:
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # the request was cancelled (client gone): its ballot is recorded all the same
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
