"""The GP-SE simulator: one object per phone behind ``transmit(apdu) -> bytes``.

It plays a GlobalPlatform card (GPCS 2.3.1): logical channels (ISO/IEC 7816-4 5.4.1,
MANAGE CHANNEL 11.1.2 of ISO/IEC 7816-4), SELECT by AID, the Issuer Security Domain with
SCP03 (Amendment D) and card content management (``wallet_sim.se.isd``), and routes every
other command to the applet selected on the channel. Its NVM image is written atomically
after each command that changed it, so a phone outlives the process that made it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from protocols.gp.apdu import CommandApdu, ResponseApdu, channel_of, has_secure_messaging, response
from protocols.gp.errors import ApduError
from protocols.gp.scp03 import SecureCard
from wallet_sim.se import isd
from wallet_sim.se.applet import Applet, CommandContext
from wallet_sim.se.constants import (
    APP_SELECTABLE,
    CARD_LOCKED,
    INS_GET_RESPONSE,
    INS_MANAGE_CHANNEL,
    INS_SELECT,
    ISD_AID,
    LOCKED_BIT,
    MAX_CHANNELS,
    SW1_BYTES_REMAINING,
    SW_CHAINING_NOT_SUPPORTED,
    SW_CHANNEL_NOT_SUPPORTED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_INCORRECT_P1P2,
    SW_NOT_ENOUGH_MEMORY,
    SW_OK,
    SW_SM_NOT_SUPPORTED,
    SW_WRONG_LENGTH,
)
from wallet_sim.se.errors import SeStateError
from wallet_sim.se.store import DEFAULT_NVM, ImageFile, StateEncoder, decode_state


def _default_applet_classes() -> tuple[dict[bytes, type[Applet]], dict[bytes, tuple[bytes, ...]]]:
    """The applets shipped in ``wallet_sim.applets`` (absent: none installable)."""
    try:
        from wallet_sim import applets
    except ImportError:
        return {}, {}
    classes = dict(getattr(applets, "APPLET_CLASSES", {}))
    packages = dict(getattr(applets, "PACKAGES", {}))
    return classes, packages


@dataclass
class Channel:
    """Volatile per-channel state (lost at power-off, as on a card)."""

    number: int
    selected: bytes | None = ISD_AID
    session: SecureCard | None = None
    perso_target: bytes | None = None
    extra: dict = field(default_factory=dict)


class _NvmFull(Exception):
    """The image a command left is larger than the SE's NVM (and than before it)."""


