"""GlobalPlatform SCP11, variants a and b, host and card side, sans-I/O (GlobalPlatform
Card Specification v2.3 Amendment F, Secure Channel Protocol '11').

SCP11 opens a secure channel by elliptic-curve key agreement instead of shared static keys.
The security domain (the card) holds a static key pair SK.SD.ECKA / PK.SD.ECKA per variant,
made inside it at manufacture, and a certificate for the public key from its maker (GET
DATA BF21: the certificate store, X.509 DER, leaf last).

**SCP11b** authenticates the card, not the off-card entity (OCE, here the TSM):

* the OCE sends INTERNAL AUTHENTICATE (80 88, P1 = KVN, P2 = KID) with a control reference
  template ``A6 { 90 11 00 | 95 3C | 80 88 | 81 <key length> }`` and its ephemeral public
  key ``5F49``; the SD answers its own ephemeral public key ``5F49`` and a receipt ``86``;
* both compute ShSee = ECDH(ephemeral, ephemeral) and ShSes = ECDH(OCE ephemeral, SD
  static).

**SCP11a** authenticates both. The OCE holds a static key pair SK.OCE.ECKA / PK.OCE.ECKA
and a certificate chain for it that ends at a CA the card trusts (the key-loading OCE's CA,
PK.CA-KLOC.ECDSA, put into the SD by its issuer):

* the OCE first sends its chain, one certificate per PERFORM SECURITY OPERATION (80 2A,
  P1 = the CA key's KVN, P2 = its KID, with bit 8 set while more certificates follow),
  root side first; the card verifies each signature from its CA key down and keeps the
  leaf's PK.OCE.ECKA;
* then MUTUAL AUTHENTICATE (80 82 KVN KID) with the template's "i" = 01; ShSes =
  ECDH(OCE static, SD static), which only the holders of the two certified keys compute.

For both, the rest is shared:

* the ANSI X9.63 KDF (SHA-256, shared info = key usage || key type || key length) derives
  from ShSee || ShSes five AES keys in this order: the receipt key, S-ENC, S-MAC, S-RMAC,
  S-DEK;
* the receipt is the AES-CMAC, under the receipt key, of the command's data (the template
  and the OCE's ephemeral key) followed by the SD's ``5F49`` object: only a holder of
  SK.SD.ECKA (and, for SCP11a, of the OCE's) computes it;
* secure messaging is SCP03's (C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION: key usage 3C,
  security level 33 here), with the receipt as the first MAC chaining value and S-DEK
  enciphering PUT KEY's key components.

Every class takes and gives bytes only. The static private keys stay behind the
``static_exchange`` callables their owners pass in (the SE simulator keeps the SD's in its
NVM, the TSM the OCE's wherever its operator keeps it).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from protocols.certs import CertificateParseError, critical_refusal, load_der
from protocols.gp.apdu import CommandApdu, has_secure_messaging, with_channel
from protocols.gp.codes import (
    CLA_GP,
    INS_INTERNAL_AUTHENTICATE,
    INS_MUTUAL_AUTHENTICATE,
    INS_PERFORM_SECURITY_OPERATION,
)
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

#: Key identifiers of the SD's key pairs (the ones yubikit and the YubiKey use: 11 a, 13 b,
#: 15 c) and of the CA key that certifies the OCEs allowed to load keys (KLOC: 10)
SCP11A_KID = 0x11
SCP11B_KID = 0x13
KLOC_KID = 0x10
#: SCP identifier and the "i" parameter of variants a and b (Amendment F 7.1.1)
SCP11 = 0x11
SCP11A_PARAM = 0x01
SCP11B_PARAM = 0x00
_VARIANT = {SCP11A_PARAM: "SCP11a", SCP11B_PARAM: "SCP11b"}
#: PERFORM SECURITY OPERATION's P2 bit 8: more certificates of the chain follow
PSO_MORE = 0x80
#: what a card keeps of an OCE chain: certificates, and bytes per certificate
MAX_OCE_CHAIN = 4
MAX_CERTIFICATE_BYTES = 2048
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


def control_reference_template(key_length: int = 16, variant: int = SCP11B_PARAM) -> bytes:
    """``A6 { 90 11 i | 95 3C | 80 88 | 81 L }``: SCP11 variant ``i`` (00: b, 01: a), full
    secure messaging, AES-L session keys."""
    if key_length not in KEY_LENGTHS:
        raise Scp11ProtocolError(f"session key length {key_length} is not 16, 24 or 32 bytes", 0x6A80)
    if variant not in _VARIANT:
        raise Scp11ProtocolError(f"SCP11 variant parameter {variant:02X}: 00 (b) or 01 (a) here", 0x6A80)
    return encode(TAG_CRT, [Tlv(TAG_SCP_ID, bytes((SCP11, variant))), Tlv(TAG_KEY_USAGE, bytes((KEY_USAGE_FULL,))),
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


def parse_internal_authenticate(data: bytes, variant: int = SCP11B_PARAM) -> tuple[int, ec.EllipticCurvePublicKey]:
    """The key length asked and the OCE's ephemeral public key, from INTERNAL AUTHENTICATE's
    data (MUTUAL AUTHENTICATE's, for ``variant`` SCP11A_PARAM); anything else than that
    variant with full secure messaging and AES session keys is refused
    (:class:`Scp11ProtocolError` with the status word to answer)."""
    command = "INTERNAL AUTHENTICATE" if variant == SCP11B_PARAM else "MUTUAL AUTHENTICATE"
    try:
        objs = parse_all(data)
    except TlvError as e:
        raise Scp11ProtocolError(f"{command} data: {e}", 0x6A80) from e
    if [o.tag for o in objs] != [TAG_CRT, TAG_EPK]:
        raise Scp11ProtocolError(f"{command} data is not A6 {{ .. }} 5F49 ..", 0x6A80)
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
    if fields[TAG_SCP_ID] != bytes((SCP11, variant)):
        raise Scp11ProtocolError(f"SCP identifier {fields[TAG_SCP_ID].hex().upper()}: only 11{variant:02X} "
                                 f"({_VARIANT[variant]}) with this command and key", 0x6A80)
    if fields[TAG_KEY_USAGE] != bytes((KEY_USAGE_FULL,)):
        raise Scp11ProtocolError(f"key usage {fields[TAG_KEY_USAGE].hex().upper()}: only 3C (C-MAC, C-DEC, "
                                 "R-MAC, R-ENC) here", 0x6A80)
    if fields[TAG_KEY_TYPE] != bytes((KEY_TYPE_AES,)):
        raise Scp11ProtocolError(f"key type {fields[TAG_KEY_TYPE].hex().upper()}: only 88 (AES)", 0x6A80)
    length = fields[TAG_KEY_LENGTH]
    if len(length) != 1 or length[0] not in KEY_LENGTHS:
        raise Scp11ProtocolError(f"key length {length.hex().upper()}: 10, 18 or 20 (AES-128/192/256)", 0x6A80)
    return length[0], _public_key(objs[1].value, "OCE ephemeral key 5F49")


class _Scp11Host(SecureHost):
    """What both variants' OCE sides share: the ephemeral key, the template, and the
    answer's check and derivation."""

    _state_error = Scp11StateError
    _protocol_error = Scp11ProtocolError
    _variant: int
    _command: str

    def __init__(self, pk_sd_ecka: ec.EllipticCurvePublicKey, kvn: int, kid: int, *, key_length: int,
                 channel: int, ephemeral: ec.EllipticCurvePrivateKey | None) -> None:
        if not isinstance(pk_sd_ecka, ec.EllipticCurvePublicKey) or pk_sd_ecka.curve.name != CURVE.name:
            raise Scp11ProtocolError("PK.SD.ECKA must be a P-256 public key")
        if not (0 <= kvn <= 0xFF and 0 <= kid <= 0xFF):
            raise Scp11ProtocolError(f"key reference KID {kid} KVN {kvn} outside 00..FF")
        self.pk_sd_ecka = pk_sd_ecka
        self.kvn, self.kid, self.key_length, self.channel = kvn, kid, key_length, channel
        self._esk = ephemeral if ephemeral is not None else ec.generate_private_key(CURVE)
        self._data = (control_reference_template(key_length, self._variant)
                      + encode(TAG_EPK, _point(self._esk.public_key())))
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

    def _authenticate(self, ins: int) -> bytes:
        if self.state is not HostState.IDLE:
            raise Scp11StateError(f"{self._command} already sent (state {self.state.value})")
        self.state = HostState.AUTHENTICATE_SENT
        return CommandApdu(with_channel(CLA_GP, self.channel), ins, self.kvn, self.kid, self._data, 256).to_bytes()

    def _static_shared(self, epk_sd: ec.EllipticCurvePublicKey) -> bytes:
        """ShSes, with PK.SD.ECKA."""
        raise NotImplementedError

    def _on_answer(self, resp: bytes) -> None:
        r = self._answer_to(HostState.AUTHENTICATE_SENT, self._command, resp)
        try:
            objs = parse_all(r.data)
        except TlvError as e:
            raise self._fail(Scp11ProtocolError(f"{self._command} answer: {e}")) from e
        if [o.tag for o in objs] != [TAG_EPK, TAG_RECEIPT] or len(objs[1].value) != 16:
            raise self._fail(Scp11ProtocolError(f"{self._command} answer is not 5F49 <SD key> 86 <16-byte receipt>"))
        try:
            epk_sd = _public_key(objs[0].value, "SD ephemeral key 5F49")
        except Scp11ProtocolError as e:
            raise self._fail(e) from e
        ee = self._esk.exchange(ec.ECDH(), epk_sd)
        rk, keys, dek = derive(ee, self._static_shared(epk_sd), self.key_length)
        want = receipt(rk, self._data, objs[0].to_bytes())
        if not hmac.compare_digest(want, objs[1].value):
            raise self._fail(Scp11AuthenticationError(self._not_this_card))
        self.receipt, self._dek = objs[1].value, dek
        self._sm = SecureMessaging(keys, SCP11_SECURITY_LEVEL, 8, chaining_value=objs[1].value)
        self.state = HostState.OPEN

    _not_this_card = "receipt does not verify: the card does not hold the private key of the certified PK.SD.ECKA"

    def close(self) -> None:
        super().close()
        self._dek = None


class Scp11bHost(_Scp11Host):
    """The OCE's side of SCP11b. Typical use::

        host = Scp11bHost(pk_sd_ecka, kvn=0x01)  # PK.SD.ECKA from a verified certificate
        host.on_internal_authenticate_response(transmit(host.internal_authenticate()))
        plain = host.unwrap(transmit(host.wrap(apdu)))

    ``pk_sd_ecka`` must come from a certificate the caller verified
    (:func:`verify_sd_certificate`): the receipt proves the card holds its private key, and
    nothing more."""

    _variant = SCP11B_PARAM
    _command = "INTERNAL AUTHENTICATE"

    def __init__(self, pk_sd_ecka: ec.EllipticCurvePublicKey, kvn: int, kid: int = SCP11B_KID, *,
                 key_length: int = 16, channel: int = 0,
                 ephemeral: ec.EllipticCurvePrivateKey | None = None) -> None:
        super().__init__(pk_sd_ecka, kvn, kid, key_length=key_length, channel=channel, ephemeral=ephemeral)

    def internal_authenticate(self) -> bytes:
        """INTERNAL AUTHENTICATE (80 88 KVN KID) with the template and the ephemeral key."""
        return self._authenticate(INS_INTERNAL_AUTHENTICATE)

    def on_internal_authenticate_response(self, resp: bytes) -> None:
        """Verify the receipt; 9000 with a receipt that verifies opens the channel at
        security level 33. Anything else closes it (:class:`Scp11ProtocolError`, or
        :class:`Scp11AuthenticationError` when the receipt does not verify: not this card)."""
        self._on_answer(resp)

    def _static_shared(self, epk_sd: ec.EllipticCurvePublicKey) -> bytes:
        return self._esk.exchange(ec.ECDH(), self.pk_sd_ecka)  # SCP11b: the OCE's key is ephemeral


class Scp11aHost(_Scp11Host):
    """The OCE's side of SCP11a: the OCE proves who it is too. Typical use::

        host = Scp11aHost(pk_sd_ecka, kvn=0x01, oce_certificates=[cert_der],
                          oce_exchange=lambda peer: sk_oce.exchange(ec.ECDH(), peer))
        for apdu in host.certificate_commands():
            host.on_certificate_response(transmit(apdu))
        host.on_mutual_authenticate_response(transmit(host.mutual_authenticate()))

    ``oce_certificates`` is the chain of PK.OCE.ECKA, DER, leaf last, starting below the
    card's CA-KLOC key (``kloc_kid``/``kloc_kvn`` name it on the card);
    ``oce_exchange(peer)`` computes ECDH(SK.OCE.ECKA, peer) wherever that key is kept."""

    _variant = SCP11A_PARAM
    _command = "MUTUAL AUTHENTICATE"
    _not_this_card = ("receipt does not verify: the card does not hold the private key of the certified "
                      "PK.SD.ECKA, or did not take the OCE's certified key")

    def __init__(self, pk_sd_ecka: ec.EllipticCurvePublicKey, kvn: int, kid: int = SCP11A_KID, *,
                 oce_certificates: Sequence[bytes], oce_exchange: Callable[[ec.EllipticCurvePublicKey], bytes],
                 kloc_kid: int = KLOC_KID, kloc_kvn: int = 0x01, key_length: int = 16, channel: int = 0,
                 ephemeral: ec.EllipticCurvePrivateKey | None = None) -> None:
        super().__init__(pk_sd_ecka, kvn, kid, key_length=key_length, channel=channel, ephemeral=ephemeral)
        chain = [bytes(c) for c in oce_certificates]
        if not 1 <= len(chain) <= MAX_OCE_CHAIN:
            raise Scp11ProtocolError(f"OCE certificate chain of {len(chain)}: 1 to {MAX_OCE_CHAIN} certificates")
        if not (0 <= kloc_kid < PSO_MORE and 0 <= kloc_kvn <= 0xFF):
            raise Scp11ProtocolError(f"CA-KLOC key reference KID {kloc_kid} KVN {kloc_kvn} outside 00..7F / 00..FF")
        self._chain = chain
        self._oce_exchange = oce_exchange
        self.kloc_kid, self.kloc_kvn = kloc_kid, kloc_kvn
        self._certificates_sent = 0
        self._certificates_taken = 0

    def certificate_commands(self) -> list[bytes]:
        """PERFORM SECURITY OPERATION [verify certificate] for each certificate of the
        chain, root side first: P1 = the CA-KLOC key's KVN, P2 = its KID, bit 8 set while
        more follow. Each answer goes to :meth:`on_certificate_response`, in order."""
        if self.state is not HostState.IDLE or self._certificates_sent:
            raise Scp11StateError(f"the OCE certificates were already sent (state {self.state.value})")
        last = len(self._chain) - 1
        self._certificates_sent = len(self._chain)
        cla = with_channel(CLA_GP, self.channel)
        return [CommandApdu(cla, INS_PERFORM_SECURITY_OPERATION, self.kloc_kvn,
                            self.kloc_kid | (PSO_MORE if i < last else 0), der).to_bytes()
                for i, der in enumerate(self._chain)]

    def on_certificate_response(self, resp: bytes) -> None:
        """The card's answer to the next certificate: 9000, or the channel fails."""
        if self._certificates_taken >= self._certificates_sent or self.state not in (
                HostState.IDLE, HostState.AUTHENTICATE_SENT):
            raise Scp11StateError(f"no PERFORM SECURITY OPERATION outstanding (state {self.state.value})")
        self._accepted(f"PERFORM SECURITY OPERATION (OCE certificate {self._certificates_taken + 1} of "
                       f"{len(self._chain)})", resp)
        self._certificates_taken += 1

    def mutual_authenticate(self) -> bytes:
        """MUTUAL AUTHENTICATE (80 82 KVN KID) with the template and the ephemeral key,
        once every certificate was answered 9000 (see :meth:`mutual_authenticate_pipelined`
        for a transport that sends them all in one exchange)."""
        return self._mutual_authenticate(False)

    def mutual_authenticate_pipelined(self) -> bytes:
        """:meth:`mutual_authenticate` before the certificates' answers came, for a
        transport that sends the certificates and this command in one exchange: a refused
        certificate leaves the card without the OCE's key, and it refuses this command
        (6985). Every certificate answer goes to :meth:`on_certificate_response` before
        this command's answer."""
        return self._mutual_authenticate(True)

    def _mutual_authenticate(self, pipelined: bool) -> bytes:
        if not self._certificates_sent:
            raise Scp11StateError("MUTUAL AUTHENTICATE before the OCE certificates (certificate_commands)")
        if not pipelined and self._certificates_taken < self._certificates_sent:
            raise Scp11StateError(f"MUTUAL AUTHENTICATE with {self._certificates_sent - self._certificates_taken} "
                                  "certificate answer(s) outstanding")
        return self._authenticate(INS_MUTUAL_AUTHENTICATE)

    def on_mutual_authenticate_response(self, resp: bytes) -> None:
        """Verify the receipt (see :meth:`Scp11bHost.on_internal_authenticate_response`);
        every certificate must have been answered 9000 first."""
        if self._certificates_taken < self._certificates_sent:
            raise self._fail(Scp11StateError("MUTUAL AUTHENTICATE answered before every OCE certificate was"))
        self._on_answer(resp)

    def _static_shared(self, epk_sd: ec.EllipticCurvePublicKey) -> bytes:
        return self._oce_exchange(self.pk_sd_ecka)  # SCP11a: ECDH(SK.OCE.ECKA, PK.SD.ECKA)


class _Scp11Card(SecureCard):
    """What both variants' SD sides share."""

    _variant: int
    _command: str

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

    def _static_peer(self, epk_oce: ec.EllipticCurvePublicKey) -> ec.EllipticCurvePublicKey:
        raise NotImplementedError

    def _open(self, cmd: CommandApdu) -> bytes:
        if self.state is not CardState.IDLE:
            raise Scp11StateError(f"{self._command} in state {self.state.value}")
        if has_secure_messaging(cmd.cla):
            raise Scp11ProtocolError(f"{self._command} must come in plain", 0x6882)
        length, epk_oce = parse_internal_authenticate(cmd.data, self._variant)
        esk = self._ephemeral if self._ephemeral is not None else ec.generate_private_key(CURVE)
        sd_epk = encode(TAG_EPK, _point(esk.public_key()))
        rk, keys, dek = derive(esk.exchange(ec.ECDH(), epk_oce), self._exchange(self._static_peer(epk_oce)), length)
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


class Scp11bCard(_Scp11Card):
    """The security domain's side of one SCP11b session. ``static_exchange`` computes
    ECDH(SK.SD.ECKA, peer) inside the SD's owner: the private key is never handed here.

    The OCE is not authenticated by SCP11b (:attr:`oce_authenticated` is False): the SD
    decides what such a session may do."""

    #: Amendment F: SCP11b authenticates the card only
    oce_authenticated = False
    _variant = SCP11B_PARAM
    _command = "INTERNAL AUTHENTICATE"

    def internal_authenticate(self, cmd: CommandApdu) -> bytes:
        """Answer INTERNAL AUTHENTICATE: ``5F49 <SD ephemeral key> 86 <receipt>`` 9000; the
        session is then open. Raises :class:`Scp11ProtocolError` (with the status word to
        answer) on a malformed command; the caller has checked P1 and P2 name this key."""
        return self._open(cmd)

    def _static_peer(self, epk_oce: ec.EllipticCurvePublicKey) -> ec.EllipticCurvePublicKey:
        return epk_oce


class Scp11aCard(_Scp11Card):
    """The security domain's side of one SCP11a session, for an OCE whose static key
    ``pk_oce_ecka`` the SD took from a chain it verified (:class:`OceChainCollector`).
    Only the holder of SK.OCE.ECKA derives the session keys, so every command that
    verifies came from it (:attr:`oce_authenticated`)."""

    oce_authenticated = True
    _variant = SCP11A_PARAM
    _command = "MUTUAL AUTHENTICATE"

    def __init__(self, kvn: int, kid: int, static_exchange: Callable[[ec.EllipticCurvePublicKey], bytes],
                 pk_oce_ecka: ec.EllipticCurvePublicKey, *,
                 ephemeral: ec.EllipticCurvePrivateKey | None = None) -> None:
        super().__init__(kvn, kid, static_exchange, ephemeral=ephemeral)
        self.pk_oce_ecka = pk_oce_ecka

    def mutual_authenticate(self, cmd: CommandApdu) -> bytes:
        """Answer MUTUAL AUTHENTICATE as :meth:`Scp11bCard.internal_authenticate` answers
        INTERNAL AUTHENTICATE, with ShSes = ECDH(SK.SD.ECKA, PK.OCE.ECKA)."""
        return self._open(cmd)

    def _static_peer(self, epk_oce: ec.EllipticCurvePublicKey) -> ec.EllipticCurvePublicKey:
        return self.pk_oce_ecka


# --- the OCE's certificate chain, as the card takes it (PERFORM SECURITY OPERATION) ---------

class OceChainCollector:
    """The card's side of PERFORM SECURITY OPERATION [verify certificate]: takes the OCE's
    chain one command at a time and, at its last certificate, verifies it from the CA-KLOC
    key down (:func:`verify_oce_chain`). Each refusal is an :class:`Scp11ProtocolError`
    with the status word to answer, and forgets the chain."""

    def __init__(self, ca_kloc: ec.EllipticCurvePublicKey, allowlist: Collection[int] | None = None) -> None:
        self.ca_kloc = ca_kloc
        self.allowlist = None if allowlist is None else frozenset(allowlist)
        self._chain: list[bytes] = []
        #: PK.OCE.ECKA, once a whole chain verified
        self.oce_key: ec.EllipticCurvePublicKey | None = None
        #: the serial number of the OCE's certificate that certifies it
        self.oce_serial: int | None = None

    def take(self, cmd: CommandApdu) -> bool:
        """One certificate; True once the chain is complete and verified. The caller has
        checked that P1 and P2 (bits 1-7) name its CA-KLOC key."""
        self.oce_key = None
        if has_secure_messaging(cmd.cla):
            self._chain = []
            raise Scp11ProtocolError("PERFORM SECURITY OPERATION must come in plain", 0x6882)
        if not cmd.data or len(cmd.data) > MAX_CERTIFICATE_BYTES:
            self._chain = []
            raise Scp11ProtocolError(f"certificate of {len(cmd.data)} bytes (1 to {MAX_CERTIFICATE_BYTES})", 0x6A80)
        if len(self._chain) >= MAX_OCE_CHAIN:
            self._chain = []
            raise Scp11ProtocolError(f"OCE chain longer than {MAX_OCE_CHAIN} certificates", 0x6A84)
        self._chain.append(bytes(cmd.data))
        if cmd.p2 & PSO_MORE:
            return False
        chain, self._chain = self._chain, []
        self.oce_key = verify_oce_chain(chain, self.ca_kloc, allowlist=self.allowlist)
        self.oce_serial = load_der(chain[-1]).serial_number
        return True

    def still_trusted(self, ca_kloc_spki: bytes, allowlist: Collection[int] | None) -> bool:
        """Whether the verified chain still stands under the card's CA-KLOC key (its
        SubjectPublicKeyInfo, DER) and allowlist as they are now: a chain verified before the
        issuer replaced the key or retired the OCE's certificate opens no session."""
        if self.oce_key is None:
            return False
        ours = self.ca_kloc.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return ours == ca_kloc_spki and (allowlist is None or self.oce_serial in allowlist)


def verify_oce_chain(chain: Sequence[bytes], ca_kloc: ec.EllipticCurvePublicKey, *,
                     allowlist: Collection[int] | None = None) -> ec.EllipticCurvePublicKey:
    """PK.OCE.ECKA from an OCE chain (X.509 DER, root side first), as a card verifies it: the
    first certificate's signature under the CA-KLOC key, each next one's under the one
    before (which must be a CA), and a leaf certifying a P-256 key for key agreement; with
    an ``allowlist``, the leaf's serial number must be on it. A card keeps no trusted time:
    validity dates are not checked here (the OCE's operator retires a certificate with the
    allowlist, a CA by replacing the CA-KLOC key). Raises :class:`Scp11ProtocolError`: 6A80
    for what is not a certificate, 6982 for a chain that does not verify."""
    certs = []
    for i, der in enumerate(chain):
        try:
            certs.append(load_der(der))
        except ValueError as e:
            raise Scp11ProtocolError(f"OCE certificate {i + 1}: not X.509 DER ({e})", 0x6A80) from e
    if not certs:
        raise Scp11ProtocolError("no OCE certificate", 0x6A80)
    for i, cert in enumerate(certs):
        why = critical_refusal(cert, OCE_EXTENSIONS)
        if why is not None:
            raise Scp11ProtocolError(f"OCE certificate {i + 1} ({cert.subject.rfc4514_string()}): {why}", 0x6982)
        if i > 0:
            why = _ca_refusal(certs[i - 1], below=len(certs) - 1 - i)
            if why is not None:
                raise Scp11ProtocolError(f"OCE certificate {i} signs certificate {i + 1} but {why}", 0x6982)
        try:
            issuer = ca_kloc if i == 0 else certs[i - 1].public_key()
            alg = cert.signature_hash_algorithm
            if not isinstance(issuer, ec.EllipticCurvePublicKey) or alg is None:
                raise InvalidSignature
            issuer.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(alg))
        except (InvalidSignature, ValueError, UnsupportedAlgorithm) as e:
            under = "the CA-KLOC key" if i == 0 else f"certificate {i}"
            raise Scp11ProtocolError(f"OCE certificate {i + 1} ({cert.subject.rfc4514_string()}) is not signed "
                                     f"by {under}", 0x6982) from e
    leaf = certs[-1]
    try:
        key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise Scp11ProtocolError("the OCE certificate's key is not one this card knows", 0x6982) from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE.name:
        raise Scp11ProtocolError("the OCE certificate does not certify a P-256 key", 0x6982)
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as e:
        raise Scp11ProtocolError("the OCE certificate has no key usage", 0x6982) from e
    if not ku.key_agreement:
        raise Scp11ProtocolError("the OCE certificate's key usage does not allow key agreement", 0x6982)
    if allowlist is not None and leaf.serial_number not in allowlist:
        raise Scp11ProtocolError(f"the OCE certificate's serial number {leaf.serial_number:X} is not on the "
                                 "allowlist", 0x6982)
    return key


