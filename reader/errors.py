"""Errors of the reader package: one base, precise subclasses."""

from __future__ import annotations


class ReaderError(ValueError):
    """Base of every reader error."""


class ReaderSessionError(ReaderError):
    """A session cannot start or go on: bad engagement, wrong state; the message says which."""


class RequestSpecError(ReaderError):
    """A requested item list cannot be read (``NS:ID`` expected)."""


class NfcReaderError(ReaderError):
    """A tap on the reader's own NFC reader cannot be read: none attached, busy with another
    tap, or no phone in time; the message says which."""


class NfcReaderBusy(NfcReaderError):
    """The NFC reader is reading another tap."""


class NoNfcReader(NfcReaderError):
    """This reader has no NFC reader attached."""


class BleReaderError(ReaderError):
    """A read over the reader's own Bluetooth controller cannot start: none configured, or
    busy with another phone; the message says which."""


class BleReaderBusy(BleReaderError):
    """The Bluetooth controller is reading another phone."""


class NoBleReader(BleReaderError):
    """This reader has no Bluetooth controller configured."""

