"""GlobalPlatform SCP03 secure channel, host and card side, sans-I/O
(GlobalPlatform Card Specification v2.3 Amendment D v1.2).

* :class:`HostChannel` is the off-card entity (a TSM): it builds INITIALIZE UPDATE,
  checks the card cryptogram, builds EXTERNAL AUTHENTICATE, then wraps commands and
  unwraps responses.
* :class:`CardChannel` is the security domain's side: it answers INITIALIZE UPDATE,
  verifies EXTERNAL AUTHENTICATE, then unwraps commands and wraps responses.

Both take and give bytes only. Randomness (host challenge, random card challenge) and the
card's sequence counter are parameters; persistence is the caller's business.

Secure messaging (Amendment D 6.2): C-MAC over ``chaining value || header || Lc || data``
with the full 16-byte CMAC as the next chaining value (6.2.4); C-DECRYPTION with AES-CBC,
ICV = AES(S-ENC, counter as 16 bytes), the counter incremented before every command while
C-DECRYPTION is on, with or without data (6.2.6); R-MAC over ``chaining value || data ||
SW`` only on 9000/62xx/63xx (6.2.5); R-ENCRYPTION only when there is data, ICV = AES(S-ENC,
80 || counter as 15 bytes) (6.2.7). The MAC covers the class byte as transmitted (logical
channel bits included, SM bit set).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

from protocols.gp.apdu import (
    CommandApdu,
    ResponseApdu,
    channel_of,
    clear_secure_messaging,
    has_secure_messaging,
    set_secure_messaging,
    sw_is_success_or_warning,
    with_channel,
)
from protocols.gp.codes import INS_EXTERNAL_AUTHENTICATE, INS_INITIALIZE_UPDATE
from protocols.gp.crypto import (
    DDC_CARD_CHALLENGE,
    DDC_CARD_CRYPTOGRAM,
    DDC_HOST_CRYPTOGRAM,
    DDC_S_ENC,
    DDC_S_MAC,
    DDC_S_RMAC,
    KeyedAes,
    check_aes_key,
    kdf,
    pad80,
    unpad80,
)
from protocols.gp.errors import (
    ApduError,
    GpError,
    KeyError_,
    Scp03AuthenticationError,
    Scp03Error,
    Scp03MacError,
    Scp03PaddingError,
    Scp03ProtocolError,
    Scp03SecurityLevelError,
    Scp03StateError,
    Scp11ProtocolError,
)

# Security level bits (GPCS 10.6.2 / Amendment D 7.1.2.1).
C_MAC = 0x01
C_DECRYPTION = 0x02
R_MAC = 0x10
R_ENCRYPTION = 0x20
SECURITY_LEVELS = (0x00, 0x01, 0x03, 0x11, 0x13, 0x33)

# i parameter bits (Amendment D Table 5-1).
I_S16 = 0x01
I_PSEUDO_RANDOM = 0x10
I_RMAC = 0x20
I_RENC = 0x40

SEQUENCE_COUNTER_MAX = 0xFFFFFF


def check_security_level(level: int, i: int | None = None) -> int:
    if level not in SECURITY_LEVELS:
        raise Scp03SecurityLevelError(
            f"security level {level:02X} is not one of 00 01 03 11 13 33"
        )
    if i is not None:
        if level & R_MAC and not i & I_RMAC:
            raise Scp03SecurityLevelError(
                f"security level {level:02X} needs R-MAC, which i = {i:02X} does not support"
            )
        if level & R_ENCRYPTION and not i & I_RENC:
            raise Scp03SecurityLevelError(
                f"security level {level:02X} needs R-ENCRYPTION, which i = {i:02X} does not support"
            )
    return level


@dataclass(frozen=True)
class StaticKeys:
    """A keyset's static keys K-ENC, K-MAC, K-DEK (AES, all the same length)."""

    enc: bytes
    mac: bytes
    dek: bytes

    def __post_init__(self) -> None:
        for name in ("enc", "mac", "dek"):
            check_aes_key(getattr(self, name), f"K-{name.upper()}")
        if not len(self.enc) == len(self.mac) == len(self.dek):
            raise KeyError_("K-ENC, K-MAC and K-DEK differ in length")

    def __repr__(self) -> str:  # never print key bytes
        return f"StaticKeys(AES-{len(self.enc) * 8})"


