"""The Issuer Security Domain: SCP03 session handling and card content management
(GPCS 2.3.1 chapter 11: GET DATA 11.3, GET STATUS 11.4, INSTALL 11.5, PUT KEY 11.8,
SET STATUS 11.10, STORE DATA 11.11, DELETE 11.2; Amendment D 7.1 INITIALIZE UPDATE /
EXTERNAL AUTHENTICATE). Refusals and floors are listed in specs/secure-element.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols.gp.apdu import CommandApdu, ResponseApdu, has_secure_messaging, response
from protocols.gp.codes import INS_INTERNAL_AUTHENTICATE, INS_PERFORM_SECURITY_OPERATION
from protocols.gp.errors import (
    GpError,
    KeyError_,
    Scp03Error,
    Scp03ProtocolError,
    Scp11ProtocolError,
)
from protocols.gp.keys import (
    KeyInfo,
    key_information_template,
    parse_put_ec_public_key_data,
    parse_put_key_data,
)
from protocols.gp.resources import encode_resources
from protocols.gp.scp03 import SEQUENCE_COUNTER_MAX, CardChannel, CardKeyset, SecureCard, StaticKeys
from protocols.gp.scp11 import (
    KLOC_KID,
    PSO_MORE,
    SCP11A_KID,
    SCP11B_KID,
    TAG_CA_KLOC_IDENTIFIERS,
    TAG_CERTIFICATE_STORE,
    OceChainCollector,
    Scp11aCard,
    Scp11bCard,
    ca_identifiers_data,
    is_ca_issuer_data,
    parse_allowlist_data,
    parse_ca_issuer_data,
    parse_certificate_store_query,
)
from protocols.gp.tlv import Tlv, encode, parse_all
from wallet_sim.se.constants import (
    APP_INSTALLED,
    APP_SELECTABLE,
    CARD_LOCKED,
    CARD_SECURED,
    ELF_LOADED,
    FACTORY_KVN,
    INS_DELETE,
    INS_EXTERNAL_AUTHENTICATE,
    INS_GET_DATA,
    INS_GET_STATUS,
    INS_INITIALIZE_UPDATE,
    INS_INSTALL,
    INS_PUT_KEY,
    INS_SET_STATUS,
    INS_STORE_DATA,
    ISD_AID,
    ISD_PRIVILEGES,
    LOCKED_BIT,
    SCP03_I,
    SCP11B_UNAUTHENTICATED,
    SECURITY_FLOORS,
    SW_AUTH_METHOD_BLOCKED,
    SW_AUTHENTICATION_FAILED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_MORE_DATA_AVAILABLE,
    SW_NOT_ENOUGH_MEMORY,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_NOT_SATISFIED,
    SW_WRONG_DATA,
)
from wallet_sim.se.store import kloc_record

if TYPE_CHECKING:
    from wallet_sim.se.runtime import Channel, SecureElement

MAX_KEYSETS = 4
MAX_APPLICATIONS = 16


class _Refuse(Exception):
    def __init__(self, sw: int) -> None:
        self.sw = sw


def fci(se: SecureElement) -> bytes:
    """FCI of the ISD on SELECT (GPCS 11.9.3.1)."""
    return encode(0x6F, [Tlv(0x84, ISD_AID), Tlv(0xA5, encode(0x9F65, b"\xff"))])


def card_recognition_data() -> bytes:
    """GET DATA 0066 (GPCS Annex H.2): GP 2.3.1, SCP03 with i = 70."""
    oid = bytes.fromhex("2A864886FC6B")  # 1.2.840.114283
    return encode(0x66, [Tlv(0x73, b"".join([
        encode(0x06, oid + b"\x01"),
        encode(0x60, encode(0x06, oid + bytes.fromhex("02020301"))),
        encode(0x63, encode(0x06, oid + b"\x03")),
        encode(0x64, encode(0x06, oid + bytes([0x04, 0x03, SCP03_I]))),
    ]))])


def process(se: SecureElement, ch: Channel, cmd: CommandApdu) -> bytes:
    """One command to the ISD selected on ``ch``."""
    if cmd.ins == INS_INITIALIZE_UPDATE and cmd.cla & 0x80:
        return _initialize_update(se, ch, cmd)
    if cmd.ins == INS_INTERNAL_AUTHENTICATE and cmd.cla & 0x80 and not has_secure_messaging(cmd.cla):
        return _internal_authenticate(se, ch, cmd)
    if cmd.ins == INS_PERFORM_SECURITY_OPERATION and cmd.cla & 0x80 and not has_secure_messaging(cmd.cla):
        return _perform_security_operation(se, ch, cmd)
    if cmd.ins == INS_EXTERNAL_AUTHENTICATE and cmd.cla & 0x80:
        if cmd.p2 == SCP11A_KID and not has_secure_messaging(cmd.cla):
            return _mutual_authenticate(se, ch, cmd)
        return _external_authenticate(se, ch, cmd)
    sess = ch.session
    if sess is not None and sess.is_open and sess.security_level:
        if not has_secure_messaging(cmd.cla):
            _end_session(ch)  # a plain command inside a session aborts it
            return response(SW_SECURITY_NOT_SATISFIED)
        try:
            plain = sess.unwrap(cmd)
        except Scp03Error:
            _end_session(ch)  # tampered MAC / padding: the session is gone
            return response(SW_SECURITY_NOT_SATISFIED)
        if not sess.oce_authenticated and plain.ins not in SCP11B_UNAUTHENTICATED \
                and (FACTORY_KVN not in se.state["keysets"] or "kloc" in se.state):
            # SCP11b authenticated the card, not the host: once the published factory keys
            # are gone, nobody unauthenticated changes the card; nor ever on a card whose
            # issuer named the OCEs allowed to load keys (SCP11a; specs/secure-element.md)
            return sess.wrap_response(b"", SW_SECURITY_NOT_SATISFIED)
        data, sw = _command(se, ch, plain, sess.security_level)
        return sess.wrap_response(data, sw)
    if has_secure_messaging(cmd.cla):
        _end_session(ch)
        return response(SW_SECURITY_NOT_SATISFIED)
    level = sess.security_level if sess is not None and sess.is_open else None
    data, sw = _command(se, ch, cmd, level)
    return data + sw.to_bytes(2, "big")


def _end_session(ch: Channel) -> None:
    if ch.session is not None:
        ch.session.close()
    ch.session = None
    ch.perso_target = None
    ch.extra.pop("get_status", None)
    ch.extra.pop("oce_chain", None)


def _initialize_update(se: SecureElement, ch: Channel, cmd: CommandApdu) -> bytes:
    _end_session(ch)
    st = se.state
    kvn = cmd.p1 or min(st["keysets"])
    if kvn not in st["keysets"]:
        return response(SW_REFERENCED_DATA_NOT_FOUND)
    if kvn in st["blocked_kvns"]:
        return response(SW_AUTH_METHOD_BLOCKED)
    if st["sequence_counter"] >= SEQUENCE_COUNTER_MAX:
        return response(SW_CONDITIONS_NOT_SATISFIED)
    ks = st["keysets"][kvn]
    card = CardChannel(CardKeyset(kvn, StaticKeys(ks["enc"], ks["mac"], ks["dek"])), i=SCP03_I,
                       key_diversification_data=st["kdd"], sd_aid=ISD_AID,
                       sequence_counter=st["sequence_counter"] + 1)
    try:
        out = card.initialize_update(cmd)
    except Scp03ProtocolError as e:
        return response(e.sw or SW_WRONG_DATA)
    except GpError:
        return response(SW_WRONG_DATA)
    st["sequence_counter"] += 1  # consumed by every card challenge handed out
    ch.session = card
    return out


def _static_exchange(pkcs8: bytes):  # noqa: ANN202
    def exchange(peer: ec.EllipticCurvePublicKey) -> bytes:  # ECDH with SK.SD.ECKA, in here
        sk = serialization.load_der_private_key(pkcs8, None)
        assert isinstance(sk, ec.EllipticCurvePrivateKey)
        return sk.exchange(ec.ECDH(), peer)
    return exchange


def _internal_authenticate(se: SecureElement, ch: Channel, cmd: CommandApdu) -> bytes:
    """SCP11b (Amendment F 7.6): key agreement with the SE's certified key; P1 = KVN (00:
    the one there is), P2 = KID 13."""
    _end_session(ch)
    key = se.state.get("scp11")
    if key is None or cmd.p1 not in (0, key["kvn"]) or cmd.p2 != SCP11B_KID:
        return response(SW_REFERENCED_DATA_NOT_FOUND)
    card = Scp11bCard(key["kvn"], SCP11B_KID, _static_exchange(key["sk"]))
    return _start_scp11(ch, card, card.internal_authenticate, cmd)


def _start_scp11(ch: Channel, card: SecureCard, authenticate: Callable[[CommandApdu], bytes],
                 cmd: CommandApdu) -> bytes:
    """The card's answer to the command that opens an SCP11 session; on 9000 the channel's
    session is ``card``, on a refusal there is none."""
    try:
        out = authenticate(cmd)
    except Scp11ProtocolError as e:
        return response(e.sw or SW_WRONG_DATA)
    except GpError:
        return response(SW_WRONG_DATA)
    ch.session = card
    return out


def _perform_security_operation(se: SecureElement, ch: Channel, cmd: CommandApdu) -> bytes:
    """PERFORM SECURITY OPERATION [verify certificate] (Amendment F 7.5): one certificate of
    the OCE's chain, P1 = KVN and P2 = KID (bit 8: more follow) of the CA-KLOC key it
    chains to. The chain, and the OCE key it proves, last until the channel's next session
    or the next chain."""
    if ch.session is not None:
        _end_session(ch)  # a new authentication starts: the open session ends
    kloc = se.state.get("kloc")
    if kloc is None or cmd.p1 != kloc["kvn"] or cmd.p2 & ~PSO_MORE != KLOC_KID:
        ch.extra.pop("oce_chain", None)
        return response(SW_REFERENCED_DATA_NOT_FOUND)
    collector = ch.extra.get("oce_chain")
    if collector is None or collector.oce_key is not None:
        ca = serialization.load_der_public_key(kloc["pk"])
        assert isinstance(ca, ec.EllipticCurvePublicKey)
        collector = ch.extra["oce_chain"] = OceChainCollector(ca, kloc.get("allow"))
    try:
        collector.take(cmd)
    except Scp11ProtocolError as e:
        ch.extra.pop("oce_chain", None)
        return response(e.sw or SW_WRONG_DATA)
    return response(SW_OK)


def _mutual_authenticate(se: SecureElement, ch: Channel, cmd: CommandApdu) -> bytes:
    """SCP11a (Amendment F 7.6): key agreement between the SE's certified key and the OCE's,
    whose chain PERFORM SECURITY OPERATION verified just before; P1 = KVN (00: the one there
    is), P2 = KID 11."""
    collector = ch.extra.pop("oce_chain", None)
    _end_session(ch)
    key = se.state.get("scp11a")
    if key is None or cmd.p1 not in (0, key["kvn"]):
        return response(SW_REFERENCED_DATA_NOT_FOUND)
    if collector is None or collector.oce_key is None:
        return response(SW_CONDITIONS_NOT_SATISFIED)  # no verified OCE chain on this channel
    kloc = se.state.get("kloc")
    if kloc is None or not collector.still_trusted(kloc["pk"], kloc.get("allow")):
        # verified before the CA-KLOC key was replaced or the OCE's certificate retired
        return response(SW_SECURITY_NOT_SATISFIED)
    card = Scp11aCard(key["kvn"], SCP11A_KID, _static_exchange(key["sk"]), collector.oce_key)
    return _start_scp11(ch, card, card.mutual_authenticate, cmd)


def _certificate_store(se: SecureElement, cmd: CommandApdu) -> tuple[bytes, int]:
    """GET DATA BF21 with ``A6 { 83 KID KVN }``: the key's certificates, DER, leaf last."""
    try:
        kid, kvn = parse_certificate_store_query(cmd.data)
    except GpError:
        return b"", SW_WRONG_DATA
    key = se.state.get({SCP11B_KID: "scp11", SCP11A_KID: "scp11a"}.get(kid, ""))
    if key is None or kvn != key["kvn"]:
        return b"", SW_REFERENCED_DATA_NOT_FOUND
    return b"".join(key["certs"]), SW_OK


