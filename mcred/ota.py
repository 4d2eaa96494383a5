"""Over the air: TSM jobs whose SE is reached through the phone's GP SERAM Local Agent.

Wires ``tsm.seram`` (the Remote Agent) into a provisioning: the job's transmit is a
:class:`tsm.seram.SeramLink`, the phone is whoever holds the session id and answers, in
another process or on another machine (``mcred phone agent``). The endpoint is served
here by uvicorn for the length of the job (:func:`seram_endpoint`), or by ``mcred serve``
under ``/gp/seram`` (mcred/service.py). specs/tsm.md, "Over the air".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tsm.seram import SeramHub, SeramLink

if TYPE_CHECKING:
    from tsm.seram_relay import SeramRelay

SERAM_PREFIX = "/gp/seram"
DEFAULT_LISTEN = "127.0.0.1:8472"
#: how long a finished job's session waits for the phone to collect its Stop order
STOP_WAIT_S = 30.0


class OtaError(Exception):
    """The over-the-air endpoint cannot be set up (the address is taken or malformed)."""


@dataclass
class SeramEndpoint:
    hub: SeramHub
    url: str  # the Remote Agent's endpoint, as a phone reaches it


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: any free one, as the endpoint's URL then says)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise OtaError(f"--listen {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@contextmanager
def seram_endpoint(listen: str = DEFAULT_LISTEN, *, public_url: str | None = None,
                   hub: SeramHub | None = None, tls: dict[str, str] | None = None,
                   relay: Any = None) -> Iterator[SeramEndpoint]:
    """A GP SERAM Remote Agent served on ``listen`` while the block runs; over HTTPS (the
    binding's transport) with ``tls`` (``mcred.service.tls_options``); with a ``relay``
    (``tsm.seram_relay.SeramRelay``), sessions other processes hold are answered too."""
    import uvicorn
    from fastapi import FastAPI

    from tsm.seram_http import router

    host, port = parse_listen(listen)
    hub = hub or SeramHub()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(router(hub, relay), prefix=SERAM_PREFIX)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=2, **(tls or {})))
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a bind failure, reported below
            failed.append(exc)

    thread = threading.Thread(target=run, name="seram-endpoint", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if failed or not thread.is_alive():
            raise OtaError(f"cannot serve GP SERAM on {listen} (the address is taken, or not this machine's)")
        if time.monotonic() > deadline:
            raise OtaError(f"the GP SERAM endpoint on {listen} did not start within 10 s")
        time.sleep(0.02)
    if port == 0:  # the port the system gave
        port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    base = (public_url.rstrip("/") if public_url else f"{scheme}://{host}:{port}") + SERAM_PREFIX
    try:
        yield SeramEndpoint(hub, base)
    finally:
        server.should_exit = True
        thread.join(5)


def agent_command(phone_id: str, endpoint: str, session_id: str) -> str:
    """What the phone runs to take part (for the operator to hand on)."""
    return f"mcred phone agent {phone_id} --remote {endpoint} --session {session_id}"


def over_the_air(hub: SeramHub | SeramRelay, phone_id: str, run: Callable[[Callable[[bytes], bytes]], Any], *,
                 on_session: Callable[[SeramLink], None] | None = None, what: str = "provision",
                 session_id: str | None = None, stop_wait_s: float = STOP_WAIT_S) -> Any:
    """``run(transmit)`` with a transmit that reaches ``phone_id``'s SE through a new SERAM
    session; the session ends with a notification of the outcome (``provision/done/OK``,
    ``provision/stopped/<error>``) and the Stop command, which the phone is given
    ``stop_wait_s`` to collect. ``hub`` opens the session: a hub, or a relay that records
    it as its process's (``tsm.seram_relay``)."""
    link = hub.open(phone_id, session_id=session_id)
    if on_session is not None:
        on_session(link)
    return run_over(link, run, what=what, stop_wait_s=stop_wait_s)


def run_over(link: SeramLink, run: Callable[[Callable[[bytes], bytes]], Any], *, what: str = "provision",
             stop_wait_s: float = STOP_WAIT_S) -> Any:
    """``run(link)`` (a transmit that also takes several C-APDUs in one order), then the
    session's last notification and Stop (as :func:`over_the_air`, for a session opened
    beforehand)."""
    return run_over_all([link], run, what=what, stop_wait_s=stop_wait_s)


def run_over_all(links: list[SeramLink], run: Callable[..., Any], *, what: str = "provision",
                 stop_wait_s: float = STOP_WAIT_S) -> Any:
    """``run(*links)`` for a job that reaches several phones (a handover that also wipes
    the old one), then each session's last notification and Stop."""
    try:
        result = run(*links)
    except BaseException as exc:
        for link in links:
            link.close(f"{what}/stopped/{type(exc).__name__}", wait_s=stop_wait_s)
        raise
    for link in links:
        link.close(f"{what}/done/OK", wait_s=stop_wait_s)
    return result


class PhoneAgentThread:
    """A phone's Local Agent run in a thread of this process (the demo, the benchmarks and
    the tests; ``mcred phone agent`` runs it as a process of its own). ``start`` with the
    session's link (or ``start_session`` with its id), ``join`` for its
    :class:`wallet_sim.seram_agent.AgentResult`."""

    def __init__(self, endpoint: str, phone_id: str, home: Any, *,
                 transmit: Callable[[bytes], bytes] | None = None, **agent_kw: Any) -> None:
        import wallet_sim
        from wallet_sim.seram_agent import secure_element_of

        se = wallet_sim.open_secure_element(phone_id, home)
        self.se_ref = secure_element_of(se)
        self.endpoint, self.transmit, self.agent_kw = endpoint, transmit or se.transmit, agent_kw
        self.result: Any = None
        self.error: BaseException | None = None
        self.link: SeramLink | None = None
        self._thread: threading.Thread | None = None

    def start(self, link: SeramLink) -> None:
        """Join ``link``'s session (an ``on_session`` for :func:`over_the_air`)."""
        self.link = link
        self.start_session(link.session_id)

    def start_session(self, session_id: str) -> None:
        """Join the session ``session_id``, as handed to the phone (a 202 answer's
        ``seram``, or the operator's ``--session-id``)."""
        from wallet_sim.seram_agent import run_local_agent

        def run() -> None:
            try:
                self.result = run_local_agent(self.endpoint, session_id, self.transmit, self.se_ref,
                                              **self.agent_kw)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever joins
                self.error = exc

        self._thread = threading.Thread(target=run, name="phone-agent", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 60.0) -> Any:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise OtaError(f"the phone's agent did not end within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.result

