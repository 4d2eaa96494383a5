"""GlobalPlatform SCP11b, host and card side, sans-I/O (GlobalPlatform Card Specification
v2.3 Amendment F, Secure Channel Protocol '11').

SCP11 opens a secure channel by elliptic-curve key agreement instead of shared static keys.
In its variant **b** the security domain (the card) is authenticated and the off-card
entity (OCE, here the TSM) is not:

* the SD holds a static key pair SK.SD.ECKA / PK.SD.ECKA, made inside it at manufacture,
  and a certificate for PK.SD.ECKA from its maker (GET DATA BF21: the certificate store,
  X.509 DER, leaf last);
* the OCE sends INTERNAL AUTHENTICATE (80 88, P1 = KVN, P2 = KID) with a control reference
  template ``A6 { 90 11 00 | 95 3C | 80 88 | 81 <key length> }`` and its ephemeral public
  key ``5F49``; the SD answers its own ephemeral public key ``5F49`` and a receipt ``86``;
* both compute ShSee = ECDH(ephemeral, ephemeral) and ShSes = ECDH(OCE ephemeral, SD
  static), and derive with the ANSI X9.63 KDF (SHA-256, shared info = key usage || key
  type || key length) five AES keys in this order: the receipt key, S-ENC, S-MAC, S-RMAC,
  S-DEK;
* the receipt is the AES-CMAC, under the receipt key, of the command's data (the template
  and the OCE's key) followed by the SD's ``5F49`` object: only the holder of SK.SD.ECKA
  computes it, so a receipt that verifies authenticates the card;
* secure messaging is SCP03's (C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION: key usage 3C,
  security level 33 here), with the receipt as the first MAC chaining value and S-DEK
  enciphering PUT KEY's key components.

Both classes take and give bytes only; the card's static private key stays behind the
``static_exchange`` callable its owner passes in (the SE simulator keeps it in its NVM).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from protocols.gp.apdu import CommandApdu, has_secure_messaging, with_channel
from protocols.gp.codes import CLA_GP, INS_INTERNAL_AUTHENTICATE
from protocols.gp.crypto import KeyedAes
from protocols.gp.errors import (
    GpError,
    Scp11AuthenticationError,
    Scp11CertificateError,
    Scp11ProtocolError,
    Scp11StateError,
    TlvError,
)
from protocols.gp.scp03 import (
    C_DECRYPTION,
    C_MAC,
    R_ENCRYPTION,
    R_MAC,
    CardState,
    HostState,
    SecureCard,
    SecureHost,
    SecureMessaging,
    SessionKeys,
)
from protocols.gp.tlv import Tlv, encode, parse_all

#: Key identifier of the SCP11b key pair (the one yubikit and the YubiKey use: 11 a, 13 b, 15 c)
SCP11B_KID = 0x13
#: SCP identifier and the "i" parameter of variant b (Amendment F 7.1.1)
SCP11 = 0x11
SCP11B_PARAM = 0x00
#: Key usage qualifier: C-MAC, R-MAC, C-DECRYPTION, R-ENCRYPTION (secure messaging in full)
KEY_USAGE_FULL = 0x3C
#: Key type of the session keys: AES
KEY_TYPE_AES = 0x88
KEY_LENGTHS = (16, 24, 32)
#: The security level an SCP11 session runs at: everything on
SCP11_SECURITY_LEVEL = C_MAC | C_DECRYPTION | R_MAC | R_ENCRYPTION

TAG_CRT = 0xA6
TAG_SCP_ID = 0x90
TAG_KEY_USAGE = 0x95
TAG_KEY_TYPE = 0x80
TAG_KEY_LENGTH = 0x81
TAG_EPK = 0x5F49
TAG_RECEIPT = 0x86
#: GET DATA BF21: the certificate store, asked with ``A6 { 83 KID KVN }``
TAG_CERTIFICATE_STORE = 0xBF21
TAG_KEY_REFERENCE = 0x83

#: The curve of the SD's keys (Amendment F allows NIST and Brainpool curves; we use P-256)
CURVE = ec.SECP256R1()
_POINT_LEN = 65  # uncompressed P-256 point


def control_reference_template(key_length: int = 16) -> bytes:
    """``A6 { 90 11 00 | 95 3C | 80 88 | 81 L }``: SCP11b, full secure messaging, AES-L."""
    if key_length not in KEY_LENGTHS:
        raise Scp11ProtocolError(f"session key length {key_length} is not 16, 24 or 32 bytes", 0x6A80)
    return encode(TAG_CRT, [Tlv(TAG_SCP_ID, bytes((SCP11, SCP11B_PARAM))), Tlv(TAG_KEY_USAGE, bytes((KEY_USAGE_FULL,))),
                            Tlv(TAG_KEY_TYPE, bytes((KEY_TYPE_AES,))), Tlv(TAG_KEY_LENGTH, bytes((key_length,)))])


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _public_key(point: bytes, what: str) -> ec.EllipticCurvePublicKey:
    if len(point) != _POINT_LEN or point[0] != 0x04:
        raise Scp11ProtocolError(f"{what}: {len(point)} bytes, not an uncompressed P-256 point (04 || X || Y)", 0x6A80)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, point)
    except ValueError as e:
        raise Scp11ProtocolError(f"{what}: not a point on P-256", 0x6A80) from e


def derive(shared_ee: bytes, shared_es: bytes, key_length: int) -> tuple[bytes, SessionKeys, bytes]:
    """The receipt key, the session keys (S-ENC, S-MAC, S-RMAC) and S-DEK from the two shared
    secrets (Amendment F 3.1.2: X9.63 KDF with SHA-256 over ShSee || ShSes)."""
    shared_info = bytes((KEY_USAGE_FULL, KEY_TYPE_AES, key_length))
    out = X963KDF(hashes.SHA256(), 5 * key_length, shared_info).derive(shared_ee + shared_es)
    k = [out[i * key_length : (i + 1) * key_length] for i in range(5)]
    return k[0], SessionKeys(k[1], k[2], k[3]), k[4]


def receipt(receipt_key: bytes, command_data: bytes, sd_epk_tlv: bytes) -> bytes:
    """CMAC(receipt key, the command's data || the SD's ``5F49`` object)."""
    return KeyedAes(receipt_key).cmac(command_data + sd_epk_tlv)


def parse_internal_authenticate(data: bytes) -> tuple[int, ec.EllipticCurvePublicKey]:
    """The key length asked and the OCE's ephemeral public key, from INTERNAL AUTHENTICATE's
    data; anything else than SCP11b with full secure messaging and AES session keys is
    refused (:class:`Scp11ProtocolError` with the status word to answer)."""
    try:
        objs = parse_all(data)
    except TlvError as e:
        raise Scp11ProtocolError(f"INTERNAL AUTHENTICATE data: {e}", 0x6A80) from e
    if [o.tag for o in objs] != [TAG_CRT, TAG_EPK]:
        raise Scp11ProtocolError("INTERNAL AUTHENTICATE data is not A6 { .. } 5F49 ..", 0x6A80)
    try:
        fields = {}
        for c in objs[0].children():
            if c.tag in fields:
                raise Scp11ProtocolError(f"control reference template: tag {c.tag:02X} twice", 0x6A80)
            fields[c.tag] = c.value
    except TlvError as e:
        raise Scp11ProtocolError(f"control reference template: {e}", 0x6A80) from e
    if set(fields) != {TAG_SCP_ID, TAG_KEY_USAGE, TAG_KEY_TYPE, TAG_KEY_LENGTH}:
        raise Scp11ProtocolError("control reference template needs exactly 90, 95, 80 and 81", 0x6A80)
    if fields[TAG_SCP_ID] != bytes((SCP11, SCP11B_PARAM)):
        raise Scp11ProtocolError(f"SCP identifier {fields[TAG_SCP_ID].hex().upper()}: only 1100 (SCP11b) here", 0x6A80)
    if fields[TAG_KEY_USAGE] != bytes((KEY_USAGE_FULL,)):
        raise Scp11ProtocolError(f"key usage {fields[TAG_KEY_USAGE].hex().upper()}: only 3C (C-MAC, C-DEC, "
                                 "R-MAC, R-ENC) here", 0x6A80)
    if fields[TAG_KEY_TYPE] != bytes((KEY_TYPE_AES,)):
        raise Scp11ProtocolError(f"key type {fields[TAG_KEY_TYPE].hex().upper()}: only 88 (AES)", 0x6A80)
    length = fields[TAG_KEY_LENGTH]
    if len(length) != 1 or length[0] not in KEY_LENGTHS:
        raise Scp11ProtocolError(f"key length {length.hex().upper()}: 10, 18 or 20 (AES-128/192/256)", 0x6A80)
    return length[0], _public_key(objs[1].value, "OCE ephemeral key 5F49")


class Scp11bHost(SecureHost):
    """The OCE's side of SCP11b. Typical use::

        host = Scp11bHost(pk_sd_ecka, kvn=0x01)  # PK.SD.ECKA from a verified certificate
        host.on_internal_authenticate_response(transmit(host.internal_authenticate()))
        plain = host.unwrap(transmit(host.wrap(apdu)))

    ``pk_sd_ecka`` must come from a certificate the caller verified
    (:func:`verify_sd_certificate`): the receipt proves the card holds its private key, and
    nothing more."""

    _state_error = Scp11StateError
    _protocol_error = Scp11ProtocolError

    def __init__(self, pk_sd_ecka: ec.EllipticCurvePublicKey, kvn: int, kid: int = SCP11B_KID, *,
                 key_length: int = 16, channel: int = 0,
                 ephemeral: ec.EllipticCurvePrivateKey | None = None) -> None:
        if not isinstance(pk_sd_ecka, ec.EllipticCurvePublicKey) or pk_sd_ecka.curve.name != CURVE.name:
            raise Scp11ProtocolError("PK.SD.ECKA must be a P-256 public key")
        if not (0 <= kvn <= 0xFF and 0 <= kid <= 0xFF):
            raise Scp11ProtocolError(f"key reference KID {kid} KVN {kvn} outside 00..FF")
        self.pk_sd_ecka = pk_sd_ecka
        self.kvn, self.kid, self.key_length, self.channel = kvn, kid, key_length, channel
        self._esk = ephemeral if ephemeral is not None else ec.generate_private_key(CURVE)
        self._data = control_reference_template(key_length) + encode(TAG_EPK, _point(self._esk.public_key()))
        self.security_level = SCP11_SECURITY_LEVEL
        self.state = HostState.IDLE
        self.receipt: bytes | None = None
        self._dek: bytes | None = None
        self._sm: SecureMessaging | None = None

    @property
    def key_dek(self) -> bytes:
        if self._dek is None:
            raise Scp11StateError("no SCP11 session: S-DEK exists once the receipt verified")
        return self._dek

    def internal_authenticate(self) -> bytes:
        """INTERNAL AUTHENTICATE (80 88 KVN KID) with the template and the ephemeral key."""
        if self.state is not HostState.IDLE:
            raise Scp11StateError(f"INTERNAL AUTHENTICATE already sent (state {self.state.value})")
        self.state = HostState.AUTHENTICATE_SENT
        return CommandApdu(with_channel(CLA_GP, self.channel), INS_INTERNAL_AUTHENTICATE, self.kvn, self.kid,
                           self._data, 256).to_bytes()

    def on_internal_authenticate_response(self, resp: bytes) -> None:
        """Verify the receipt; 9000 with a receipt that verifies opens the channel at
        security level 33. Anything else closes it (:class:`Scp11ProtocolError`, or
        :class:`Scp11AuthenticationError` when the receipt does not verify: not this card)."""
        r = self._answer_to(HostState.AUTHENTICATE_SENT, "INTERNAL AUTHENTICATE", resp)
        try:
            objs = parse_all(r.data)
        except TlvError as e:
            raise self._fail(Scp11ProtocolError(f"INTERNAL AUTHENTICATE answer: {e}")) from e
        if [o.tag for o in objs] != [TAG_EPK, TAG_RECEIPT] or len(objs[1].value) != 16:
            raise self._fail(Scp11ProtocolError("INTERNAL AUTHENTICATE answer is not 5F49 <SD key> 86 <16-byte receipt>"))
        try:
            epk_sd = _public_key(objs[0].value, "SD ephemeral key 5F49")
        except Scp11ProtocolError as e:
            raise self._fail(e) from e
        ee = self._esk.exchange(ec.ECDH(), epk_sd)
        es = self._esk.exchange(ec.ECDH(), self.pk_sd_ecka)
        rk, keys, dek = derive(ee, es, self.key_length)
        want = receipt(rk, self._data, objs[0].to_bytes())
        if not hmac.compare_digest(want, objs[1].value):
            raise self._fail(Scp11AuthenticationError(
                "receipt does not verify: the card does not hold the private key of the certified PK.SD.ECKA"))
        self.receipt, self._dek = objs[1].value, dek
        self._sm = SecureMessaging(keys, SCP11_SECURITY_LEVEL, 8, chaining_value=objs[1].value)
        self.state = HostState.OPEN

    def close(self) -> None:
        super().close()
        self._dek = None


class Scp11bCard(SecureCard):
    """The security domain's side of one SCP11b session. ``static_exchange`` computes
    ECDH(SK.SD.ECKA, peer) inside the SD's owner: the private key is never handed here.

    The OCE is not authenticated by SCP11b (:attr:`oce_authenticated` is False): the SD
    decides what such a session may do."""

    #: Amendment F: SCP11b authenticates the card only
    oce_authenticated = False

    def __init__(self, kvn: int, kid: int, static_exchange: Callable[[ec.EllipticCurvePublicKey], bytes], *,
                 ephemeral: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.kvn, self.kid = kvn, kid
        self._exchange = static_exchange
        self._ephemeral = ephemeral
        self.state = CardState.IDLE
        self.security_level = 0
        self.channel = 0
        self._dek: bytes | None = None
        self._sm: SecureMessaging | None = None

    @property
    def key_dek(self) -> bytes:
        if self._dek is None:
            raise Scp11StateError("no open SCP11 session")
        return self._dek

    def internal_authenticate(self, cmd: CommandApdu) -> bytes:
        """Answer INTERNAL AUTHENTICATE: ``5F49 <SD ephemeral key> 86 <receipt>`` 9000; the
        session is then open. Raises :class:`Scp11ProtocolError` (with the status word to
        answer) on a malformed command; the caller has checked P1 and P2 name this key."""
        if self.state is not CardState.IDLE:
            raise Scp11StateError(f"INTERNAL AUTHENTICATE in state {self.state.value}")
        if has_secure_messaging(cmd.cla):
            raise Scp11ProtocolError("INTERNAL AUTHENTICATE must come in plain", 0x6882)
        length, epk_oce = parse_internal_authenticate(cmd.data)
        esk = self._ephemeral if self._ephemeral is not None else ec.generate_private_key(CURVE)
        sd_epk = encode(TAG_EPK, _point(esk.public_key()))
        rk, keys, dek = derive(esk.exchange(ec.ECDH(), epk_oce), self._exchange(epk_oce), length)
        rcpt = receipt(rk, cmd.data, sd_epk)
        self.channel = cmd.channel
        self._dek = dek
        self._sm = SecureMessaging(keys, SCP11_SECURITY_LEVEL, 8, chaining_value=rcpt)
        self.security_level = SCP11_SECURITY_LEVEL
        self.state = CardState.OPEN
        return sd_epk + encode(TAG_RECEIPT, rcpt) + b"\x90\x00"

    def close(self) -> None:
        super().close()
        self._dek = None


# --- the certificate store (GET DATA BF21) --------------------------------------------------

def certificate_store_query(kid: int = SCP11B_KID, kvn: int = 0x01) -> bytes:
    """GET DATA BF21's data field: ``A6 { 83 KID KVN }``, the key whose certificates to read."""
    return encode(TAG_CRT, [Tlv(TAG_KEY_REFERENCE, bytes((kid, kvn)))])


