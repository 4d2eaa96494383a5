"""Composition of the JPKI parties: the issuer's JPKI CA for an installation, and signing
with a phone's JPKI applet (the flow ``mcred jpki sign`` runs).

Signing follows the card's JPKI-AP sequence (shared/context/JPKI-AP.md 3-4, specs/jpki-applet.md):
SELECT the AP by name, SELECT the PIN EF (0018 user-auth / 001B signing) and VERIFY, READ BINARY
the certificate EF (000A / 0001), SELECT the key EF (0017 / 001A), then ``80 2A 00 80`` over
the DER DigestInfo of the CMS signed attributes (RFC 5652 5.4). The SE answers PKCS#1 v1.5
(RSA-2048) or raw r||s (P-384, converted to DER); :mod:`protocols.jpki.cms` builds the
detached SignedData around it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from issuer.jpki import JpkiCa, JpkiIssuer, profile_for
from mcred.context import Context
from protocols.jpki.cms import build_detached_signature, ecdsa_raw_to_der
from protocols.jpki.errors import JpkiError
from protocols.jpki.profile import KeyType

if TYPE_CHECKING:
    from mcred.timestamps import Stamper

JPKI_AP = bytes.fromhex("D392F000260100000001")
#: slot -> (PIN EF, certificate EF, key EF)
EFS = {"auth": (0x0018, 0x000A, 0x0017), "sign": (0x001B, 0x0001, 0x001A)}
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
}

_ISSUERS: dict[tuple, JpkiIssuer] = {}


def jpki_issuer(ctx: Context) -> JpkiIssuer:
    """The installation's JPKI issuer (one per data directory and database), CA set up."""
    key = ctx.clocked((str(ctx.home), ctx.database))
    if key not in _ISSUERS:
        issuer = JpkiIssuer(ctx.sessions, ctx.keystore, profile_for(ctx.public_url), **ctx.clock_option())
        if not issuer.ca.is_set_up():
            issuer.setup()
        _ISSUERS[key] = issuer
    return _ISSUERS[key]


def jpki_registry(ctx: Context) -> JpkiCa:
    """The installation's JPKI CA over its registry alone, for what reads it (the root
    listing, ``issuer.jpki.listing``): no key store (it is never opened), nothing set up."""
    return JpkiCa(ctx.sessions, None, profile_for(ctx.public_url), **ctx.clock_option())


class SeError(Exception):
    """The phone's SE refused a step; ``sw`` is its status word."""

    def __init__(self, step: str, sw: int) -> None:
        super().__init__(f"{step}: SE answered {sw:04X}" + _explain(step, sw))
        self.step, self.sw = step, sw


class SeDataError(SeError):
    """The phone's SE answered a step (9000) with data that is not what the step reads: a
    certificate EF that holds no certificate of a JPKI key."""

    def __init__(self, step: str, message: str) -> None:
        Exception.__init__(self, f"{step}: {message}")
        self.step, self.sw = step, 0x9000


class NoSigningCertificateError(SeError):
    """The phone's SE holds no signing key (its password never set): no signing certificate
    was issued to it, as for a holder under 15. Nothing can sign; no try was spent."""

    def __init__(self) -> None:
        Exception.__init__(self, "this phone holds no signing certificate (署名用電子証明書) and no signing key: "
                           "none is issued to a holder under 15 (the user-authentication certificate signs "
                           "nothing but a log-in: --slot auth); nothing was signed, no try was spent")
        self.step, self.sw = "VERIFY signing password", 0x6A88


class SecretFormatError(ValueError):
    """A PIN or password that the JPKI applet's format rules can never accept: refused before
    VERIFY, so no try of the retry counter is spent on it."""


#: slot -> (the format the JPKI applet takes, what to call it): the user-authentication PIN
#: is 4 digits, the signing password 6 to 16 of A-Z and 0-9 (specs/jpki-applet.md)
SECRET_FORMATS = {"auth": (re.compile(rb"[0-9]{4}"), "the user-authentication PIN is 4 digits"),
                  "sign": (re.compile(rb"[A-Z0-9]{6,16}"), "the signing password is 6 to 16 upper-case "
                                                           "letters A-Z and digits")}


_PUK = re.compile(rb"[0-9]{8}")


def check_puk(puk: bytes) -> None:
    """Raise :class:`SecretFormatError` unless ``puk`` is 8 ASCII digits (the applet's PUK)."""
    _check_form(_PUK, "the PUK is 8 digits", puk)