@dataclass(frozen=True)
class SessionKeys:
    """S-ENC, S-MAC, S-RMAC (Amendment D 6.2.1)."""

    s_enc: bytes
    s_mac: bytes
    s_rmac: bytes | None = None

    def __repr__(self) -> str:
        return "SessionKeys(...)"


@dataclass(frozen=True)
class InitializeUpdateResponse:
    """The card's answer to INITIALIZE UPDATE (Amendment D Table 7-2)."""

    key_diversification_data: bytes
    kvn: int
    scp: int
    i: int
    card_challenge: bytes
    card_cryptogram: bytes
    sequence_counter: bytes | None

    @property
    def s16(self) -> bool:
        return bool(self.i & I_S16)

    def to_bytes(self) -> bytes:
        return (
            self.key_diversification_data
            + bytes([self.kvn, self.scp, self.i])
            + self.card_challenge
            + self.card_cryptogram
            + (self.sequence_counter or b"")
        )

    @classmethod
    def parse(cls, data: bytes) -> InitializeUpdateResponse:
        if len(data) < 13:
            raise Scp03ProtocolError(f"INITIALIZE UPDATE response of {len(data)} bytes is too short")
        kdd = bytes(data[:10])
        kvn, scp, i = data[10], data[11], data[12]
        if scp != 0x03:
            raise Scp03ProtocolError(f"card answered SCP {scp:02X} at offset 11, expected 03")
        n = 16 if i & I_S16 else 8
        want = 13 + 2 * n + (3 if i & I_PSEUDO_RANDOM else 0)
        if len(data) != want:
            raise Scp03ProtocolError(
                f"INITIALIZE UPDATE response is {len(data)} bytes; i = {i:02X} implies {want}"
            )
        seq = bytes(data[13 + 2 * n :]) if i & I_PSEUDO_RANDOM else None
        return cls(kdd, kvn, scp, i, bytes(data[13 : 13 + n]), bytes(data[13 + n : 13 + 2 * n]), seq)


def derive_session_keys(keys: StaticKeys, host_challenge: bytes, card_challenge: bytes) -> SessionKeys:
    """Amendment D 6.2.1: context = host challenge || card challenge, L = key length."""
    return _session_keys(keys.enc, keys.mac, len(keys.enc) * 8, host_challenge + card_challenge)


def _session_keys(enc: bytes | KeyedAes, mac: bytes | KeyedAes, lb: int, ctx: bytes) -> SessionKeys:
    """:func:`derive_session_keys` from K-ENC and K-MAC (as bytes, or set up once for the
    handshake), L = ``lb`` bits, context ``ctx``."""
    return SessionKeys(
        s_enc=kdf(enc, DDC_S_ENC, lb, ctx),
        s_mac=kdf(mac, DDC_S_MAC, lb, ctx),
        s_rmac=kdf(mac, DDC_S_RMAC, lb, ctx),
    )


def card_cryptogram(s_mac: bytes | KeyedAes, host_challenge: bytes, card_challenge: bytes, n: int) -> bytes:
    """Amendment D 6.2.2.2."""
    return kdf(s_mac, DDC_CARD_CRYPTOGRAM, n * 8, host_challenge + card_challenge)


def host_cryptogram(s_mac: bytes | KeyedAes, host_challenge: bytes, card_challenge: bytes, n: int) -> bytes:
    """Amendment D 6.2.2.3."""
    return kdf(s_mac, DDC_HOST_CRYPTOGRAM, n * 8, host_challenge + card_challenge)


def pseudo_random_card_challenge(k_enc: bytes | KeyedAes, sequence_counter: bytes, sd_aid: bytes,
                                 n: int) -> bytes:
    """Amendment D 6.2.2.1: KDF(K-ENC, 02, L, sequence counter || SD AID)."""
    return kdf(k_enc, DDC_CARD_CHALLENGE, n * 8, sequence_counter + sd_aid)