# --- the allowlist of OCE certificates (STORE DATA to the SD) ------------------------------

TAG_ALLOWLIST = 0x70
TAG_SERIAL = 0x93
#: serial numbers an allowlist holds at most, here
MAX_ALLOWLIST = 64


def allowlist_data(kid: int, kvn: int, serials: Sequence[int]) -> bytes:
    """STORE DATA's data for the allowlist of the OCE certificates the key ``kid``/``kvn``
    (the CA-KLOC key) accepts: ``A6 { 83 KID KVN } 70 { 93 <serial> ... }``, each serial a
    positive integer as DER writes it (a leading 00 before a high bit). No serial: no
    allowlist (any certificate the CA signs)."""
    if len(serials) > MAX_ALLOWLIST or any(not 0 < s < 1 << 160 for s in serials):
        raise Scp11ProtocolError(f"an allowlist is up to {MAX_ALLOWLIST} serial numbers of 1 to 20 bytes")
    body = b"".join(encode(TAG_SERIAL, s.to_bytes((s.bit_length() + 8) // 8, "big")) for s in serials)
    return encode(TAG_CRT, [Tlv(TAG_KEY_REFERENCE, bytes((kid, kvn)))]) + encode(TAG_ALLOWLIST, body)


def parse_allowlist_data(data: bytes) -> tuple[int, int, tuple[int, ...]]:
    """(KID, KVN, serial numbers) of :func:`allowlist_data`'s format; anything else raises
    :class:`Scp11ProtocolError` (6A80)."""
    try:
        objs = parse_all(data)
        if [o.tag for o in objs] != [TAG_CRT, TAG_ALLOWLIST]:
            raise Scp11ProtocolError("allowlist data is not A6 { 83 KID KVN } 70 { 93 .. }", 0x6A80)
        ref = objs[0].children()
        serials = objs[1].children() if objs[1].value else ()
    except TlvError as e:
        raise Scp11ProtocolError(f"allowlist data: {e}", 0x6A80) from e
    if len(ref) != 1 or ref[0].tag != TAG_KEY_REFERENCE or len(ref[0].value) != 2:
        raise Scp11ProtocolError("allowlist data names no key: A6 { 83 KID KVN }", 0x6A80)
    if len(serials) > MAX_ALLOWLIST:
        raise Scp11ProtocolError(f"more than {MAX_ALLOWLIST} serial numbers", 0x6A84)
    out = []
    for t in serials:
        if t.tag != TAG_SERIAL or not 1 <= len(t.value) <= 21 or t.value[0] & 0x80:
            raise Scp11ProtocolError("a serial number is 93 with a positive integer of 1 to 20 bytes", 0x6A80)
        n = int.from_bytes(t.value, "big")
        if not 0 < n < 1 << 160:
            raise Scp11ProtocolError("a serial number is positive and at most 20 bytes", 0x6A80)
        out.append(n)
    return ref[0].value[0], ref[0].value[1], tuple(out)


# --- which CA the card trusts (GET DATA FF33) and naming it (STORE DATA A6 { 80 42 83 }) ----

#: GET DATA FF33: the CA-KLOC identifiers, the CAs whose OCEs the card takes keys from
TAG_CA_KLOC_IDENTIFIERS = 0xFF33
#: A CA's identifier: its Subject Key Identifier
TAG_CA_SKI = 0x42
#: the kind of CA a STORE DATA of a CA identifier names: 00 KLOC (of OCEs), 01 KLCC (of the card)
CA_KIND_KLOC, CA_KIND_KLCC = 0x00, 0x01
#: a Subject Key Identifier's length, here (RFC 5280's methods give 20 bytes; yubikit's too)
MAX_SKI = 32


def _check_ski(ski: bytes) -> None:
    if not 1 <= len(ski) <= MAX_SKI:
        raise Scp11ProtocolError(f"a CA identifier (Subject Key Identifier) is 1 to {MAX_SKI} bytes", 0x6A80)


def ca_identifiers_data(entries: Sequence[tuple[bytes, int, int]]) -> bytes:
    """GET DATA FF33's answer: for each CA key the card holds, ``42 <SKI> 83 <KID KVN>``
    (the pairs side by side, as YubiKeys answer and yubikit reads them). ``entries``:
    (SKI, KID, KVN)."""
    out = b""
    for ski, kid, kvn in entries:
        _check_ski(ski)
        out += encode(TAG_CA_SKI, ski) + encode(TAG_KEY_REFERENCE, bytes((kid, kvn)))
    return out


def parse_ca_identifiers(data: bytes) -> tuple[tuple[bytes, int, int], ...]:
    """(SKI, KID, KVN) of each CA in GET DATA FF33's answer; anything else raises
    :class:`Scp11ProtocolError`."""
    try:
        objs = parse_all(data)
    except TlvError as e:
        raise Scp11ProtocolError(f"CA identifiers: {e}") from e
    if len(objs) % 2:
        raise Scp11ProtocolError("CA identifiers are pairs 42 <SKI> 83 <KID KVN>; one is incomplete")
    out = []
    for ski, ref in zip(objs[::2], objs[1::2], strict=True):
        if ski.tag != TAG_CA_SKI or ref.tag != TAG_KEY_REFERENCE or len(ref.value) != 2:
            raise Scp11ProtocolError(f"CA identifiers: {ski.tag:X} {ref.tag:X} is not 42 <SKI> 83 <KID KVN>")
        _check_ski(ski.value)
        out.append((ski.value, ref.value[0], ref.value[1]))
    return tuple(out)


def ca_issuer_data(kid: int, kvn: int, ski: bytes, *, kind: int = CA_KIND_KLOC) -> bytes:
    """STORE DATA's data naming the CA key ``kid``/``kvn`` by its Subject Key Identifier:
    ``A6 { 80 kind  42 <SKI>  83 KID KVN }`` (kind 00: a KLOC CA, 01: KLCC). GET DATA FF33
    answers it from then on; an OCE reads it to choose the chain to show."""
    _check_ski(ski)
    if kind not in (CA_KIND_KLOC, CA_KIND_KLCC):
        raise Scp11ProtocolError("a CA is KLOC (00) or KLCC (01)")
    return encode(TAG_CRT, [Tlv(TAG_KEY_TYPE, bytes([kind])), Tlv(TAG_CA_SKI, ski),
                            Tlv(TAG_KEY_REFERENCE, bytes((kid, kvn)))])


def parse_ca_issuer_data(data: bytes) -> tuple[int, int, bytes, int]:
    """(KID, KVN, SKI, kind) of :func:`ca_issuer_data`'s format; anything else raises
    :class:`Scp11ProtocolError` (6A80)."""
    inner = _crt_objects(data, "CA identifier data", "A6 { 80 42 83 }")
    if [t.tag for t in inner] != [TAG_KEY_TYPE, TAG_CA_SKI, TAG_KEY_REFERENCE] \
            or len(inner[0].value) != 1 or len(inner[2].value) != 2:
        raise Scp11ProtocolError("CA identifier data is A6 { 80 <kind> 42 <SKI> 83 <KID KVN> }", 0x6A80)
    if inner[0].value[0] not in (CA_KIND_KLOC, CA_KIND_KLCC):
        raise Scp11ProtocolError("a CA is KLOC (00) or KLCC (01)", 0x6A80)
    _check_ski(inner[1].value)
    return inner[2].value[0], inner[2].value[1], inner[1].value, inner[0].value[0]


def _crt_objects(data: bytes, what: str, shape: str) -> tuple[Tlv, ...]:
    """The objects inside ``data``, which must be one control reference template (A6)
    and nothing else; otherwise :class:`Scp11ProtocolError` (6A80) naming ``what`` and the
    ``shape`` expected."""
    try:
        objs = parse_all(data)
        if len(objs) != 1 or objs[0].tag != TAG_CRT:
            raise Scp11ProtocolError(f"{what} is not {shape}", 0x6A80)
        return objs[0].children()
    except TlvError as e:
        raise Scp11ProtocolError(f"{what}: {e}", 0x6A80) from e


def is_ca_issuer_data(data: bytes) -> bool:
    """Whether STORE DATA to the SD names a CA (``A6 { 80 .. }``) rather than holding an
    allowlist (``A6 { 83 .. } 70 ..``): the first object inside A6 tells."""
    return len(data) > 2 and data[0] == TAG_CRT and data[2] == TAG_KEY_TYPE


#: The extensions :func:`verify_oce_chain` processes (RFC 5280 4.2: a certificate marking
#: critical any other is refused): the CA constraints and key usage it checks, and the key
#: identifiers, which constrain nothing
OCE_EXTENSIONS = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE,
                            ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER})


def _ca_refusal(cert: x509.Certificate, *, below: int) -> str | None:
    """Why ``cert`` may not sign the next certificate of an OCE chain, with ``below``
    intermediate CA certificates between that one and the leaf (None: it may). RFC 5280
    6.1.4: (k) it is a CA by its basic constraints, (l)/(m) its pathLenConstraint allows
    the CAs under it, (n) a key usage, if present, has keyCertSign."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "is not a CA (no basic constraints)"
    if not bc.ca:
        return "is not a CA"
    if bc.path_length is not None and below > bc.path_length:
        return (f"its path length constraint {bc.path_length} allows {bc.path_length} CA certificates under it, "
                f"and the chain has {below}")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return None if ku.key_cert_sign else "its key usage does not allow certificate signing (keyCertSign)"


# --- the certificate store (GET DATA BF21) --------------------------------------------------

def certificate_store_query(kid: int = SCP11B_KID, kvn: int = 0x01) -> bytes:
    """GET DATA BF21's data field: ``A6 { 83 KID KVN }``, the key whose certificates to read."""
    return encode(TAG_CRT, [Tlv(TAG_KEY_REFERENCE, bytes((kid, kvn)))])


def parse_certificate_store_query(data: bytes) -> tuple[int, int]:
    """(KID, KVN) named by GET DATA BF21's data field."""
    ref = _crt_objects(data, "certificate store query", "A6 { 83 KID KVN }")
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
            # the SE's certificates come from the wire: loaded as any (version, extensions
            # and Names read now; cryptography raises InvalidVersion, no ValueError, for one)
            out.append(load_der(o.to_bytes()))
        except CertificateParseError as e:
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
    "CURVE", "KEY_USAGE_FULL", "KLOC_KID", "SCP11A_KID", "SCP11B_KID", "SCP11_SECURITY_LEVEL",
    "TAG_CA_KLOC_IDENTIFIERS", "TAG_CERTIFICATE_STORE", "OceChainCollector", "allowlist_data",
    "ca_identifiers_data", "ca_issuer_data", "is_ca_issuer_data", "parse_allowlist_data",
    "parse_ca_identifiers", "parse_ca_issuer_data", "Scp11aCard", "Scp11aHost", "Scp11bCard", "Scp11bHost",
    "certificate_store_query", "control_reference_template", "derive", "parse_certificate_bundle",
    "parse_certificate_store_query", "parse_internal_authenticate", "receipt", "verify_oce_chain",
    "verify_sd_certificate",
]

_ = GpError  # the base class callers catch