def check_secret(slot: str, secret: bytes) -> None:
    """Raise :class:`SecretFormatError` unless ``secret`` has the format of ``slot``'s."""
    _check_form(*SECRET_FORMATS[slot], secret)


def _check_form(pattern: re.Pattern[bytes], rule: str, value: bytes) -> None:
    if not pattern.fullmatch(value):
        what = "empty" if not value else f"{len(value)} byte(s), not of that form"
        raise SecretFormatError(f"{rule}; this one is {what} (nothing was sent to the SE: no try used)")


#: what 6A88 (referenced data not found) means, by the step that got it
_NOT_FOUND = {
    "VERIFY": " (this secret was never set: the phone's JPKI applet is not personalised; is the "
              "phone provisioned? `mcred tsm jobs --unfinished` shows a provisioning that stopped)",
    "COMPUTE DIGITAL SIGNATURE": " (no key in this slot: is the phone provisioned?)",
}


#: the secret behind each PIN EF, in the holder's words (a wrong signing password is not a
#: wrong PIN)
_SECRET_NAMES = {EFS["auth"][0]: "user-auth PIN", EFS["sign"][0]: "signing password"}


def _explain(step: str, sw: int) -> str:
    secret = next((name for name in _SECRET_NAMES.values() if step.endswith(name)), "PIN")
    if sw == 0x6A88:
        return next((why for name, why in _NOT_FOUND.items() if step.startswith(name)), "")
    if sw == 0x63C0:
        return (f" (wrong {secret}, and that was its last try: it is locked now; `mcred jpki pin unblock` "
                "with the PUK)")
    if sw & 0xFFF0 == 0x63C0:
        left = sw & 0x0F
        return f" (wrong {secret}, {left} {'try' if left == 1 else 'tries'} left)"
    return {0x6984: f" ({secret} locked: `mcred jpki pin unblock` with the PUK)", 0x6982: f" ({secret} not verified)",
            0x6A82: " (not present: is the phone provisioned?)",
            0x6F00: " (the applet failed: its state in the SE image may be damaged; `mcred phone show` "
                    "names the applet)"}.get(sw, "")


@dataclass
class JpkiCard:
    """A thin APDU driver over ``transmit`` for the JPKI-AP (no state beyond the SE's)."""

    transmit: object

    def _send(self, step: str, apdu: bytes) -> bytes:
        answer = self.transmit(apdu)  # type: ignore[operator]
        data, sw = answer[:-2], int.from_bytes(answer[-2:], "big")
        while sw >> 8 == 0x61:
            answer = self.transmit(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))  # type: ignore[operator]
            data, sw = data + answer[:-2], int.from_bytes(answer[-2:], "big")
        if sw != 0x9000:
            raise SeError(step, sw)
        return data

    def select_ap(self) -> None:
        self._send("SELECT JPKI-AP", bytes([0, 0xA4, 4, 0x0C, len(JPKI_AP)]) + JPKI_AP)

    def select_ef(self, fid: int) -> None:
        self._send(f"SELECT EF {fid:04X}", bytes([0, 0xA4, 2, 0x0C, 2]) + fid.to_bytes(2, "big"))

    def has_ef(self, fid: int) -> bool:
        """Whether the applet holds EF ``fid`` (SELECT; 6A82: it does not)."""
        try:
            self.select_ef(fid)
        except SeError as exc:
            if exc.sw == 0x6A82:
                return False
            raise
        return True

    def verify(self, pin_ef: int, pin: bytes) -> None:
        self.select_ef(pin_ef)
        self._send(f"VERIFY {_SECRET_NAMES.get(pin_ef, 'PIN')}", bytes([0, 0x20, 0, 0x80, len(pin)]) + pin)

    def read_ef(self, fid: int) -> bytes:
        self.select_ef(fid)
        head = self._send("READ BINARY", bytes([0, 0xB0, 0, 0, 4]))
        if len(head) < 4 or head[0] != 0x30 or head[1] != 0x82:
            raise SeError("READ BINARY (header)", 0x6A80)
        total = int.from_bytes(head[2:4], "big") + 4
        out = bytearray()
        while len(out) < total:
            n = min(256, total - len(out))
            off = len(out)
            out += self._send("READ BINARY", bytes([0, 0xB0, off >> 8, off & 0xFF, n & 0xFF]))
        return bytes(out)

    def tries_left(self, pin_ef: int) -> int | None:
        """The secret's tries left (VERIFY without data: no try spent), 0 when locked; None
        when the secret was never set (6A88: the phone is not provisioned)."""
        self.select_ef(pin_ef)
        try:
            self._send("VERIFY (retry query)", bytes([0, 0x20, 0, 0x80]))
        except SeError as exc:
            if exc.sw & 0xFFF0 == 0x63C0:
                return exc.sw & 0x0F
            if exc.sw == 0x6A88:
                return None
            raise
        raise SeError("VERIFY (retry query)", 0x9000)  # pragma: no cover - the applet never does

    def change_reference_data(self, new: bytes) -> None:
        """CHANGE REFERENCE DATA of the current PIN EF (verified in this selection)."""
        self._send("CHANGE REFERENCE DATA", bytes([0, 0x24, 1, 0x80, len(new)]) + new)

    def reset_retry_counter(self, puk: bytes, new: bytes | None = None) -> None:
        """RESET RETRY COUNTER of the current PIN EF with the PUK, and a new value if given."""
        data = puk + (new or b"")
        self._send("RESET RETRY COUNTER", bytes([0, 0x2C, 0 if new else 1, 0x80, len(data)]) + data)

    def read_certificate(self, cert_ef: int) -> tuple[bytes, x509.Certificate, KeyType]:
        """The certificate in ``cert_ef`` (DER), parsed, and its key's type: what the SE
        answers is parsed here, once (:class:`SeDataError` if it is not a JPKI key's
        certificate)."""
        der = self.read_ef(cert_ef)
        try:
            cert = x509.load_der_x509_certificate(der)
            return der, cert, KeyType.of(cert.public_key())
        except (ValueError, UnsupportedAlgorithm, JpkiError) as exc:
            raise SeDataError(f"READ BINARY (certificate EF {cert_ef:04X})",
                              f"the SE holds no certificate of an RSA-2048 or P-384 key there ({exc})") from None

    def sign_digest_info(self, key_ef: int, digest_info: bytes) -> bytes:
        self.select_ef(key_ef)
        return self._send("COMPUTE DIGITAL SIGNATURE",
                          bytes([0x80, 0x2A, 0x00, 0x80, len(digest_info)]) + digest_info + b"\x00")