class SecureMessaging:
    """The per-session secure messaging state shared by both sides: session keys, level,
    MAC chaining value and encryption counter (Amendment D 6.2.3 to 6.2.7)."""

    def __init__(self, keys: SessionKeys, level: int, mac_len: int = 8,
                 chaining_value: bytes = b"\x00" * 16, counter: int = 0, *,
                 s_mac: KeyedAes | None = None) -> None:
        """``s_mac``: S-MAC already set up (the handshake computed the cryptograms with it)."""
        check_security_level(level)
        if level & R_MAC and keys.s_rmac is None:
            raise Scp03SecurityLevelError("R-MAC requested but there is no S-RMAC")
        if mac_len not in (8, 16):
            raise Scp03Error(f"MAC length {mac_len} is neither 8 (S8) nor 16 (S16)")
        self.keys = keys
        self.level = level
        self.mac_len = mac_len
        self.chaining_value = chaining_value
        self.counter = counter
        # the session keys' AES contexts, set up once for the whole session
        self._enc = KeyedAes(keys.s_enc)
        self._mac = s_mac if s_mac is not None else KeyedAes(keys.s_mac)
        self._rmac = KeyedAes(keys.s_rmac) if keys.s_rmac is not None else None

    # -- helpers
    def _command_icv_block(self) -> bytes:
        """The block whose encipherment under S-ENC is the C-DECRYPTION ICV (the counter)."""
        return self.counter.to_bytes(16, "big")

    def _response_icv_block(self) -> bytes:
        """The block whose encipherment under S-ENC is the R-ENCRYPTION ICV (0x80, counter)."""
        return b"\x80" + self.counter.to_bytes(15, "big")

    def _command_icv(self) -> bytes:
        return self._enc.ecb_block(self._command_icv_block())

    def _response_icv(self, counter: int | None = None) -> bytes:
        c = self.counter if counter is None else counter
        return self._enc.ecb_block(b"\x80" + c.to_bytes(15, "big"))

    # -- host side
    def wrap_fields(self, cla: int, ins: int, p1: int, p2: int, data: bytes,
                    ne: int | None, extended: bool) -> bytes:
        """The wrapped command APDU, as bytes, for a plain command given by its fields
        (C-DECRYPTION then C-MAC, Amendment D 6.2.4, 6.2.6). The encoding is the one
        :class:`CommandApdu` gives the secured command (SM bit set, the MAC appended,
        Lc' extended when the plain command was or the wrapped data exceeds 255 bytes,
        Le kept), built without the intermediate objects."""
        if self.level == 0:
            return CommandApdu(cla, ins, p1, p2, data, ne, extended).to_bytes()
        if self.level & C_DECRYPTION:
            self.counter += 1
            if data:
                data = self._enc.cbc_encrypt_icv(self._command_icv_block(), pad80(data))
        n = len(data) + self.mac_len
        if n > 65535:
            raise ApduError("wrapped data field would exceed 65535 bytes")
        ext = extended or n > 255 or (ne is not None and ne > 256)
        head = bytes((set_secure_messaging(cla), ins, p1, p2))
        lc = b"\x00" + n.to_bytes(2, "big") if ext else bytes((n,))
        full = self._mac.cmac(self.chaining_value + head + lc + data)
        self.chaining_value = full
        if ne is None:
            le = b""
        elif ext:
            le = (ne % 65536).to_bytes(2, "big")  # Lc is present: no leading 00
        else:
            le = bytes((ne % 256,))
        return head + lc + data + full[: self.mac_len] + le

    def wrap_command(self, plain: CommandApdu) -> CommandApdu:
        """C-DECRYPTION then C-MAC (Amendment D 6.2.4, 6.2.6)."""
        if self.level == 0:
            return plain
        return CommandApdu.parse(self.wrap_fields(plain.cla, plain.ins, plain.p1, plain.p2,
                                                  plain.data, plain.ne, plain.extended))

    def unwrap_response(self, resp: ResponseApdu) -> ResponseApdu:
        """Verify R-MAC, then decipher R-ENCRYPTION (Amendment D 6.2.5, 6.2.7)."""
        if not self.level & R_MAC:
            return resp
        data, sw = self.unwrap_parts(resp.data, resp.sw)
        return ResponseApdu(data, sw)

    def unwrap_parts(self, data: bytes, sw: int, *, command: tuple[bytes, int] | None = None) -> tuple[bytes, int]:
        """:meth:`unwrap_response` on a response given as its data field and status word;
        returns the plain data and the status word. ``command``: the MAC chaining value and
        encryption counter of the command this answers, when others were wrapped since
        (pipelined commands, :meth:`HostChannel.wrap_pipelined`); else the current ones."""
        chaining, counter = command if command is not None else (self.chaining_value, self.counter)
        if not self.level & R_MAC:
            return data, sw
        if not sw_is_success_or_warning(sw):
            if data:
                raise Scp03MacError(
                    f"response with SW {sw:04X} carries {len(data)} unprotected data bytes"
                )
            return data, sw
        if len(data) < self.mac_len:
            raise Scp03MacError(
                f"response with SW {sw:04X} has {len(data)} bytes, no room for a {self.mac_len}-byte R-MAC"
            )
        body, mac = data[: -self.mac_len], data[-self.mac_len :]
        assert self._rmac is not None  # checked in __init__ for levels with R-MAC
        want = self._rmac.cmac(chaining + body + sw.to_bytes(2, "big"))
        if not hmac.compare_digest(want[: self.mac_len], mac):
            raise Scp03MacError(f"R-MAC of the response with SW {sw:04X} does not verify")
        if self.level & R_ENCRYPTION and body:
            if len(body) % 16:
                raise Scp03PaddingError(f"R-ENC data of {len(body)} bytes is not a multiple of 16")
            body = unpad80(self._enc.cbc_decrypt(self._response_icv(counter), body))
        return body, sw

    # -- card side
    def unwrap_command(self, wrapped: CommandApdu) -> CommandApdu:
        """Verify C-MAC, then decipher C-DECRYPTION data (card side of 6.2.4, 6.2.6)."""
        if self.level == 0:
            return wrapped
        if not has_secure_messaging(wrapped.cla):
            raise Scp03MacError(f"CLA {wrapped.cla:02X} does not indicate secure messaging")
        if len(wrapped.data) < self.mac_len:
            raise Scp03MacError(
                f"data field of {len(wrapped.data)} bytes has no room for a {self.mac_len}-byte C-MAC"
            )
        wdata = wrapped.data
        data, mac = wdata[: -self.mac_len], wdata[-self.mac_len :]
        n = len(wdata)
        lc = b"\x00" + n.to_bytes(2, "big") if wrapped.uses_extended else bytes((n,))
        full = self._mac.cmac(b"".join((self.chaining_value, bytes((wrapped.cla, wrapped.ins, wrapped.p1,
                                                                    wrapped.p2)), lc, data)))
        if not hmac.compare_digest(full[: self.mac_len], mac):
            raise Scp03MacError(
                f"C-MAC of command {wrapped.cla:02X}{wrapped.ins:02X}{wrapped.p1:02X}{wrapped.p2:02X} does not verify"
            )
        self.chaining_value = full
        if self.level & C_DECRYPTION:
            self.counter += 1
            if data:
                if len(data) % 16:
                    raise Scp03PaddingError(f"C-DEC data of {len(data)} bytes is not a multiple of 16")
                data = unpad80(self._enc.cbc_decrypt(self._command_icv(), data))
        return CommandApdu(clear_secure_messaging(wrapped.cla), wrapped.ins, wrapped.p1,
                           wrapped.p2, data, wrapped.ne, False)

    def wrap_response(self, data: bytes, sw: int) -> bytes:
        """R-ENCRYPTION then R-MAC; error status words travel bare (6.2.5, 6.2.7)."""
        swb = sw.to_bytes(2, "big")
        if not self.level & R_MAC:
            return data + swb
        if not sw_is_success_or_warning(sw):
            return swb
        if self.level & R_ENCRYPTION and data:
            data = self._enc.cbc_encrypt_icv(self._response_icv_block(), pad80(data))
        assert self._rmac is not None  # checked in __init__ for levels with R-MAC
        mac = self._rmac.cmac(self.chaining_value + data + swb)[: self.mac_len]
        return data + mac + swb


