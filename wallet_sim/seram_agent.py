"""The phone's Local Agent: lets a TSM manage its SE over the air (GP SERAM, HTTP REST).

The device application is handed a management session (``sessionId``) and the Remote
Agent's endpoint; the Local Agent shakes hands, then polls: each answer is an order whose
C-APDUs it forwards to the SE through ``transmit`` (the SE access API: OMAPI on a real
phone) and whose R-APDUs it reports with the next request, until the Stop command.
``protocols.gp.seram`` keeps the session's order; this module is its I/O, over httpx.

Following the binding: an order that names no delay is followed by a 1 s pause (ours are
capped at :data:`MAX_DELAY_S`); a request is sent again over a new connection when it gets
no answer (the same report, with the cookies the Remote Agent set, so that it can tell a
repeat from a new report) for up to :data:`RETRY_FOR_S`; an answer is waited for 40 s. On
a C-APDU the SE cannot take, the rest of that order's C-APDUs are dropped and the report
says UNKNOWN_FAILURE with the reason.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from protocols.gp import seram
from protocols.gp.seram import LocalAgent, Notify, SecureElementRef, Started, Stopped, Transmit
from wallet_sim.se.runtime import SecureElement
from wallet_sim.se.store import decode_cplc

READ_TIMEOUT_S = 40.0
RETRY_FOR_S = 300.0
MAX_DELAY_S = 60.0
MAX_ORDERS = 100_000  # a Remote Agent that never stops is given up on


def secure_element_of(se: SecureElement) -> SecureElementRef:
    """How the phone names its SE to a Remote Agent: an embedded SE whose ``seId`` is its
    CPLC's IC fabricator, IC type, IC serial number and batch (hex), as a device
    application reads them through OMAPI (GET DATA 9F7F); it speaks SCP03."""
    return _named_by(se.state["cplc"])


def _named_by(cplc: bytes) -> SecureElementRef:
    c = decode_cplc(cplc)
    return SecureElementRef("eSE", c["ic_fabricator"] + c["ic_type"] + c["ic_serial_number"]
                            + c["ic_batch_identifier"], "SCP03")


def secure_element_by_cplc(transmit: Callable[[bytes], bytes]) -> SecureElementRef:
    """An SE's reference read from the SE itself, as a device application would through
    its SE access API: SELECT the issuer security domain, GET DATA 9F7F (the CPLC); its
    ``seId`` as :func:`secure_element_of` makes it. :class:`LocalAgentError` when the SE
    does not give its CPLC."""
    from protocols.gp.tlv import parse_all

    isd = bytes.fromhex("A000000151000000")
    try:
        transmit(bytes([0x00, 0xA4, 0x04, 0x00, len(isd)]) + isd + b"\x00")
        r = transmit(bytes.fromhex("80CA9F7F00"))
    except Exception as exc:  # noqa: BLE001 - the SE access API's failure, named
        raise LocalAgentError(f"the SE does not answer: {type(exc).__name__}: {exc}") from None
    if len(r) < 2 or r[-2:] != b"\x90\x00":
        raise LocalAgentError(f"the SE gives no CPLC (GET DATA 9F7F answered {r[-2:].hex().upper() or 'nothing'})")
    try:  # the 9F7F template, or (some cards) the bare 42 bytes
        cplc = parse_all(r[:-2])[0].value if r[:2] == b"\x9f\x7f" else r[:-2]
    except Exception:  # noqa: BLE001 - a malformed answer, named below
        cplc = b""
    if len(cplc) != 42:
        raise LocalAgentError(f"the SE's CPLC is {len(cplc)} bytes, not 42")
    return _named_by(cplc)


class LocalAgentError(Exception):
    """The management session could not go on: the Remote Agent refused a message, answered
    something that is not GP SERAM, or could not be reached."""


@dataclass
class AgentResult:
    session_id: str
    se: SecureElementRef
    orders: int = 0
    apdus: int = 0
    notifications: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False

    def summary(self) -> dict:
        return {"session": self.session_id, "se": self.se.to_json(), "orders": self.orders,
                "apdus": self.apdus, "notifications": self.notifications, "stopped": self.stopped,
                "seconds": round(self.seconds, 3)}


Event = Callable[[str, str], None]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once per process: httpx builds one for every new
    client otherwise, HTTP or HTTPS, which costs tens of milliseconds a session."""
    return httpx.create_ssl_context()


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("detail") if isinstance(body, dict) else None
    except ValueError:
        detail = None
    return f"HTTP {response.status_code}" + (f": {detail}" if isinstance(detail, str) else "")


