"""Errors of the ``tsm`` package: one base class, precise subclasses.

Every failure the TSM reports to its caller is a :class:`TsmError`; messages name the SE,
the job and the step (never a key, PIN or password).
"""

from __future__ import annotations


class TsmError(Exception):
    """Base class of every error raised by ``tsm``."""


class MasterKeyError(TsmError):
    """The master key store is missing, unreadable or holds a malformed key."""


class MasterKeyMismatchError(MasterKeyError):
    """The SE's keyset was diversified from another master key than the one this TSM holds
    (another installation's key, or a store switched from file to token): no session is
    tried, since no cryptogram could match."""


class SealError(TsmError):
    """Sealed job secrets do not open (wrong master key, or tampered ciphertext)."""


class LockBusyError(TsmError):
    """Another worker holds the SE's lock and did not release it in time."""


class LockLostError(TsmError):
    """This worker's lease on the SE expired and another worker may have taken it."""


class LinkError(Exception):
    """What a transport of ours raises when the SE could not be reached, with a message
    written for the operator (no APDU data): the TSM's :class:`TransportError` repeats it.
    Anything else a transport raises is named by its type only."""


class TransportError(TsmError):
    """The transport lost a command or its response (the SE may or may not have acted)."""


class SecureChannelError(TsmError):
    """The SCP03 session could not be opened or broke (cryptogram, MAC, status word)."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message)
        self.sw = sw


class SeIdentityError(TsmError):
    """The SE answered with key diversification data other than the one on record."""


class SeAuthenticityError(TsmError):
    """At first contact the SE did not prove it is a genuine SE of a trusted maker (SCP11b:
    no certificate, one that does not chain to a trusted SE maker root, or a receipt that
    does not verify): the TSM sent it nothing secret."""


class SequenceCounterRegressionError(TsmError):
    """The SE's SCP03 sequence counter went backwards: a cloned or rolled-back SE."""

    def __init__(self, se_id: str, kvn: int, last: int, seen: int) -> None:
        super().__init__(
            f"SE {se_id}: keyset {kvn:02X} answered sequence counter {seen:06X}, "
            f"but {last:06X} was already used; the SE is cloned or rolled back"
        )
        self.se_id = se_id
        self.kvn = kvn
        self.last = last
        self.seen = seen


class KeysetRollbackError(TsmError):
    """The SE no longer knows the diversified keyset the TSM put on it (factory keys back,
    or the keyset vanished): a replaced or rolled-back SE."""


class CardStatusError(TsmError):
    """The SE answered a command of a job step with an unexpected status word."""

    def __init__(self, message: str, sw: int) -> None:
        super().__init__(f"{message} (SW {sw:04X})")
        self.sw = sw


class SeMemoryError(CardStatusError):
    """The SE has not enough memory for what a step writes (6A84): the step's effect was
    undone on the card; the job stops, resumable once memory is freed, or abandoned."""


class SeApplicationInUseError(CardStatusError):
    """The SE refused to DELETE an application instance that is selected on one of its
    logical channels (6985: an app on the phone holds a channel to it; GP Card
    Specification, Application Removal). Nothing was deleted by that command; ``aid`` is
    the instance's AID. The job stops on the step, resumable once the phone closes the
    channel (a later run re-reads the registry and deletes only what is left)."""

    def __init__(self, message: str, sw: int, aid: bytes) -> None:
        super().__init__(message, sw)
        self.aid = aid


class CardDataError(TsmError):
    """The SE answered bytes the TSM cannot parse (GET STATUS, READ STATE, key records)."""


class JobError(TsmError):
    """A job cannot be created, found or run as asked."""


class JobInputError(JobError):
    """A job's input is missing a field or holds a value of the wrong form."""


class SecretsRequiredError(JobError):
    """A step needs the job's secrets (PINs, password, PUK) and none are available."""


class IssuerPortError(TsmError):
    """The issuer refused or failed a request made through the IssuerPort."""


class SeQuarantinedError(TsmError):
    """The SE was flagged (counter regression, keyset rollback, identity mismatch) and the
    TSM refuses to talk to it until an operator clears it."""


#: The errors that quarantine an SE, or meet a quarantined one: what only an operator's
#: `mcred tsm clear-quarantine` ends
QUARANTINE_ERRORS = (SequenceCounterRegressionError, KeysetRollbackError, SeQuarantinedError)