def parse_certificate_store_query(data: bytes) -> tuple[int, int]:
    """(KID, KVN) named by GET DATA BF21's data field."""
    try:
        objs = parse_all(data)
        if len(objs) != 1 or objs[0].tag != TAG_CRT:
            raise Scp11ProtocolError("certificate store query is not A6 { 83 KID KVN }", 0x6A80)
        ref = objs[0].children()
    except TlvError as e:
        raise Scp11ProtocolError(f"certificate store query: {e}", 0x6A80) from e
    if len(ref) != 1 or ref[0].tag != TAG_KEY_REFERENCE or len(ref[0].value) != 2:
        raise Scp11ProtocolError("certificate store query is not A6 { 83 KID KVN }", 0x6A80)
    return ref[0].value[0], ref[0].value[1]


def parse_certificate_bundle(data: bytes) -> list[x509.Certificate]:
    """The certificates of GET DATA BF21's answer: X.509 DER one after the other, leaf last."""
    try:
        objs = parse_all(data)
    except TlvError as e:
        raise Scp11CertificateError(f"certificate store answer: {e}") from e
    if not objs:
        raise Scp11CertificateError("certificate store answer holds no certificate")
    out = []
    for i, o in enumerate(objs):
        if o.tag != 0x30:
            raise Scp11CertificateError(f"certificate store answer, object {i}: tag {o.tag:X}, not an X.509 SEQUENCE")
        try:
            out.append(x509.load_der_x509_certificate(o.to_bytes()))
        except ValueError as e:
            raise Scp11CertificateError(f"certificate store answer, object {i}: not X.509 DER ({e})") from e
    return out


