"""``python -m benchmarks scp03``: wrapped APDUs per second (host wrap + card unwrap +
card wrap response + host unwrap) at each security level, next to the raw AES-CMAC,
AES-CBC and AES-ECB floor measured in the same run; then full TSM sessions per second next
to the crypto they must do (``benchmarks/tsm.py``, also run alone as ``python -m benchmarks
tsm [--parts]``; ``--no-session`` skips them here).

Peer, in the same run: Yubico's SCP03 host (yubikit, from yubikey-manager; installed by
.ci/run with ``pip install --no-deps yubikey-manager==5.5.1``) at SL 33 against the same card
side, through its own APDU formatting and secure-messaging processor; the card side is ours
in both rows, so the difference is the host's.

The floor times each primitive the way a session can best use ``cryptography``: the key
set up once per session key (a keyed CMAC context copied per message, one ECB context for
the ICVs, the AES key object reused for CBC), because a session runs many messages under
the same keys; the implementation (``protocols.gp.crypto.KeyedAes``) does the same. The
ICVs are counted as ECB blocks, not as CBC operations."""

from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from protocols.gp.apdu import CommandApdu
from protocols.gp.scp03 import CardChannel, CardKeyset, HostChannel, StaticKeys

AID = bytes.fromhex("A000000151000000")
DATA_LEN = 64


def _rate(fn, seconds: float = 0.4) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        n += 200
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def _pair(level: int):
    keys = StaticKeys(os.urandom(16), os.urandom(16), os.urandom(16))
    host = HostChannel(keys, level, os.urandom(8), kvn=0x30)
    card = CardChannel(CardKeyset(0x30, keys), i=0x70, key_diversification_data=b"\x00" * 10, sd_aid=AID,
                       sequence_counter=1)
    r = card.initialize_update(CommandApdu.parse(host.initialize_update()))
    host.on_external_authenticate_response(card.external_authenticate(CommandApdu.parse(host.on_initialize_update_response(r))))
    return host, card


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks scp03")
    ap.add_argument("--no-session", action="store_true",
                    help="skip the full TSM sessions (benchmarks/tsm.py) after the APDU rates")
    ap.add_argument("--seconds", type=float, default=0.4,
                    help="how long each rate is measured (default 0.4 s; the smoke test asks for less)")
    ap.add_argument("--session-runs", type=int, default=None,
                    help="sessions per key type in the TSM part, and over the air (default: tsm's own)")
    args = ap.parse_args(argv)
    window = args.seconds
    key = os.urandom(16)
    payload = os.urandom(DATA_LEN + 16)

    aes = algorithms.AES(key)
    keyed_cmac = CMAC(aes)
    ecb = Cipher(aes, modes.ECB()).encryptor()
    block = os.urandom(16)

    def raw_cmac() -> None:
        c = keyed_cmac.copy()
        c.update(payload)
        c.finalize()

    def raw_cbc() -> None:
        e = Cipher(aes, modes.CBC(block)).encryptor()
        e.update(payload)
        e.finalize()

    def raw_ecb() -> None:
        ecb.update(block)

    cmac_rate, cbc_rate, ecb_rate = _rate(raw_cmac, window), _rate(raw_cbc, window), _rate(raw_ecb, window)
    print(f"SCP03 benchmark, AES-128, {DATA_LEN}-byte command and response data")
    print(f"  floor: AES-CMAC {cmac_rate:>10,.0f}/s   AES-CBC {cbc_rate:>10,.0f}/s   "
          f"AES-ECB block {ecb_rate:>10,.0f}/s")
    apdu = CommandApdu(0x80, 0xE2, 0x00, 0x00, os.urandom(DATA_LEN), 256).to_bytes()
    body = os.urandom(DATA_LEN)
    print(f"  {'SL':<4}{'round trips/s':>15}{'crypto ops':>12}{'floor/s':>12}{'ratio':>8}")
    rates: dict[int, float] = {}
    for level in (0x00, 0x01, 0x03, 0x11, 0x13, 0x33):
        host, card = _pair(level)

        def trip(host=host, card=card) -> None:
            plain = card.unwrap(CommandApdu.parse(host.wrap(apdu)))
            host.unwrap(card.wrap_response(body, 0x9000))
            assert plain.data is not None

        rate = rates[level] = _rate(trip, window)
        # crypto the round trip must do: CMAC per C-MAC/R-MAC (both sides), CBC and its ICV
        # (an ECB block) per C-DEC/R-ENC (both sides)
        n_cmac = (2 if level & 0x01 else 0) + (2 if level & 0x10 else 0)
        n_cbc = (2 if level & 0x02 else 0) + (2 if level & 0x20 else 0)
        n_ecb = n_cbc
        floor_s = n_cmac / cmac_rate + n_cbc / cbc_rate + n_ecb / ecb_rate
        floor = 1 / floor_s if floor_s else float("inf")
        ratio = f"{floor / rate:.2f}x" if floor_s else "-"
        print(f"  {level:02X}  {rate:>15,.0f}{n_cmac + n_cbc + n_ecb:>12}{floor:>12,.0f}{ratio:>8}")
    print("  ratio = floor rate / measured rate (1.00x = all time spent in the crypto floor)")
    ours_33 = rates[0x33]
    peer = _yubikit_rate(apdu, body, window)
    if peer is None:
        print("  yubikit (Yubico's SCP03 host): not installed (pip install --no-deps yubikey-manager==5.5.1)")
    else:
        print(f"  SL 33 host by yubikit (Yubico), same card side: {peer:>10,.0f}/s; ours {ours_33:,.0f}/s "
              f"= {ours_33 / peer:.2f}x yubikit's rate")
    _scp11_rows(window)
    _scp11a_rows(window)
    if not args.no_session:  # issue 3 asks for both in one run: the full session's figures
        from benchmarks import tsm

        print()
        tsm.main([] if args.session_runs is None else
                 ["--runs", str(args.session_runs), "--ota-runs", str(args.session_runs)])
    return 0


