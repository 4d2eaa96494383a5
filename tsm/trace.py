"""``--trace``: print every APDU pair, plain and wrapped, in the manner of ``gp -d``.

:func:`tracing_transmit` wraps a transport and shows what travels on the wire (SCP03
wrapped); the TSM's card session reports the plain pair through the same sink. Commands
the TSM marks as carrying secrets (PINs, key blocks) are shown plain only as a length.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Sink = Callable[[str], None]
Transmit = Callable[[bytes], bytes]


def _hex(b: bytes) -> str:
    return b.hex().upper()


def format_command(apdu: bytes) -> str:
    if len(apdu) <= 5:
        return _hex(apdu)
    return f"{_hex(apdu[:4])} {_hex(apdu[4:5])} {_hex(apdu[5:])}"


def guarded(sink: Sink) -> Sink:
    """``sink`` whose failure cannot fail the card session it watches: a trace written to a
    pipe its reader closed (``mcred --trace ... 2>&1 | head``) raised BrokenPipeError inside
    the transport, before a command went out or after its answer came back, and the TSM
    reported that as the SE giving no answer and stopped its job. The first failure makes
    the sink silent for good; the session goes on untraced."""
    broken = False

    def safe(line: str) -> None:
        nonlocal broken
        if broken:
            return
        try:
            sink(line)
        except (OSError, ValueError):  # ValueError: a closed file
            broken = True

    return safe


def tracing_transmit(transmit: Transmit, sink: Sink, label: str = "wire") -> Transmit:
    """A transport that reports each command and response to ``sink`` before returning
    (:func:`guarded`: a trace that cannot be written is dropped, the pair still travels)."""
    sink = guarded(sink)

    def traced(apdu: bytes) -> bytes:
        sink(f"A>> {label:5} ({len(apdu):04}) {format_command(apdu)}")
        t0 = time.perf_counter()
        try:
            resp = transmit(apdu)
        except Exception as exc:
            sink(f"A<< {label:5} no response: {type(exc).__name__}: {exc}")
            raise
        ms = (time.perf_counter() - t0) * 1000
        sink(f"A<< {label:5} ({len(resp) - 2:04}+2) ({ms:.0f}ms) {_hex(resp[:-2])} {_hex(resp[-2:])}")
        return resp

    many = getattr(transmit, "transmit_many", None)
    if callable(many):  # a transport that pipelines stays one: the batch traced pair by pair
        def traced_many(apdus: list[bytes]) -> list[bytes]:
            t0 = time.perf_counter()
            try:
                resps = many(apdus)
            except Exception as exc:
                for apdu in apdus:
                    sink(f"A>> {label:5} ({len(apdu):04}) {format_command(apdu)}")
                sink(f"A<< {label:5} no response to {len(apdus)} commands: {type(exc).__name__}: {exc}")
                raise
            ms = (time.perf_counter() - t0) * 1000
            for apdu, resp in zip(apdus, resps, strict=False):
                sink(f"A>> {label:5} ({len(apdu):04}) {format_command(apdu)}")
                sink(f"A<< {label:5} ({len(resp) - 2:04}+2) ({ms:.0f}ms for {len(apdus)}) "
                     f"{_hex(resp[:-2])} {_hex(resp[-2:])}")
            return resps

        traced.transmit_many = traced_many  # type: ignore[attr-defined]
    return traced


def trace_plain(sink: Sink, apdu: bytes, resp: bytes | None, secret: bool = False) -> None:
    """Report one plain (unwrapped) pair; ``secret`` hides the command and response data."""
    if secret:
        shown = f"{_hex(apdu[:4])} <{max(0, len(apdu) - 5)} bytes hidden>"
    else:
        shown = format_command(apdu)
    sink(f"A>> plain ({len(apdu):04}) {shown}")
    if resp is not None:
        body = "<hidden>" if secret and len(resp) > 2 else _hex(resp[:-2])
        sink(f"A<< plain ({len(resp) - 2:04}+2) {body} {_hex(resp[-2:])}")
