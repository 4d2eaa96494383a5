"""The phone as a PC/SC card: a virtual-card client for vsmartcard's ``vpcd`` reader driver.

``pcscd`` loads vpcd (``/etc/reader.conf.d/vpcd``), which listens on TCP (35963 by default)
and plays the reader; whoever connects is the card in that reader. Every PC/SC application
(OpenSC, pcsc_scan, ...) then reaches the phone's GP-SE through ``transmit``.

The vpcd wire protocol, as vsmartcard's ``vpcd.c`` / ``ifd-vpcd.c`` speak it
(specs/pcsc-bridge.md):

- every message, in both directions, is a 2-byte big-endian length and that many bytes;
- a 1-byte message from vpcd is a control code: 00 power off, 01 power on, 02 reset (no
  answer to any of the three), 04 "send the ATR" (answered with the ATR as a message);
- any longer message is a command APDU, answered with the response APDU as a message;
- vpcd treats an empty answer, or a closed socket, as the card being removed.

Layering, in the manner of python-hyper/h11: :class:`VpcdConnection` is the protocol alone
(bytes in, events out; replies in, bytes out; no I/O), :class:`VirtualCard` is the card
behind it (power state, ATR, the SE's ``transmit``), :class:`Bridge` joins the two into
one ``feed(bytes) -> bytes`` step, and :func:`serve` is the thin socket loop around it.
Nothing here knows about mcred: the composition root hands in how to open the SE.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

Transmit = Callable[[bytes], bytes]
Say = Callable[[str], None]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963  # VPCDPORT, 0x8C7B: CHANNELID in /etc/reader.conf.d/vpcd

CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

MAX_MESSAGE = 0xFFFF  # the length prefix is 16 bits


def pseudo_atr(historical: bytes = b"") -> bytes:
    """PC/SC Part 3 (3.1.3.2.3) ATR of a contactless ISO/IEC 14443-4 card: ``3B 8n 80 01``,
    the historical bytes, and TCK (XOR of T0 .. the last historical byte)."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


#: The default: an ISO/IEC 14443-4 type A card with no historical bytes, ``3B 80 80 01 01``,
#: as a phone in card emulation shows on a contactless PC/SC reader. OpenSC does not know it,
#: so its ``jpki`` driver recognises the phone by SELECTing the JPKI-AP (specs/pcsc-bridge.md).
PHONE_ATR = pseudo_atr()
#: OpenSC's known ATR of the (contact) My Number Card: ``jpki`` matches it without a probe.
JPKI_CARD_ATR = bytes.fromhex("3BE000FF8131FE4514")
NAMED_ATRS = {"phone": PHONE_ATR, "jpki-card": JPKI_CARD_ATR}


# --- errors -------------------------------------------------------------------------------


class PcscError(Exception):
    """Base class of the bridge's errors."""


class RemoteProtocolError(PcscError):
    """vpcd sent something the protocol does not allow. ``fatal`` when the stream can no
    longer be trusted (the connection must be closed); otherwise the message was skipped."""

    fatal = False


class EmptyMessage(RemoteProtocolError):
    """A message of length 0 (vpcd never sends one); skipped."""


class UnknownControl(RemoteProtocolError):
    """A 1-byte message that is none of 00, 01, 02, 04; skipped, nothing answered."""

    def __init__(self, code: int) -> None:
        super().__init__(f"unknown vpcd control code {code:02X}")
        self.code = code


class TruncatedMessage(RemoteProtocolError):
    """The peer closed the connection in the middle of a message."""

    fatal = True


class LocalProtocolError(PcscError):
    """This side misused the protocol (a reply nobody asked for, one that cannot be framed,
    data fed after the end of the stream): a bug in the caller, never the peer's fault."""


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerOff:
    pass


@dataclass(frozen=True)
class PowerOn:
    pass


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class GetAtr:
    """Answer with the ATR (vpcd also polls with this to see whether the card is present)."""


@dataclass(frozen=True)
class Command:
    """A command APDU; answer with the response APDU."""

    apdu: bytes


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
CLOSED = _Sentinel("CLOSED")

Event = PowerOff | PowerOn | Reset | GetAtr | Command
_CONTROLS = {CTRL_POWER_OFF: PowerOff(), CTRL_POWER_ON: PowerOn(), CTRL_RESET: Reset(),
             CTRL_ATR: GetAtr()}


# --- the protocol, sans I/O ---------------------------------------------------------------


