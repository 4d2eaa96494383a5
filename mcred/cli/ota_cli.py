"""``--over-the-air`` for the commands that run a TSM job (``mcred provision``, ``mcred mdoc
refresh``, ``mcred jpki pin reset``, ``mcred mdoc reissue``, ...): the same options
everywhere, and the GP SERAM Remote Agent they serve for the length of the job
(specs/tsm.md, "Over the air")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import typer

from mcred.cli.text import make_console

err = make_console(stderr=True)

OVER_THE_AIR = typer.Option(False, "--over-the-air", help="Reach the phone's SE through its GP SERAM Local "
                            "Agent (`mcred phone agent`, another process or machine) instead of opening it "
                            "here (specs/tsm.md, \"Over the air\").")
LISTEN = typer.Option("127.0.0.1:8472", "--listen", help="With --over-the-air: where the TSM's Remote Agent "
                      "listens for the phone, HOST:PORT.")
PUBLIC_URL = typer.Option(None, "--public-url", help="With --over-the-air: the base URL a phone reaches "
                          "--listen at (default http(s)://HOST:PORT).")
SESSION_ID = typer.Option(None, "--session-id", help="With --over-the-air: the management session's id "
                          "(default a random UUID, printed).")
SSL_CERTFILE = typer.Option(None, "--ssl-certfile", help="With --over-the-air: serve the Remote Agent over "
                            "HTTPS, as GP SERAM's binding has it (PEM chain).")
SSL_KEYFILE = typer.Option(None, "--ssl-keyfile", help="With --ssl-certfile: its key (PEM).")
CONNECT_TIMEOUT = typer.Option(None, "--connect-timeout", min=1.0, max=3600.0, help="With --over-the-air: "
                               "seconds a phone's agent has to join its session once its job starts, before "
                               "the phone is given up (default 300, the GP SERAM binding's 5 minutes).")


def fail(message: str, code: int = 2, as_json: bool = False) -> typer.Exit:
    """``error: message`` on stderr, or with ``--json`` ``{"error": message}`` on stdout."""
    from mcred.cli.text import fail as said

    return said(message, as_json, code)


def over_the_air_options(over_the_air: bool, listen: str, public_url: str | None, session_id: str | None,
                         certfile: Path | None, keyfile: Path | None, as_json: bool, *,
                         connect_timeout: float | None = None) -> OverTheAir | None:
    """The options checked together: an :class:`OverTheAir`, or None without
    ``--over-the-air`` (when the others, which go with it, must be absent)."""
    if not over_the_air:
        if public_url is not None or session_id is not None or certfile or keyfile:
            raise fail("--public-url, --session-id and --ssl-certfile/--ssl-keyfile go with --over-the-air",
                       as_json=as_json)
        if connect_timeout is not None:
            raise fail("--connect-timeout goes with --over-the-air", as_json=as_json)
        return None
    return OverTheAir(listen, public_url, session_id, as_json, certfile, keyfile, connect_timeout=connect_timeout)


class OverTheAir:
    """``--over-the-air``: a GP SERAM Remote Agent served for the length of the job."""

    def __init__(self, listen: str, public_url: str | None, session_id: str | None, as_json: bool,
                 certfile: Path | None, keyfile: Path | None, *, connect_timeout: float | None = None) -> None:
        from mcred.ota import OtaError, parse_listen
        from mcred.service import tls_options

        try:
            parse_listen(listen)
            self.tls = tls_options(certfile, keyfile)
        except (OtaError, ValueError) as exc:
            raise fail(str(exc), as_json=as_json) from None
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise fail(f"--public-url {public_url!r} is not an http(s) URL", as_json=as_json)
        self.listen, self.public_url, self.session_id, self.as_json = listen, public_url, session_id, as_json
        #: seconds a phone's agent has to join (None: ``tsm.seram.CONNECT_TIMEOUT_S``)
        self.connect_timeout = connect_timeout

    def run(self, phone_id: str, job, *, what: str = "provision"):  # noqa: ANN001, ANN202
        """``job(transmit)`` with the phone reached over the air; its result."""
        return self.run_all([phone_id], job, what=what)

    def run_all(self, phone_ids: list[str], job, *, what: str = "provision"):  # noqa: ANN001, ANN202
        """``job(*transmits)`` with each phone reached over the air, in a session of its own
        on the one endpoint (``--session-id S``: the first phone's; the others' S-2, S-3 ...)."""
        from mcred.ota import run_over_all

        with self.sessions(phone_ids) as links:
            return run_over_all([links[pid] for pid in phone_ids], job, what=what)

    @contextmanager
    def sessions(self, phone_ids: list[str] | tuple[str, ...]) -> Iterator[dict]:
        """A session for each phone on the one endpoint (``--session-id S``: the first
        phone's; the others' S-2, S-3 ...), each announced, served while the block runs:
        phone id to its ``tsm.seram.SeramLink``, for the block to run and end
        (``mcred.ota.run_over``). No phone: no endpoint."""
        from mcred.ota import OtaError, agent_command, seram_endpoint
        from protocols.gp.seram import SeramError
        from tsm.seram import CONNECT_TIMEOUT_S, SeramHub

        def announce(phone_id: str, link) -> None:  # noqa: ANN001 - tsm.seram.SeramLink
            command = agent_command(phone_id, endpoint.url, link.session_id)
            if self.as_json:  # one line first, for a script to start the phone with
                typer.echo(json.dumps({"seram": {"session": link.session_id, "endpoint": endpoint.url,
                                                 "phone": phone_id, "agent": command}}))
            else:
                err.print(f"GP SERAM session [bold]{link.session_id}[/bold] for phone {phone_id}: on the phone, run\n"
                          f"  {command}\nwaiting for it ({link.connect_timeout_s:g} s) ...", highlight=False, soft_wrap=True)

        if not phone_ids:
            yield {}
            return
        hub = SeramHub(connect_timeout_s=CONNECT_TIMEOUT_S if self.connect_timeout is None else self.connect_timeout)
        with ExitStack() as stack:
            try:  # the sessions are open before the endpoint answers: a phone started early finds its own
                links = {pid: hub.open(pid, session_id=None if self.session_id is None else
                                       self.session_id if n == 0 else f"{self.session_id}-{n + 1}")
                         for n, pid in enumerate(phone_ids)}
                endpoint = stack.enter_context(seram_endpoint(self.listen, public_url=self.public_url, hub=hub,
                                                              tls=self.tls))
            except (OtaError, SeramError) as exc:  # before the job: nothing was registered
                raise fail(str(exc), as_json=self.as_json) from None
            for pid, link in links.items():
                announce(pid, link)
            yield links
