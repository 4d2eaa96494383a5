"""The PC/SC bridge without pcscd: the vpcd protocol byte for byte (sans I/O), the virtual
card's power states, bad frames as typed errors, and the socket loop against a fake vpcd
on the loopback interface."""

from __future__ import annotations

import socket
import threading

import pytest

import wallet_sim
from wallet_sim import pcsc
from wallet_sim.pcsc import (
    CLOSED,
    NEED_DATA,
    Bridge,
    Command,
    EmptyMessage,
    GetAtr,
    LocalProtocolError,
    PowerOff,
    PowerOn,
    Reset,
    TruncatedMessage,
    UnknownControl,
    VirtualCard,
    VpcdConnection,
)

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_ISD = bytes.fromhex("00A4040008A000000151000000")


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


class FakeSe:
    """Counts insertions (power-on / reset) and echoes APDUs with 9000."""

    def __init__(self) -> None:
        self.inserted = 0
        self.seen: list[tuple[int, bytes]] = []

    def insert(self):
        self.inserted += 1
        n = self.inserted

        def transmit(apdu: bytes) -> bytes:
            self.seen.append((n, apdu))
            return apdu[:2] + b"\x90\x00"

        return transmit


# --- the protocol ------------------------------------------------------------------------


def test_atrs():
    assert pcsc.PHONE_ATR == bytes.fromhex("3B80800101")
    # PC/SC Part 3 with historical bytes: T0 = 8n, TCK makes the XOR of T0..TCK zero
    atr = pcsc.pseudo_atr(b"\x00" * 4 + bytes.fromhex("00817100"))
    assert atr[:4] == bytes.fromhex("3B888001") and len(atr) == 13
    x = 0
    for b in atr[1:]:
        x ^= b
    assert x == 0
    assert pcsc.JPKI_CARD_ATR == bytes.fromhex("3BE000FF8131FE4514")
    with pytest.raises(ValueError):
        pcsc.pseudo_atr(b"x" * 16)


def test_control_messages_and_apdu_byte_for_byte():
    c = VpcdConnection()
    c.receive_data(b"\x00\x01\x01" b"\x00\x01\x04")
    assert c.next_event() == PowerOn()
    assert not c.reply_owed
    assert c.next_event() == GetAtr()
    assert c.reply_owed
    assert c.send_reply(bytes.fromhex("3B80800101")) == bytes.fromhex("00053B80800101")
    assert c.next_event() is NEED_DATA
    c.receive_data(bytes.fromhex("000400A40400"))
    assert c.next_event() == Command(bytes.fromhex("00A40400"))
    assert c.send_reply(b"\x6a\x82") == bytes.fromhex("00026A82")
    c.receive_data(b"\x00\x01\x02\x00\x01\x00")
    assert c.next_event() == Reset()
    assert c.next_event() == PowerOff()
    c.receive_data(b"")
    assert c.next_event() is CLOSED
    assert c.next_event() is CLOSED


def test_messages_split_anywhere_reassemble():
    wire = frame(b"\x01") + frame(SELECT_JPKI) + frame(b"\x04")
    for cut in range(len(wire) + 1):
        for step in (1, 3):
            c = VpcdConnection()
            events = []
            chunks = [wire[:cut]] + [wire[i : i + step] for i in range(cut, len(wire), step)]
            for chunk in filter(None, chunks):  # b"" would mean end of stream
                c.receive_data(chunk)
                while (e := c.next_event()) is not NEED_DATA:
                    events.append(e)
                    if c.reply_owed:
                        c.send_reply(b"\x90\x00")
            assert events == [PowerOn(), Command(SELECT_JPKI), GetAtr()], (cut, step)


def test_long_apdus_use_the_whole_16_bit_length():
    apdu = bytes.fromhex("80E80000000400") + bytes(1024)
    c = VpcdConnection()
    c.receive_data(frame(apdu))
    assert c.next_event() == Command(apdu)
    answer = bytes(600) + b"\x90\x00"
    assert c.send_reply(answer) == b"\x02\x5a" + answer


def test_bad_frames_are_typed_and_skipped():
    c = VpcdConnection()
    c.receive_data(b"\x00\x00" + b"\x00\x01\x07" + frame(b"\x04"))
    with pytest.raises(EmptyMessage) as e1:
        c.next_event()
    assert not e1.value.fatal
    with pytest.raises(UnknownControl) as e2:
        c.next_event()
    assert e2.value.code == 0x07 and not e2.value.fatal
    assert c.next_event() == GetAtr()  # the stream goes on after a skipped message


def test_truncated_message_at_eof_is_fatal():
    for tail in (b"\x00", b"\x00\x05\x00\xa4"):
        c = VpcdConnection()
        c.receive_data(tail)
        assert c.next_event() is NEED_DATA
        c.receive_data(b"")
        with pytest.raises(TruncatedMessage) as exc:
            c.next_event()
        assert exc.value.fatal
        assert c.next_event() is CLOSED