def _scp11_side_floor(peer, static, mac_key: bytes, msg: bytes) -> None:  # noqa: ANN001
    """One side of an SCP11 handshake's crypto: an ephemeral key, two ECDH (the second with
    the side's static key, or the ephemeral one again), the X9.63 KDF and the receipt's CMAC."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

    e = ec.generate_private_key(ec.SECP256R1())
    z = e.exchange(ec.ECDH(), peer) + (static or e).exchange(ec.ECDH(), peer)
    X963KDF(hashes.SHA256(), 80, b"\x3c\x88\x10").derive(z)
    c = CMAC(algorithms.AES(mac_key))
    c.update(msg)
    c.finalize()


def _scp11_rows(window: float) -> None:
    """SCP11b handshakes per second (INTERNAL AUTHENTICATE both sides, receipt checked),
    next to the crypto they must do, and yubikit's SCP11b host against the same card side."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocols.gp.scp11 import Scp11bCard, Scp11bHost

    sd = ec.generate_private_key(ec.SECP256R1())
    pk = sd.public_key()

    def ours() -> None:
        card = Scp11bCard(0x01, 0x13, lambda peer: sd.exchange(ec.ECDH(), peer))
        host = Scp11bHost(pk, 0x01)
        host.on_internal_authenticate_response(card.internal_authenticate(CommandApdu.parse(host.internal_authenticate())))

    peer_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    mac_key, msg = os.urandom(16), os.urandom(150)

    def floor() -> None:  # what both sides must compute: 2 ephemeral keys, 4 ECDH, 2 KDF, 2 CMAC
        _scp11_side_floor(peer_key, None, mac_key, msg)
        _scp11_side_floor(peer_key, None, mac_key, msg)

    def theirs(KeyRef, Scp11KeyParams, ScpState):  # noqa: ANN001, ANN202, N803 - yubikit's names
        params = Scp11KeyParams(KeyRef(0x13, 0x01), pk)

        def handshake() -> None:
            card = Scp11bCard(0x01, 0x13, lambda peer: sd.exchange(ec.ECDH(), peer))

            def send(cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
                return card.internal_authenticate(CommandApdu(cla, ins, p1, p2, data, 256))[:-2]

            ScpState.scp11_init(send, params)
        return handshake

    _handshake_rows("SCP11b", "P-256, both sides in one process", ours, floor, theirs, window)


def _scp11a_rows(window: float) -> None:
    """SCP11a handshakes per second: the OCE's certificate (PERFORM SECURITY OPERATION, the
    card verifying it under its CA-KLOC key) and MUTUAL AUTHENTICATE, both sides, next to the
    crypto they must do, and yubikit's SCP11a host against the same card side."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from protocols.gp.scp11 import OceChainCollector, Scp11aCard, Scp11aHost

    sd, ca, oce = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(oce.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.KeyUsage(False, False, False, False, True, False, False, False, False), True)
            .sign(ca, hashes.SHA256()))
    der = cert.public_bytes(Encoding.DER)
    pk, ca_pk = sd.public_key(), ca.public_key()

    def card_side(apdus: list[bytes]) -> list[bytes]:
        collector = OceChainCollector(ca_pk)
        for a in apdus[:-1]:
            collector.take(CommandApdu.parse(a))
        assert collector.oce_key is not None
        card = Scp11aCard(0x01, 0x11, lambda peer: sd.exchange(ec.ECDH(), peer), collector.oce_key)
        return [b"\x90\x00"] * (len(apdus) - 1) + [card.mutual_authenticate(CommandApdu.parse(apdus[-1]))]

    def ours() -> None:
        host = Scp11aHost(pk, 0x01, oce_certificates=[der], oce_exchange=lambda peer: oce.exchange(ec.ECDH(), peer))
        apdus = [*host.certificate_commands(), host.mutual_authenticate_pipelined()]
        answers = card_side(apdus)
        for a in answers[:-1]:
            host.on_certificate_response(a)
        host.on_mutual_authenticate_response(answers[-1])

    peer_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    mac_key, msg = os.urandom(16), os.urandom(150)

    def floor() -> None:  # 2 ephemeral keys, 4 ECDH, 2 KDF, 2 CMAC, and the card's ECDSA verify
        ca_pk.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        _scp11_side_floor(peer_key, oce, mac_key, msg)
        _scp11_side_floor(peer_key, sd, mac_key, msg)

    def theirs(KeyRef, Scp11KeyParams, ScpState):  # noqa: ANN001, ANN202, N803 - yubikit's names
        params = Scp11KeyParams(KeyRef(0x11, 0x01), pk, KeyRef(0x10, 0x01), oce, [cert])

        def handshake() -> None:
            sent: list[bytes] = []

            def send(cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
                sent.append(CommandApdu(cla, ins, p1, p2, data, 256 if ins == 0x82 else None).to_bytes())
                return card_side(sent)[-1][:-2] if ins == 0x82 else b""

            ScpState.scp11_init(send, params)
        return handshake

    _handshake_rows("SCP11a", "P-256, OCE certificate checked by the card", ours, floor, theirs, window)


def _handshake_rows(scp: str, what: str, ours, floor, theirs, window: float) -> None:  # noqa: ANN001
    """Our ``scp`` handshake's rate beside its crypto floor's, and yubikit's host
    (``theirs(KeyRef, Scp11KeyParams, ScpState)`` makes its handshake) beside ours."""
    rate, floor_rate = _rate(ours, window), _rate(floor, window)
    print(f"  {scp} handshake ({what}): {rate:>8,.0f}/s; its crypto floor {floor_rate:,.0f}/s = "
          f"{floor_rate / rate:.2f}x")
    try:
        from yubikit.core.smartcard.scp import KeyRef, Scp11KeyParams, ScpState
    except ImportError:
        print(f"  yubikit's {scp} host: not installed (pip install --no-deps yubikey-manager==5.5.1)")
        return
    peer_rate = _rate(theirs(KeyRef, Scp11KeyParams, ScpState), window)
    print(f"  {scp} host by yubikit (Yubico), same card side: {peer_rate:>8,.0f}/s; ours {rate:,.0f}/s "
          f"= {rate / peer_rate:.2f}x yubikit's rate")


def _yubikit_rate(apdu: bytes, body: bytes, window: float) -> float | None:
    """Round trips per second with yubikit's host (SmartCardProtocol after init_scp) and
    our CardChannel behind a connection that speaks bytes; None without yubikit."""
    try:
        from yubikit.core import TRANSPORT
        from yubikit.core.smartcard import SmartCardConnection, SmartCardProtocol
        from yubikit.core.smartcard.scp import KeyRef, Scp03KeyParams
        from yubikit.core.smartcard.scp import StaticKeys as YkKeys
    except ImportError:
        return None
    keys = StaticKeys(os.urandom(16), os.urandom(16), os.urandom(16))
    card = CardChannel(CardKeyset(0x30, keys), i=0x70, key_diversification_data=b"\x00" * 10, sd_aid=AID,
                       sequence_counter=1)

    class Card(SmartCardConnection):
        transport = TRANSPORT.USB

        def send_and_receive(self, raw: bytes) -> tuple[bytes, int]:
            cmd = CommandApdu.parse(raw)
            if cmd.ins == 0x50:
                resp = card.initialize_update(cmd)
            elif cmd.ins == 0x82:
                resp = card.external_authenticate(cmd)
            else:
                card.unwrap(cmd)
                resp = card.wrap_response(body, 0x9000)
            return resp[:-2], int.from_bytes(resp[-2:], "big")

        def close(self) -> None:
            pass

    proto = SmartCardProtocol(Card())
    proto.init_scp(Scp03KeyParams(KeyRef(0x01, 0x30), YkKeys(keys.enc, keys.mac, keys.dek)))
    cmd = CommandApdu.parse(apdu)
    return _rate(lambda: proto.send_apdu(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data or b""), window)


if __name__ == "__main__":
    raise SystemExit(main())
