"""One presentation with the wallet and the reader in this process: over the session's
bytes (:func:`present_in_process`), an NFC tap (:func:`present_nfc_in_process`,
:func:`nfc_presentation`, which also reads a phone on a PC/SC reader), online
(:func:`present_online_in_process`) and cross-device (:func:`present_cross_device_in_process`);
and :class:`Presentation`, what every presentation leaves behind (over HTTP too:
:mod:`mcred.present_http`). No web client, framework or database is imported. Public names
are also importable from :mod:`mcred.present`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from cryptography.hazmat.primitives import serialization

from protocols import cbor
from protocols.mdoc import dcapi, nfc, oid4vp
from reader.nfc import NfcReaderSession
from reader.nfc import tap as nfc_tap
from reader.online import (
    Oid4vpReaderSession,
    Oid4vpRedirectReaderSession,
    OnlineReaderSession,
    credential_message,
)
from reader.session import ReaderOutcome, ReaderSession
from wallet_sim.nfc import WALLET_AIDS, AidRouter, NfcTag
from wallet_sim.wallet import OnlineRequestError, Wallet, WalletEvent

if TYPE_CHECKING:
    from mcred.present_wiring import ReaderParts
    from reader.pcsc import PcscCard


@dataclass(frozen=True)
class Presentation:
    """What a presentation leaves behind: the verdict (result JSON shape), the wallet's view,
    and the bytes needed to verify it again (``mcred verify``)."""

    result: dict
    wallet_events: tuple[WalletEvent, ...] = field(default=())
    device_response: bytes | None = None
    session_transcript: bytes | None = None
    #: opens the session's messages (saved for ``mcred verify``): never in a repr
    e_reader_private_key: bytes | None = field(default=None, repr=False)

    @property
    def valid(self) -> bool:
        return bool(self.result.get("valid"))

    def saved(self) -> bytes:
        """The saved-transcript file (CBOR): what ``mcred verify`` reads."""
        m: dict = {"deviceResponse": self.device_response or b"",
                   "sessionTranscript": self.session_transcript or b""}
        if self.e_reader_private_key:
            m["eReaderPrivateKey"] = self.e_reader_private_key
        return cbor.dumps(m)


def _pkcs8(key) -> bytes | None:
    if key is None:
        return None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def present_in_process(wallet: Wallet, reader: ReaderSession) -> Presentation:
    session = wallet.start()
    establishment = reader.start(session.engagement.bytes)
    reply = session.receive(establishment)
    outcome = reader.receive(reply or b"")
    session.receive(reader.terminate())
    return _from_outcome(outcome, session, _pkcs8(reader.e_reader_private_key))


def present_nfc_in_process(wallet: Wallet, reader: ReaderSession, *,
                           trace: Callable[[str, bytes], None] | None = None,
                           carrier: nfc.NfcCarrier | None = None, handover: str = "static",
                           on_steps: Callable[[list[str]], None] | None = None, **tap_options) -> Presentation:
    """A tap: the reader's NFC engagement and data retrieval against the phone's wallet,
    through the phone's NFC controller (:class:`wallet_sim.nfc.AidRouter`, the wallet's
    AIDs to its HCE service). ``trace(direction, apdu)`` sees every APDU (``">"`` to the
    phone, ``"<"`` back); ``handover``: the phone's NFC engagement, ``static`` or
    ``negotiated`` (TNEP); ``tap_options`` go to :class:`reader.nfc.NfcReaderSession`."""
    tag = NfcTag(wallet, carrier=carrier, handover=handover)
    route = AidRouter(_no_secure_element, {aid: tag.transmit for aid in WALLET_AIDS})

    tap_session = NfcReaderSession(reader, **tap_options)
    outcome = nfc_tap(_traced(route.transmit, trace), tap_session)
    tag.deactivate()
    if on_steps:
        on_steps(tap_session.steps)
    return _from_outcome(outcome, tag.session, _pkcs8(reader.e_reader_private_key))


def nfc_presentation(parts: ReaderParts, *, wallet: Wallet | None = None, pcsc_reader: str | None = None,
                     wait: float = 30.0, short: bool = False, handover: str = "static",
                     trace: Callable[[str, bytes], None] | None = None,
                     hostile: str | None = None, ble_hci: str | None = None,
                     on_card: Callable[[PcscCard], None] | None = None) -> tuple[Presentation, list[str]]:
    """``mcred reader nfc``: a reader of ``parts`` taps ``wallet`` in-process, or else the
    phone on the PC/SC reader ``pcsc_reader`` (:mod:`reader.pcsc`); the presentation and
    the tap's steps. :class:`reader.pcsc.PcscError` when no phone could be read.
    ``hostile``: a reader wrong on purpose (:data:`reader.hostile.HOSTILE`). ``ble_hci``:
    the reader also takes data retrieval over BLE (preferred), on this HCI transport: when
    the phone's Handover Select offers it, the session goes on over BLE after the tap.
    ``on_card``: given the PC/SC card once the phone is tapped (its reader's event count
    tells a reader loop whether the phone was taken away since)."""
    from reader.hostile import hostile as named_hostile

    session = ReaderSession([parts.request], parts.pipeline, reader_signer=parts.reader_signer,
                            reader_chain=parts.reader_chain, reader_auth_all=parts.reader_auth_all,
                            hostile=named_hostile(hostile))
    lengths = {"max_command": 255, "max_response": 256} if short else {}
    if wallet is not None:
        steps: list[str] = []
        out = present_nfc_in_process(wallet, session, trace=trace, on_steps=steps.extend, handover=handover,
                                     **lengths)
        return out, steps
    from reader.pcsc import tapped

    tap_session = NfcReaderSession(session, carriers=("ble", "nfc") if ble_hci else ("nfc",), **lengths)
    with tapped(pcsc_reader, wait=wait) as card:
        if on_card is not None:
            on_card(card)
        outcome = nfc_tap(_traced(card.transmit, trace), tap_session)
    steps = [f"phone on {card.reader} (ATR {card.atr.hex().upper()})", *tap_session.steps]
    if outcome is None:  # the phone's select settled BLE: the session goes on over the radio
        import asyncio

        from reader import ble as reader_ble

        assert ble_hci is not None and tap_session.handover_select is not None
        got = asyncio.run(reader_ble.read(session, tap_session.handover_select.device_engagement.encode(), ble_hci,
                                          options=tap_session.ble_options, handover=tap_session.handover,
                                          timeout=wait))
        outcome = got.outcome
        steps += [f"BLE: {s}" for s in got.steps]
    return _from_outcome(outcome, None, _pkcs8(session.e_reader_private_key)), steps


def _traced(transmit: Callable[[bytes], bytes],
            trace: Callable[[str, bytes], None] | None) -> Callable[[bytes], bytes]:
    """``transmit`` that shows each command (``">"``) and answer (``"<"``) to ``trace``."""
    if trace is None:
        return transmit

    def traced(apdu: bytes) -> bytes:
        trace(">", apdu)
        answer = transmit(apdu)
        trace("<", answer)
        return answer

    return traced


def _no_secure_element(apdu: bytes) -> bytes:
    """The default route of an in-process tap: no applet of the SE answers a reader of mdocs."""
    return b"\x6a\x82"


class PresentError(Exception):
    """The reader could not be reached or answered outside the protocol."""


def _from_outcome(outcome: ReaderOutcome, session, key: bytes | None = None) -> Presentation:  # noqa: ANN001
    """A presentation from the reader's outcome and the wallet session's events (None: the
    wallet is not ours to see, or no session began)."""
    st = outcome.session_transcript
    return Presentation(outcome.result.to_json(), tuple(session.events) if session is not None else (),
                        outcome.device_response, st.raw if st else None, key)


def present_online_in_process(wallet: Wallet, reader: OnlineReaderSession | Oid4vpReaderSession, *,
                              origin: str | None = None) -> Presentation:
    """An online presentation (ISO/IEC TS 18013-7 Annex C, or OpenID4VP 1.0 with an
    :class:`Oid4vpReaderSession`) with the browser left out: the page's request goes to the
    wallet with ``origin`` (the reader's own unless given: a relaying site would give its
    own), the wallet's answer back to the reader."""
    request = reader.start()
    session = wallet.online(origin or reader.origin)
    answer = session.respond(request)
    outcome = reader.receive(credential_message(answer))
    return _from_outcome(outcome, session)


