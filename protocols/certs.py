"""Loading X.509 certificates from untrusted bytes, with one error for every failure.

``cryptography`` signals a malformed certificate with ``ValueError``, but also with
``x509.InvalidVersion`` (not a ValueError), ``UnsupportedAlgorithm`` and ``TypeError``
depending on which field is broken. Every party that reads certificates from the wire or
from a user's file loads them here, so a broken certificate is always a
:class:`CertificateParseError`, itself a ``ValueError``.

``cryptography`` reads the extensions only when first asked, and then raises
``x509.DuplicateExtension`` or ``x509.UnsupportedGeneralNameType``, which are no
ValueError; a check that reached them (a chain's extended key usage, a profile's key
usage) crashed the party instead of failing the check. They are read here, at the
boundary: a certificate with a malformed or repeated extension (RFC 5280 4.2: "MUST NOT
include more than one instance of a particular extension") is refused as it is loaded.
So are its issuer and subject Names, which ``cryptography`` also builds on first use
(``TypeError`` for an attribute of a string type its OID does not take).
"""

from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning

# cryptography 50 loads a certificate with a serial number that is not positive, warning
# that a later release will refuse it; this loader refuses it (below), so the warning only
# printed noise for every hostile certificate a service met. Exactly that warning is muted.
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive",
                        category=CryptographyDeprecationWarning)

#: What ``cryptography`` may raise on a malformed certificate, its key or its fields.
PARSE_ERRORS = (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType)


class CertificateParseError(ValueError):
    """The bytes are not a certificate ``cryptography`` can read, or one whose serial
    number is not positive."""


def _positive_serial(cert: x509.Certificate) -> x509.Certificate:
    """RFC 5280 4.1.2.2: the serial number is a positive integer. ``cryptography`` still
    loads a zero or negative one, with a deprecation warning that a later release will
    refuse it; refused here now, so that the answer does not change with the library.
    Also reads the extensions (see the module's doc)."""
    if cert.serial_number <= 0:
        raise CertificateParseError(f"certificate serial number {cert.serial_number} is not positive "
                                    "(RFC 5280 4.1.2.2)")
    try:
        cert.extensions  # noqa: B018 - parsed now, so that no later reader meets the error
    except PARSE_ERRORS as exc:
        raise CertificateParseError(f"certificate extensions unreadable: {type(exc).__name__}: {exc}") from None
    try:
        # the Names too: an attribute of a type its OID does not allow (a BIT STRING
        # countryName) raises TypeError where a check first names the certificate
        cert.issuer.rfc4514_string()
        cert.subject.rfc4514_string()
    except PARSE_ERRORS as exc:
        raise CertificateParseError(f"certificate names unreadable: {type(exc).__name__}: {exc}") from None
    return cert


def load_der(der: bytes) -> x509.Certificate:
    """One DER certificate."""
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
    except PARSE_ERRORS as exc:
        raise CertificateParseError(f"not a DER X.509 certificate: {exc}") from None
    return _positive_serial(cert)


def load_pem_all(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at least one)."""
    try:
        found = x509.load_pem_x509_certificates(bytes(data))
    except PARSE_ERRORS as exc:
        raise CertificateParseError(f"not a PEM certificate bundle: {exc}") from None
    return [_positive_serial(c) for c in found]


def load_any(data: bytes) -> list[x509.Certificate]:
    """A PEM bundle, or one DER certificate."""
    if b"-----BEGIN" in data:
        return load_pem_all(data)
    return [load_der(data)]


def public_key_of(cert: x509.Certificate):
    """The certificate's public key; ``cryptography`` parses it lazily, so a broken key
    surfaces only here."""
    try:
        return cert.public_key()
    except PARSE_ERRORS as exc:
        raise CertificateParseError(f"certificate public key unreadable: {exc}") from None


def ocsp_url(cert: x509.Certificate) -> str | None:
    """The first OCSP responder of the certificate's authorityInfoAccess (RFC 5280
    4.2.2.1); None when it names none."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for d in aia:
        if d.access_method == x509.AuthorityInformationAccessOID.OCSP:
            return d.access_location.value
    return None