def test_local_misuse_is_refused():
    c = VpcdConnection()
    with pytest.raises(LocalProtocolError):
        c.send_reply(b"\x90\x00")  # nobody asked
    c.receive_data(frame(b"\x04"))
    c.next_event()
    with pytest.raises(LocalProtocolError):
        c.next_event()  # the ATR is still owed
    with pytest.raises(LocalProtocolError):
        c.send_reply(b"")  # would mean "card removed"
    with pytest.raises(LocalProtocolError):
        c.send_reply(bytes(0x10000))
    assert c.send_reply(b"\x3b\x00")
    c.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        c.receive_data(b"\x00")


# --- the card ----------------------------------------------------------------------------


def test_power_cycle_reinserts_the_se():
    se = FakeSe()
    card = VirtualCard(se.insert)
    assert not card.powered and card.handle(GetAtr()) == pcsc.PHONE_ATR
    assert card.handle(PowerOn()) is None and se.inserted == 1
    assert card.handle(PowerOn()) is None and se.inserted == 1  # already on
    assert card.handle(Command(SELECT_JPKI)) == b"\x00\xa4\x90\x00"
    assert card.handle(Reset()) is None and se.inserted == 2
    assert card.handle(PowerOff()) is None and not card.powered
    # a command to an unpowered card powers it first
    assert card.handle(Command(b"\x00\xb0\x00\x00")) == b"\x00\xb0\x90\x00"
    assert se.inserted == 3 and [n for n, _ in se.seen] == [1, 3]


def test_se_faults_answer_6f00_and_never_raise():
    def broken():
        def transmit(apdu):
            raise RuntimeError("torn image")

        return transmit

    card = VirtualCard(broken)
    assert card.handle(Command(SELECT_JPKI)) == b"\x6f\x00"
    assert "RuntimeError: torn image" in card.faults[0]

    def gone():
        raise wallet_sim.PhoneNotFoundError("no phone")

    card = VirtualCard(gone)
    card.handle(PowerOn())
    assert card.handle(Command(SELECT_JPKI)) == b"\x6f\x00"
    assert any("PhoneNotFoundError" in f for f in card.faults)

    card = VirtualCard(lambda: (lambda apdu: b"\x90"))  # not a response APDU
    assert card.handle(Command(SELECT_JPKI)) == b"\x6f\x00"


def test_bridge_feed_bytes_in_bytes_out():
    se = FakeSe()
    b = Bridge(VirtualCard(se.insert, atr=pcsc.JPKI_CARD_ATR))
    step = b.feed(frame(b"\x01") + frame(b"\x04") + frame(SELECT_JPKI)[:5])
    assert step.send == frame(pcsc.JPKI_CARD_ATR) and not step.closed
    assert step.events == [PowerOn(), GetAtr()]
    step = b.feed(frame(SELECT_JPKI)[5:] + b"\x00\x00" + b"\x00\x01\x09")
    assert step.send == frame(b"\x00\xa4\x90\x00")
    assert [type(e).__name__ for e in step.errors] == ["EmptyMessage", "UnknownControl"]
    step = b.feed(b"\x00\x07\x00")
    assert step.send == b"" and not step.closed
    step = b.feed(b"")
    assert step.closed and isinstance(step.errors[0], TruncatedMessage)


def test_bridge_on_a_real_phone(home):
    """The adapter over a factory-fresh SE: SELECT of the ISD answers its FCI, an unknown
    AID (OpenSC's PIV probe) 6A82, both relayed unchanged."""
    pid = wallet_sim.create_phone(home)
    se = wallet_sim.open_secure_element(pid, home)
    fci = se.transmit(SELECT_ISD)
    assert fci[-2:] == b"\x90\x00" and len(fci) > 2
    b = Bridge(VirtualCard(lambda: wallet_sim.open_secure_element(pid, home).transmit))
    step = b.feed(frame(b"\x01") + frame(SELECT_ISD)
                  + frame(bytes.fromhex("00A4040C07A000000079010500")))
    assert step.send == frame(fci) + frame(b"\x6a\x82")


# --- the socket loop against a fake vpcd ----------------------------------------------------


