"""The phone's side of a presentation over HTTP, to a reader service (:mod:`reader.http`):
in proximity (:func:`present_over_http`), online as a browser would
(:func:`present_online_over_http`), cross-device (:func:`present_cross_device_over_http`,
:func:`wallet_cross_device`: the wallet app with a verifier's QR code), and the verifier's
page without a page (:func:`ask_cross_device`). A web client, no server stack. Public names
are also importable from :mod:`mcred.present`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urljoin

from mcred.present_in_process import Presentation, PresentError
from protocols.mdoc import dcapi
from reader.errors import ReaderSessionError
from reader.fetch import SESSION_MAX_BYTES, FetchError, fetch, new_client
from reader.online import CROSS_DEVICE, origin_of
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import CrossDeviceWalletSession, HttpExchange, OnlineRequestError, Wallet

if TYPE_CHECKING:
    import httpx


def present_over_http(wallet: Wallet, reader_url: str, *, client: httpx.Client | None = None,
                      timeout: float = 30.0,
                      on_engagement: Callable[[Engagement], None] | None = None,
                      token: str | None = None) -> Presentation:
    """The phone side over HTTP: POST the engagement (``mdoc:`` URI), answer the
    SessionEstablishment, receive the reader's SessionData, fetch the verdict. ``token``:
    a bearer token, for the reader mounted in the issuer service (scope ``reader``)."""
    session = wallet.start()
    if on_engagement is not None:
        on_engagement(session.engagement)  # the QR code the holder shows
    with _at_reader(reader_url, client, timeout, token) as (client, base, auth):
        r = fetch(client, "POST", f"{base}/sessions", max_bytes=SESSION_MAX_BYTES,
                  content=session.engagement.uri.encode(), headers={"Content-Type": "text/plain", **auth})
        if r.status != 201:
            raise _refused("reader refused the engagement", r, base, token)
        sid = r.headers.get("x-session-id")
        location = r.headers.get("location") or (f"sessions/{sid}" if sid else None)
        if location is None:
            raise PresentError("reader created a session but named neither Location nor X-Session-Id")
        # a reference resolved against the request's URL (RFC 9110 10.2.2, RFC 3986 5): an
        # absolute path names the session wherever the reader is mounted (/reader/sessions/ID)
        url = urljoin(f"{base}/sessions", location)
        reply = session.receive(r.body)
        r = fetch(client, "POST", url, max_bytes=SESSION_MAX_BYTES, content=reply or b"",
                  headers={"Content-Type": "application/cbor", **auth})
        if session.state == "terminated":  # the wallet could not use the reader's first message
            why = next((e for e in reversed(session.events) if e.kind == "error"), None)
            raise PresentError(f"reader at {base}: its SessionEstablishment was not usable "
                               f"({why.detail if why else 'session ended'}); the wallet answered status "
                               f"{why.status if why else '?'} and ended the session")
        if r.status != 200:
            raise PresentError(f"reader refused SessionData: HTTP {r.status} {r.preview()}")
        session.receive(r.body)
        r = fetch(client, "GET", f"{url}/result", max_bytes=SESSION_MAX_BYTES, headers=auth)
        result = _verdict(r, base, "no verdict")
    return _presented(result, session)


@contextlib.contextmanager
def _at_reader(reader_url: str, client: httpx.Client | None, timeout: float, token: str | None):
    """``(client, base URL, auth headers)`` for talking to the reader at ``reader_url``: the
    given client, or one made here (the CA bundle loaded once per process) and closed after;
    a transport failure becomes :class:`PresentError` naming the reader."""
    own = client is None
    http = client or new_client(timeout=timeout)
    base = reader_url.rstrip("/")
    try:
        yield http, base, ({"Authorization": f"Bearer {token}"} if token else {})
    except FetchError as exc:
        raise PresentError(f"reader at {base}: {exc}") from exc
    finally:
        if own:
            http.close()


def _refused(what: str, r, base: str, token: object) -> PresentError:  # noqa: ANN001 - reader.fetch.HttpAnswer
    """:class:`PresentError` for the reader's refusal ``r`` of a session's first request, with
    what to do about the refusals a user meets by pointing at the wrong place (404: the
    issuer service's root, whose reader is under /reader) or presenting without the token
    the issuer service's reader asks (401, 403). ``token``: whether one was sent."""
    hint = ""
    if r.status == 404:
        hint = (f" (no reader at {base}: `mcred reader serve` answers at its root URL, the issuer "
                "service's reader at <issuer>/reader)")
    elif r.status == 401:
        hint = (" (the token was refused: unknown, revoked or expired)" if token else
                " (this reader asks a bearer token of scope reader: --token T, from `mcred token create "
                "--scope reader`)")
    elif r.status == 403:
        hint = " (the token lacks the scope reader: `mcred token create --scope reader`)"
    return PresentError(f"{what}: HTTP {r.status}{hint} {r.preview()}")


def _verdict(r, base: str, refused: str) -> dict:  # noqa: ANN001 - reader.fetch.HttpAnswer
    """The reader's verdict out of its answer ``r``; :class:`PresentError` naming ``refused``
    for another status than 200, or a body that is not JSON."""
    if r.status != 200:
        raise PresentError(f"{refused}: HTTP {r.status} {r.preview()}")
    try:
        return json.loads(r.body)
    except ValueError as exc:
        raise PresentError(f"reader at {base}: the verdict is not JSON: {exc}") from None


def _presented(result: dict, session) -> Presentation:  # noqa: ANN001 - a WalletSession
    return Presentation(result, tuple(session.events), session.device_response,
                        session.transcript.raw if session.transcript else None)


def present_online_over_http(wallet: Wallet, reader_url: str, *, origin: str | None = None,
                             client: httpx.Client | None = None, timeout: float = 30.0,
                             token: str | None = None, protocol: str = dcapi.PROTOCOL) -> Presentation:
    """An online presentation over HTTP, this process playing the browser: ``POST
    /online/sessions?protocol=...`` for the page's request (``org-iso-mdoc`` or
    ``openid4vp-v1-unsigned``), the wallet answers it for ``origin`` (default: the reader
    URL's own), ``POST /online/sessions/{id}`` with the credential, the verdict."""
    try:
        origin = origin or origin_of(reader_url.rstrip("/"))
    except ReaderSessionError as exc:
        raise PresentError(f"reader URL {exc}") from None
    with _at_reader(reader_url, client, timeout, token) as (client, base, auth):
        sid, request = _open_online_session(client, base, auth, protocol)
        session = wallet.online(origin)
        try:
            answer = session.respond(request)
        except OnlineRequestError as exc:
            raise PresentError(f"reader at {base}: the wallet cannot answer its request: {exc}") from None
        r = fetch(client, "POST", f"{base}/online/sessions/{sid}", max_bytes=SESSION_MAX_BYTES,
                  content=json.dumps(answer).encode(), headers={"Content-Type": "application/json", **auth})
        result = _verdict(r, base, "reader refused the credential")
    return _presented(result, session)


@dataclass(frozen=True)
class CrossDeviceAnswer:
    """What the wallet app did with a scanned request: its session (events, transcript) and
    the verifier's answer to the POST (``redirect_uri`` when it sends the holder on)."""

    session: CrossDeviceWalletSession
    status: int
    answer: dict


def _exchange(client: httpx.Client, ex: HttpExchange):  # noqa: ANN202 - reader.fetch.HttpAnswer
    headers = {"Accept": ex.accept}
    content = None
    if ex.form is not None:
        content = urlencode(ex.form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return fetch(client, ex.method, ex.url, max_bytes=SESSION_MAX_BYTES, content=content, headers=headers)


def wallet_cross_device(wallet: Wallet, uri: str, *, client: httpx.Client | None = None,
                        timeout: float = 30.0) -> CrossDeviceAnswer:
    """The phone's wallet app with a verifier's QR code scanned (``openid4vp://?...``): it
    fetches the request object from ``request_uri`` (when the request is by reference),
    asks the holder, and posts its answer to the request's ``response_uri``; over real HTTP,
    with no credentials of its own. :class:`OnlineRequestError` for a request it refuses,
    :class:`PresentError` for a verifier that does not answer as OpenID4VP 1.0 says."""
    session = wallet.cross_device(uri)
    own = client is None
    http = client or new_client(timeout=timeout)
    try:
        body = None
        if session.fetch is not None:
            r = _exchange(http, session.fetch)
            if r.status != 200:  # OID4VP 1.0 5.10.2: the wallet MUST terminate
                raise PresentError(f"request_uri {session.fetch.url[:100]}: HTTP {r.status} {r.preview()}")
            kind = r.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/oauth-authz-req+jwt":
                raise PresentError(f"request_uri {session.fetch.url[:100]}: content type {kind!r}, not "
                                   "application/oauth-authz-req+jwt")
            body = r.body
        post = session.respond(body)
        r = _exchange(http, post)
        try:
            answer = json.loads(r.body) if r.body else {}
        except ValueError:
            answer = {}
        if r.status != 200:
            raise PresentError(f"response_uri {post.url[:100]}: the verifier refused the answer: HTTP {r.status} "
                               f"{r.preview()}")
        return CrossDeviceAnswer(session, r.status, answer if isinstance(answer, dict) else {})
    except FetchError as exc:
        raise PresentError(f"verifier: {exc}") from exc
    finally:
        if own:
            http.close()


def present_cross_device_over_http(wallet: Wallet, reader_url: str, *, client: httpx.Client | None = None,
                                   timeout: float = 30.0, token: str | None = None,
                                   on_uri: Callable[[str], None] | None = None) -> Presentation:
    """A cross-device OpenID4VP presentation over HTTP: this process plays the verifier's
    page (``POST /online/sessions?protocol=openid4vp-cross-device``, the URI shown through
    ``on_uri``, the verdict polled at ``GET /sessions/{id}/result``) and the phone, which
    scans the URI and talks to the reader's request_uri and response_uri itself."""
    with _at_reader(reader_url, client, timeout, token) as (client, base, auth):
        sid, request = _open_online_session(client, base, auth, CROSS_DEVICE)
        uri = request.get("uri") if isinstance(request, dict) else None
        if not isinstance(uri, str):
            raise PresentError(f"reader at {base}: its cross-device request names no authorization request URI")
        if on_uri is not None:
            on_uri(uri)
        try:
            done = wallet_cross_device(wallet, uri, client=client)
        except OnlineRequestError as exc:
            raise PresentError(f"reader at {base}: the wallet cannot answer its request: {exc}") from None
        r = fetch(client, "GET", f"{base}/sessions/{sid}/result", max_bytes=SESSION_MAX_BYTES, headers=auth)
        result = _verdict(r, base, "no verdict")
    return _presented(result, done.session)


def ask_cross_device(reader_url: str, *, on_uri: Callable[[str], None], token: str | None = None,
                     wait: float = 300.0, client: httpx.Client | None = None) -> dict:
    """The verifier's page without a page: opens a cross-device session at the reader, shows
    its authorization request URI through ``on_uri`` (for any wallet to scan), and waits up
    to ``wait`` seconds for the verdict (long polls of ``GET /sessions/{id}/result?wait=``).
    :class:`PresentError` when the reader refuses, or no wallet answered in time."""
    import time

    deadline = time.monotonic() + wait
    with _at_reader(reader_url, client, max(wait, 30.0) + 30.0, token) as (client, base, auth):
        sid, request = _open_online_session(client, base, auth, CROSS_DEVICE)
        uri = request.get("uri") if isinstance(request, dict) else None
        if not isinstance(uri, str):
            raise PresentError(f"reader at {base}: its cross-device request names no authorization request URI")
        on_uri(uri)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PresentError(f"no wallet answered within {wait:.0f} s (session {sid})")
            r = fetch(client, "GET", f"{base}/sessions/{sid}/result?wait={min(25.0, left):.1f}",
                      max_bytes=SESSION_MAX_BYTES, headers=auth, timeout=60.0)
            if r.status != 409:
                return _verdict(r, base, "no verdict")


def _open_online_session(client: httpx.Client, base: str, auth: dict, protocol: str) -> tuple[str, object]:
    """``POST /online/sessions?protocol=...`` at the reader: the session id and its request;
    :class:`PresentError` naming what is wrong with the reader's answer."""
    r = fetch(client, "POST", f"{base}/online/sessions?{urlencode({'protocol': protocol})}",
              max_bytes=SESSION_MAX_BYTES, headers=auth)
    if r.status != 201:
        raise _refused("reader refused an online request", r, base, "Authorization" in auth)
    try:
        opened = json.loads(r.body)
        sid, request = opened["session"], opened["request"]
        if not isinstance(sid, str) or not sid.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"session id {sid!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise PresentError(f"reader at {base}: its online request is not usable: {type(exc).__name__}: {exc}") \
            from None
    return sid, request