class HostState(Enum):
    IDLE = "idle"
    INITIALIZE_UPDATE_SENT = "initialize_update_sent"
    EXTERNAL_AUTHENTICATE_SENT = "external_authenticate_sent"
    #: SCP11 (protocols.gp.scp11): INTERNAL or MUTUAL AUTHENTICATE sent
    AUTHENTICATE_SENT = "authenticate_sent"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class Pipelined:
    """A command wrapped by :meth:`HostChannel.wrap_pipelined`: its bytes, and the MAC
    chaining value and encryption counter its answer is unwrapped with."""

    wrapped: bytes
    state: tuple[bytes, int]


class _Messaging:
    """What either side of an open channel shows of its secure messaging state."""

    _sm: SecureMessaging | None

    @property
    def mac_chaining_value(self) -> bytes:
        return self._sm.chaining_value if self._sm else b"\x00" * 16

    @property
    def encryption_counter(self) -> int:
        return self._sm.counter if self._sm else 0


class SecureHost(_Messaging):
    """The off-card side of an open secure channel, whatever authenticated it (SCP03 here,
    SCP11 in :mod:`protocols.gp.scp11`): plain commands in, wrapped commands out, and the
    card's answers verified and deciphered. A subclass runs the handshake and sets
    ``_sm`` and the state ``OPEN``."""

    channel: int
    state: HostState

    @property
    def key_dek(self) -> bytes:
        """The key that enciphers key components for this session's PUT KEY."""
        raise NotImplementedError

    #: the errors of this protocol's handshake (SCP11 has its own)
    _state_error: type[GpError] = Scp03StateError
    _protocol_error: type[Scp03ProtocolError] | type[Scp11ProtocolError] = Scp03ProtocolError

    def _fail(self, err: GpError) -> GpError:
        self.state = HostState.CLOSED
        self._sm = None
        return err

    def _answer_to(self, outstanding: HostState, command: str, resp: bytes) -> ResponseApdu:
        """The card's 9000 answer to the handshake ``command`` sent in state
        ``outstanding``; any other answer (or none outstanding) fails the channel."""
        if self.state is not outstanding:
            raise self._state_error(f"no {command} outstanding (state {self.state.value})")
        return self._accepted(command, resp)

    def _accepted(self, command: str, resp: bytes) -> ResponseApdu:
        """The card's answer to ``command``, when it parses and is 9000; else the channel
        fails."""
        try:
            r = ResponseApdu.parse(resp)
        except ApduError as e:
            raise self._fail(self._protocol_error(str(e))) from e
        if r.sw != 0x9000:
            raise self._fail(self._protocol_error(f"{command} refused with SW {r.sw:04X}", r.sw))
        return r

    def wrap(self, apdu: bytes) -> bytes:
        """Secure one plain command APDU for the card (:meth:`wrap_apdu` checks the state)."""
        return self.wrap_apdu(CommandApdu.parse(apdu))

    def wrap_apdu(self, plain: CommandApdu) -> bytes:
        """:meth:`wrap` for a command already held as a :class:`CommandApdu` (no encoding
        and parsing of the plain command in between)."""
        if self.state is not HostState.OPEN or self._sm is None:
            raise Scp03StateError(f"secure channel is not open (state {self.state.value})")
        if has_secure_messaging(plain.cla):
            raise Scp03Error(f"plain command CLA {plain.cla:02X} already indicates secure messaging")
        if channel_of(plain.cla) != self.channel:
            raise Scp03Error(
                f"command on logical channel {channel_of(plain.cla)}, session on {self.channel}")
        return self._sm.wrap_fields(plain.cla, plain.ins, plain.p1, plain.p2, plain.data,
                                    plain.ne, plain.extended)

    def unwrap_apdu(self, resp: bytes, *, command: Pipelined | None = None) -> ResponseApdu:
        """:meth:`unwrap` returning the plain response as a :class:`ResponseApdu`;
        ``command``: the pipelined command it answers (:meth:`wrap_pipelined`)."""
        if self.state is not HostState.OPEN or self._sm is None:
            raise Scp03StateError(f"secure channel is not open (state {self.state.value})")
        if len(resp) < 2:
            raise self._fail(Scp03ProtocolError(f"response APDU of {len(resp)} bytes has no status word"))
        try:
            data, sw = self._sm.unwrap_parts(bytes(resp[:-2]), (resp[-2] << 8) | resp[-1],
                                             command=None if command is None else command.state)
        except Scp03Error as e:
            raise self._fail(e) from e
        return ResponseApdu(data, sw)

    def wrap_pipelined(self, plain: CommandApdu) -> Pipelined:
        """:meth:`wrap_apdu`, keeping what the answer's R-MAC and R-ENC depend on (this
        command's C-MAC, the chaining value, and the encryption counter), so that several
        commands can be wrapped and sent before their answers come: each answer is then
        unwrapped with ``unwrap_apdu(resp, command=that)``, in any order. Amendment D
        chains the C-MACs only, so the wrapped commands are the ones sent one at a time."""
        wrapped = self.wrap_apdu(plain)
        assert self._sm is not None
        return Pipelined(wrapped, (self._sm.chaining_value, self._sm.counter))

    def unwrap(self, resp: bytes) -> bytes:
        """Verify and decipher one response; return plain ``data || SW``. A bad R-MAC closes
        the channel."""
        return self.unwrap_apdu(resp).to_bytes()

    def close(self) -> None:
        self.state = HostState.CLOSED
        self._sm = None