def _post(client: httpx.Client, url: str, session_id: str, body: bytes, *, retry_for_s: float,
          sleep: Callable[[float], None], clock: Callable[[], float],
          say: Event = lambda kind, text: None) -> httpx.Response:
    """POST ``body``; a request that got no answer is sent again, backing off, for up to
    ``retry_for_s`` seconds, the first retry said (``retry``) so that a phone waiting on a
    Remote Agent that is not there (a wrong --remote, a TSM not started yet) is not silent."""
    deadline = clock() + retry_for_s
    pause = 0.1
    while True:
        try:
            return client.post(url, params={"sessionId": session_id}, content=body,
                               headers={"Content-Type": seram.DATA_FORMAT, "Accept": seram.DATA_FORMAT})
        except httpx.TransportError as exc:  # no answer: the same request again, while it makes sense
            if clock() + pause > deadline:
                raise LocalAgentError(f"the Remote Agent at {url} did not answer for {retry_for_s:g} s "
                                      f"({type(exc).__name__}: {exc})") from None
            if pause == 0.1:
                say("retry", f"no answer from the Remote Agent at {url} ({type(exc).__name__}: {exc}): "
                             f"trying again for up to {retry_for_s:g} s")
            sleep(pause)
            pause = min(pause * 2, 5.0)


def run_local_agent(endpoint: str, session_id: str, transmit: Callable[[bytes], bytes],
                    se: SecureElementRef, *, client: httpx.Client | None = None,
                    on_event: Event | None = None, retry_for_s: float = RETRY_FOR_S,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> AgentResult:
    """Run one management session to its Stop command. ``endpoint``: the Remote Agent's base
    URL (``https://tsm.example/gp/seram``). ``on_event(kind, text)`` hears ``start``,
    ``notification``, ``apdu`` (the C-APDU's header), ``stop`` and ``retry`` (a request that
    got no answer, sent again)."""
    say = on_event or (lambda kind, text: None)
    base = endpoint.rstrip("/")
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(10.0, read=READ_TIMEOUT_S), follow_redirects=False,
                                  verify=_tls_context())
    t0 = clock()
    agent = LocalAgent((se,))
    result = AgentResult(session_id, se)
    try:
        answer = _post(http, f"{base}/handshake", session_id, seram.encode(agent.handshake()),
                       retry_for_s=retry_for_s, sleep=sleep, clock=clock, say=say)
        if answer.status_code != 200:
            raise LocalAgentError(f"handshake refused: {_problem_text(answer)}")
        try:
            agent.accept_handshake(seram.parse_handshake_response(answer.content))
        except seram.SeramError as exc:
            raise LocalAgentError(f"handshake: {exc}") from None
        report = agent.poll()
        while result.orders < MAX_ORDERS:
            answer = _post(http, f"{base}/remoteManagement", session_id, seram.encode(report),
                           retry_for_s=retry_for_s, sleep=sleep, clock=clock, say=say)
            if answer.status_code != 200:
                raise LocalAgentError(f"report refused: {_problem_text(answer)}")
            try:
                order = seram.parse_order(answer.content)
                actions = agent.receive_order(order)
            except seram.SeramError as exc:
                raise LocalAgentError(f"order {result.orders + 1}: {exc}") from None
            result.orders += 1
            results: list[tuple[bytes, ...]] = []
            failure: tuple[str, str] | None = None
            for action in actions:
                if isinstance(action, Started):
                    say("start", session_id)
                elif isinstance(action, Notify):
                    result.notifications.append(action.text)
                    say("notification", action.text)
                elif isinstance(action, Stopped):
                    result.stopped = True
                    say("stop", session_id)
                elif isinstance(action, Transmit) and failure is None:
                    rapdus: list[bytes] = []
                    for capdu in action.capdus:
                        say("apdu", capdu[:4].hex().upper())
                        try:
                            rapdu = transmit(capdu)
                        except Exception as exc:  # noqa: BLE001 - the SE access API failed: reported, not raised
                            failure = ("UNKNOWN_FAILURE", f"the SE did not take a C-APDU "
                                       f"({capdu[:4].hex().upper()}): {type(exc).__name__}: {exc}"[:500])
                            break
                        rapdus.append(rapdu)
                        result.apdus += 1
                    results.append(tuple(rapdus))
            if result.stopped:
                break
            report = agent.report(results, failure=failure)
            delay = seram.DEFAULT_POLL_DELAY_MS if order.delay_ms is None else order.delay_ms
            if delay:
                sleep(min(delay / 1000, MAX_DELAY_S))
        else:
            raise LocalAgentError(f"the Remote Agent sent {MAX_ORDERS} orders without a Stop command")
    finally:
        if own:
            http.close()
    result.seconds = clock() - t0
    return result