def _external_authenticate(se: SecureElement, ch: Channel, cmd: CommandApdu) -> bytes:
    sess = ch.session
    if sess is None or sess.state.value != "initialized":
        _end_session(ch)
        return response(SW_CONDITIONS_NOT_SATISFIED)
    kvn = sess.keyset.kvn
    st = se.state
    try:
        out = sess.external_authenticate(cmd)
    except Scp03ProtocolError as e:
        _end_session(ch)
        return response(e.sw or SW_WRONG_DATA)
    except Scp03Error:  # wrong host cryptogram or C-MAC: a failed authentication
        _end_session(ch)
        fails = st["failed_authentications"].get(kvn, 0) + 1
        st["failed_authentications"][kvn] = fails
        if fails >= st["max_failed_authentications"] and kvn not in st["blocked_kvns"]:
            st["blocked_kvns"].append(kvn)
        # Amendment D 7.1.2.5: "authentication of host cryptogram failed" (the C-MAC of
        # EXTERNAL AUTHENTICATE is made with the same S-MAC: a host with other keys fails both)
        return response(SW_AUTHENTICATION_FAILED)
    st["failed_authentications"].pop(kvn, None)
    return out


def _command(se: SecureElement, ch: Channel, cmd: CommandApdu, level: int | None) -> tuple[bytes, int]:
    """Dispatch a plain ISD command; ``level`` is the session's SL (None: no session)."""
    if not cmd.cla & 0x80 and cmd.ins != INS_GET_DATA:
        return b"", SW_INS_NOT_SUPPORTED
    handler = _HANDLERS.get(cmd.ins)
    if handler is None:
        return b"", SW_INS_NOT_SUPPORTED
    floor = SECURITY_FLOORS[cmd.ins]
    if floor is not None and (level is None or level & floor != floor):
        return b"", SW_SECURITY_NOT_SATISFIED
    try:
        return handler(se, ch, cmd)
    except _Refuse as r:
        return b"", r.sw


