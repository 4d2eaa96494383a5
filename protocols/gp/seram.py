"""GP SERAM: Secure Element Remote Application Management, HTTP REST binding 2.0.0, pure.

The protocol by which a management platform (our SP-TSM) reaches a phone's secure element
over the network: the phone's *Local Agent* is the HTTP client, the platform's *Remote
Agent* the HTTP server (GlobalPlatform SERAM, github.com/GlobalPlatform/SERAM: Overview,
HTTP REST Binding, OpenAPI ``gpseram.yaml``). A management session has three steps:

1. initialization (out of the standard): the device application learns a ``sessionId``
   and the Remote Agent's endpoint;
2. handshake: ``POST {endpoint}/handshake?sessionId=`` with the SEs the phone can reach and
   the protocols it speaks; the answer chooses one of each;
3. command exchange: ``POST {endpoint}/remoteManagement?sessionId=``, each request a
   *Report* (the answers to the last order, or a poll), each answer an *Order* (a Start
   command first, then SE RAM commands of C-APDUs and notifications, a Stop command last).

Here: the messages as frozen values with strict decoders (:class:`SeramError` names the
path of what is wrong), and the two sides as sans-I/O state machines,
:class:`LocalAgent` and :class:`RemoteAgentSession`. Nothing here does I/O.

Where the published texts disagree with each other, we write what both readings accept and
read either (specs/tsm.md, "Over the air"): ``startCommand`` / ``ramStartCommand``,
``stopCommand`` / ``ramStopCommand``; ``executedSeRamCommands`` and ``executedRamCommands``
(both written); ``chosenDataFormat`` and ``chosenDataProtocol`` (both written);
``supportedVersions`` / ``supportedVersion``. Hex is written in upper case (the schema's
pattern) and read in either case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols.gp.errors import GpError

VERSION = "2.0.0"
TRANSPORT = "HTTPS"
DATA_FORMAT = "application/json"
SE_TYPES = ("eSE", "iSE", "uicc", "euicc", "ieuicc")
STATUSES = ("PROCESSED", "POLLING", "UNAVAILABLE_SE", "UNKNOWN_FAILURE", "UNGRANTED_ACCESS")
ERROR_STATUSES = ("UNAVAILABLE_SE", "UNKNOWN_FAILURE", "UNGRANTED_ACCESS")
#: what the binding says a Local Agent waits when an order names no delay (1 s)
DEFAULT_POLL_DELAY_MS = 1000

# bounds of our own, so that a hostile peer cannot make a party hold unbounded lists
MAX_SECURE_ELEMENTS = 16
MAX_COMMANDS = 64
MAX_APDUS = 256
MAX_APDU_BYTES = 4 + 3 + 65535 + 2  # an extended command APDU, with Le
MAX_TEXT = 4096
MAX_DELAY_MS = 3_600_000
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_START = ("startCommand", "ramStartCommand")
_STOP = ("stopCommand", "ramStopCommand")


class SeramError(GpError):
    """A GP SERAM message is malformed, or came when the session could not take it."""


class SeramNegotiationError(SeramError):
    """The two agents share no protocol version, transport, data format or SE (HTTP 406)."""


class SeramStateError(SeramError):
    """A message out of the session's order (APDUs before Start, a report after Stop)."""


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecureElementRef:
    """One SE the Local Agent can reach: ``seType`` (eSE, iSE, uicc, euicc, ieuicc), its
    ``seId``, and ``seExtraInfo`` (comma-separated features) if any."""

    se_type: str
    se_id: str
    extra: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seType": self.se_type, "seId": self.se_id}
        if self.extra is not None:
            out["seExtraInfo"] = self.extra
        return out


