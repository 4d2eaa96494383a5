"""Errors of the JPKI package: one base class, precise subclasses.

Every decoder in :mod:`protocols.jpki` raises only these; messages say what was wrong and where.
"""

from __future__ import annotations


class JpkiError(Exception):
    """Base class of every error raised by :mod:`protocols.jpki`."""


class ProfileError(JpkiError, ValueError):
    """A builder was given a parameter the profile does not allow (key type, name, date...)."""


class CertificateFormatError(JpkiError, ValueError):
    """A certificate is not shaped as a JPKI certificate of the expected kind."""


class BirthDateError(CertificateFormatError):
    """The birth date otherName is not `E` + `YYYYMMDD` with a consistent era digit."""


class OcspRequestError(JpkiError, ValueError):
    """An OCSP request (RFC 6960 4.1) could not be parsed or is not supported."""


class CmsError(JpkiError, ValueError):
    """A CMS SignedData (RFC 5652 5) could not be built, parsed or verified."""
