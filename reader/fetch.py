"""Bounded HTTP reads: everything a reader or relying party fetches from a URL it was handed.

A status list URI comes from an MSO, a CRL distribution point or an OCSP responder from a
certificate, a session reply from whatever answers at a reader URL: the other end is not
trusted to be small. ``httpx``'s ``get`` reads the whole body into memory before anyone
can look at its length, so a hostile or broken server could make a party hold gigabytes.
:func:`fetch` streams instead and gives up at the first byte past ``max_bytes`` (or at once,
on a larger ``Content-Length``), with a :class:`FetchError` that names the URL and the
limit. It asks for ``Accept-Encoding: identity``; a server that compresses anyway is
counted after decoding, chunk by chunk, so a small compressed body cannot inflate past the
limit either.

Clients made here (:func:`new_client`, and the parties' default fetchers) share one TLS
context, built once per process (:func:`tls_context`). ``httpx`` itself is imported when a
client is made or a fetch runs, not with this module: a reader that verifies offline (``mcred
verify --offline``, ``mcred mdoc verify``, a tap in-process) never loads it.
"""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reader.text import printable

if TYPE_CHECKING:
    import httpx

#: Default limits. A status list of 100 million 2-bit entries compresses to a few MB; the
#: IACA's CRL and an OCSP response are small; a JPKI CRL can be large (one entry per revoked
#: certificate of the nation).
STATUS_LIST_MAX_BYTES = 16 * 1024 * 1024
IACA_CRL_MAX_BYTES = 4 * 1024 * 1024
JPKI_CRL_MAX_BYTES = 64 * 1024 * 1024
OCSP_MAX_BYTES = 1024 * 1024
SESSION_MAX_BYTES = 1024 * 1024


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (the CA bundle it would load itself: ``SSL_CERT_FILE``,
    ``SSL_CERT_DIR`` or certifi; certificates and host names verified), built once per
    process and shared by the clients made here. Left to itself, httpx builds one for every
    new ``Client``, whether or not it ever speaks TLS: 100-150 ms of parsing a CA bundle on
    our test machine, twenty times a whole presentation over HTTP."""
    import httpx

    return httpx.create_ssl_context()


def new_client(*, timeout: float) -> httpx.Client:
    """An ``httpx.Client`` as httpx makes it by default (TLS verified, environment proxies),
    but no redirects followed and the shared :func:`tls_context`."""
    import httpx

    return httpx.Client(timeout=timeout, follow_redirects=False, verify=tls_context())


class LazyClient:
    """The client a fetcher was given, or one of its own (:func:`new_client`) made at its
    first fetch: a pipeline built for offline use, or never asked to fetch, neither imports
    httpx nor loads the CA bundle. Safe to share between threads (a reader service's)."""

    def __init__(self, client: httpx.Client | None, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = new_client(timeout=self._timeout)
        return self._client


class FetchError(Exception):
    """Nothing usable came back: network error, timeout, or a body over the limit."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def text(self, limit: int | None = None) -> str:
        """The body as text (undecodable bytes replaced), cut at ``limit`` characters."""
        return self.body[: None if limit is None else 4 * limit].decode("utf-8", "replace")[:limit]

    def preview(self, limit: int = 200) -> str:
        """The body for an error message shown to a person: its text when it is text, with
        control characters escaped (a hostile server's escape sequences never reach the
        terminal), else its first bytes in hex, with the length."""
        head = self.body[: 4 * limit]
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:  # text cut inside a character at the end is still text
            text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 and exc.start else None
        if text is None or sum(not (c.isprintable() or c in "\n\t") for c in text) > len(text) // 10:
            cut = self.body[: min(32, limit)]
            return f"({len(self.body)} bytes, not text: {cut.hex()}{'...' if len(self.body) > len(cut) else ''})"
        return printable(text[:limit]) + ("..." if len(self.body) > len(head) or len(text) > limit else "")


def fetch(client: httpx.Client | None, method: str, url: str, *, max_bytes: int,
          headers: Mapping[str, str] | None = None, content: bytes | None = None,
          timeout: float = 5.0) -> HttpAnswer:
    """``method url`` with at most ``max_bytes`` of (decoded) body read; any status code is
    returned, the caller judges it. Header names in the answer are lower case. Without a
    ``client`` a short-lived one is made (no redirects followed, ``timeout`` seconds)."""
    import httpx

    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    own = client is None
    http = new_client(timeout=timeout) if own else client
    sent = {"Accept-Encoding": "identity", **(headers or {})}
    try:
        with http.stream(method, url, headers=sent, content=content) as r:
            declared = r.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"{method} {url}: Content-Length {declared} is over the "
                                 f"{max_bytes}-byte limit")
            chunks: list[bytes] = []
            size = 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{method} {url}: body over the {max_bytes}-byte limit")
                chunks.append(chunk)
            return HttpAnswer(r.status_code, b"".join(chunks), {k.lower(): v for k, v in r.headers.items()})
    except httpx.HTTPError as exc:
        raise FetchError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    except httpx.InvalidURL as exc:  # not an HTTPError: a URL taken from a credential can be anything
        raise FetchError(f"{method} {url!r}: invalid URL: {exc}") from exc
    except UnicodeError as exc:  # a host name IDNA cannot encode (an empty label: "http://./"), raised
        # by the socket layer's encoding of it, not by httpx
        raise FetchError(f"{method} {url!r}: invalid host name: {exc}") from exc
    finally:
        if own:
            http.close()