def crl_url(cert: x509.Certificate) -> str | None:
    """The first http(s) URI of the certificate's cRLDistributionPoints (RFC 5280
    4.2.1.13), where a relying party can fetch its issuer's CRL; None when it names none."""
    try:
        dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for dp in dps:
        for name in dp.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(
                    ("http://", "https://")):
                return name.value
    return None


def subject_key_id(cert: x509.Certificate) -> bytes | None:
    """The certificate's subjectKeyIdentifier (RFC 5280 4.2.1.2); None when it has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return None


def authority_key_id(cert: x509.Certificate) -> bytes | None:
    """The keyIdentifier of the certificate's authorityKeyIdentifier (RFC 5280 4.2.1.1);
    None when it has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except (x509.ExtensionNotFound, ValueError):
        return None


def critical_refusal(cert: x509.Certificate, processed: frozenset[x509.ObjectIdentifier]) -> str | None:
    """Why ``cert`` cannot be relied on, by its extensions, where a path check processes
    the extensions ``processed`` (None: it can): one marked critical that is not among them
    (RFC 5280 4.2: "A certificate-using system MUST reject the certificate if it encounters a
    critical extension it does not recognize"; 6.1.4 (o)), or extensions that cannot be read."""
    try:
        extensions = list(cert.extensions)
    except PARSE_ERRORS as exc:
        return f"its extensions cannot be read ({exc})"
    for ext in extensions:
        if ext.critical and ext.oid not in processed:
            name = ext.oid._name if ext.oid._name != "Unknown OID" else "unknown"
            return (f"it carries the critical extension {ext.oid.dotted_string} ({name}), which is not "
                    "processed here (RFC 5280 4.2: such a certificate is rejected)")
    return None


# -- serial numbers as people type them ----------------------------------------------------

class SerialError(ValueError):
    """A text that is no certificate serial number; the message says what is wrong."""


#: RFC 5280 4.1.2.2: "Certificate users MUST be able to handle serialNumber values up to 20 octets."
MAX_SERIAL = 1 << 160


def parse_serial(text: str) -> int:
    """A certificate serial number as an operator copies it from any tool: mcred's own
    listings (``1f3a...``), ``openssl x509 -serial`` (``serial=01F3A...``: upper case, whole
    octets, so with a leading zero where our listings print none), ``openssl x509 -text``
    (``01:f3:a...``), or ``0x1f3a...``. Case, a leading ``0x``, leading zeros, colons and
    spaces between octets do not matter; anything else is a :class:`SerialError`, as is zero
    or a value of more than 20 octets."""
    if not isinstance(text, str):
        raise SerialError(f"a serial number is text, not {type(text).__name__}")
    body = text.strip()
    if body[:7].lower() == "serial=":
        body = body[7:].strip()
    if body[:2].lower() == "0x":
        body = body[2:]
    digits = body.replace(":", "").replace(" ", "")
    if not digits:
        raise SerialError(f"serial {text!r} has no hexadecimal digits")
    if not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise SerialError(f"serial {text[:60]!r} is not hexadecimal (digits 0-9 and a-f, with "
                          "colons between octets allowed)")
    value = int(digits, 16)
    if value == 0:
        raise SerialError("serial 0: a certificate's serial number is positive (RFC 5280 4.1.2.2)")
    if value >= MAX_SERIAL:
        raise SerialError(f"serial {text[:60]!r} is longer than 20 octets (RFC 5280 4.1.2.2)")
    return value


def serial_text(value: int) -> str:
    """How a serial number is written everywhere (its listings, its audit trails, its
    registry): lower-case hexadecimal without leading zeros. :func:`parse_serial` reads
    it back, and reads openssl's forms of the same number too."""
    return format(value, "x")