def present_cross_device_in_process(wallet: Wallet, reader: Oid4vpRedirectReaderSession) -> Presentation:
    """A cross-device OpenID4VP presentation with HTTP left out: the reader's authorization
    request URI (the QR code) to the wallet, its request object (signed by the reader, with
    the wallet's nonce when it asked with POST) when it goes by reference, the wallet's form
    back to the reader."""
    opened = reader.start()
    session = wallet.cross_device(opened["uri"])
    jws = None
    if session.fetch is not None:
        jws = reader.request_object(reader.request_claims, reader.reader_signer, reader.reader_chain,
                                    wallet_nonce=session.wallet_nonce)
    post = session.respond(jws)
    outcome = reader.receive(urlencode(post.form).encode())
    return _from_outcome(outcome, session)


ONLINE_PROTOCOLS = (dcapi.PROTOCOL, oid4vp.SIGNED_PROTOCOL, oid4vp.PROTOCOL)
"""The Digital Credentials API protocols the wallet answers, in the order it prefers them."""


def pick_online_request(value, protocol: str | None = None) -> dict:  # noqa: ANN001 - JSON
    """One request the wallet can answer out of what a page passes to the Digital Credentials
    API: a request object (``{"protocol", "data"}``), or the argument of
    ``navigator.credentials.get`` (``{"digital": {"requests": [...]}}``, or ``{"requests":
    [...]}``), from which the first of ``protocol`` (or of :data:`ONLINE_PROTOCOLS`, in that
    order) is taken. :class:`OnlineRequestError` naming what was offered otherwise."""
    if isinstance(value, dict) and isinstance(value.get("digital"), dict):
        value = value["digital"]
    offered = value.get("requests") if isinstance(value, dict) and "protocol" not in value else [value]
    if not isinstance(offered, list) or not all(isinstance(r, dict) for r in offered):
        raise OnlineRequestError("not a Digital Credentials API request: expected {\"protocol\", \"data\"} or "
                                 "{\"digital\": {\"requests\": [...]}}")
    wanted = (protocol,) if protocol else ONLINE_PROTOCOLS
    for name in wanted:
        for request in offered:
            if request.get("protocol") == name:
                return request
    names = ", ".join(str(r.get("protocol"))[:40] for r in offered) or "none"
    raise OnlineRequestError(f"no request this wallet answers ({', '.join(wanted)}) among those offered: {names}")
