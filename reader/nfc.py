"""The reader taps a phone: NFC engagement and data retrieval over NFC (ISO/IEC 18013-5:2021
§8.2.2.1 static and negotiated handover, §8.3.3.1.2), around a
:class:`~reader.session.ReaderSession`.

Sans-I/O, in the shape of h11: :meth:`NfcReaderSession.start` gives the first command APDU,
:meth:`NfcReaderSession.receive` takes each response APDU and gives the next command, or
None when the tap is over; :attr:`NfcReaderSession.outcome` then holds the verdict. Any
transport carries the bytes: an in-process tag, or a PC/SC reader (:mod:`reader.pcsc`);
:func:`tap` drives one with a ``transmit`` function.

The steps: SELECT the NDEF application, read the capability container and the NDEF file:
a Handover Select message (static handover), or a TNEP Service Parameter record, after
which the reader selects the handover service and writes its Handover Request, offering
data retrieval over NFC with its lengths, and reads the phone's Handover Select
(negotiated handover). Then it picks the NFC carrier, starts the session with
``NFCHandover = [HandoverSelect, HandoverRequest or null]`` in the SessionTranscript,
SELECTs the mdoc application, sends the SessionEstablishment in ENVELOPE commands and
fetches the SessionData with GET RESPONSE. The reader then lifts the field rather than sending a termination
message: over NFC there is no answer to wait for, and the phone ends its session with the
field. A step that fails ends the tap with a failed ``session`` check that names it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator
from typing import Literal

from protocols.mdoc import MdocError, ble, nfc
from reader.errors import ReaderSessionError
from reader.session import ReaderOutcome, ReaderSession

Transmit = Callable[[bytes], bytes]


class NfcReaderSession:
    """One tap. ``max_command`` / ``max_response``: the longest command and response data
    fields this reader's antenna takes (extended length by default); the phone's NFC
    carrier may lower them. ``max_read``: the longest READ BINARY of the NDEF file."""

    def __init__(self, session: ReaderSession, *, max_command: int = 0xFFFF, max_response: int = 0x10000,
                 max_read: int = 0xFF, max_message: int = nfc.MAX_MESSAGE,
                 handover_request: bytes | None = None, carriers: tuple[str, ...] = ("nfc",)) -> None:
        """``carriers``: the data retrieval this reader takes, in its order of preference,
        ``nfc`` and / or ``ble``. When the phone's select settles on BLE the tap ends after
        the engagement (:attr:`state` ``handed over``, :attr:`ble_options` and
        :attr:`handover` set): the session goes on over BLE (:func:`reader.ble.read`)."""
        if not carriers or any(c not in ("nfc", "ble") for c in carriers):
            raise ReaderSessionError(f"carriers {carriers!r}: nfc and / or ble")
        self.carriers = tuple(carriers)
        self.ble_options: ble.BleOptions | None = None
        self.handover: list | None = None
        self.session = session
        self.max_command = max_command
        self.max_response = max_response
        self.max_read = max_read
        self.max_message = max_message
        self._request = handover_request
        """A Handover Request of the caller's own for negotiated handover (default: ours)."""
        self.state: Literal["idle", "tapping", "done", "handed over"] = "idle"
        self.handover_select: nfc.HandoverSelect | None = None
        self.handover_request: bytes | None = None
        self.steps: list[str] = []
        self.outcome: ReaderOutcome | None = None
        self._flow: Generator[bytes, bytes, ReaderOutcome] | None = None

    def start(self) -> bytes:
        if self.state != "idle":
            raise ReaderSessionError(f"start: the tap is {self.state}")
        self.state = "tapping"
        self._flow = self._run()
        return next(self._flow)

    def receive(self, response: bytes) -> bytes | None:
        """The answer to the last command; the next command, or None when the tap is over."""
        if self.state != "tapping" or self._flow is None:
            return None
        try:
            return self._flow.send(bytes(response))
        except StopIteration as stop:
            self._done(stop.value)
        except (MdocError, ReaderSessionError) as exc:
            self._done(self.session.fail(f"NFC: {exc}"))
        except Exception as exc:  # noqa: BLE001 - the reader's boundary: a bad tag never crashes it
            self._done(self.session.fail(f"NFC: {type(exc).__name__}: {exc}"))
        return None

    def abort(self, reason: str) -> ReaderOutcome:
        """The transport failed (the phone left the field, the reader went away)."""
        if self.state != "done":
            self._done(self.session.fail(f"NFC: {reason}"))
        assert self.outcome is not None
        return self.outcome

    def _done(self, outcome: ReaderOutcome | None) -> None:
        self.state = "done" if outcome is not None else "handed over"
        self.outcome, self._flow = outcome, None

    def _request_message(self, offer: nfc.NfcCarrier) -> bytes | None:
        """Our Handover Request for negotiated handover: the carriers we take, in order (BLE
        in both roles on one fresh service UUID)."""
        if self._request is not None or self.carriers == ("nfc",):
            return self._request
        u = uuid.uuid4()
        return nfc.handover_request(offer, nfc="nfc" in self.carriers,
                                    ble_options=ble.BleOptions(True, True, u, u) if "ble" in self.carriers else None)

    def _run(self) -> Generator[bytes, bytes, ReaderOutcome | None]:
        offer = nfc.NfcCarrier(min(self.max_command, 0xFFFF), min(self.max_response, 0xFFFF))
        raw, request = yield from nfc.nfc_engagement(max_read=self.max_read, carrier=offer,
                                                     request=self._request_message(offer))
        hs = self.handover_select = nfc.HandoverSelect.decode(raw)
        self.handover_request = request
        kinds = ", ".join(c.kind for c in hs.carriers)
        how = "static handover" if request is None else "negotiated handover (TNEP)"
        self.steps.append(f"engagement read ({how}): Handover Select {hs.version}, {len(raw)} bytes, "
                          f"carriers {kinds}")
        self.handover = nfc.nfc_handover(hs, request)
        for kind in self.carriers:
            if kind == "ble":
                options = hs.ble_options(nfc.HandoverRequest.decode(request) if request else None)
                if options is not None and options.modes():
                    self.ble_options = options
                    modes = " and ".join(f"mdoc {m.mode} mode" for m in options.modes())
                    self.steps.append(f"data retrieval over BLE: {modes}; the tap ends here")
                    return None
            elif hs.nfc_carrier is not None:
                break
        else:
            takes = " or ".join(k.upper() for k in self.carriers)
            raise nfc.NfcError(f"the phone offers no data retrieval over {takes} (carriers: {kinds}); "
                               "this reader takes no other")
        carrier = hs.nfc_carrier
        establishment = self.session.start(hs.device_engagement.encode(), handover=self.handover)
        yield from nfc.select_application(nfc.MDOC_NFC_AID, "mdoc application")
        command = min(self.max_command, carrier.max_command)
        response = min(self.max_response, carrier.max_response)
        self.steps.append(f"data retrieval over NFC: commands up to {command} bytes, responses up to {response}")
        reply = yield from nfc.transceive(establishment, max_command=command, max_response=response,
                                          max_message=self.max_message)
        self.steps.append(f"SessionEstablishment of {len(establishment)} bytes answered with {len(reply)}")
        if not reply:
            raise nfc.NfcError("the phone answered the request with no SessionData")
        return self.session.receive(reply)


def tap(transmit: Transmit, session: NfcReaderSession) -> ReaderOutcome | None:
    """Drive one tap over ``transmit`` (command APDU in, response APDU out). A transport
    error (``OSError`` and the like from ``transmit``) ends it with a failed check. None
    when the phone's select handed the session over to BLE (``session.ble_options``)."""
    command: bytes | None = session.start()
    while command is not None:
        try:
            answer = transmit(command)
        except Exception as exc:  # noqa: BLE001 - any transport's error: the tap is over
            return session.abort(f"transport: {type(exc).__name__}: {exc}")
        command = session.receive(answer)
    assert session.outcome is not None or session.state == "handed over"
    return session.outcome