@dataclass(frozen=True)
class HandshakeCommand:
    secure_elements: tuple[SecureElementRef, ...]
    transport_protocols: tuple[str, ...] = (TRANSPORT,)
    data_formats: tuple[str, ...] = (DATA_FORMAT,)
    versions: tuple[str, ...] = (VERSION,)

    def to_json(self) -> dict[str, Any]:
        return {"secureElements": [se.to_json() for se in self.secure_elements],
                "supportedTransportProtocols": list(self.transport_protocols),
                "supportedDataFormats": list(self.data_formats),
                "supportedVersions": list(self.versions)}


@dataclass(frozen=True)
class HandshakeResponse:
    transport_protocol: str = TRANSPORT
    data_format: str = DATA_FORMAT
    version: str = VERSION

    def to_json(self) -> dict[str, Any]:
        return {"chosenTransportProtocol": self.transport_protocol,
                "chosenDataFormat": self.data_format,
                "chosenDataProtocol": self.data_format,  # the schema's required name for it
                "chosenVersion": self.version}


@dataclass(frozen=True)
class StartCommand:
    def to_json(self) -> dict[str, Any]:
        return {"ramCommandType": "startCommand"}


@dataclass(frozen=True)
class StopCommand:
    def to_json(self) -> dict[str, Any]:
        return {"ramCommandType": "stopCommand"}


@dataclass(frozen=True)
class SeRamCommand:
    """C-APDUs the Local Agent sends to the chosen SE, in order."""

    capdus: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"ramCommandType": "seRamCommand", "listOfCAPDU": [a.hex().upper() for a in self.capdus]}


@dataclass(frozen=True)
class NotificationCommand:
    """A UTF-8 text for the device application (its meaning is the platform's own)."""

    text: str

    def to_json(self) -> dict[str, Any]:
        return {"ramCommandType": "notificationCommand", "deviceAppNotification": self.text}


RamCommand = StartCommand | SeRamCommand | NotificationCommand | StopCommand


@dataclass(frozen=True)
class Order:
    """What the Remote Agent answers each report with. ``delay_ms`` None: the Local Agent
    waits :data:`DEFAULT_POLL_DELAY_MS` before its next poll (0: none)."""

    commands: tuple[RamCommand, ...] = ()
    delay_ms: int | None = None
    chosen_se: SecureElementRef | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.delay_ms is not None:
            out["delay"] = self.delay_ms
        if self.chosen_se is not None:
            out["chosenSecureElement"] = self.chosen_se.to_json()
        if self.commands:
            out["ramCommands"] = [c.to_json() for c in self.commands]
        return out

    @property
    def apdu_commands(self) -> tuple[SeRamCommand, ...]:
        return tuple(c for c in self.commands if isinstance(c, SeRamCommand))


@dataclass(frozen=True)
class SeRamResponse:
    """The R-APDUs of one SE RAM command, in order; ``b""`` where none was available."""

    rapdus: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"ramResponseType": "seRamResponse", "listOfRAPDU": [a.hex().upper() for a in self.rapdus]}


@dataclass(frozen=True)
class Report:
    """What the Local Agent posts: its status, how many SE RAM commands it executed, their
    responses, and on an error status the reason (``errorMsg``)."""

    status: str = "POLLING"
    executed: int = 0
    responses: tuple[SeRamResponse, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {"localAgentStatusEnum": self.status,
                                  # the two names the texts give the same count
                                  "executedSeRamCommands": self.executed,
                                  "executedRamCommands": self.executed}
        if self.error is not None:
            status["errorMsg"] = self.error
        out: dict[str, Any] = {"localAgentStatus": status}
        if self.responses:
            out["ramResponses"] = [r.to_json() for r in self.responses]
        return out


def encode(message: Any) -> bytes:
    """A message's JSON body (UTF-8, compact)."""
    return json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False).encode()


# --- decoding -------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise SeramError(f"member {k!r} appears twice")
        out[k] = v
    return out