def sign_with_se(transmit, slot: str, pin: bytes, content: bytes, *,  # noqa: ANN001
                 now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(CMS detached signature DER, signer certificate DER) made by the phone's applet."""
    signer = se_signer(transmit, slot, pin)
    cms = build_detached_signature(content=content, certificate=signer.certificate, sign=signer.sign,
                                   signing_time=now or dt.datetime.now(dt.UTC))
    return cms, signer.certificate_der


@dataclass(frozen=True)
class SeSigner:
    """A JPKI key of the phone's SE, its secret verified: :meth:`sign` hashes what it is
    given (SHA-256 for RSA-2048, SHA-384 for P-384) and has the applet sign the DigestInfo;
    the private key never leaves the SE."""

    card: JpkiCard
    key_ef: int
    certificate_der: bytes
    certificate: x509.Certificate
    key_type: KeyType

    @property
    def hash_name(self) -> str:
        return "sha256" if self.key_type is KeyType.RSA_2048 else "sha384"

    def sign(self, data: bytes) -> bytes:
        """PKCS#1 v1.5 (RSA) or ECDSA DER over the hash of ``data``."""
        h = hashes.Hash(hashes.SHA256() if self.hash_name == "sha256" else hashes.SHA384())
        h.update(data)
        answer = self.card.sign_digest_info(self.key_ef, _DIGEST_INFO[self.hash_name] + h.finalize())
        return answer if self.key_type is KeyType.RSA_2048 else ecdsa_raw_to_der(answer)


def se_signer(transmit, slot: str, pin: bytes) -> SeSigner:  # noqa: ANN001
    """Select the JPKI-AP, verify ``slot``'s secret and read its certificate: a signer over
    that slot's key. Raises :class:`SecretFormatError` or :class:`SeError`."""
    pin_ef, cert_ef, key_ef = EFS[slot]
    check_secret(slot, pin)
    card = JpkiCard(transmit)
    card.select_ap()
    try:
        card.verify(pin_ef, pin)
    except SeError as exc:  # a password never set: is there a signing key at all?
        if slot == "sign" and exc.sw == 0x6A88 and not card.has_ef(key_ef):
            raise NoSigningCertificateError() from None
        raise
    cert_der, cert, key_type = card.read_certificate(cert_ef)
    return SeSigner(card, key_ef, cert_der, cert, key_type)


def sign_xml_with_se(transmit, pin: bytes, document: bytes, *, xades: bool = False,  # noqa: ANN001
                     now: dt.datetime | None = None, stamper: Stamper | None = None) -> bytes:
    """``document`` with an enveloped XML signature (XAdES B-B with ``xades``; B-T with a
    ``stamper`` too: a signature time-stamp over its ds:SignatureValue) made by the phone's
    signing key (:mod:`protocols.jpki.xmlsig`): the password verified in the SE, the SE
    signing the hash of the canonical SignedInfo. Raises :class:`SecretFormatError`,
    :class:`SeError`, :class:`~protocols.jpki.xmlsig.XmlSignatureError` or
    :class:`mcred.timestamps.TimestampError`."""
    from protocols.jpki.xmlsig import (
        XmlSignatureError,
        add_signature_timestamp,
        require,
        sign_enveloped,
        timestamp_data,
    )

    require()
    if stamper is not None and not xades:
        raise XmlSignatureError("a signature time-stamp goes into XAdES unsigned properties: sign with XAdES")
    signer = se_signer(transmit, "sign", pin)
    signed = sign_enveloped(document, certificate=signer.certificate, sign=signer.sign, xades=xades,
                            signing_time=now)
    if stamper is not None:
        signed = add_signature_timestamp(signed, stamper.stamp(timestamp_data(signed)))
    return signed


def sign_challenge(transmit, pin: bytes, nonce: bytes) -> tuple[bytes, bytes]:  # noqa: ANN001
    """JPKI user authentication on the phone: the user-authentication PIN verified in the SE,
    the relying party's ``nonce`` signed with the user-authentication key (PKCS#1 v1.5 over
    the SHA-256 DigestInfo, or ECDSA over SHA-384, DER); returns (signature, certificate DER)."""
    pin_ef, cert_ef, key_ef = EFS["auth"]
    check_secret("auth", pin)
    card = JpkiCard(transmit)
    card.select_ap()
    card.verify(pin_ef, pin)
    cert_der, _cert, key_type = card.read_certificate(cert_ef)
    hash_name, algorithm = (("sha256", hashes.SHA256()) if key_type is KeyType.RSA_2048
                            else ("sha384", hashes.SHA384()))
    h = hashes.Hash(algorithm)
    h.update(nonce)
    answer = card.sign_digest_info(key_ef, _DIGEST_INFO[hash_name] + h.finalize())
    return (answer if key_type is KeyType.RSA_2048 else ecdsa_raw_to_der(answer)), cert_der


def sign_file(phone_id: str, slot: str, pin: bytes, content: bytes,
              home: Path | None = None) -> tuple[bytes, bytes]:
    """Open the phone's SE (wallet_sim) and sign ``content`` with its JPKI ``slot``."""
    import wallet_sim

    se = wallet_sim.open_secure_element(phone_id, home)
    return sign_with_se(se.transmit, slot, pin, content)


def sign_xml_file(phone_id: str, pin: bytes, document: bytes, home: Path | None = None, *,
                  xades: bool = False, stamper: Stamper | None = None) -> bytes:
    """Open the phone's SE (wallet_sim) and sign the XML ``document`` inside (enveloped)."""
    import wallet_sim

    se = wallet_sim.open_secure_element(phone_id, home)
    return sign_xml_with_se(se.transmit, pin, document, xades=xades, stamper=stamper)


# --- the holder's secrets ----------------------------------------------------------------


def pin_status(transmit) -> dict[str, int | None]:  # noqa: ANN001
    """Tries left of the user-authentication PIN and of the signing password (no try spent);
    0: locked (`mcred jpki pin unblock`); None: never set."""
    card = JpkiCard(transmit)
    card.select_ap()
    return {slot: card.tries_left(EFS[slot][0]) for slot in ("auth", "sign")}


def change_pin(transmit, slot: str, old: bytes, new: bytes) -> None:  # noqa: ANN001
    """The holder changes ``slot``'s secret: VERIFY the old one, CHANGE REFERENCE DATA.
    Both are checked against the slot's format first (no try is spent on a malformed one)."""
    check_secret(slot, old)
    check_secret(slot, new)
    card = JpkiCard(transmit)
    card.select_ap()
    card.verify(EFS[slot][0], old)
    card.change_reference_data(new)


def unblock_pin(transmit, slot: str, puk: bytes, new: bytes | None = None) -> None:  # noqa: ANN001
    """RESET RETRY COUNTER with the PUK: ``slot``'s secret gets its tries back (and a new
    value if ``new`` is given). Formats are checked first (no PUK try spent on a bad one)."""
    check_puk(puk)
    if new is not None:
        check_secret(slot, new)
    card = JpkiCard(transmit)
    card.select_ap()
    card.select_ef(EFS[slot][0])
    card.reset_retry_counter(puk, new)