class FakeVpcd:
    """A listening socket playing vpcd: accepts the bridge, then the test drives it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(5)
        self.port = self.server.getsockname()[1]

    def accept(self) -> socket.socket:
        conn, _ = self.server.accept()
        conn.settimeout(5)
        return conn

    @staticmethod
    def ask(conn: socket.socket, payload: bytes) -> bytes:
        conn.sendall(len(payload).to_bytes(2, "big"))  # as vpcd: length, then payload
        conn.sendall(payload)
        n = int.from_bytes(_recv_exactly(conn, 2), "big")
        return _recv_exactly(conn, n)

    def close(self) -> None:
        self.server.close()


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        assert chunk, "bridge closed the connection"
        out += chunk
    return out


def _run_serve(**kwargs):
    said: list[str] = []
    stop = threading.Event()
    result: dict = {}

    def run():
        result["served"] = pcsc.serve(say=said.append, stop=stop, retry_interval=0.05,
                                      poll_interval=0.05, **kwargs)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, stop, said, result


def test_serve_relays_reconnects_and_stops(home):
    pid = wallet_sim.create_phone(home)
    vpcd = FakeVpcd()
    t, stop, said, result = _run_serve(
        insert=lambda: wallet_sim.open_secure_element(pid, home).transmit, port=vpcd.port)
    try:
        conn = vpcd.accept()
        conn.sendall(frame(b"\x01"))  # power on: no answer
        assert FakeVpcd.ask(conn, b"\x04") == pcsc.PHONE_ATR
        assert FakeVpcd.ask(conn, SELECT_JPKI) == b"\x6a\x82"  # no JPKI-AP installed yet
        assert FakeVpcd.ask(conn, SELECT_ISD)[-2:] == b"\x90\x00"
        conn.sendall(b"\x00\x01\x09")  # unknown control: skipped, connection kept
        assert FakeVpcd.ask(conn, b"\x04") == pcsc.PHONE_ATR
        conn.close()  # vpcd went away: the bridge reconnects
        conn = vpcd.accept()
        assert FakeVpcd.ask(conn, b"\x04") == pcsc.PHONE_ATR
        stop.set()
        t.join(5)
        assert not t.is_alive() and result["served"] == 2
        conn.close()
    finally:
        stop.set()
        vpcd.close()
    text = "\n".join(said)
    assert "power on" in text and "unknown vpcd control code 09" in text
    assert text.count("connected to vpcd") == 2


def test_a_tapping_phone_leaves_after_the_power_off_that_ends_its_reading(home):
    """``tap=True``: a power-off with no APDU since power-on keeps the phone (pcscd probing
    it); the first power-off after APDUs takes it away, and it comes back (a new connection)."""
    pid = wallet_sim.create_phone(home)
    vpcd = FakeVpcd()
    t, stop, said, result = _run_serve(
        insert=lambda: wallet_sim.open_secure_element(pid, home).transmit, port=vpcd.port, tap=True)
    try:
        conn = vpcd.accept()
        conn.sendall(frame(b"\x01") + frame(b"\x00"))  # a probe: power on, off, no APDU
        assert FakeVpcd.ask(conn, b"\x04") == pcsc.PHONE_ATR  # still there
        conn.sendall(frame(b"\x01"))
        assert FakeVpcd.ask(conn, SELECT_ISD)[-2:] == b"\x90\x00"
        conn.sendall(frame(b"\x00"))  # the reader lifts its field: the phone goes
        conn.settimeout(5)
        assert conn.recv(16) == b""  # the bridge closed its connection: the card is removed
        conn.close()
        again = vpcd.accept()  # and it comes back for the next tap
        assert FakeVpcd.ask(again, b"\x04") == pcsc.PHONE_ATR
        stop.set()
        t.join(5)
        again.close()
    finally:
        stop.set()
        vpcd.close()
    assert "the phone is taken away from the reader" in "\n".join(said)


def test_serve_once_and_waiting_for_vpcd(home):
    pid = wallet_sim.create_phone(home)
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    t, stop, said, result = _run_serve(
        insert=lambda: wallet_sim.open_secure_element(pid, home).transmit, port=port, once=True)
    try:
        deadline = threading.Event()
        for _ in range(100):
            if any("waiting for vpcd" in s for s in said):
                break
            deadline.wait(0.02)
        assert any("waiting for vpcd" in s for s in said)
        server = socket.create_server(("127.0.0.1", port))
        server.settimeout(5)
        conn, _ = server.accept()
        conn.settimeout(5)
        assert FakeVpcd.ask(conn, b"\x04") == pcsc.PHONE_ATR
        conn.sendall(b"\x00\x05\x00")  # then dies inside a message
        conn.close()
        t.join(5)
        assert not t.is_alive() and result["served"] == 1  # --once: no reconnection
        server.close()
    finally:
        stop.set()
    assert any("connection closed inside a message" in s for s in said)


def test_cli_trace_hides_pin_data(monkeypatch, capsys):
    """``mcred --trace phone pcsc`` shows APDU pairs but never a PIN, password or PUK."""
    from mcred.cli import phone_cmds
    from mcred.cli.state import OPTIONS

    monkeypatch.setattr(OPTIONS, "trace", True)
    transmit = phone_cmds._pcsc_transport(lambda apdu: b"\x63\xc2")
    transmit(bytes.fromhex("0020008004") + b"1234")
    transmit(bytes.fromhex("002C000010") + b"8765432112345678")
    transmit(bytes.fromhex("00B0000004"))
    err = capsys.readouterr().err
    assert "31323334" not in err and "3837363534333231" not in err
    assert "<4 bytes hidden>" in err and "<16 bytes hidden>" in err
    assert "A>> pcsc  (0005) 00B0000004" in err and "63C2" in err