def _load(data: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    if len(data) > MAX_MESSAGE_BYTES:
        raise SeramError(f"{what}: {len(data)} bytes, over the {MAX_MESSAGE_BYTES} this party takes")
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates)
    except SeramError as exc:
        raise SeramError(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8
        raise SeramError(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SeramError(f"{what}: a JSON object is expected, not {type(value).__name__}")
    return value


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SeramError(f"{path}: an object is expected, not {type(value).__name__}")
    return value


def _str(value: Any, path: str, *, limit: int = MAX_TEXT, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SeramError(f"{path}: a string is expected, not {type(value).__name__}")
    if len(value) > limit:
        raise SeramError(f"{path}: {len(value)} characters, over {limit}")
    if not value and not empty:
        raise SeramError(f"{path}: empty")
    return value


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SeramError(f"{path}: an integer is expected, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise SeramError(f"{path}: {value} is not in {lo}..{hi}")
    return value


def _list(value: Any, path: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise SeramError(f"{path}: an array is expected, not {type(value).__name__}")
    if len(value) > limit:
        raise SeramError(f"{path}: {len(value)} entries, over the {limit} this party takes")
    return value


def _strings(value: Any, path: str) -> tuple[str, ...]:
    items = _list(value, path, 32)
    if not items:
        raise SeramError(f"{path}: empty")
    return tuple(_str(v, f"{path}[{i}]", limit=128) for i, v in enumerate(items))


def _hex(value: Any, path: str, *, empty: bool) -> bytes:
    text = _str(value, path, limit=2 * MAX_APDU_BYTES, empty=True)
    if not text and not empty:
        raise SeramError(f"{path}: an empty APDU")
    if len(text) % 2:
        raise SeramError(f"{path}: an odd number of hex digits ({len(text)})")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise SeramError(f"{path}: not hexadecimal") from None
    if len(raw) * 2 != len(text):  # bytes.fromhex skips spaces
        raise SeramError(f"{path}: not hexadecimal (white space)")
    if not empty and len(raw) < 4:
        raise SeramError(f"{path}: a command APDU has at least 4 bytes (CLA INS P1 P2), not {len(raw)}")
    return raw


def _one_of(obj: Mapping[str, Any], names: tuple[str, ...], path: str) -> Any:
    present = [n for n in names if n in obj]
    if len(present) > 1:
        values = {json.dumps(obj[n], sort_keys=True) for n in present}
        if len(values) > 1:
            raise SeramError(f"{path}: {' and '.join(present)} disagree")
    return obj[present[0]] if present else None


def _se(value: Any, path: str) -> SecureElementRef:
    obj = _obj(value, path)
    se_type = _str(obj.get("seType"), f"{path}.seType", limit=16) if "seType" in obj else None
    if se_type is None:
        raise SeramError(f"{path}.seType: missing")
    if se_type not in SE_TYPES:
        raise SeramError(f"{path}.seType: {se_type!r} is not one of {', '.join(SE_TYPES)}")
    if "seId" not in obj:
        raise SeramError(f"{path}.seId: missing")
    se_id = _str(obj["seId"], f"{path}.seId", limit=128)
    extra = _str(obj["seExtraInfo"], f"{path}.seExtraInfo", limit=256, empty=True) \
        if obj.get("seExtraInfo") is not None else None
    return SecureElementRef(se_type, se_id, extra)


def parse_handshake_command(data: bytes | str | Mapping[str, Any]) -> HandshakeCommand:
    obj = _load(data, "handshake command")
    if "secureElements" not in obj:
        raise SeramError("secureElements: missing (the SEs the Local Agent can reach)")
    ses = _list(obj["secureElements"], "secureElements", MAX_SECURE_ELEMENTS)
    if not ses:
        raise SeramError("secureElements: empty")
    transports = obj.get("supportedTransportProtocols")
    formats = obj.get("supportedDataFormats")
    versions = _one_of(obj, ("supportedVersions", "supportedVersion"), "handshake command")
    return HandshakeCommand(
        tuple(_se(v, f"secureElements[{i}]") for i, v in enumerate(ses)),
        _strings(transports, "supportedTransportProtocols") if transports is not None else (TRANSPORT,),
        _strings(formats, "supportedDataFormats") if formats is not None else (DATA_FORMAT,),
        _strings(versions, "supportedVersions") if versions is not None else (VERSION,))


def parse_handshake_response(data: bytes | str | Mapping[str, Any]) -> HandshakeResponse:
    obj = _load(data, "handshake response")
    fmt = _one_of(obj, ("chosenDataFormat", "chosenDataProtocol"), "handshake response")
    out = []
    for name, value in (("chosenTransportProtocol", obj.get("chosenTransportProtocol")),
                        ("chosenDataFormat", fmt), ("chosenVersion", obj.get("chosenVersion"))):
        if value is None:
            raise SeramError(f"{name}: missing")
        out.append(_str(value, name, limit=128))
    return HandshakeResponse(*out)


def _command(value: Any, path: str) -> RamCommand:
    obj = _obj(value, path)
    if "ramCommandType" not in obj:
        raise SeramError(f"{path}.ramCommandType: missing")
    kind = _str(obj["ramCommandType"], f"{path}.ramCommandType", limit=64)
    if kind in _START:
        return StartCommand()
    if kind in _STOP:
        return StopCommand()
    if kind == "seRamCommand":
        if "listOfCAPDU" not in obj:
            raise SeramError(f"{path}.listOfCAPDU: missing")
        apdus = _list(obj["listOfCAPDU"], f"{path}.listOfCAPDU", MAX_APDUS)
        if not apdus:
            raise SeramError(f"{path}.listOfCAPDU: empty")
        return SeRamCommand(tuple(_hex(a, f"{path}.listOfCAPDU[{i}]", empty=False) for i, a in enumerate(apdus)))
    if kind == "notificationCommand":
        if "deviceAppNotification" not in obj:
            raise SeramError(f"{path}.deviceAppNotification: missing")
        return NotificationCommand(_str(obj["deviceAppNotification"], f"{path}.deviceAppNotification",
                                        empty=True))
    raise SeramError(f"{path}.ramCommandType: {kind!r} is not startCommand, seRamCommand, "
                     "notificationCommand or stopCommand")


def parse_order(data: bytes | str | Mapping[str, Any]) -> Order:
    obj = _load(data, "order")
    delay = _int(obj["delay"], "delay", 0, MAX_DELAY_MS) if obj.get("delay") is not None else None
    chosen = _se(obj["chosenSecureElement"], "chosenSecureElement") \
        if obj.get("chosenSecureElement") is not None else None
    commands: tuple[RamCommand, ...] = ()
    if obj.get("ramCommands") is not None:
        items = _list(obj["ramCommands"], "ramCommands", MAX_COMMANDS)
        commands = tuple(_command(c, f"ramCommands[{i}]") for i, c in enumerate(items))
    return Order(commands, delay, chosen)


def parse_report(data: bytes | str | Mapping[str, Any]) -> Report:
    obj = _load(data, "report")
    if "localAgentStatus" not in obj:
        raise SeramError("localAgentStatus: missing")
    st = _obj(obj["localAgentStatus"], "localAgentStatus")
    if "localAgentStatusEnum" not in st:
        raise SeramError("localAgentStatus.localAgentStatusEnum: missing")
    status = _str(st["localAgentStatusEnum"], "localAgentStatus.localAgentStatusEnum", limit=32)
    if status not in STATUSES:
        raise SeramError(f"localAgentStatus.localAgentStatusEnum: {status!r} is not one of {', '.join(STATUSES)}")
    count = _one_of(st, ("executedSeRamCommands", "executedRamCommands"), "localAgentStatus")
    executed = _int(count, "localAgentStatus.executedSeRamCommands", 0, MAX_COMMANDS) if count is not None else 0
    error = _str(st["errorMsg"], "localAgentStatus.errorMsg", empty=True) \
        if st.get("errorMsg") is not None else None
    responses: list[SeRamResponse] = []
    if obj.get("ramResponses") is not None:
        for i, r in enumerate(_list(obj["ramResponses"], "ramResponses", MAX_COMMANDS)):
            path = f"ramResponses[{i}]"
            r = _obj(r, path)
            kind = _str(r.get("ramResponseType"), f"{path}.ramResponseType", limit=64) \
                if "ramResponseType" in r else None
            if kind != "seRamResponse":
                raise SeramError(f"{path}.ramResponseType: {kind!r} is not seRamResponse")
            if "listOfRAPDU" not in r:
                raise SeramError(f"{path}.listOfRAPDU: missing")
            rapdus = _list(r["listOfRAPDU"], f"{path}.listOfRAPDU", MAX_APDUS)
            responses.append(SeRamResponse(tuple(_hex(a, f"{path}.listOfRAPDU[{j}]", empty=True)
                                                 for j, a in enumerate(rapdus))))
    if status == "POLLING" and (executed or responses):
        raise SeramError("a POLLING report executed nothing: it carries no responses and a count of 0")
    return Report(status, executed, tuple(responses), error)


# --- the Local Agent (the phone) -----------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The Remote Agent started the management session."""


@dataclass(frozen=True)
class Transmit:
    """Send these C-APDUs to the SE, in order; report their R-APDUs."""

    capdus: tuple[bytes, ...]


@dataclass(frozen=True)
class Notify:
    """Tell the device application this text."""

    text: str


@dataclass(frozen=True)
class Stopped:
    """The session is over: send no further report."""


Action = Started | Transmit | Notify | Stopped


@dataclass
class LocalAgent:
    """The phone's side. Use: :meth:`handshake`, :meth:`accept_handshake`, then
    :meth:`poll` for the first report; for each order, :meth:`receive_order` gives the
    actions in order, and :meth:`report` (with the R-APDUs of each :class:`Transmit`, and
    on a failure the status and message) gives the next report, until :class:`Stopped`."""

    secure_elements: tuple[SecureElementRef, ...]
    versions: tuple[str, ...] = (VERSION,)
    state: str = "new"  # new, handshaking, waiting-start, running, stopped
    chosen: SecureElementRef | None = None
    negotiated: HandshakeResponse | None = None
    _pending: int = field(default=0, repr=False)

    def handshake(self) -> HandshakeCommand:
        if self.state != "new":
            raise SeramStateError(f"handshake in state {self.state}")
        if not self.secure_elements:
            raise SeramError("a Local Agent offers at least one SE")
        self.state = "handshaking"
        return HandshakeCommand(self.secure_elements, versions=self.versions)

    def accept_handshake(self, response: HandshakeResponse) -> None:
        if self.state != "handshaking":
            raise SeramStateError(f"handshake response in state {self.state}")
        if response.version not in self.versions:
            raise SeramNegotiationError(f"the Remote Agent chose version {response.version!r}, "
                                        f"not one offered ({', '.join(self.versions)})")
        if response.transport_protocol != TRANSPORT:
            raise SeramNegotiationError(f"the Remote Agent chose transport {response.transport_protocol!r}, "
                                        f"not {TRANSPORT}")
        if response.data_format != DATA_FORMAT:
            raise SeramNegotiationError(f"the Remote Agent chose data format {response.data_format!r}, "
                                        f"not {DATA_FORMAT}")
        self.negotiated = response
        self.chosen = self.secure_elements[0]
        self.state = "waiting-start"

    def poll(self) -> Report:
        """The void report: the first request, or one after an order that asked nothing."""
        if self.state not in ("waiting-start", "running"):
            raise SeramStateError(f"a poll in state {self.state}")
        return Report()

    def receive_order(self, order: Order) -> tuple[Action, ...]:
        if self.state not in ("waiting-start", "running"):
            raise SeramStateError(f"an order in state {self.state}")
        if order.chosen_se is not None:
            match = [se for se in self.secure_elements if se.se_id == order.chosen_se.se_id
                     and se.se_type == order.chosen_se.se_type]
            if not match:
                raise SeramError(f"chosenSecureElement: {order.chosen_se.se_type} {order.chosen_se.se_id!r} "
                                 "is not an SE this Local Agent offered")
            self.chosen = match[0]
        actions: list[Action] = []
        for i, c in enumerate(order.commands):
            if self.state == "stopped":
                raise SeramStateError(f"ramCommands[{i}]: a command after the Stop command")
            if isinstance(c, StartCommand):
                if self.state != "waiting-start":
                    raise SeramStateError(f"ramCommands[{i}]: a second Start command")
                self.state = "running"
                actions.append(Started())
                continue
            if self.state == "waiting-start":
                raise SeramStateError(f"ramCommands[{i}]: a {type(c).__name__} before the Start command")
            if isinstance(c, StopCommand):
                self.state = "stopped"
                actions.append(Stopped())
            elif isinstance(c, SeRamCommand):
                actions.append(Transmit(c.capdus))
            else:
                actions.append(Notify(c.text))
        self._pending = sum(isinstance(a, Transmit) for a in actions)
        return tuple(actions)

    def report(self, results: list[tuple[bytes, ...]] = (), *,  # type: ignore[assignment]
               failure: tuple[str, str] | None = None) -> Report:
        """The report of the last order: ``results`` the R-APDUs of each Transmit executed
        (the last may be short: the R-APDUs up to the failing C-APDU), ``failure`` an error
        status of :data:`ERROR_STATUSES` and its message."""
        if self.state == "stopped":
            raise SeramStateError("no report after the Stop command")
        if len(results) > self._pending:
            raise SeramError(f"{len(results)} results for {self._pending} SE RAM commands")
        if failure is not None:
            if failure[0] not in ERROR_STATUSES:
                raise SeramError(f"{failure[0]!r} is not an error status ({', '.join(ERROR_STATUSES)})")
            return Report(failure[0], len(results), tuple(SeRamResponse(tuple(r)) for r in results),
                          failure[1])
        if len(results) != self._pending:
            raise SeramError(f"{len(results)} results for {self._pending} SE RAM commands, and no failure")
        if not results:
            return Report()
        return Report("PROCESSED", len(results), tuple(SeRamResponse(tuple(r)) for r in results))


# --- the Remote Agent (the TSM), one session ------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """A report answered the last order: the R-APDUs of its SE RAM commands (all, or those
    up to the Local Agent's failure) and, on an error status, the status and message."""

    responses: tuple[tuple[bytes, ...], ...]
    failure: tuple[str, str] | None = None


@dataclass(frozen=True)
class Resend:
    """The Local Agent never got the last order (its report is the one before it again, or a
    poll): send ``order`` again and deliver nothing. ``order`` None: the report is a repeat of
    the one just accepted whose order is not made yet: answer with that order once made."""

    order: Order | None


@dataclass
class RemoteAgentSession:
    """The platform's side of one management session (one ``sessionId``).

    Orders are numbered from 1; the HTTP layer hands the number to the Local Agent with
    each order (a cookie: the binding's "HTTP mechanism to reinforce the session") and
    passes back the number the Local Agent last received, so that a report re-sent after a
    lost answer is told from a new one (:meth:`receive_report`) and no R-APDU is delivered
    twice. A Local Agent without cookies is taken to answer the latest order."""

    session_id: str
    se_types: tuple[str, ...] = ("eSE",)
    state: str = "new"  # new, handshaken, started, stopped
    se: SecureElementRef | None = None
    sent: int = 0
    last_order: Order | None = None
    awaiting: bool = True  # the latest order (at first: the session) awaits its report

    def receive_handshake(self, command: HandshakeCommand) -> HandshakeResponse:
        if self.state not in ("new", "handshaken") or self.sent:
            raise SeramStateError(f"a handshake in state {self.state}, after {self.sent} orders")
        if VERSION not in command.versions:
            raise SeramNegotiationError(f"the Local Agent speaks {', '.join(command.versions)}; "
                                        f"this Remote Agent {VERSION}")
        if TRANSPORT not in command.transport_protocols:
            raise SeramNegotiationError(f"no transport in common ({', '.join(command.transport_protocols)})")
        if DATA_FORMAT not in command.data_formats:
            raise SeramNegotiationError(f"no data format in common ({', '.join(command.data_formats)})")
        fits = [se for se in command.secure_elements if se.se_type in self.se_types]
        if not fits:
            raise SeramNegotiationError(
                f"none of the offered SEs ({', '.join(se.se_type for se in command.secure_elements)}) "
                f"is of a type this platform manages ({', '.join(self.se_types)})")
        self.se = fits[0]  # the Local Agent lists them by preference
        self.state = "handshaken"
        return HandshakeResponse()

    def receive_report(self, report: Report, seen: int | None) -> Accepted | Resend:
        """Judge a report. ``seen``: the number of the order the Local Agent last received
        (None: unknown, taken as the latest)."""
        if self.state == "new":
            raise SeramStateError("a report before the handshake")
        if seen is None:
            seen = self.sent
        if seen == self.sent - 1:  # also the Stop order, lost on its way
            return Resend(self.last_order)
        if self.state == "stopped":
            raise SeramStateError("a report after the Stop command")
        if seen != self.sent:
            raise SeramStateError(f"a report for order {seen}, but the last order sent was {self.sent}")
        if not self.awaiting:
            return Resend(None)
        expected = self.last_order.apdu_commands if self.last_order is not None else ()
        if len(report.responses) > len(expected):
            raise SeramError(f"{len(report.responses)} SE RAM responses for {len(expected)} SE RAM commands")
        if report.executed != len(report.responses):
            raise SeramError(f"executedSeRamCommands is {report.executed}, but "
                             f"{len(report.responses)} responses came")
        for i, (cmd, resp) in enumerate(zip(expected, report.responses, strict=False)):
            if len(resp.rapdus) > len(cmd.capdus):
                raise SeramError(f"ramResponses[{i}]: {len(resp.rapdus)} R-APDUs for {len(cmd.capdus)} C-APDUs")
        failure = None
        if report.status in ERROR_STATUSES:
            failure = (report.status, report.error or "")
        elif expected and not (len(report.responses) == len(expected) and all(
                len(r.rapdus) == len(c.capdus) for c, r in zip(expected, report.responses, strict=True))):
            failure = ("UNKNOWN_FAILURE", f"the Local Agent reported {report.status} without "
                       "every response to the order's SE RAM commands")
        self.awaiting = False
        return Accepted(tuple(r.rapdus for r in report.responses), failure)

    def next_order(self, commands: tuple[RamCommand, ...] = (), *, delay_ms: int | None = 0) -> Order:
        """The order to answer with (numbered ``self.sent`` once made): a Start command is
        put first in the session's first order that carries commands."""
        if self.state == "new":
            raise SeramStateError("an order before the handshake")
        if self.state == "stopped":
            raise SeramStateError("an order after the Stop command")
        if self.awaiting:
            raise SeramStateError(f"order {self.sent} still awaits its report" if self.sent
                                  else "an order before the first report")
        chosen = None
        if commands and self.state == "handshaken":
            commands = (StartCommand(), *commands)
            chosen = self.se
            self.state = "started"
        if any(isinstance(c, StopCommand) for c in commands):
            self.state = "stopped"
        order = Order(tuple(commands), delay_ms, chosen)
        self.sent += 1
        self.last_order = order
        self.awaiting = True
        return order