class VpcdConnection:
    """The virtual card's side of one vpcd connection: feed bytes with
    :meth:`receive_data`, take events from :meth:`next_event`, frame each owed answer with
    :meth:`send_reply`."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._owed = False  # a GetAtr or Command is waiting for its answer

    @property
    def reply_owed(self) -> bool:
        return self._owed

    def receive_data(self, data: bytes) -> None:
        """Bytes from vpcd; ``b""`` means vpcd closed the connection."""
        if self._eof:
            if data:
                raise LocalProtocolError("data fed after the end of the stream")
            return
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | _Sentinel:
        """The next complete event, :data:`NEED_DATA`, or :data:`CLOSED`. Raises a
        :class:`RemoteProtocolError` for a message it skipped or a stream it gave up."""
        if self._owed:
            raise LocalProtocolError("answer the previous message first")
        if len(self._buf) < 2:
            return self._end_or_wait()
        n = int.from_bytes(self._buf[:2], "big")
        if len(self._buf) < 2 + n:
            return self._end_or_wait()
        payload = bytes(self._buf[2 : 2 + n])
        del self._buf[: 2 + n]
        if n == 0:
            raise EmptyMessage("vpcd sent an empty message")
        if n == 1:
            event = _CONTROLS.get(payload[0])
            if event is None:
                raise UnknownControl(payload[0])
        else:
            event = Command(payload)
        self._owed = isinstance(event, GetAtr | Command)
        return event

    def _end_or_wait(self) -> _Sentinel:
        if not self._eof:
            return NEED_DATA
        if self._buf:
            left = len(self._buf)
            self._buf.clear()
            raise TruncatedMessage(f"connection closed inside a message ({left} bytes left)")
        return CLOSED

    def send_reply(self, payload: bytes) -> bytes:
        """The bytes that answer the pending GetAtr / Command with ``payload``."""
        if not self._owed:
            raise LocalProtocolError("no message is waiting for an answer")
        if not payload:
            raise LocalProtocolError("an empty answer means 'card removed' to vpcd")
        if len(payload) > MAX_MESSAGE:
            raise LocalProtocolError(f"{len(payload)} bytes do not fit a vpcd message")
        self._owed = False
        return len(payload).to_bytes(2, "big") + payload


# --- the card behind it -------------------------------------------------------------------

SW_NO_DIAGNOSIS = b"\x6f\x00"


@dataclass
class VirtualCard:
    """The phone in the reader. ``insert`` opens the phone's SE and returns its transmit;
    it is called at power-on and at every reset, so volatile card state (logical channels,
    selections, verified PINs) is lost as on a real card while the NVM persists.

    A command that arrives while the card is unpowered powers it first. A fault of the
    SE (an exception) answers 6F00 and is recorded in ``faults``: it never ends the bridge.
    """

    insert: Callable[[], Transmit]
    atr: bytes = PHONE_ATR
    faults: list[str] = field(default_factory=list)
    _transmit: Transmit | None = field(default=None, init=False, repr=False)

    @property
    def powered(self) -> bool:
        return self._transmit is not None

    def _power_on(self) -> None:
        try:
            self._transmit = self.insert()
        except Exception as exc:  # noqa: BLE001 - a vanished phone must not kill the bridge
            self._transmit = None
            self.faults.append(f"cannot open the secure element: {type(exc).__name__}: {exc}")

    def handle(self, event: Event) -> bytes | None:
        """The answer payload for ``event`` (None for the unanswered controls)."""
        if isinstance(event, PowerOff):
            self._transmit = None
            return None
        if isinstance(event, PowerOn):
            if self._transmit is None:
                self._power_on()
            return None
        if isinstance(event, Reset):
            self._power_on()
            return None
        if isinstance(event, GetAtr):
            return self.atr
        if self._transmit is None:
            self._power_on()
            if self._transmit is None:
                return SW_NO_DIAGNOSIS
        try:
            rapdu = self._transmit(event.apdu)
        except Exception as exc:  # noqa: BLE001 - the SE's fault answers 6F00, as a JCRE does
            self.faults.append(f"transmit failed: {type(exc).__name__}: {exc}")
            return SW_NO_DIAGNOSIS
        if not isinstance(rapdu, bytes | bytearray) or not 2 <= len(rapdu) <= MAX_MESSAGE:
            self.faults.append(f"transmit answered {rapdu!r:.40}: not a response APDU")
            return SW_NO_DIAGNOSIS
        return bytes(rapdu)


# --- protocol + card ----------------------------------------------------------------------


@dataclass
class Step:
    """What one :meth:`Bridge.feed` produced: bytes to send, the events seen, the protocol
    errors met (skipped messages, or the fatal one), and whether the connection is over."""

    send: bytes = b""
    events: list[Event] = field(default_factory=list)
    errors: list[RemoteProtocolError] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    closed: bool = False


class Bridge:
    """One vpcd connection to one card, still without I/O: ``feed(bytes) -> Step``."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card
        self.conn = VpcdConnection()

    def feed(self, data: bytes) -> Step:
        step = Step()
        self.conn.receive_data(data)
        while True:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                step.errors.append(exc)
                if exc.fatal:
                    step.closed = True
                    break
                continue
            if event is NEED_DATA:
                break
            if event is CLOSED:
                step.closed = True
                break
            step.events.append(event)
            answer = self.card.handle(event)
            if answer is not None:
                step.send += self.conn.send_reply(answer)
        step.faults, self.card.faults = self.card.faults, []
        return step