def verify_sd_certificate(bundle: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], *,
                          at: datetime) -> x509.Certificate:
    """The bundle's leaf (the SD's ECKA certificate), once cryptography's path validation
    (RFC 5280: signatures, validity at ``at``, CA constraints, the web PKI's rules for
    the CA certificates) found a chain from it through the bundle's other certificates to
    one of ``roots``, and it certifies a P-256 key whose key usage allows key agreement.
    Raises :class:`Scp11CertificateError`, naming what failed."""
    if not bundle:
        raise Scp11CertificateError("no SD certificate")
    if not roots:
        raise Scp11CertificateError("no trusted SE maker root to verify the SD certificate against")
    leaf = bundle[-1]
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE.name:
        raise Scp11CertificateError("SD certificate does not certify a P-256 key")
    verifier = (PolicyBuilder().store(Store(list(roots))).time(at)
                .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_SD_POLICY)
                .build_client_verifier())
    try:
        verifier.verify(leaf, list(bundle[:-1]))
    except VerificationError as e:
        raise Scp11CertificateError(f"SD certificate {leaf.subject.rfc4514_string()} does not verify against the "
                                    f"trusted SE maker roots: {e}") from e
    return leaf


def _key_agreement(policy: object, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is None or not ku.key_agreement:
        raise ValueError("key usage does not allow key agreement (keyAgreement)")


#: The SD certificate: a key usage with keyAgreement; any other extension as it comes (an
#: SE maker's profile is its own, not the web PKI's)
_SD_POLICY = ExtensionPolicy.permit_all().require_present(x509.KeyUsage, Criticality.AGNOSTIC, _key_agreement)


__all__ = [
    "CURVE", "KEY_USAGE_FULL", "SCP11B_KID", "SCP11_SECURITY_LEVEL", "TAG_CERTIFICATE_STORE",
    "Scp11bCard", "Scp11bHost", "certificate_store_query", "control_reference_template", "derive",
    "parse_certificate_bundle", "parse_certificate_store_query", "parse_internal_authenticate", "receipt",
    "verify_sd_certificate",
]

_ = GpError  # the base class callers catch
