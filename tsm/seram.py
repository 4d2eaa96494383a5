"""The TSM's Remote Agent: its SCP03 sessions reach a phone's SE over GP SERAM.

A TSM job runs with a ``transmit(apdu) -> bytes`` (specs/tsm.md). Over the air that
transmit is a :class:`SeramLink`: each C-APDU becomes an order's SE RAM command, handed to
the phone's Local Agent in the answer to its next report, and the call returns when the
phone reports the R-APDU (``protocols.gp.seram`` judges every message);
:meth:`SeramLink.transmit_many` puts several C-APDUs in one order. The job's thread blocks
in ``transmit`` on the hub's condition; the HTTP handlers (``tsm.seram_http``) await
:meth:`SeramHub.exchange`, a long poll on the event loop, until there is something to
order. Both meet under the hub's one lock. Nothing here imports the phone: the phone is
whoever holds the ``sessionId`` and answers (and, once its keys are rotated, SCP03's
cryptograms say whether its SE is the one the TSM keeps keys for).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.gp import seram
from protocols.gp.seram import (
    Accepted,
    NotificationCommand,
    Order,
    RamCommand,
    RemoteAgentSession,
    SeRamCommand,
    SeramError,
    StopCommand,
)
from tsm.errors import LinkError

#: how long a Remote Agent holds a poll open before a void order (the binding: under 30 s)
POLL_WAIT_S = 25.0
#: how long a C-APDU waits for its R-APDU once ordered (the binding: a Local Agent waits 40 s
#: for an answer, and reconnects)
ANSWER_TIMEOUT_S = 60.0
#: how long a job waits for the phone's first report (the binding: a Remote Agent gives a
#: Local Agent up after 5 minutes)
CONNECT_TIMEOUT_S = 300.0
#: how long a stopped session still answers a Local Agent that lost the Stop order
LINGER_S = 120.0


_SESSION_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")


class UnknownSession(SeramError):
    """No management session has this ``sessionId`` (HTTP 404)."""


def unknown_session(session_id: str) -> UnknownSession:
    """The refusal of a session id no hub holds (404 over HTTP)."""
    return UnknownSession(f"no management session {session_id!r} (it ended, or never was)")


class SeramLinkError(LinkError):
    """The phone did not answer a C-APDU (it never came, went away, or reported a failure).
    The TSM takes it as a lost answer (``tsm.errors.TransportError``)."""


@dataclass
class SeramLink:
    """One management session, as a TSM job's transmit. Made by :meth:`SeramHub.open`."""

    hub: SeramHub
    session: RemoteAgentSession
    se_id: str
    created: float
    connect_timeout_s: float
    answer_timeout_s: float
    _outbox: list[RamCommand] = field(default_factory=list, repr=False)
    _inflight: bool = field(default=False, repr=False)  # a C-APDU waits for its R-APDU
    _ordered: bool = field(default=False, repr=False)  # ... and went out in an order
    _result: tuple[bytes, ...] | SeramLinkError | None = field(default=None, repr=False)
    _expect: int = field(default=0, repr=False)  # R-APDUs the C-APDUs in flight want
    _reported: bool = field(default=False, repr=False)  # the phone's first report came
    _closing: bool = field(default=False, repr=False)
    stopped_at: float | None = None
    apdus: int = 0  # C-APDUs answered
    exchanges: int = 0  # the orders that carried them
    notifications: list[str] = field(default_factory=list)

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def reached(self) -> bool:
        """Whether the phone's Local Agent ever reported in this session (its first poll):
        False for a phone that never joined, whose first order then timed out after
        :attr:`connect_timeout_s` (nothing reached its SE)."""
        return self._reported

    @property
    def secure_element(self) -> seram.SecureElementRef | None:
        """The SE the phone offered and this session manages (after the handshake)."""
        return self.session.se

    def __call__(self, capdu: bytes) -> bytes:
        """The link as a TSM job's ``transmit`` (with :meth:`transmit_many` beside it)."""
        return self.transmit(capdu)

    def transmit(self, capdu: bytes) -> bytes:
        """Order ``capdu`` and wait for its R-APDU; :class:`SeramLinkError` when none comes."""
        return self.transmit_many([capdu])[0]

    def transmit_many(self, capdus: list[bytes]) -> list[bytes]:
        """Order ``capdus`` as one SE RAM command (one poll carries them all) and wait for
        all their R-APDUs; :class:`SeramLinkError` when any does not come."""
        if not capdus:
            return []
        cond = self.hub._cond
        with cond:
            if self._closing:
                raise SeramLinkError(f"SERAM session {self.session_id} is closed")
            self._outbox.append(SeRamCommand(tuple(bytes(c) for c in capdus)))
            self._expect = len(capdus)
            self._inflight, self._ordered, self._result = True, False, None
            self.hub._notify()
            # first the order must go out: at the phone's first report, or its next one
            limit = self.answer_timeout_s if self._reported else self.connect_timeout_s
            deadline = self.hub.clock() + limit
            while not self._ordered and not self._closing:
                if not self._wait(deadline):
                    self._outbox = [c for c in self._outbox if not isinstance(c, SeRamCommand)]
                    self._inflight = False
                    raise SeramLinkError(
                        f"the phone did not poll SERAM session {self.session_id} within {limit:g} s"
                        if not self._reported else
                        f"the phone did not come back to SERAM session {self.session_id} within {limit:g} s")
            deadline = self.hub.clock() + self.answer_timeout_s
            while self._result is None and not self._closing:
                if not self._wait(deadline):
                    self._inflight = False
                    raise SeramLinkError(f"no answer to a C-APDU in SERAM session {self.session_id} "
                                         f"within {self.answer_timeout_s:g} s")
            result, self._result, self._inflight = self._result, None, False
            if result is None:
                raise SeramLinkError(f"SERAM session {self.session_id} was closed")
            if isinstance(result, SeramLinkError):
                raise result
            self.apdus += len(result)
            self.exchanges += 1
            return list(result)

    def notify(self, text: str) -> None:
        """A notification for the device application, sent with the next order."""
        with self.hub._cond:
            if not self._closing:
                self._outbox.append(NotificationCommand(text))
                self.hub._notify()

    def close(self, text: str | None = None, *, wait_s: float = 0.0) -> bool:
        """End the session: a last notification (``text``) and the Stop command go with the
        next order; wait up to ``wait_s`` for that order to be handed over. True once the
        Stop went out (or the phone never came: nothing to stop)."""
        cond = self.hub._cond
        with cond:
            if not self._closing:
                self._closing = True
                self._outbox = [c for c in self._outbox if isinstance(c, NotificationCommand)]
                if text is not None:
                    self._outbox.append(NotificationCommand(text))
                self._outbox.append(StopCommand())
                if self._inflight and self._result is None:
                    self._result = SeramLinkError(f"SERAM session {self.session_id} was closed")
                self.hub._notify()
            deadline = self.hub.clock() + wait_s
            while self.session.state != "stopped" and self.session.state != "new":
                if not self._wait(deadline):
                    break
            if self.stopped_at is None:
                self.stopped_at = self.hub.clock()
            return self.session.state in ("stopped", "new")

    def _wait(self, deadline: float) -> bool:
        left = deadline - self.hub.clock()
        if left <= 0:
            return False
        self.hub._cond.wait(min(left, 1.0))
        return True

    # --- the HTTP side, under the hub's lock ---

    def _deliver(self, accepted: Accepted) -> None:
        if not (self._inflight and self._ordered) or self._result is not None:
            return  # nothing waits (it timed out, or the order carried no APDU)
        if accepted.failure is not None:
            status, message = accepted.failure
            self._result = SeramLinkError(f"the phone's Local Agent reported {status}"
                                          + (f": {message}" if message else ""))
        elif (accepted.responses and len(accepted.responses[0]) == self._expect
              and all(accepted.responses[0])):
            self._result = accepted.responses[0]
        else:
            got = len(accepted.responses[0]) if accepted.responses else 0
            self._result = SeramLinkError(f"the phone's Local Agent reported {got} R-APDUs for "
                                          f"{self._expect} C-APDUs")

    def _take_order(self) -> Order | None:
        if not self._outbox:
            return None
        commands, self._outbox = tuple(self._outbox), []
        order = self.session.next_order(commands, delay_ms=0)
        if any(isinstance(c, SeRamCommand) for c in commands):
            self._ordered = True
        self.notifications.extend(c.text for c in commands if isinstance(c, NotificationCommand))
        return order