def _get_data(se: SecureElement, ch: Channel, cmd: CommandApdu) -> tuple[bytes, int]:
    st = se.state
    tag = (cmd.p1 << 8) | cmd.p2
    if tag == 0x9F7F:
        return encode(0x9F7F, st["cplc"]), SW_OK
    if tag == 0x0066:
        return card_recognition_data(), SW_OK
    if tag == 0x00E0:
        infos = [KeyInfo(kid, kvn, 0x88, len(ks["enc"]))
                 for kvn, ks in sorted(st["keysets"].items()) for kid in (1, 2, 3)]
        return key_information_template(infos), SW_OK
    if tag == 0x00C1:
        return encode(0xC1, st["sequence_counter"].to_bytes(3, "big")), SW_OK
    if tag == 0xFF21:
        return extended_card_resources(se), SW_OK
    if tag == TAG_CERTIFICATE_STORE:
        return _certificate_store(se, cmd)
    if tag == TAG_CA_KLOC_IDENTIFIERS:
        kloc = st.get("kloc")
        if kloc is None:
            return b"", SW_REFERENCED_DATA_NOT_FOUND
        return ca_identifiers_data([(kloc_ski(kloc), KLOC_KID, kloc["kvn"])]), SW_OK
    return b"", SW_REFERENCED_DATA_NOT_FOUND


