"""Options shared by every command (set by the top-level callback), and the installation's
context opened on use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcred.context import Context


@dataclass
class GlobalOptions:
    trace: bool = False


OPTIONS = GlobalOptions()


def open_context() -> Context:
    """The installation's context, imported when a command needs it: the database stack
    (SQLAlchemy, Alembic) is not loaded for the commands that never touch it."""
    from mcred.context import Context

    return Context.open()


def check_can_listen(host: str, port: int) -> None:
    """Raise ``typer.BadParameter`` (exit 2, naming the option) unless a server can listen on
    ``host``:``port`` now: uvicorn's own report of a taken port is a log line and exit 3. The
    socket is set up as uvicorn's (SO_REUSEADDR), so a port in TIME_WAIT is not called taken;
    the port can still be taken between this check and uvicorn's bind."""
    import socket

    import typer

    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port} is not a TCP port (0 to 65535)", param_hint="--port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise typer.BadParameter(f"{host!r} is not an address of this machine ({exc})",
                                 param_hint="--host") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            hint = ("another server holds it; choose another --port" if exc.errno == 98
                    else "choose another --host or --port")
            raise typer.BadParameter(f"cannot listen on {where}: {exc.strerror} ({hint})",
                                     param_hint="--port") from None


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def public_url_mismatch(public_url: str, host: str, port: int, tls: bool) -> str | None:
    """A warning when the URLs this service writes into credentials cannot reach it: the
    public URL (``MCRED_PUBLIC_URL``) names this machine's loopback with another port or
    scheme than the one the server is started with, so every reader and relying party that
    follows a status list, CRL or OCSP URL from a credential finds nothing there. A public
    URL naming another host is a proxy's business and is not second-guessed."""
    from urllib.parse import urlsplit

    parts = urlsplit(public_url)
    if (parts.hostname or "").lower() not in LOOPBACK_NAMES:
        return None
    scheme = "https" if tls else "http"
    public_port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
    if public_port == port and parts.scheme == scheme:
        return None
    listening = f"{scheme}://{host}:{port}"
    return (f"warning: the credentials this service issues point at {public_url} (MCRED_PUBLIC_URL), "
            f"but it listens on {listening}: readers and relying parties will not reach its status "
            f"lists, CRLs or OCSP. Set MCRED_PUBLIC_URL={scheme}://127.0.0.1:{port} before issuing, "
            f"or serve on {public_port}{' with TLS' if parts.scheme == 'https' else ''}.")


def out_path(value):  # noqa: ANN001, ANN201 - a typer option callback: Path, list of Path or None
    """Typer callback for an option naming a file to write: its directory must exist and the
    path must not be a directory, checked before the command does its work (a presentation,
    an issuance, a drill, a signature with the SE) rather than failing at the end."""
    import typer

    for path in value if isinstance(value, list) else [] if value is None else [value]:
        if path.is_dir():
            raise typer.BadParameter(f"{path} is a directory; name a file")
        if not path.parent.is_dir():
            raise typer.BadParameter(f"{path}: no directory {path.parent}")
    return value


#: the widest name ``MCRED_ACTOR`` may give (audit actors are 128 wide, ``cli:`` before it)
ACTOR_NAME_MAX = 64


def cli_actor() -> str:
    """Who runs this command, as the issuer's and the TSM's audit trails record it:
    ``cli:<name>``, the name being ``MCRED_ACTOR`` where set (an operator's staff id on a
    shared account) or else the OS user's login name. An API caller is recorded by its
    token instead (``token:<id>:<name>``)."""
    import getpass
    import os

    from mcred.context import ConfigError

    name = os.environ.get("MCRED_ACTOR")
    if name is not None:
        name = name.strip()
        if not name or len(name) > ACTOR_NAME_MAX or not name.isprintable():
            raise ConfigError(f"MCRED_ACTOR={name!r}: give the operator's name, 1 to {ACTOR_NAME_MAX} "
                              "printable characters")
        return f"cli:{name}"
    try:
        return f"cli:{getpass.getuser()}"[:4 + ACTOR_NAME_MAX]
    except (KeyError, OSError):  # no login name and no passwd entry (a container's bare uid)
        return f"cli:uid-{os.getuid()}" if hasattr(os, "getuid") else "cli:unknown"


def parse_invalid_since(value: str | None):  # noqa: ANN201 - a datetime or None
    """``--invalid-since`` as the revocations take it (``mcred revoke``, ``mcred tsa revoke``):
    an ISO 8601 instant; one that is not is a bad parameter naming the option. Its offset and
    that it is not after the revocation are the revocation's to check
    (:func:`issuer.revocation.check_invalidity_date`)."""
    import datetime as dt

    import typer

    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r}: not an ISO 8601 instant; give one with its offset "
                                 "(2026-12-01T09:00:00+09:00)", param_hint="--invalid-since") from None