class HostChannel(SecureHost):
    """Off-card side of SCP03. Typical use::

        host = HostChannel(keys, 0x33, host_challenge=os.urandom(8))
        r = transmit(host.initialize_update())
        r = transmit(host.on_initialize_update_response(r))
        host.on_external_authenticate_response(r)
        plain = host.unwrap(transmit(host.wrap(apdu)))

    ``host_challenge`` of 16 bytes selects S16 mode. ``sd_aid``, when given, makes the host
    also check a pseudo-random card challenge against the sequence counter.
    """

    def __init__(self, static_keys: StaticKeys, security_level: int, host_challenge: bytes,
                 kvn: int = 0, *, channel: int = 0, sd_aid: bytes | None = None,
                 required_i: int | None = None) -> None:
        check_security_level(security_level)
        if len(host_challenge) not in (8, 16):
            raise Scp03Error(f"host challenge of {len(host_challenge)} bytes; S8 uses 8, S16 16")
        if not 0 <= kvn <= 0x7F:
            raise Scp03Error(f"KVN {kvn:02X} is outside 00..7F")
        self.static_keys = static_keys
        self.security_level = security_level
        self.host_challenge = bytes(host_challenge)
        self.kvn = kvn
        self.channel = channel
        self.sd_aid = sd_aid
        self.required_i = required_i
        self.state = HostState.IDLE
        self.card: InitializeUpdateResponse | None = None
        self.session_keys: SessionKeys | None = None
        self._sm: SecureMessaging | None = None

    @property
    def n(self) -> int:
        return len(self.host_challenge)

    @property
    def key_dek(self) -> bytes:
        return self.static_keys.dek

    def initialize_update(self, *, with_le: bool = True) -> bytes:
        """INITIALIZE UPDATE (Amendment D 7.1.1): P1 = KVN (00: first available)."""
        if self.state is not HostState.IDLE:
            raise Scp03StateError(f"INITIALIZE UPDATE already sent (state {self.state.value})")
        self.state = HostState.INITIALIZE_UPDATE_SENT
        return CommandApdu(with_channel(0x80, self.channel), INS_INITIALIZE_UPDATE, self.kvn, 0x00,
                           self.host_challenge, 256 if with_le else None).to_bytes()

    def on_initialize_update_response(self, resp: bytes) -> bytes:
        """Check the card's answer and cryptogram; return EXTERNAL AUTHENTICATE."""
        r = self._answer_to(HostState.INITIALIZE_UPDATE_SENT, "INITIALIZE UPDATE", resp)
        try:
            iu = InitializeUpdateResponse.parse(r.data)
        except Scp03Error as e:
            raise self._fail(e) from e
        if iu.s16 != (self.n == 16):
            raise self._fail(Scp03ProtocolError(
                f"card i = {iu.i:02X} does not match the {self.n}-byte host challenge"))
        if self.kvn and iu.kvn != self.kvn:
            raise self._fail(Scp03ProtocolError(f"card answered KVN {iu.kvn:02X}, asked {self.kvn:02X}"))
        if self.required_i is not None and iu.i != self.required_i:
            raise self._fail(Scp03ProtocolError(f"card i = {iu.i:02X}, required {self.required_i:02X}"))
        try:
            check_security_level(self.security_level, iu.i)
        except Scp03Error as e:
            raise self._fail(e) from e
        # each key set up once for the values derived from it (K-ENC twice, K-MAC twice,
        # S-MAC for both cryptograms and then the session's C-MACs)
        enc, static = KeyedAes(self.static_keys.enc), self.static_keys
        keys = _session_keys(enc, KeyedAes(static.mac), len(static.enc) * 8,
                             self.host_challenge + iu.card_challenge)
        s_mac = KeyedAes(keys.s_mac)
        want = card_cryptogram(s_mac, self.host_challenge, iu.card_challenge, self.n)
        if not hmac.compare_digest(want, iu.card_cryptogram):
            raise self._fail(Scp03AuthenticationError("card cryptogram does not verify: wrong keys or a false card"))
        if self.sd_aid is not None and iu.sequence_counter is not None:
            expect = pseudo_random_card_challenge(enc, iu.sequence_counter, self.sd_aid, self.n)
            if not hmac.compare_digest(expect, iu.card_challenge):
                raise self._fail(Scp03AuthenticationError("pseudo-random card challenge does not match the sequence counter"))
        self.card = iu
        self.session_keys = keys
        hc = host_cryptogram(s_mac, self.host_challenge, iu.card_challenge, self.n)
        self._sm = SecureMessaging(keys, C_MAC, self.n, s_mac=s_mac)
        ea = self._sm.wrap_command(CommandApdu(with_channel(0x80, self.channel), INS_EXTERNAL_AUTHENTICATE,
                                               self.security_level, 0x00, hc))
        self.state = HostState.EXTERNAL_AUTHENTICATE_SENT
        return ea.to_bytes()

    def on_external_authenticate_response(self, resp: bytes) -> None:
        """9000 opens the channel at the requested level; anything else closes it."""
        self._answer_to(HostState.EXTERNAL_AUTHENTICATE_SENT, "EXTERNAL AUTHENTICATE", resp)
        assert self._sm is not None
        self._sm.level = self.security_level
        self.state = HostState.OPEN