#: Volatile memory reported free (the simulator keeps transient state in Python objects)
VOLATILE_FREE = 4096


def extended_card_resources(se: SecureElement) -> bytes:
    """GET DATA FF21 (:mod:`protocols.gp.resources`): installed applications, free
    non-volatile memory (bytes left in the NVM image), free volatile memory."""
    return encode_resources(len(se.state["applications"]), se.nvm_free(), VOLATILE_FREE)


def _aid_filter(data: bytes) -> bytes:
    try:
        tlvs = parse_all(data)
    except GpError:
        raise _Refuse(SW_WRONG_DATA) from None
    if not tlvs or tlvs[0].tag != 0x4F:
        raise _Refuse(SW_WRONG_DATA)
    return tlvs[0].value


#: Plain data bytes per GET STATUS answer: with R-ENC padding (up to 16) and an 8-byte
#: R-MAC the wrapped answer still fits a short response (256 bytes) at every level.
GET_STATUS_PAGE = 200
_P2_TLV, _P2_NEXT = 0x02, 0x01


def _get_status(se: SecureElement, ch: Channel, cmd: CommandApdu) -> tuple[bytes, int]:
    """GET STATUS in the TLV format (GPCS 11.4): P2 02 first occurrences, 03 next ones.

    Entries go out in pages of at most :data:`GET_STATUS_PAGE` bytes (at least one entry);
    6310 says more are available and the host repeats the command with P2 b1 set. What is
    left is volatile, per channel, and only for the same P1 and search criteria; a first
    occurrence request starts over."""
    if cmd.p2 & ~_P2_NEXT != _P2_TLV:  # TLV format only (no legacy format)
        return b"", SW_INCORRECT_P1P2
    pending = ch.extra.pop("get_status", None)
    if cmd.p2 & _P2_NEXT:
        if pending is None or pending[0] != (cmd.p1, cmd.data):
            return b"", SW_CONDITIONS_NOT_SATISFIED  # no listing to continue
        return _status_page(ch, pending[0], pending[1])
    prefix = _aid_filter(cmd.data)
    st = se.state
    entries: list[bytes] = []
    if cmd.p1 == 0x80:
        entries.append(encode(0xE3, [Tlv(0x4F, ISD_AID), Tlv(0x9F70, bytes([st["isd"]["life_cycle"]])),
                                     Tlv(0xC5, ISD_PRIVILEGES)]))
    elif cmd.p1 in (0x40, 0x60):
        for rec in st["applications"]:
            entries.append(encode(0xE3, [Tlv(0x4F, rec["aid"]), Tlv(0x9F70, bytes([rec["life_cycle"]])),
                                         Tlv(0xC5, rec["privileges"]), Tlv(0xC4, rec["elf_aid"]),
                                         Tlv(0xCC, ISD_AID)]))
    elif cmd.p1 in (0x20, 0x10):
        for elf, modules in sorted(se.packages.items()):
            items = [Tlv(0x4F, elf), Tlv(0x9F70, bytes([ELF_LOADED]))]
            if cmd.p1 == 0x10:
                items += [Tlv(0x84, m) for m in modules]
            entries.append(encode(0xE3, items))
    else:
        return b"", SW_INCORRECT_P1P2
    matched = [e for e in entries if parse_all(e)[0].children()[0].value.startswith(prefix)]
    if not matched:
        return b"", SW_REFERENCED_DATA_NOT_FOUND
    return _status_page(ch, (cmd.p1, cmd.data), matched)


