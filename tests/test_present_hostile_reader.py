"""The phone against a hostile or broken reader over HTTP: garbage instead of a
SessionEstablishment, an error page, escape sequences in an error body, a body over the
limit. ``present_over_http`` ends with a PresentError that says what happened, in text
that is safe to print, and the phone's SE keeps its credential."""

from __future__ import annotations

import os

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wallet_session import REQUEST, make_wallet, pipeline, world  # noqa: F401 - fixtures

from mcred.present import PresentError, present_over_http
from reader.fetch import HttpAnswer


def _reader(first: httpx.Response, then: httpx.Response | None = None) -> httpx.Client:
    """A client whose 'reader' answers POST /sessions with ``first`` and anything after with
    ``then`` (a test edge: the bytes a broken reader would send)."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/sessions":
            return first
        return then or httpx.Response(200, content=b"\xa1\x66status\x14")
    return httpx.Client(transport=httpx.MockTransport(handle))


def test_garbage_instead_of_a_session_establishment_is_named(world):  # noqa: F811
    created = httpx.Response(201, content=os.urandom(64), headers={"Location": "/sessions/x"})
    with pytest.raises(PresentError, match="SessionEstablishment was not usable") as err:
        present_over_http(make_wallet(world), "http://reader.test", client=_reader(created))
    assert "the wallet answered status 11" in str(err.value)  # CBOR decoding error (ISO 18013-5 9.1.1.4)


def test_escape_sequences_in_an_error_body_do_not_reach_the_terminal(world):  # noqa: F811
    page = httpx.Response(500, content=b"service unavailable: upstream said \x1b[2J\x1b]0;owned\x07, try later")
    with pytest.raises(PresentError) as err:
        present_over_http(make_wallet(world), "http://reader.test", client=_reader(page))
    text = str(err.value)
    assert "HTTP 500" in text and "\x1b" not in text and "\x07" not in text and "\\x1b[2J" in text


def test_a_binary_error_body_is_shown_as_hex(world):  # noqa: F811
    page = httpx.Response(502, content=bytes(range(256)))
    with pytest.raises(PresentError, match=r"HTTP 502 \(256 bytes, not text: 000102"):
        present_over_http(make_wallet(world), "http://reader.test", client=_reader(page))


def test_the_credential_survives_a_hostile_reader(world):  # noqa: F811
    created = httpx.Response(201, content=os.urandom(200), headers={"Location": "/sessions/x"})
    for _ in range(3):
        with pytest.raises(PresentError):
            present_over_http(make_wallet(world), "http://reader.test", client=_reader(created))
    # the phone still presents to an honest reader afterwards
    from mcred.present import present_in_process
    from reader.session import ReaderSession

    out = present_in_process(make_wallet(world), ReaderSession([REQUEST], pipeline(world)))
    assert out.result["valid"], out.result


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 300))
def test_a_preview_never_carries_a_control_character(body, limit):
    shown = HttpAnswer(500, body).preview(limit)
    assert all(c.isprintable() for c in shown), repr(shown)


def test_printable_escapes_what_a_terminal_would_act_on():
    from reader.text import printable

    assert printable("ok: 山田") == "ok: 山田"
    assert printable("a\x1b[2Jb\nc\x07") == "a\\x1b[2Jb\\nc\\x07"


def test_a_hostile_reader_verdict_is_rendered_inert():
    """`mcred present` prints the verdict a reader sent: its strings cannot drive the
    terminal or inject rich markup."""
    import io

    from rich.console import Console

    from mcred.cli.present_cmds import render

    evil = "\x1b]0;pwned\x07[bold red]fake PASS[/]"
    out = io.StringIO()
    render(Console(file=out, width=200), {"valid": False,  # the check's code from the reader too
                                         "checks": [{"name": evil, "passed": True, "reason": evil, "code": evil}],
                                         "documents": [{"docType": evil, "elements": {evil: {evil: evil}}}]})
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "[bold red]fake PASS[/]" in text and "\\x1b]0;pwned" in text