# --- the socket loop ----------------------------------------------------------------------


def _describe(event: Event) -> str | None:
    if isinstance(event, PowerOn):
        return "power on"
    if isinstance(event, PowerOff):
        return "power off"
    if isinstance(event, Reset):
        return "reset"
    return None  # ATR polls and APDUs are too many to tell (--trace shows the APDUs)


def _quick_ack(sock: socket.socket) -> None:
    """Acknowledge at once (Linux TCP_QUICKACK, which the kernel clears again after a while).
    vpcd writes the length and the APDU as separate segments without TCP_NODELAY, so with a
    delayed ACK here every APDU would wait ~40 ms for Nagle's algorithm on its side."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass


def serve_connection(sock: socket.socket, card: VirtualCard, *, say: Say = lambda s: None,
                     stop: threading.Event | None = None, poll_interval: float = 0.25,
                     leave_after_tap: bool = False) -> int:
    """Relay one connected vpcd socket until vpcd closes it, the stream breaks, or ``stop``
    is set; return the number of APDUs answered. The socket is left to the caller to close.
    ``leave_after_tap``: the phone leaves the reader (the relay ends) at the first power-off
    or reset that follows an APDU, as a phone taps a contactless reader and is taken away."""
    stop = stop or threading.Event()
    bridge = Bridge(card)
    sock.settimeout(poll_interval)
    apdus = 0
    since_power = 0
    while not stop.is_set():
        _quick_ack(sock)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError as exc:  # reset by peer and the like: the same as a close
            say(f"connection lost: {exc}")
            data = b""
        step = bridge.feed(data)
        tapped = False
        for event in step.events:
            apdus += isinstance(event, Command)
            since_power += isinstance(event, Command)
            if isinstance(event, PowerOff | Reset):
                tapped, since_power = tapped or since_power > 0, 0
            text = _describe(event)
            if text:
                say(text)
        for err in step.errors:
            say(f"vpcd protocol error: {err}")
        for fault in step.faults:
            say(f"card fault: {fault}")
        if step.send:
            try:
                sock.sendall(step.send)
            except OSError as exc:
                say(f"connection lost while answering: {exc}")
                break
        if step.closed:
            break
        if tapped and leave_after_tap:
            say("the phone is taken away from the reader")
            break
    return apdus


def serve(insert: Callable[[], Transmit], *, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, atr: bytes = PHONE_ATR, once: bool = False,
          say: Say = lambda s: None, stop: threading.Event | None = None,
          retry_interval: float = 1.0, poll_interval: float = 0.25, tap: bool = False) -> int:
    """Connect to vpcd as its virtual card and relay APDUs to ``insert()``'s transmit,
    reconnecting whenever vpcd goes away, until ``stop`` is set (or, with ``once``, after
    one connection). Waits for vpcd while it is not listening. Returns the number of
    connections served. ``tap``: the phone leaves the reader after each tap (the first
    power-off after APDUs) and comes back ``retry_interval`` seconds later."""
    stop = stop or threading.Event()
    served = 0
    waiting_said = False
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=max(retry_interval, 0.1))
        except OSError as exc:
            if not waiting_said:
                say(f"waiting for vpcd at {host}:{port} ({exc.strerror or exc}); is pcscd running?")
                waiting_said = True
            stop.wait(retry_interval)
            continue
        waiting_said = False
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            say(f"connected to vpcd at {host}:{port}: the phone is in the reader (ATR {atr.hex().upper()})")
            apdus = serve_connection(sock, VirtualCard(insert, atr), say=say, stop=stop,
                                     poll_interval=poll_interval, leave_after_tap=tap)
        served += 1
        say(f"disconnected from vpcd after {apdus} APDUs: the phone is out of the reader")
        if once:
            break
        stop.wait(retry_interval)
    return served