def _status_page(ch: Channel, query: tuple[int, bytes], entries: list[bytes]) -> tuple[bytes, int]:
    n, size = 1, len(entries[0])
    while n < len(entries) and size + len(entries[n]) <= GET_STATUS_PAGE:
        size += len(entries[n])
        n += 1
    if n == len(entries):
        return b"".join(entries), SW_OK
    ch.extra["get_status"] = (query, entries[n:])
    return b"".join(entries[:n]), SW_MORE_DATA_AVAILABLE


def _lv_fields(data: bytes, count: int) -> list[bytes]:
    out, i = [], 0
    for _ in range(count):
        if i >= len(data):
            raise _Refuse(SW_WRONG_DATA)
        n = data[i]
        if i + 1 + n > len(data):
            raise _Refuse(SW_WRONG_DATA)
        out.append(data[i + 1 : i + 1 + n])
        i += 1 + n
    if i != len(data):
        raise _Refuse(SW_WRONG_DATA)
    return out


def _install(se: SecureElement, ch: Channel, cmd: CommandApdu) -> tuple[bytes, int]:
    st = se.state
    if cmd.p2 != 0x00:
        return b"", SW_INCORRECT_P1P2
    if cmd.p1 in (0x04, 0x0C):
        elf, module, aid, priv, params, _token = _lv_fields(cmd.data, 6)
        cls = se.applet_classes.get(module)
        if cls is None or module not in se.packages.get(elf, ()):
            return b"", SW_REFERENCED_DATA_NOT_FOUND
        if not 5 <= len(aid) <= 16 or len(priv) not in (1, 3):
            return b"", SW_WRONG_DATA
        if aid == ISD_AID or aid in se.packages or se.app_record(aid) is not None:
            # an AID names one entry of the GlobalPlatform Registry: the ISD, a load file
            # (an instance named like one could never be deleted) or an instance
            return b"", SW_CONDITIONS_NOT_SATISFIED
        if len(st["applications"]) >= MAX_APPLICATIONS:
            return b"", SW_NOT_ENOUGH_MEMORY
        applet = cls(aid)
        applet.install(params)
        st["applications"].append({
            "aid": aid, "module_aid": module, "elf_aid": elf,
            "life_cycle": APP_SELECTABLE if cmd.p1 == 0x0C else APP_INSTALLED,
            "privileges": (priv + b"\x00\x00")[:3], "state": applet.snapshot(),
        })
        se._applets[aid] = applet
        return b"\x00", SW_OK
    if cmd.p1 == 0x08:
        elf, module, aid, _priv, _params, _token = _lv_fields(cmd.data, 6)
        rec = se.app_record(aid)
        if rec is None:
            return b"", SW_REFERENCED_DATA_NOT_FOUND
        if rec["life_cycle"] != APP_INSTALLED:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        rec["life_cycle"] = APP_SELECTABLE
        return b"\x00", SW_OK
    if cmd.p1 == 0x20:
        _e, _m, aid, _p, _params, _token = _lv_fields(cmd.data, 6)
        rec = se.app_record(aid)
        if rec is None:
            return b"", SW_REFERENCED_DATA_NOT_FOUND
        if rec["life_cycle"] & LOCKED_BIT:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        ch.perso_target = aid
        return b"\x00", SW_OK
    return b"", SW_INCORRECT_P1P2


