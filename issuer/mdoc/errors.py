"""Errors of the issuer's mdoc side (keys, issuance, status lists, publication).

One base class, :class:`IssuerMdocError`; every subclass says what was wrong and where.
"""

from __future__ import annotations

from issuer import key_destruction as _kd
from issuer.key_destruction import KeyDestroyed


class IssuerMdocError(Exception):
    """Base of every error of :mod:`issuer.mdoc`."""


class MdocKeysMissing(IssuerMdocError):
    """The IACA, document signer or status signer has not been set up yet."""


class MdocKeyError(IssuerMdocError):
    """An mdoc issuer key or certificate is unusable (algorithm, profile, validity)."""


class IssuanceError(IssuerMdocError):
    """An mdoc cannot be issued for this phone / holder / device key."""


class UnknownPhone(IssuanceError):
    """No phone with this id, or the phone has no holder."""


class DeviceKeyError(IssuanceError):
    """The device public key is malformed, of an unsupported curve, or reused."""


class JobConflict(IssuanceError):
    """A job reference was already used for different inputs (another phone or key)."""


class StatusAllocationError(IssuerMdocError):
    """No status-list index could be allocated (lists full, too much contention)."""


class UnknownStatusList(IssuerMdocError):
    """No status list with this id or URI."""


class UnknownSigner(IssuerMdocError):
    """No document signer (or status-list signer, or VICAL signer) with this label or serial."""


class UnknownIaca(IssuerMdocError):
    """No IACA generation with this number or label."""


class IacaEnded(MdocKeyError):
    """An IACA generation is past its notAfter: it signs nothing more (no CRL, no list)."""


class IacaWithdrawn(IacaEnded):
    """An IACA generation was revoked (taken out of the trust bundle and the VICAL): like an
    IACA past its end, it signs nothing more, no signer, CRL or status list (its key may be
    in other hands), and the lists of its mdocs are published no more."""


class UnknownVicalCa(IssuerMdocError):
    """No VICAL CA generation with this number."""


class VicalCaEnded(MdocKeyError):
    """A VICAL CA generation is past its notAfter: it issues no CRL any more (every VICAL
    signer it certified has ended with it)."""


class VicalCaWithdrawn(VicalCaEnded):
    """A VICAL CA generation was withdrawn (``mcred mdoc vical-ca rollover --compromised``):
    out of the VICAL anchors, its key signs nothing more, no VICAL signer and no CRL (a CA
    cannot be listed on its own CRL; one its key in other hands signs would prove nothing)."""


class IacaAlreadyStaged(MdocKeyError):
    """A next IACA generation is already staged: roll over to it before staging another."""


class VicalCaAlreadyStaged(MdocKeyError):
    """A next VICAL CA generation is already staged (by an operator, or by itself in the
    current CA's last months): roll over to it before staging another."""


class VicalCaRolloverRefused(IssuerMdocError):
    """A VICAL CA rollover was refused as asked (``fresh`` without ``compromised``): nothing
    was changed."""


class SignerRevocationError(IssuerMdocError):
    """A signer revocation was refused (reason not allowed for it)."""


class SignerKeyDestroyed(MdocKeyError, KeyDestroyed):
    """The private key of a signer was destroyed (``MdocPki.destroy_key``): it signs nothing
    more (no CRL, no new signer certificate); its certificate stays published."""


class KeyDestructionRefused(IssuerMdocError, _kd.KeyDestructionRefused):
    """A signer's key was not destroyed: a duty still needs it (``duty`` names which). Nothing
    was changed."""


class SignerStillSigning(KeyDestructionRefused, _kd.SignerStillSigning):
    """The signer signs now, or will (the current IACA, document signer, status-list signer,
    VICAL signer or VICAL CA; a staged IACA, which the next rollover starts): revoke it or
    roll it over first."""


class CaDutiesRemain(KeyDestructionRefused, _kd.CaDutiesRemain):
    """A retired, unrevoked CA (an older IACA or VICAL CA) still signs for certificates it
    issued that have not expired (their CRL; for an IACA the status-list signers of its
    mdocs' lists): its key may be destroyed once the last of them ends (``until``), or once
    it is revoked."""