class SecureElement:
    """A persisted GP-SE. Build it with :func:`wallet_sim.open_secure_element`."""

    def __init__(self, path: Path, *, applet_classes: dict[bytes, type[Applet]] | None = None,
                 packages: dict[bytes, tuple[bytes, ...]] | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.path = Path(path)
        self._path_str = str(self.path)
        if applet_classes is None:
            applet_classes, default_packages = _default_applet_classes()
            packages = default_packages if packages is None else packages
        self.applet_classes = dict(applet_classes)
        self.packages = dict(packages) if packages else {m: (m,) for m in self.applet_classes}
        self.random_bytes = random_bytes
        self._image = ImageFile(self.path)
        self._load()

    # -- persistence
    def _load(self) -> None:
        self._image.close()  # (re)loaded: the slot files are opened again by name when needed
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise SeStateError(f"cannot read SE image {self.path}: {e}") from e
        self._take_image(raw)
        self._unsaved = False
        self._stamp = self._file_stamp()
        self.channels: dict[int, Channel] = {0: Channel(0)}

    def _take_image(self, raw: bytes) -> None:
        """The state as ``raw`` (the image) holds it; every applet object rebuilt from it at
        its next use."""
        self.state = decode_state(raw, self.path)
        # what the image holds, to compare with (a second decode: nothing aliases the state)
        self._encoder = StateEncoder(decode_state(raw, self.path, check=False))
        self._saved_bytes = raw
        self._applets: dict[bytes, Applet] = {}

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self._path_str)  # per command: without pathlib's own overhead
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload_if_changed(self) -> None:
        try:
            if self._file_stamp() != self._stamp:
                self._load()  # another process wrote this SE: like a re-inserted card
        except OSError:
            pass

    @property
    def nvm_capacity(self) -> int:
        """Bytes of NVM for the image (an image made before capacities: the default)."""
        cap = self.state.get("nvm_capacity", DEFAULT_NVM)
        return cap if type(cap) is int and cap > 0 else DEFAULT_NVM

    def nvm_free(self) -> int:
        """NVM left after the image as last written (GET DATA FF21, `mcred phone show`)."""
        return max(0, self.nvm_capacity - len(self._saved_bytes))

    def _roll_back(self) -> None:
        """Drop the effects of the command being processed: the state and the encoder's
        record go back to the image as last written, and every applet object is rebuilt
        from it at its next use (its volatile state, such as a verified PIN, is lost, as
        when a card aborts a transaction). Channels, selections and secure channel
        sessions stay: the command failed, the session did not."""
        self._take_image(self._saved_bytes)

    def _persist(self) -> None:
        """Write the NVM image if this command changed it, before the answer leaves.

        The live state (the ISD's map with each applet's fresh snapshot) is compared with
        the image last written, entry by entry (:class:`~wallet_sim.se.store.StateEncoder`,
        which keeps each top-level entry and each application record as written); only
        when one differs is the map encoded, re-encoding just the entries that changed,
        and written (:class:`~wallet_sim.se.store.ImageFile`, all or nothing). Most
        commands (SELECT, GET STATUS, GET DATA, READ STATE, a refusal) change nothing and
        cost a comparison instead of an encoding."""
        for app in self.state["applications"]:
            obj = self._applets.get(app["aid"])
            if obj is not None:
                app["state"] = obj.snapshot()
        try:
            data = self._encoder.encode(self.state, force=self._unsaved)
        except SeStateError:
            # the state holds what the image must not (check_plain: a fault in the SE's
            # own code): nothing was written, so drop this command's effects and go on from
            # the image, as a card whose write was aborted does (sessions end, as at a reset)
            self._load()
            raise
        if data is None or (data == self._saved_bytes and not self._unsaved):
            return  # unchanged, or equal once encoded (a tuple where the image has a list)
        if len(data) > self.nvm_capacity and len(data) > len(self._saved_bytes):
            # more than the NVM holds (a command that frees or keeps the size always may)
            raise _NvmFull(len(data))
        self._unsaved = True  # until the write below is known to have landed
        # the image this object last wrote or read is the active one: transmit() checked
        # the file's stamp on entry (another writer makes it reload first)
        self._stamp = self._image.write(data, active_inode=self._stamp[0])
        self._saved_bytes = data
        self._unsaved = False

    def persisted_image(self) -> bytes:
        """The bytes of the NVM image as last written (for tests and audits)."""
        return self.path.read_bytes()

    # -- registry helpers
    def app_record(self, aid: bytes) -> dict | None:
        for app in self.state["applications"]:
            if app["aid"] == aid:
                return app
        return None

    def applet(self, aid: bytes) -> Applet:
        obj = self._applets.get(aid)
        if obj is None:
            rec = self.app_record(aid)
            assert rec is not None
            obj = self.applet_classes[rec["module_aid"]](aid)
            obj.restore(rec["state"])
            self._applets[aid] = obj
        return obj

    def channels_selecting(self, aid: bytes) -> list[int]:
        """The logical channels on which ``aid`` is the selected application (volatile:
        the channels of this object, as the card's runtime knows its own)."""
        return sorted(ch.number for ch in self.channels.values() if ch.selected == aid)

    def forget_applet(self, aid: bytes) -> None:
        """Drop a deleted instance's object and every volatile reference to it. DELETE
        refuses an instance selected on a channel (``isd._delete``), so no selection is left
        to clear; an INSTALL [for personalization] target on another channel is, and its
        next STORE DATA answers 6985 (no target)."""
        self._applets.pop(aid, None)
        for ch in self.channels.values():
            if ch.selected == aid:  # defensive: DELETE never gets here with one
                ch.selected = None
            if ch.perso_target == aid:
                ch.perso_target = None

    def context(self, ch: Channel) -> CommandContext:
        s = ch.session
        open_ = s is not None and s.is_open
        return CommandContext(channel=ch.number, secure_channel=open_,
                              security_level=s.security_level if open_ and s else 0)

    # -- transport
    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; return response data || SW1 SW2."""
        self._reload_if_changed()
        try:
            cmd = CommandApdu.parse(apdu)
        except ApduError:
            return response(SW_WRONG_LENGTH)
        if cmd.cla == 0xFF or cmd.cla & 0xE0 == 0x20:  # invalid, or RFU (ISO/IEC 7816-4 5.4.1)
            return response(SW_CLA_NOT_SUPPORTED)
        ch = self.channels.get(channel_of(cmd.cla))
        if ch is None:
            return response(SW_CHANNEL_NOT_SUPPORTED)
        rest = ch.extra.pop(_PENDING, None)  # any command but GET RESPONSE drops what is left
        if cmd.ins == INS_GET_RESPONSE and not cmd.cla & 0x80 and not has_secure_messaging(cmd.cla):
            return _get_response(cmd, ch, rest)
        manage = cmd.ins == INS_MANAGE_CHANNEL and not cmd.cla & 0x80
        select = cmd.ins == INS_SELECT and cmd.p1 == 0x04 and not cmd.cla & 0x80
        if manage or select or ch.selected == ISD_AID:
            # the runtime and the ISD take no command chaining (GP's long data is STORE DATA's
            # numbered blocks), and the ISD no class outside GPCS 11.1.4's (nor A0-BF)
            if cmd.cla & 0x10:
                return response(SW_CHAINING_NOT_SUPPORTED)
            if cmd.cla & 0xE0 == 0xA0:
                return response(SW_CLA_NOT_SUPPORTED)
        try:
            if manage:
                out = self._manage_channel(cmd, ch)
            elif select:
                out = self._select(cmd, ch)
            elif ch.selected == ISD_AID:
                out = isd.process(self, ch, cmd)
            elif ch.selected is None:
                out = response(SW_FILE_NOT_FOUND)
            else:
                out = self._to_applet(ch, apdu)
        finally:
            try:
                self._persist()
            except _NvmFull:
                # the command would not fit: undone, and refused with 6A84 (bare, as an
                # error status word travels in a secure channel session)
                self._roll_back()
                out = response(SW_NOT_ENOUGH_MEMORY)
        return _fit(cmd, self.channels.get(ch.number), out)

    def _to_applet(self, ch: Channel, apdu: bytes) -> bytes:
        assert ch.selected is not None
        try:
            out = self.applet(ch.selected).process(apdu, self.context(ch))
            ResponseApdu.parse(out)
        except Exception:  # an applet fault must not take the card down (JCRE: 6F00)
            self._applets.pop(ch.selected, None)  # drop volatile, possibly torn, state
            return response(0x6F00)
        return out

    def _deselect(self, ch: Channel) -> None:
        if ch.selected == ISD_AID:
            if ch.session is not None:
                ch.session.close()
            ch.session = None
            ch.perso_target = None
            ch.extra.pop("get_status", None)
        elif ch.selected is not None and ch.selected in self._applets:
            self._applets[ch.selected].deselect(self.context(ch))
        ch.selected = None

    def _select(self, cmd: CommandApdu, ch: Channel) -> bytes:
        if has_secure_messaging(cmd.cla):
            return response(SW_SM_NOT_SUPPORTED)
        if cmd.p2 & 0xF0:  # ISO/IEC 7816-4 11.2.2: b8-b5 of P2 are RFU
            return response(SW_INCORRECT_P1P2)
        if cmd.p2 & 0x03:  # next / last occurrence: not supported (nor partial AIDs)
            return response(SW_FUNCTION_NOT_SUPPORTED)
        aid = cmd.data
        if not aid or aid == ISD_AID:
            if ch.selected != ISD_AID:
                self._deselect(ch)
            else:  # re-selecting the ISD ends its secure channel session
                if ch.session is not None:
                    ch.session.close()
                ch.session, ch.perso_target = None, None
                ch.extra.pop("get_status", None)
            ch.selected = ISD_AID
            # P2 b4-b3 = 11: no response data (ISO/IEC 7816-4 table 63); else the FCI
            return response(SW_OK, b"" if cmd.p2 & 0x0C == 0x0C else isd.fci(self))
        rec = self.app_record(aid)
        if (rec is None or rec["life_cycle"] & LOCKED_BIT or (rec["life_cycle"] & 0x7F) < APP_SELECTABLE
                or self.state["card_life_cycle"] == CARD_LOCKED):
            return response(SW_FILE_NOT_FOUND)
        self._deselect(ch)
        ch.selected = aid
        try:
            out = self.applet(aid).select(cmd.p2, self.context(ch))
            r = ResponseApdu.parse(out)
        except Exception:
            ch.selected = None
            return response(0x6F00)
        if r.sw != SW_OK:
            ch.selected = None
        return out

    def _manage_channel(self, cmd: CommandApdu, ch: Channel) -> bytes:
        if has_secure_messaging(cmd.cla):
            return response(SW_SM_NOT_SUPPORTED)
        if cmd.p1 == 0x00:  # open
            if cmd.p2 == 0:
                free = [n for n in range(1, MAX_CHANNELS) if n not in self.channels]
                if not free:
                    return response(SW_FUNCTION_NOT_SUPPORTED)
                n = free[0]
            elif not 1 <= cmd.p2 < MAX_CHANNELS or cmd.p2 in self.channels:
                return response(SW_INCORRECT_P1P2)
            else:
                n = cmd.p2
            new = self.channels[n] = Channel(n)
            # opened from the basic channel: the ISD is selected on it; from a supplementary
            # one: that channel's application (ISO/IEC 7816-4 11.1.2, GP 2.3.1 11.1.2)
            if ch.number != 0 and ch.selected not in (None, ISD_AID):
                new.selected = ch.selected
                try:
                    selected = ResponseApdu.parse(self.applet(ch.selected).select(0x0C, self.context(new))).sw
                except Exception:
                    selected = None
                if selected != SW_OK:  # the application refused it: no channel opened
                    del self.channels[n]
                    return response(SW_CONDITIONS_NOT_SATISFIED)
            return response(SW_OK, bytes([n]) if cmd.p2 == 0 else b"")
        if cmd.p1 == 0x80:  # close
            n = cmd.p2 or ch.number
            if n == 0:
                return response(SW_FUNCTION_NOT_SUPPORTED)
            target = self.channels.get(n)
            if target is None:
                return response(SW_CHANNEL_NOT_SUPPORTED)
            self._deselect(target)
            del self.channels[n]
            return response(SW_OK)
        return response(SW_INCORRECT_P1P2)

    def reset(self) -> None:
        """Power cycle: every channel, selection and secure channel session is lost."""
        for ch in list(self.channels.values()):
            self._deselect(ch)
        self.channels = {0: Channel(0)}

    # -- facts for `mcred phone show`
    def describe(self) -> dict:
        from wallet_sim.se.constants import CARD_LIFE_CYCLE_NAMES, app_life_cycle_name
        from wallet_sim.se.store import decode_cplc

        st = self.state
        apps = []
        for rec in st["applications"]:
            try:
                details = self.applet(rec["aid"]).describe()
            except Exception as e:  # describe must never fail the whole report
                details = {"error": f"{type(e).__name__}"}
            apps.append({
                "aid": rec["aid"].hex().upper(),
                "module_aid": rec["module_aid"].hex().upper(),
                "load_file_aid": rec["elf_aid"].hex().upper(),
                "life_cycle": app_life_cycle_name(rec["life_cycle"]),
                "details": details,
            })
        return {
            "cplc": decode_cplc(st["cplc"]),
            "key_diversification_data": st["kdd"].hex().upper(),
            "card_life_cycle": CARD_LIFE_CYCLE_NAMES.get(st["card_life_cycle"], hex(st["card_life_cycle"])),
            "security_domains": [{
                "aid": st["isd"]["aid"].hex().upper(),
                "role": "ISD",
                "life_cycle": app_life_cycle_name(st["isd"]["life_cycle"]),
                "keysets": [{"kvn": f"{kvn:02X}", "scp": "03", "i": "70",
                             "key_length": len(ks["enc"]),
                             "blocked": kvn in st["blocked_kvns"],
                             "failed_authentications": st["failed_authentications"].get(kvn, 0)}
                            for kvn, ks in sorted(st["keysets"].items())],
                "sequence_counter": f"{st['sequence_counter']:06X}",
                "scp11_keys": _scp11_keys(st),
            }],
            "applets": apps,
            "memory": {"nvm_capacity": self.nvm_capacity, "nvm_used": len(self._saved_bytes),
                       "nvm_free": self.nvm_free()},
        }


#: Channel.extra key: the part of an answer a short Le did not take, and its status word
_PENDING = "response"


def _fit(cmd: CommandApdu, ch: Channel | None, out: bytes) -> bytes:
    """The answer to a short command: at most Ne data bytes (256 without a Le field, the most
    a short response carries); the rest waits on the channel for GET RESPONSE, announced by
    61xx (ISO/IEC 7816-4 5.3.4, 11.7.1). An extended command takes its answer whole."""
    limit = 256 if cmd.ne is None else cmd.ne
    if cmd.extended or len(out) - 2 <= limit or ch is None:
        return out
    ch.extra[_PENDING] = (out[limit:-2], out[-2:])
    return _more(out[:limit], len(out) - 2 - limit)


def _more(data: bytes, left: int) -> bytes:
    return data + bytes((SW1_BYTES_REMAINING, left if left < 256 else 0))


def _get_response(cmd: CommandApdu, ch: Channel, pending: tuple[bytes, bytes] | None) -> bytes:
    """GET RESPONSE (ISO/IEC 7816-4 11.7.1) ``CLA C0 00 00 Le``: the next Ne bytes of the
    answer left on this channel, 61xx while more remain, else the answer's own status word.
    Nothing left: 6985. Refusals keep what is left."""
    if cmd.p1 or cmd.p2:
        out = response(SW_INCORRECT_P1P2)
    elif cmd.data or cmd.ne is None:
        out = response(SW_WRONG_LENGTH)
    elif pending is None:
        return response(SW_CONDITIONS_NOT_SATISFIED)
    else:
        rest, sw = pending
        if len(rest) <= cmd.ne:
            return rest + sw
        ch.extra[_PENDING] = (rest[cmd.ne:], sw)
        return _more(rest[:cmd.ne], len(rest) - cmd.ne)
    ch.extra[_PENDING] = pending
    return out


def _scp11_keys(st: dict) -> list[dict]:
    """The SCP11 keys' references and their maker's certificates, and the CA-KLOC key
    (public facts only)."""
    import hashlib

    from cryptography import x509

    out = []
    for field_, kid, scp in (("scp11a", "11", "11a"), ("scp11", "13", "11b")):
        key = st.get(field_)
        if key is None:
            continue
        leaf = x509.load_der_x509_certificate(key["certs"][-1])
        out.append({"kid": kid, "kvn": f"{key['kvn']:02X}", "scp": scp, "curve": "P-256",
                    "certificate": {"subject": leaf.subject.rfc4514_string(), "issuer": leaf.issuer.rfc4514_string(),
                                    "not_after": leaf.not_valid_after_utc.isoformat(),
                                    "sha256": hashlib.sha256(key["certs"][-1]).hexdigest()}})
    kloc = st.get("kloc")
    if kloc is not None:
        out.append({"kid": "10", "kvn": f"{kloc['kvn']:02X}", "scp": "CA-KLOC", "curve": "P-256",
                    "public_key_sha256": hashlib.sha256(kloc["pk"]).hexdigest(),
                    "ca_ski": isd.kloc_ski(kloc).hex(),
                    # the OCE certificates it still accepts (None: any it signed)
                    "allowlist": [f"{n:X}" for n in kloc["allow"]] if "allow" in kloc else None})
    return out