def _store_data(se: SecureElement, ch: Channel, cmd: CommandApdu) -> tuple[bytes, int]:
    aid = ch.perso_target
    if aid is None and cmd.data[:1] == b"\xa6":  # to the ISD itself: the OCE allowlist, or the CA's name
        return _store_ca_issuer(se, cmd) if is_ca_issuer_data(cmd.data) else _store_allowlist(se, cmd)
    rec = se.app_record(aid) if aid is not None else None
    if aid is None or rec is None or rec["life_cycle"] & LOCKED_BIT:
        return b"", SW_CONDITIONS_NOT_SATISFIED
    try:
        out = ResponseApdu.parse(se.applet(aid).store_data(cmd.p1, cmd.p2, cmd.data, se.context(ch)))
    except Exception:
        se._applets.pop(aid, None)
        return b"", 0x6F00
    return out.data, out.sw


def _store_allowlist(se: SecureElement, cmd: CommandApdu) -> tuple[bytes, int]:
    """STORE DATA to the ISD (no INSTALL [for personalization] before it; one block, P1 b8
    set): ``A6 { 83 10 KVN } 70 { 93 <serial> ... }``, the serial numbers of the OCE
    certificates the CA-KLOC key still accepts (none: any it signed). A retired TSM's
    certificate is refused from the next chain on, its CA untouched."""
    if not cmd.p1 & 0x80 or cmd.p2 != 0x00:
        return b"", SW_INCORRECT_P1P2
    try:
        kid, kvn, serials = parse_allowlist_data(cmd.data)
    except Scp11ProtocolError as e:
        return b"", e.sw or SW_WRONG_DATA
    kloc = se.state.get("kloc")
    if kloc is None or kid != KLOC_KID or kvn != kloc["kvn"]:
        return b"", SW_REFERENCED_DATA_NOT_FOUND
    if serials:
        kloc["allow"] = sorted(set(serials))
    else:
        kloc.pop("allow", None)
    return b"", SW_OK


