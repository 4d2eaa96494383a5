"""Errors of the issuer's JPKI certificate authority: one base class, precise subclasses."""

from __future__ import annotations

import datetime as dt

from issuer.key_destruction import KeyDestroyed


class IssuerJpkiError(Exception):
    """Base class of every error raised by :mod:`issuer.jpki`."""


class CaNotSetUp(IssuerJpkiError):
    """No root (or no OCSP responder) exists yet for a purpose: run the CA setup first."""


class GenerationEnded(IssuerJpkiError):
    """A root generation's certificate has expired: it gets no new OCSP responder (nothing
    it issued is valid any more, and a responder certificate cannot outlive its root)."""


class ProofOfPossessionError(IssuerJpkiError):
    """The SE's proof over (challenge || SPKI) is missing, stale or does not verify."""


class IssuanceError(IssuerJpkiError):
    """A certificate cannot be issued (unknown phone or holder, bad key, slot conflict...)."""


class SigningCertificateRefused(IssuanceError):
    """No signing certificate for this holder: under 15 on the day of issue
    (``protocols.jpki.eligibility``). The message says why and from when."""

    def __init__(self, message: str, *, holder_id: str, eligible_from: str) -> None:
        super().__init__(message)
        self.holder_id, self.eligible_from = holder_id, eligible_from


class UnknownCredential(IssuerJpkiError):
    """No credential matches the phone / slot / serial asked for."""


class RevocationError(IssuerJpkiError):
    """A revocation, hold or release is not allowed in the credential's present state."""


class RootKeyDestroyed(IssuerJpkiError, KeyDestroyed):
    """The key of a root generation was destroyed (``JpkiCa.destroy_key``, once every
    certificate it issued had expired): it signs nothing more (no CRL, no OCSP responder
    certificate); its certificate stays in the trust bundle's registry."""


class UnknownJpkiKey(IssuerJpkiError):
    """No JPKI root generation or OCSP responder answers to the label or serial given."""


class JpkiRootAlreadyStaged(IssuerJpkiError):
    """A next root generation of the purpose is staged already (``JpkiCa.stage``): one at a
    time; the rollover starts it (``mcred jpki rollover``) before another is staged."""


class StagedRootMismatch(IssuerJpkiError):
    """A rollover asked for a key type other than the staged generation's: the rollover starts
    the staged generation, the very certificate relying parties hold, with the key it was
    staged with."""


class RootEndsTooSoon(IssuanceError):
    """The issuing root generation of the slot ends before the certificate would: a relying
    party refuses a chain once its root has ended (RFC 5280 6.1.3: every certificate of the
    path valid at the time of verification), so the certificate is not issued. Nothing is
    cut short (the JPKI's validity is the holder's rule: the 5th birthday, the card's
    expiry): the root is rolled over first (``mcred jpki stage``, then ``mcred jpki
    rollover``). ``slot``, ``root`` (its label), ``root_not_after``, ``not_after`` (the
    certificate's, as it would be issued) and ``staged`` (the label of the staged generation
    a rollover would start, or None) say which."""

    def __init__(self, message: str, *, slot: str, root: str, root_not_after: dt.datetime,
                 not_after: dt.datetime, staged: str | None = None) -> None:
        super().__init__(message)
        self.slot, self.root, self.staged = slot, root, staged
        self.root_not_after, self.not_after = root_not_after, not_after