def _wake(woken: asyncio.Future) -> None:
    if not woken.done():
        woken.set_result(None)


class SeramHub:
    """The Remote Agent's sessions, by ``sessionId``."""

    def __init__(self, *, poll_wait_s: float = POLL_WAIT_S, answer_timeout_s: float = ANSWER_TIMEOUT_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, linger_s: float = LINGER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.poll_wait_s = poll_wait_s
        self.answer_timeout_s = answer_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.linger_s = linger_s
        self.clock = clock
        self._cond = threading.Condition()
        self._links: dict[str, SeramLink] = {}
        #: polls waiting for an order: (their event loop, the future that wakes them)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def open(self, se_id: str, *, session_id: str | None = None,
             connect_timeout_s: float | None = None) -> SeramLink:
        """A new management session for the TSM's SE ``se_id``; its ``session_id`` (a random
        UUID unless given: 8 to 128 of ``A-Z a-z 0-9 - _ .``) goes to the phone's device
        application (the standard's initialization step). A session id in use is refused.
        ``connect_timeout_s``: how long the phone's agent has to join this session (the
        hub's :attr:`connect_timeout_s` unless given)."""
        if session_id is not None and not _SESSION_ID.fullmatch(session_id):
            raise SeramError(f"session id {session_id!r}: 8 to 128 of A-Z a-z 0-9 - _ .")
        with self._cond:
            now = self.clock()
            for sid in [s for s, link in self._links.items()
                        if link.stopped_at is not None and now - link.stopped_at > self.linger_s]:
                del self._links[sid]
            sid = session_id or str(uuid.uuid4())
            if sid in self._links:
                raise SeramError(f"session id {sid!r} is in use")
            link = SeramLink(self, RemoteAgentSession(sid), se_id, now,
                             self.connect_timeout_s if connect_timeout_s is None else connect_timeout_s,
                             self.answer_timeout_s)
            self._links[sid] = link
            return link

    def _link(self, session_id: str) -> SeramLink:
        link = self._links.get(session_id)
        if link is not None and link.stopped_at is not None and self.clock() - link.stopped_at > self.linger_s:
            del self._links[session_id]
            link = None
        if link is None:
            raise unknown_session(session_id)
        return link

    def handshake(self, session_id: str, body: bytes) -> bytes:
        """The answer to ``POST /handshake``; :class:`UnknownSession`, or a
        ``SeramNegotiationError`` (406) or another :class:`SeramError` (400, 409)."""
        command = seram.parse_handshake_command(body)
        with self._cond:
            link = self._link(session_id)
            response = link.session.receive_handshake(command)
            self._cond.notify_all()
        return seram.encode(response)

    async def exchange(self, session_id: str, body: bytes, seen: int | None,
                       wait_s: float | None = None) -> tuple[bytes, int]:
        """The answer to ``POST /remoteManagement``: the order (JSON) and its number. Waits up
        to ``wait_s`` (default :attr:`poll_wait_s`) for something to order, on the event
        loop: a waiting poll holds no thread, whatever number of phones poll at once."""
        report = seram.parse_report(body)
        deadline = self.clock() + (self.poll_wait_s if wait_s is None else wait_s)
        loop = asyncio.get_running_loop()
        with self._cond:
            link = self._link(session_id)
            outcome = link.session.receive_report(report, seen)
            if isinstance(outcome, seram.Resend) and outcome.order is not None:
                return seram.encode(outcome.order), link.session.sent
            if isinstance(outcome, Accepted):
                link._reported = True
                link._deliver(outcome)
                self._notify()
            # else a repeat of the report just taken, whose order another request is making
        while True:
            with self._cond:
                order = self._ready(link, final=self.clock() >= deadline)
                if order is not None:
                    return seram.encode(order), link.session.sent
                woken = loop.create_future()
                self._waiters.append((loop, woken))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken, max(0.0, deadline - self.clock()))

    def _ready(self, link: SeramLink, *, final: bool) -> Order | None:
        """Under the lock: the order after the accepted report if there is one to give (the
        one another request made meanwhile, or the first thing to order), a void one when
        ``final``, else None."""
        if link.session.awaiting and link.session.last_order is not None:
            order = link.session.last_order  # made by another request for this report
        else:
            order = link._take_order()
            if order is None and final:
                order = link.session.next_order(delay_ms=0)  # void: poll again at once
        if order is not None:
            if link.session.state == "stopped" and link.stopped_at is None:
                link.stopped_at = self.clock()
            self._notify()
        return order

    def _notify(self) -> None:
        """Under the lock: wake the job threads waiting on a link and the polls waiting for
        an order."""
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, woken in waiters:
            with contextlib.suppress(RuntimeError):  # a loop that has closed meanwhile
                loop.call_soon_threadsafe(_wake, woken)

    def link(self, session_id: str) -> SeramLink:
        with self._cond:
            return self._link(session_id)

    def holds(self, session_id: str) -> bool:
        """Whether this hub has the session (a live one, or one stopped within
        :attr:`linger_s`)."""
        with self._cond:
            try:
                self._link(session_id)
            except UnknownSession:
                return False
            return True