def kloc_ski(kloc: dict) -> bytes:
    """The CA-KLOC key's identifier (an image made before the SE kept one: RFC 5280's first
    method over its key, as at manufacture)."""
    ski = kloc.get("ski")
    if ski is None:
        ski = x509.SubjectKeyIdentifier.from_public_key(serialization.load_der_public_key(kloc["pk"])).digest
    return ski


def _store_ca_issuer(se: SecureElement, cmd: CommandApdu) -> tuple[bytes, int]:
    """STORE DATA to the ISD naming the CA-KLOC key by its CA's Subject Key Identifier:
    ``A6 { 80 00  42 <SKI>  83 10 KVN }``; GET DATA FF33 answers it from then on (an OCE
    reads it to choose which of its chains to show). The SE has no KLCC key: 80 01 is 6A88."""
    if not cmd.p1 & 0x80 or cmd.p2 != 0x00:
        return b"", SW_INCORRECT_P1P2
    try:
        kid, kvn, ski, kind = parse_ca_issuer_data(cmd.data)
    except Scp11ProtocolError as e:
        return b"", e.sw or SW_WRONG_DATA
    kloc = se.state.get("kloc")
    if kloc is None or kind != 0 or kid != KLOC_KID or kvn != kloc["kvn"]:
        return b"", SW_REFERENCED_DATA_NOT_FOUND
    kloc["ski"] = ski
    return b"", SW_OK


def _put_kloc(se: SecureElement, cmd: CommandApdu) -> tuple[bytes, int]:
    """PUT KEY of the CA-KLOC key (KID 10; Amendment F): its issuer replaces (P1 = its KVN)
    or, on an SE without one, adds (P1 = 00) the CA key of the OCEs that may load keys.
    From the next chain on, only that CA's OCEs open SCP11a; an SE that had no CA-KLOC key
    from then on loads no key under SCP11b."""
    st = se.state
    try:
        kvn, point = parse_put_ec_public_key_data(cmd.data)
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except (GpError, ValueError):
        return b"", SW_WRONG_DATA
    current = st.get("kloc")
    if (current is None and cmd.p1 != 0) or (current is not None and cmd.p1 != current["kvn"]):
        return b"", SW_REFERENCED_DATA_NOT_FOUND
    # a new CA: the old one's allowlist (its certificates' serial numbers) and name go with it
    st["kloc"] = kloc_record(kvn, key)
    return bytes([kvn]), SW_OK


def _put_key(se: SecureElement, ch: Channel, cmd: CommandApdu) -> tuple[bytes, int]:
    st = se.state
    assert ch.session is not None
    if cmd.p2 == KLOC_KID:
        return _put_kloc(se, cmd)
    if cmd.p2 & 0x7F != 0x01:
        return b"", SW_INCORRECT_P1P2
    try:
        pk = parse_put_key_data(cmd.data, ch.session.key_dek)
        if len(pk.keys) != 3:
            raise KeyError_("a keyset is ENC, MAC and DEK")
        new = StaticKeys(*pk.keys)
    except GpError:
        return b"", SW_WRONG_DATA
    old = cmd.p1
    if old == 0:
        if pk.new_kvn in st["keysets"]:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        if len(st["keysets"]) >= MAX_KEYSETS:
            return b"", SW_NOT_ENOUGH_MEMORY
    else:
        if old not in st["keysets"]:
            return b"", SW_REFERENCED_DATA_NOT_FOUND
        if pk.new_kvn != old and pk.new_kvn in st["keysets"]:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        del st["keysets"][old]
        st["failed_authentications"].pop(old, None)
        if old in st["blocked_kvns"]:
            st["blocked_kvns"].remove(old)
    st["keysets"][pk.new_kvn] = {"enc": new.enc, "mac": new.mac, "dek": new.dek}
    st["failed_authentications"].pop(pk.new_kvn, None)
    if pk.new_kvn in st["blocked_kvns"]:
        st["blocked_kvns"].remove(pk.new_kvn)
    return pk.response(), SW_OK