class CardState(Enum):
    IDLE = "idle"
    INITIALIZED = "initialized"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class CardKeyset:
    """The card's view of one SCP03 keyset."""

    kvn: int
    keys: StaticKeys


class SecureCard(_Messaging):
    """The card side of an open secure channel, whatever authenticated it (SCP03 here, SCP11
    in :mod:`protocols.gp.scp11`): wrapped commands in, plain ones out, and the answers
    wrapped. A subclass runs the handshake and sets ``_sm`` and the state ``OPEN``."""

    state: CardState
    #: the host proved who it is (SCP03: its cryptogram; SCP11b: never)
    oce_authenticated = True

    @property
    def is_open(self) -> bool:
        return self.state is CardState.OPEN

    @property
    def key_dek(self) -> bytes:
        """The key that deciphers PUT KEY's key components in this session."""
        raise NotImplementedError

    def close(self) -> None:
        self.state = CardState.CLOSED
        self._sm = None

    def unwrap(self, cmd: CommandApdu) -> CommandApdu:
        """Verify and decipher one command; any failure ends the session."""
        if self.state is not CardState.OPEN or self._sm is None:
            raise Scp03StateError("no open secure channel")
        try:
            return self._sm.unwrap_command(cmd)
        except Scp03Error:
            self.close()
            raise

    def wrap_response(self, data: bytes, sw: int) -> bytes:
        if self.state is not CardState.OPEN or self._sm is None:
            return data + sw.to_bytes(2, "big")
        return self._sm.wrap_response(data, sw)


