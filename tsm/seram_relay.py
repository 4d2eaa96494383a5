"""GP SERAM across the processes of one service (``mcred serve --workers N``).

A TSM job runs in the process that accepted it, and its management session lives in that
process's :class:`tsm.seram.SeramHub`. The phone's Local Agent polls the service's one
address, and the operating system hands each connection to whichever worker process
accepts it. So a phone's request may reach a process that does not hold its session.

:class:`SeramRelay` carries such a request, through the database the processes share, to
the process that does, and that process's answer back:

* the process that opens a session records that it holds it (``tsm_seram_sessions``);
* a process whose hub does not hold a session looks up who does, writes the request into
  ``tsm_seram_messages`` and waits for the answer there (:meth:`SeramRelay.forward`);
* each process runs a pump (a thread with its own event loop) that takes the requests for
  the sessions it holds, answers each as it would answer the phone itself
  (:func:`tsm.seram_http.serve`: the same long poll, the same judgement of every message),
  and writes the answer back.

Both sides poll the database: every millisecond for the first 100 ms of a wait (an order
is mostly ready within milliseconds of the report that answers the one before), then
backing off to :data:`MAX_POLL_S`; the pump polls only while its process holds a session.
On PostgreSQL each write also sends a notification (``pg_notify`` on :data:`CHANNEL`, at
its commit) and a listener thread per process wakes the side that waits for it: the
database is then looked at on a wake-up, and every :data:`MAX_POLL_S` besides (a
notification is a hint; what counts is in the tables). A message row lives until the answer
is taken; it holds what the wire holds (SCP-wrapped APDUs in GP SERAM JSON), never more.
A process that goes away leaves its sessions unanswered: a relayed request then ends with
504 after the long poll's time, and the job that ran there failed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, delete, insert, select, text, update

from tsm.db import SeramMessageRow, SeramSessionRow, utcnow
from tsm.seram import SeramHub, SeramLink, unknown_session
from tsm.seram_http import ROUTES, Answer, problem, refusal, serve

#: the pause between two looks at the database, either side, while an answer (or a request)
#: is likely soon: for :data:`BRISK_S` after a wait began (or the pump last found one);
#: then doubling up to :data:`MAX_POLL_S`, for a long poll that waits for the TSM
POLL_S = 0.001
BRISK_S = 0.1
MAX_POLL_S = 0.05
#: the pump stays brisk longer: a phone's polls that reach this process directly come in
#: between the relayed ones
PUMP_BRISK_S = 1.0
#: PostgreSQL's notification channel: payload ``r:<owner>`` (a request for that process) or
#: ``a:<message id>`` (its answer is written)
CHANNEL = "mcred_seram_relay"
#: how much longer than the hub's long poll a relayed request waits for its answer
GRACE_S = 10.0
#: how often a pump deletes answers nobody took (their requester went away)
PURGE_EVERY_S = 60.0
#: session rows of this process older than this are forgotten when it opens another (and any
#: process's, by :func:`forget_stale`)
FORGET_AFTER = dt.timedelta(days=1)
#: a relayed message older than this is forgotten by :func:`forget_stale`: its requester gave up
#: :data:`GRACE_S` after the long poll's time, and a process that went away never answers it
MESSAGE_FORGET_AFTER = dt.timedelta(hours=1)


def forget_stale(engine: Engine, now: dt.datetime | None = None) -> tuple[int, int]:
    """Delete what processes that went away left in the relay's tables: session rows older
    than :data:`FORGET_AFTER` (a process forgets its own when it opens another, and all of
    them when it stops; one killed did neither) and messages older than
    :data:`MESSAGE_FORGET_AFTER` (a pump purges the answered ones of its own process only,
    and nobody the ones whose owner is gone). ``(sessions, messages)`` deleted. For a
    schedule (the service's housekeeping); a live session or message is never that old."""
    now = now or utcnow()
    with engine.begin() as conn:
        sessions = conn.execute(delete(SeramSessionRow).where(
            SeramSessionRow.created_at < now - FORGET_AFTER)).rowcount or 0
        messages = conn.execute(delete(SeramMessageRow).where(
            SeramMessageRow.created_at < now - MESSAGE_FORGET_AFTER)).rowcount or 0
    return sessions, messages


class SeramRelay:
    """The relay of one process: opens sessions on its ``hub`` (recording that this process
    holds them), forwards requests for sessions other processes hold, and answers the ones
    relayed to it (:meth:`start`)."""

    def __init__(self, engine: Engine, hub: SeramHub, *, owner: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 counted: Callable[[str], None] | None = None) -> None:
        """``counted(side)``: called for each request forwarded (``"forwarded"``) or answered
        for another process (``"answered"``), for the service's metrics."""
        self.engine = engine
        self._counted = counted or (lambda side: None)
        self.hub = hub
        self.owner = owner or uuid.uuid4().hex
        self.clock = clock
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: PostgreSQL: notifications wake the waiting sides (see the module docstring)
        self.notifies = engine.dialect.name == "postgresql"
        self._listener: threading.Thread | None = None
        self._waiters: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._pump_wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._purged = clock()
        #: requests this process answered for others, and forwarded to others
        self.answered = 0
        self.forwarded = 0

    def open(self, se_id: str, *, session_id: str | None = None,
             connect_timeout_s: float | None = None) -> SeramLink:
        """:meth:`SeramHub.open`, recorded as this process's."""
        link = self.hub.open(se_id, session_id=session_id, connect_timeout_s=connect_timeout_s)
        with self.engine.begin() as conn:
            conn.execute(delete(SeramSessionRow).where(SeramSessionRow.owner == self.owner,
                                                       SeramSessionRow.created_at < utcnow() - FORGET_AFTER))
            conn.execute(delete(SeramSessionRow).where(SeramSessionRow.session_id == link.session_id))
            conn.execute(insert(SeramSessionRow).values(session_id=link.session_id, owner=self.owner,
                                                        created_at=utcnow()))
        with self._lock:
            self._held.add(link.session_id)
        self._wake.set()
        return link

    # --- forwarding (any process) ---------------------------------------------------------

    async def forward(self, route: str, session_id: str, body: bytes, seen: int | None) -> Answer:
        """The answer of the process holding ``session_id`` to this request; 404 when no
        process does, 504 when the holder does not answer in time."""
        if route not in ROUTES:
            raise ValueError(f"unknown GP SERAM route {route!r}")
        owner = await asyncio.to_thread(self._owner_of, session_id)
        if owner is None or owner == self.owner:  # ours, and gone from the hub: ended
            return refusal(unknown_session(session_id))
        message = await asyncio.to_thread(self._post, owner, route, session_id, body, seen)
        self.forwarded += 1
        self._counted("forwarded")
        start = self.clock()
        deadline = start + self.hub.poll_wait_s + GRACE_S
        pause = MAX_POLL_S if self.notifies else POLL_S
        woken = asyncio.Event()
        self._waiters[message] = (asyncio.get_running_loop(), woken)
        taken = False
        try:
            while True:
                woken.clear()  # before the look: a notification after it wakes the wait below
                answer = await asyncio.to_thread(self._take_answer, message)
                if answer is not None:
                    taken = True
                    return answer
                if self.clock() >= deadline:
                    taken = True
                    await asyncio.to_thread(self._drop, message)
                    return problem(504, "seram-holder-silent", "The session's process did not answer",
                                   f"the service process holding management session {session_id!r} did not "
                                   f"answer within {self.hub.poll_wait_s + GRACE_S:g} s")
                await _wait(woken, pause)
                if self.clock() - start > BRISK_S:
                    pause = min(pause * 2, MAX_POLL_S)
        finally:
            self._waiters.pop(message, None)
            if not taken:  # the phone went away (its request cancelled): nobody takes the answer
                self._drop(message)

    def _owner_of(self, session_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(SeramSessionRow.owner)
                                .where(SeramSessionRow.session_id == session_id)).scalar_one_or_none()

    def _post(self, owner: str, route: str, session_id: str, body: bytes, seen: int | None) -> int:
        with self.engine.begin() as conn:
            message = conn.execute(insert(SeramMessageRow).values(
                session_id=session_id, owner=owner, route=route, body=body, seen=seen,
                created_at=utcnow()).returning(SeramMessageRow.id)).scalar_one()
            self._notify(conn, f"r:{owner}")
            return message

    def _notify(self, conn, payload: str) -> None:  # noqa: ANN001
        if self.notifies:  # delivered when the transaction commits
            conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})

    def _take_answer(self, message: int) -> Answer | None:
        with self.engine.begin() as conn:
            row = conn.execute(select(SeramMessageRow.status, SeramMessageRow.answer, SeramMessageRow.number)
                               .where(SeramMessageRow.id == message)).one_or_none()
            if row is None or row.status is None:
                return None
            conn.execute(delete(SeramMessageRow).where(SeramMessageRow.id == message))
        return Answer(row.status, row.answer or b"", row.number)

    def _drop(self, message: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(SeramMessageRow).where(SeramMessageRow.id == message))

    # --- answering (the holding process) --------------------------------------------------

    def start(self) -> None:
        """Start the pump that answers the requests relayed to this process (and, on
        PostgreSQL, the listener that wakes both sides)."""
        if self._thread is None:
            self._thread = threading.Thread(target=lambda: asyncio.run(self._pump()), daemon=True,
                                            name="seram-relay")
            self._thread.start()
        if self.notifies and self._listener is None:
            self._listener = threading.Thread(target=self._listen, daemon=True, name="seram-relay-listen")
            self._listener.start()

    def stop(self) -> None:
        """Stop the pump and forget this process's sessions (nobody will answer for them)."""
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._listener):
            if thread is not None:
                thread.join(timeout=5)
        self._thread = self._listener = None
        with self.engine.begin() as conn:
            conn.execute(delete(SeramSessionRow).where(SeramSessionRow.owner == self.owner))

    async def _pump(self) -> None:
        taken: set[int] = set()
        tasks: set[asyncio.Task] = set()
        brisk = MAX_POLL_S if self.notifies else POLL_S
        pause, found = brisk, self.clock()
        woken = asyncio.Event()
        self._pump_wake = (asyncio.get_running_loop(), woken)
        while not self._stop.is_set():
            if not self._holding():
                self._wake.clear()
                await asyncio.to_thread(self._wake.wait, 1.0)
                continue
            # a message stays taken after its answer is written: a look that began before
            # that write may still see it unanswered. Once nothing is in flight when a
            # look begins and it finds nothing, every taken message has its answer
            idle = not tasks
            woken.clear()  # before the look: a notification after it wakes the wait below
            rows = await asyncio.to_thread(self._pending, taken)
            if idle and not rows:
                taken.clear()
            for row in rows:
                taken.add(row.id)
                task = asyncio.create_task(self._answer(row))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if rows:
                pause, found = brisk, self.clock()
            elif self.clock() - found > PUMP_BRISK_S:
                pause = min(pause * 2, MAX_POLL_S)
            await _wait(woken, pause)
        for task in list(tasks):
            task.cancel()

    def _listen(self) -> None:
        """PostgreSQL: LISTEN on a connection of its own, waking the waiters each
        notification names, until :meth:`stop` (reconnecting after a failure)."""
        while not self._stop.is_set():
            raw = None
            try:
                raw = self.engine.raw_connection()
                conn = raw.driver_connection
                conn.rollback()
                conn.autocommit = True
                conn.execute(f"LISTEN {CHANNEL}")
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.5, stop_after=64):
                        self._woken_by(note.payload)
            except Exception:  # noqa: BLE001 - the waits poll anyway; listen again shortly
                self._stop.wait(1.0)
            finally:
                if raw is not None:
                    raw.invalidate()  # autocommit and LISTEN: not a connection for the pool

    def _woken_by(self, payload: str) -> None:
        kind, _, what = payload.partition(":")
        target = None
        if kind == "a" and what.isdigit():
            target = self._waiters.get(int(what))
        elif kind == "r" and what == self.owner:
            target = self._pump_wake
        if target is not None:
            loop, event = target
            with contextlib.suppress(RuntimeError):  # a loop that has closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def _holding(self) -> bool:
        """Whether this process still holds a session a phone may reach (forgetting the ones
        its hub has dropped)."""
        with self._lock:
            self._held = {sid for sid in self._held if self.hub.holds(sid)}
            return bool(self._held)

    def _pending(self, taken: set[int]) -> list:
        if self.clock() - self._purged > PURGE_EVERY_S:  # answers whose requester went away
            self._purged = self.clock()
            with self.engine.begin() as conn:
                conn.execute(delete(SeramMessageRow).where(
                    SeramMessageRow.owner == self.owner, SeramMessageRow.status.is_not(None),
                    SeramMessageRow.created_at < utcnow() - dt.timedelta(seconds=self.hub.poll_wait_s + GRACE_S)))
        with self.engine.connect() as conn:
            rows = conn.execute(select(SeramMessageRow.id, SeramMessageRow.session_id, SeramMessageRow.route,
                                       SeramMessageRow.body, SeramMessageRow.seen)
                                .where(SeramMessageRow.owner == self.owner, SeramMessageRow.status.is_(None))
                                .order_by(SeramMessageRow.id)).all()
        return [r for r in rows if r.id not in taken]

    async def _answer(self, row) -> None:  # noqa: ANN001
        try:
            answer = await serve(self.hub, row.route, row.session_id, row.body, row.seen)
        except Exception as exc:  # noqa: BLE001 - the phone gets a 500 problem, the pump goes on
            answer = problem(500, "seram-relay-failed", "The relayed request failed", type(exc).__name__)
        self.answered += 1  # counted before it is written: a reader of the counts after the
        self._counted("answered")  # phone has its answer sees it
        await asyncio.to_thread(self._put, row.id, answer)

    def _put(self, message: int, answer: Answer) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(SeramMessageRow).where(SeramMessageRow.id == message)
                         .values(status=answer.status, answer=answer.body, number=answer.number))
            self._notify(conn, f"a:{message}")


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Until ``event`` is set, or ``timeout`` seconds."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
