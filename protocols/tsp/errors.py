"""Errors of the time-stamp protocol: one base, a refusal a TSA answers with, a bad token."""

from __future__ import annotations

#: PKIFailureInfo bit names (RFC 3161 2.4.2) a refusal may carry.
FAILURES = ("badAlg", "badRequest", "badDataFormat", "timeNotAvailable", "unacceptedPolicy",
            "unacceptedExtension", "addInfoNotAvailable", "systemFailure")


class TspError(Exception):
    """Base of every time-stamp protocol error."""


class RequestRefused(TspError):
    """A TimeStampReq a TSA refuses, with the PKIFailureInfo it answers (RFC 3161 2.4.2)."""

    def __init__(self, failure: str, message: str) -> None:
        if failure not in FAILURES:
            raise ValueError(f"{failure!r} is not a PKIFailureInfo bit")
        super().__init__(message)
        self.failure = failure


class ResponseRefused(TspError):
    """The TSA answered, but granted no token: its status, failure bits and text."""

    def __init__(self, status: str, failures: tuple[str, ...], text: str) -> None:
        said = f"TSA refused: {status}"
        if failures:
            said += f" ({', '.join(failures)})"
        if text:
            said += f": {text}"
        super().__init__(said)
        self.status, self.failures, self.text = status, failures, text


class TokenInvalid(TspError):
    """A TimeStampToken that does not decode or does not verify; the message says which part."""