class CardChannel(SecureCard):
    """Security domain side of SCP03 for one session.

    SCP03 authenticates both sides (:attr:`oce_authenticated`).

    The caller (the SE runtime) has already chosen the keyset for INITIALIZE UPDATE's P1
    and the sequence counter value this session uses; it persists the counter and counts
    failed authentications. ``card_challenge`` is required for a random challenge
    (``i`` without 10) and otherwise overrides the pseudo-random one (test vectors only).
    """

    def __init__(self, keyset: CardKeyset, *, i: int, key_diversification_data: bytes,
                 sd_aid: bytes, sequence_counter: int, card_challenge: bytes | None = None) -> None:
        if len(key_diversification_data) != 10:
            raise Scp03Error("key diversification data must be 10 bytes")
        if not 0 <= sequence_counter <= SEQUENCE_COUNTER_MAX:
            raise Scp03Error(f"sequence counter {sequence_counter} is outside 0..FFFFFF")
        self.keyset = keyset
        self.i = i
        self.kdd = bytes(key_diversification_data)
        self.sd_aid = bytes(sd_aid)
        self.sequence_counter = sequence_counter
        self._card_challenge = card_challenge
        self.n = 16 if i & I_S16 else 8
        self.state = CardState.IDLE
        self.security_level = 0
        self.channel = 0
        self.session_keys: SessionKeys | None = None
        self._host_challenge = b""
        self._card_challenge_used = b""
        self._s_mac: KeyedAes | None = None
        self._sm: SecureMessaging | None = None

    @property
    def key_dek(self) -> bytes:
        """The keyset's K-DEK."""
        return self.keyset.keys.dek

    def close(self) -> None:
        super().close()
        self.session_keys = None
        self._s_mac = None

    def initialize_update(self, cmd: CommandApdu) -> bytes:
        """Answer INITIALIZE UPDATE (Amendment D 7.1.1); returns the response APDU."""
        if self.state is not CardState.IDLE:
            raise Scp03StateError(f"INITIALIZE UPDATE in state {self.state.value}")
        if cmd.ins != INS_INITIALIZE_UPDATE or has_secure_messaging(cmd.cla):
            raise Scp03ProtocolError("not a plain INITIALIZE UPDATE", 0x6E00)
        if cmd.p2 != 0x00:
            raise Scp03ProtocolError(f"INITIALIZE UPDATE P2 = {cmd.p2:02X}, expected 00", 0x6A86)
        if len(cmd.data) != self.n:
            raise Scp03ProtocolError(
                f"host challenge of {len(cmd.data)} bytes; this card (i = {self.i:02X}) takes {self.n}", 0x6700)
        self.channel = cmd.channel
        self._host_challenge = cmd.data
        seq = self.sequence_counter.to_bytes(3, "big")
        static = self.keyset.keys
        enc = KeyedAes(static.enc)  # the challenge and S-ENC
        if self._card_challenge is not None:
            cc = self._card_challenge
        elif self.i & I_PSEUDO_RANDOM:
            cc = pseudo_random_card_challenge(enc, seq, self.sd_aid, self.n)
        else:
            raise Scp03Error("a random card challenge must be supplied by the caller")
        if len(cc) != self.n:
            raise Scp03Error(f"card challenge of {len(cc)} bytes, expected {self.n}")
        self._card_challenge_used = cc
        keys = _session_keys(enc, KeyedAes(static.mac), len(static.enc) * 8, cmd.data + cc)
        self.session_keys = keys
        # S-MAC set up once: the card cryptogram, then the host's and the session's C-MACs
        self._s_mac = KeyedAes(keys.s_mac)
        crypt = card_cryptogram(self._s_mac, cmd.data, cc, self.n)
        iu = InitializeUpdateResponse(self.kdd, self.keyset.kvn, 0x03, self.i, cc, crypt,
                                      seq if self.i & I_PSEUDO_RANDOM else None)
        self.state = CardState.INITIALIZED
        return iu.to_bytes() + b"\x90\x00"

    def external_authenticate(self, cmd: CommandApdu) -> bytes:
        """Verify EXTERNAL AUTHENTICATE (Amendment D 7.1.2). Raises on failure after
        closing the session; the caller answers 6300 (or the error's ``sw``)."""
        if self.state is not CardState.INITIALIZED or self.session_keys is None:
            self.close()
            raise Scp03StateError("EXTERNAL AUTHENTICATE without a preceding INITIALIZE UPDATE")
        try:
            level = check_security_level(cmd.p1, self.i)
        except Scp03SecurityLevelError as e:
            self.close()
            raise Scp03ProtocolError(str(e), 0x6A86) from e
        if cmd.p2 != 0x00 or len(cmd.data) != 2 * self.n or channel_of(cmd.cla) != self.channel:
            self.close()
            raise Scp03ProtocolError("malformed EXTERNAL AUTHENTICATE", 0x6A80)
        s_mac = self._s_mac if self._s_mac is not None else KeyedAes(self.session_keys.s_mac)
        sm = SecureMessaging(self.session_keys, C_MAC, self.n, s_mac=s_mac)
        try:
            plain = sm.unwrap_command(cmd)
        except Scp03Error as e:
            self.close()
            raise Scp03MacError(f"EXTERNAL AUTHENTICATE: {e}") from e
        want = host_cryptogram(s_mac, self._host_challenge, self._card_challenge_used, self.n)
        if not hmac.compare_digest(want, plain.data):
            self.close()
            raise Scp03AuthenticationError("host cryptogram does not verify")
        sm.level = level
        self._sm = sm
        self.security_level = level
        self.state = CardState.OPEN
        return b"\x90\x00"