def _delete(se: SecureElement, ch: Channel, cmd: CommandApdu) -> tuple[bytes, int]:
    """DELETE [card content] (GPCS 11.2) of an application instance; P2 b8 ("and related
    objects") deletes nothing more for one (an instance has no related object here: load
    files are in ROM, and refused with or without it).

    An instance selected on a logical channel is not deleted: 6985, nothing changed (GP
    Card Specification, Application Removal: the OPEN determines "that the Application is
    not currently selected on another logical channel"; Java Card RE 11.3.4.1: no deletion
    while an instance of its context is active). The DELETE itself reaches the ISD, so
    the channel holding the instance is always another one; once that channel closes or
    selects something else, the DELETE runs."""
    if cmd.p1 != 0x00 or cmd.p2 not in (0x00, 0x80):
        return b"", SW_INCORRECT_P1P2
    aid = _aid_filter(cmd.data)
    if aid == ISD_AID or aid in se.packages:  # load files are in ROM in this simulator
        return b"", SW_CONDITIONS_NOT_SATISFIED
    rec = se.app_record(aid)
    if rec is None or not aid:
        return b"", SW_REFERENCED_DATA_NOT_FOUND
    if se.channels_selecting(aid):  # in use: the registry, channels and image stay as they are
        return b"", SW_CONDITIONS_NOT_SATISFIED
    se.state["applications"].remove(rec)
    se.forget_applet(aid)
    return b"\x00", SW_OK


def _set_status(se: SecureElement, ch: Channel, cmd: CommandApdu) -> tuple[bytes, int]:
    st = se.state
    if cmd.p1 == 0x80:  # the card, through the ISD
        if cmd.data and cmd.data != ISD_AID:
            return b"", SW_WRONG_DATA
        if cmd.p2 == CARD_LOCKED and st["card_life_cycle"] == CARD_SECURED:
            st["card_life_cycle"] = CARD_LOCKED
        elif cmd.p2 == CARD_SECURED and st["card_life_cycle"] == CARD_LOCKED:
            st["card_life_cycle"] = CARD_SECURED
        elif cmd.p2 in (CARD_LOCKED, CARD_SECURED):
            return b"", SW_CONDITIONS_NOT_SATISFIED
        else:
            return b"", SW_INCORRECT_P1P2
        return b"", SW_OK
    if cmd.p1 in (0x40, 0x60):
        rec = se.app_record(cmd.data)
        if rec is None:
            return b"", SW_REFERENCED_DATA_NOT_FOUND
        lc = rec["life_cycle"]
        if cmd.p2 & LOCKED_BIT:
            if lc & LOCKED_BIT:
                return b"", SW_CONDITIONS_NOT_SATISFIED
            rec["life_cycle"] = lc | LOCKED_BIT
            for c in se.channels.values():  # a locked applet loses its selections
                if c.selected == rec["aid"]:
                    se._deselect(c)
        elif lc & LOCKED_BIT:
            rec["life_cycle"] = lc & 0x7F
        elif cmd.p2 & 0x07 == 0x07 and cmd.p2 > lc and lc >= APP_SELECTABLE:
            rec["life_cycle"] = cmd.p2  # application-specific state
        else:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        return b"", SW_OK
    return b"", SW_INCORRECT_P1P2


_HANDLERS = {
    INS_GET_DATA: _get_data,
    INS_GET_STATUS: _get_status,
    INS_INSTALL: _install,
    INS_STORE_DATA: _store_data,
    INS_PUT_KEY: _put_key,
    INS_DELETE: _delete,
    INS_SET_STATUS: _set_status,
}
