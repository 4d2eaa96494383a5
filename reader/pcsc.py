"""The reader's NFC antenna as a PC/SC reader (pyscard, the ``nfc`` extra): a thin I/O
adapter that gives :func:`reader.nfc.tap` its ``transmit``. A contactless PC/SC reader
(ACR122U, Identiv, ...) presents a tapped phone as a card; so does vsmartcard's vpcd with
``mcred phone pcsc`` on the other end.

``transmit`` sends each APDU as it is (T=1 or the contactless protocol, no automatic GET
RESPONSE: the NFC flow fetches the rest itself). Leaving the context unpowers the card,
which is how the reader lifts its field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reader.errors import NfcReaderError


class PcscError(NfcReaderError):
    """No PC/SC, no such reader, no phone in time, or a transmit failed; the message says which."""


def _pyscard():  # noqa: ANN202 - the smartcard modules
    try:
        import smartcard.System
        from smartcard import Exceptions, scard
        from smartcard.CardConnection import CardConnection
    except ImportError as exc:
        raise PcscError("PC/SC needs pyscard: pip install 'mcred[nfc]' (it builds against the PC/SC "
                        f"headers: Debian's libpcsclite-dev and swig) ({exc})") from None
    return smartcard.System, Exceptions, scard, CardConnection


def _failures() -> tuple[type[Exception], ...]:
    """What pyscard raises for a PC/SC failure: its own exceptions, and the PC/SC layer's
    (no pcscd: "Failed to establish context: Service not available")."""
    _, exceptions, _, _ = _pyscard()
    from smartcard.pcsc.PCSCExceptions import BaseSCardException

    return exceptions.SmartcardException, BaseSCardException


def _readers() -> list:
    """pyscard's reader objects."""
    system, _, _, _ = _pyscard()
    try:
        return list(system.readers())
    except _failures() as exc:
        raise PcscError(f"PC/SC: {exc} (is pcscd running?)") from None


def reader_names() -> list[str]:
    return [str(r) for r in _readers()]


@dataclass
class PcscCard:
    """A connected card (the tapped phone) in a named reader."""

    reader: str
    atr: bytes
    _connection: object
    #: the reader's card-event count once this card was connected (None: PC/SC cannot tell)
    events: int | None = None

    def transmit(self, apdu: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._connection.transmit(list(apdu))
        except _failures() as exc:
            raise PcscError(f"{self.reader}: transmit failed: {exc}") from None
        return bytes(data) + bytes([sw1, sw2])


def _pick(names: list[str], wanted: str | None) -> str:
    if not names:
        raise PcscError("no PC/SC reader (is pcscd running, is the reader plugged in?)")
    if wanted is None:
        return names[0]
    if wanted.isdigit() and int(wanted) < len(names):
        return names[int(wanted)]
    matching = [n for n in names if wanted.lower() in n.lower()]
    if not matching:
        raise PcscError(f"no PC/SC reader matches {wanted!r}; readers: {', '.join(names)}")
    return matching[0]


def _state(name: str) -> tuple[bool | None, int | None]:
    """Whether a card is in the reader ``name``, and the reader's card-event count: pcsc-lite
    counts every insertion and every removal in the high 16 bits of the event state (None
    where PC/SC cannot tell)."""
    _, _, scard, _ = _pyscard()
    rc, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rc != scard.SCARD_S_SUCCESS:
        return None, None
    try:
        rc, states = scard.SCardGetStatusChange(context, 0, [(name, scard.SCARD_STATE_UNAWARE)])
        if rc != scard.SCARD_S_SUCCESS or not states:
            return None, None
        return bool(states[0][1] & scard.SCARD_STATE_PRESENT), (states[0][1] >> 16) & 0xFFFF
    finally:
        scard.SCardReleaseContext(context)


def _present(name: str) -> bool | None:
    """Whether a card is in the reader ``name`` (None: PC/SC cannot tell)."""
    return _state(name)[0]


def readers() -> list[tuple[str, bool | None]]:
    """Every PC/SC reader's name, and whether a card (a phone) is in it (None: unknown)."""
    return [(name, _present(name)) for name in reader_names()]


def wait_until_removed(wanted: str | None = None, *, wait: float = 30.0, poll: float = 0.1,
                       since: int | None = None) -> bool:
    """Wait up to ``wait`` seconds for the reader to be empty (the phone taken away): True
    when it is. ``since``: the reader's card-event count while the last phone was on it
    (:attr:`PcscCard.events`); a count moved on since says the phone was taken away even if
    the next one came before this looked (pcscd sees a reader empty for one of its polls,
    0.4 s, and a busy reader may look later than that)."""
    import time

    name = _pick(reader_names(), wanted)
    deadline = time.monotonic() + wait
    while True:
        present, events = _state(name)
        if not present or (since is not None and events is not None and events != since):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


#: what PC/SC says of a card on its way in or out (no card, removed, present but not yet
#: powered or answering): wait on, as for no card
_ARRIVING = ("no smart card", "removed", "unpowered", "unresponsive", "reset")


@contextlib.contextmanager
def tapped(wanted: str | None = None, *, wait: float = 30.0, poll: float = 0.1) -> Iterator[PcscCard]:
    """Wait up to ``wait`` seconds for a card (a phone) in the reader named ``wanted`` (a
    name's part or an index; the first reader if None), connect, and unpower it when done."""
    import time

    _, exceptions, scard, card_connection = _pyscard()
    found = {str(r): r for r in _readers()}
    name = _pick(list(found), wanted)
    reader = found[name]
    deadline = time.monotonic() + wait
    connection = reader.createConnection()
    while True:
        try:
            connection.connect(card_connection.T1_protocol, disposition=scard.SCARD_UNPOWER_CARD)
            break
        except exceptions.NoCardException:
            pass
        except exceptions.CardConnectionException as exc:
            if not any(word in str(exc).lower() for word in _ARRIVING):
                raise PcscError(f"{name}: cannot connect: {exc}") from None
        except _failures() as exc:
            raise PcscError(f"{name}: cannot connect: {exc}") from None
        if time.monotonic() >= deadline:
            raise PcscError(f"{name}: no phone tapped within {wait:g} s")
        time.sleep(poll)
    try:
        yield PcscCard(name, bytes(connection.getATR()), connection, _state(name)[1])
    finally:
        with contextlib.suppress(Exception):
            connection.disconnect()


def tapper(wanted: str | None = None) -> Callable[[object, float], object]:
    """For :class:`reader.http.ReaderService`: a tap (an :class:`reader.nfc.NfcReaderSession`)
    read from the phone on the PC/SC reader ``wanted``, waiting up to the given seconds. As
    `mcred reader nfc --loop` does, a phone once read must be taken away before the next tap
    is read: a counter's page asking for the next tap gets the next holder, not the last one
    again (and not PC/SC's "card is unpowered" of a phone just read and on its way out)."""
    import time

    from reader.nfc import tap

    last: list[PcscCard] = []  # a phone was read: the next tap is another, once that one is taken away

    def read(session, wait: float):  # noqa: ANN001, ANN202 - NfcReaderSession -> ReaderOutcome
        deadline = time.monotonic() + wait
        if last and not wait_until_removed(wanted, wait=wait, since=last[-1].events):
            raise PcscError(f"the phone of the last tap is still on the reader after {wait:g} s: "
                            "take it away, then tap the next")
        with tapped(wanted, wait=max(deadline - time.monotonic(), 0.1)) as card:
            last[:] = [card]
            return tap(card.transmit, session)

    return read
