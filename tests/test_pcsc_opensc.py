"""Real OpenSC against the phone's JPKI applet, through pcscd, vsmartcard's vpcd and
``mcred phone pcsc`` (specs/pcsc-bridge.md, "What was verified").

A phone is provisioned with RSA-2048 keys (OpenSC's ``jpki`` driver knows no other), the
bridge puts it in vpcd's reader, and the OpenSC command-line tools must detect it as a JPKI
card, list both certificates and both PINs with their tries, read the certificates the
issuer issued, and sign with the user-authentication and signing keys through PKCS #11;
with the card's ATR, detect it without a probe; and show a PIN blocked through it as such.

Skipped, saying what is missing, when pcscd, the vpcd driver or OpenSC are not installed
(``.ci/run`` installs them). Every wait is bounded; every process started here is ended.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding

import wallet_sim
from mcred.context import Context
from mcred.provision import parse_holder, provision

pytestmark = pytest.mark.pcsc

HOLDER = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ",
          "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
          "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区"}
PIN, PASSWORD, PUK = "4321", "JPKI2026", "87654321"
VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PKCS11_MODULES = (Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"),
                  Path("/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so"),
                  Path("/usr/lib/opensc-pkcs11.so"))
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
TOOL_TIMEOUT = 30  # seconds for any one OpenSC command
READY_TIMEOUT = 20  # seconds for pcscd to come up and to see the phone


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _pkcs11_module() -> Path | None:
    return next((p for p in PKCS11_MODULES if p.exists()), None)


def _missing() -> list[str]:
    out = [f"{tool} (Debian package {pkg})" for tool, pkg in (
        ("pcscd", "pcscd"), ("opensc-tool", "opensc"), ("pkcs15-tool", "opensc"),
        ("pkcs11-tool", "opensc")) if _which(tool) is None]
    if not VPCD_DRIVER.exists():
        out.append(f"{VPCD_DRIVER} (Debian package vsmartcard-vpcd)")
    if _pkcs11_module() is None:
        out.append("opensc-pkcs11.so (Debian package opensc)")
    return out


def _pcscd_running() -> bool:
    if not PCSCD_SOCKET.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(PCSCD_SOCKET))
        except OSError:
            return False
    return True


def _system_vpcd_port() -> int:
    try:
        m = re.search(r"^\s*CHANNELID\s+(0x[0-9A-Fa-f]+|\d+)", VPCD_CONF.read_text(), re.M)
    except OSError:
        m = None
    return int(m.group(1), 0) if m else 35963


def _free_port_pair() -> int:
    """A port P with P and P+1 free: Debian's vpcd makes two readers, on P and P+1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("0.0.0.0", port))
                b.bind(("0.0.0.0", port + 1))
            return port
        except OSError:
            continue
    pytest.fail("no two consecutive free TCP ports")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 10) -> int:
    """End a process this test started, by its handle: ``sig``, then SIGKILL if needed."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class OpenSC:
    """Runs the OpenSC tools with a timeout and keeps what they printed."""

    def __init__(self, reader: str) -> None:
        self.reader = reader

    def run(self, *args: str, check: bool = True) -> str:
        try:
            r = subprocess.run(list(args), capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                               stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(args)} still running after {TOOL_TIMEOUT} s")
        out = r.stdout + r.stderr
        if check:
            assert r.returncode == 0, f"{' '.join(args)} exited {r.returncode}:\n{out}"
        return out


def _wait_for(what: str, probe, timeout: float = READY_TIMEOUT, logs: tuple[Path, ...] = ()):
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n"
                        + "\n".join(f"--- {p.name}\n{_tail(p)}" for p in logs))
        time.sleep(0.2)


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory):
    """The vpcd port of a running pcscd: the machine's (used as it is) or one started here
    with a private reader.conf.d that declares only vpcd, on a free port. The machine has
    one pcscd socket, so a module holds it for its whole run: under pytest-xdist another
    worker's PC/SC module waits for the lock (``/tmp/mcred-tests-pcscd.lock``)."""
    missing = _missing()
    if missing:
        pytest.skip("PC/SC interop test needs " + ", ".join(missing)
                    + "; install: apt-get install -y pcscd vsmartcard-vpcd opensc")
    with _machine_lock():
        yield from _pcscd(tmp_path_factory)


@contextlib.contextmanager
def _machine_lock():
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "mcred-tests-pcscd.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pcscd(tmp_path_factory):  # noqa: ANN001, ANN202
    if _pcscd_running():
        yield {"port": _system_vpcd_port(), "log": None}
        return
    d = tmp_path_factory.mktemp("pcscd")
    conf = d / "reader.conf.d"
    conf.mkdir()
    port = _free_port_pair()
    (conf / "vpcd").write_text(f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{port:04X}\n'
                               f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n")
    log = d / "pcscd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([_which("pcscd"), "--foreground", "--info", "--config", str(conf)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_for("pcscd to listen", lambda: proc.poll() is not None or _pcscd_running(),
                  logs=(log,))
        if proc.poll() is not None:
            pytest.fail(f"pcscd exited with {proc.returncode}:\n{_tail(log)}")
        yield {"port": port, "log": log}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    """A phone provisioned with RSA-2048 keys, both certificates, known PIN and password."""
    home = tmp_path_factory.mktemp("home")
    ctx = Context.open(home, database=f"sqlite:///{home / 'mcred.sqlite3'}")
    pid = wallet_sim.create_phone(home)
    result = provision(ctx, pid, parse_holder(HOLDER), key_type="rsa2048", mdoc_batch=1,
                       pin=PIN, password=PASSWORD, puk=PUK)
    return home, result


class BridgeProcess:
    """``mcred phone pcsc`` as a subprocess (the real CLI, its own process)."""

    def __init__(self, home: Path, phone_id: str, port: int, log: Path, *extra: str) -> None:
        env = dict(os.environ, MCRED_HOME=str(home), PYTHONUNBUFFERED="1")
        env.pop("MCRED_DATABASE_URL", None)
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mcred", "--trace", "phone", "pcsc", phone_id,
                 "--port", str(port), *extra],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def stop(self) -> tuple[int, str]:
        rc = _stop(self.proc)
        return rc, self.log.read_text(errors="replace")


def _secrets(home: Path, phone_id: str) -> dict:
    """The JPKI applet's retry counters as the phone's persisted SE image holds them."""
    applets = wallet_sim.describe(phone_id, home)["secure_element"]["applets"]
    return next(a for a in applets if a["aid"] == "D392F000260100000001")["details"]["secrets"]


JPKI_SELECT = "00A4040C 0A D392F000260100000001"


def _pairs(log: str) -> list[tuple[str, str]]:
    """(command, status word) of each APDU pair in the bridge's --trace output."""
    out, cmd = [], None
    for line in log.splitlines():
        if line.startswith("A>> pcsc"):
            cmd = line.split(")", 1)[1].strip()
        elif line.startswith("A<< pcsc") and cmd is not None:
            out.append((cmd, line.split()[-1]))
            cmd = None
    return out


def _check_foreign_probes(log: str) -> None:
    """Every other driver's probe got an error: a 9000 could make it claim the phone."""
    pairs = _pairs(log)
    assert pairs, log
    for cmd, sw in pairs:
        if cmd != JPKI_SELECT and not cmd.startswith(("00A4020C", "00B0", "0020", "802A")):
            assert sw != "9000", f"probe {cmd} answered 9000"


def _reader_with_card(tools: OpenSC) -> str | None:
    out = tools.run("opensc-tool", "--list-readers", check=False)
    m = re.search(r"^(\d+)\s+Yes\s+.*?(Virtual PCD.*)$", out, re.M)
    return m.group(1) if m else None


@pytest.fixture
def bridge(pcscd, phone, tmp_path):
    """Start the bridge; wait until pcscd sees the phone; stop it cleanly afterwards."""
    home, result = phone
    started: list[BridgeProcess] = []
    logs = [p for p in (pcscd["log"],) if p]

    def start(*extra: str) -> OpenSC:
        probe = OpenSC("")
        deadline = time.monotonic() + 5  # a previous bridge's card may still be leaving
        while _reader_with_card(probe) is not None:
            if time.monotonic() > deadline:
                pytest.skip("vpcd's reader already holds another virtual card (a bridge "
                            "started elsewhere?); cannot tell our phone from it")
            time.sleep(0.2)
        b = BridgeProcess(home, result.phone_id, pcscd["port"],
                          tmp_path / f"bridge{len(started)}.log", *extra)
        started.append(b)
        tools = OpenSC("")
        tools.reader = _wait_for("the phone in vpcd's reader", lambda: _reader_with_card(tools),
                                 logs=(b.log, *logs))
        return tools

    def stop_last() -> tuple[int, str]:
        return started[-1].stop()

    start.stop = stop_last
    start.log = lambda: started[-1].log.read_text(errors="replace")
    try:
        yield start
    finally:
        for b in started:
            b.stop()


def test_opensc_reads_and_signs_with_the_phone(bridge, phone, tmp_path):
    home, result = phone
    t0 = time.monotonic()
    tools = bridge()
    r = ["--reader", tools.reader]

    # detection: the phone's pseudo-ATR, then jpki claims it after its SELECT probe
    assert "Virtual PCD" in tools.run("opensc-tool", "--list-readers")
    assert "3b:80:80:01:01" in tools.run("opensc-tool", *r, "--atr").lower()
    assert tools.run("opensc-tool", *r, "--name").splitlines()[-1].strip() == "jpki"
    assert JPKI_SELECT in bridge.log()  # the probe that made jpki claim an unknown ATR
    _check_foreign_probes(bridge.log())

    # both certificates and both CA certificates, with OpenSC's labels
    out = tools.run("pkcs15-tool", *r, "--list-certificates")
    for label, path, ident in (("User Authentication Certificate", "000a", "01"),
                               ("Digital Signature Certificate", "0001", "02"),
                               ("User Authentication Certificate CA", "000b", "03"),
                               ("Digital Signature Certificate CA", "0002", "04")):
        block = re.search(rf"X\.509 Certificate \[{re.escape(label)}\]\n(.*?)(?:\n\n|\Z)",
                          out, re.S)
        assert block, f"{label} missing:\n{out}"
        assert f"Path           : {path}" in block.group(1)
        assert f"ID             : {ident}" in block.group(1)
    # the CA certificates are free, so OpenSC shows their serial; the end-entity ones are
    # behind the PIN / password on the phone (6982), listed without one (specs/pcsc-bridge.md)
    ca = x509.load_der_x509_certificate(result.auth_ca)
    assert f"{ca.serial_number:X}" in out.replace(" ", "").upper()

    # both PINs with their tries: 3 and 5
    out = tools.run("pkcs15-tool", *r, "--list-pins")
    pins = dict(re.findall(r"PIN \[(.*?)\].*?Tries left\s*:\s*(\d+)", out, re.S))
    assert pins == {"User Authentication PIN": "3", "Digital Signature PIN": "5"}, out

    # a wrong PIN costs a try (63C2 read by OpenSC), the right one restores the counter
    out = tools.run("pkcs15-tool", *r, "--verify-pin", "--auth-id", "01", "--pin", "0000",
                    check=False)
    assert re.search(r"(?i)incorrect|wrong|failed", out), out
    out = tools.run("pkcs15-tool", *r, "--list-pins")
    assert re.search(r"User Authentication PIN\].*?Tries left\s*:\s*2", out, re.S), out
    assert _secrets(home, result.phone_id)["user_auth_pin"]["tries_left"] == 2  # in the NVM

    # the certificates read back are those the issuer issued
    for ident, auth, secret, der in (("01", "01", PIN, result.auth_certificate),
                                     ("02", "02", PASSWORD, result.sign_certificate),
                                     ("03", None, None, result.auth_ca),
                                     ("04", None, None, result.sign_ca)):
        extra = ["--verify-pin", "--auth-id", auth, "--pin", secret] if auth else []
        out = tools.run("pkcs15-tool", *r, "--read-certificate", ident, *extra)
        pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", out, re.S)
        assert pem, out
        expected = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
        assert pem.group(0) == expected, f"certificate {ident} differs"
    out = tools.run("pkcs15-tool", *r, "--list-pins")
    assert re.search(r"User Authentication PIN\].*?Tries left\s*:\s*3", out, re.S), out

    # PKCS #11: one slot per PIN, signatures that verify with the certificates' keys
    module = str(_pkcs11_module())
    out = tools.run("pkcs11-tool", "--module", module, "--list-slots")
    assert "JPKI (User Authentication PIN)" in out and "JPKI (Digital Signature PIN)" in out
    message = tmp_path / "message.txt"
    message.write_bytes(b"mcred: signed by a phone through OpenSC\n")
    for token, key_id, secret, der in (
            ("JPKI (User Authentication PIN)", "01", PIN, result.auth_certificate),
            ("JPKI (Digital Signature PIN)", "02", PASSWORD, result.sign_certificate)):
        sig = tmp_path / f"sig{key_id}.bin"
        tools.run("pkcs11-tool", "--module", module, "--token-label", token, "--login",
                  "--pin", secret, "--sign", "--id", key_id, "-m", "SHA256-RSA-PKCS",
                  "-i", str(message), "-o", str(sig))
        key = x509.load_der_x509_certificate(der).public_key()
        key.verify(sig.read_bytes(), message.read_bytes(), padding.PKCS1v15(), hashes.SHA256())

    elapsed = time.monotonic() - t0
    rc, log = bridge.stop()
    assert rc == 0 and log.rstrip().endswith("stopped"), log
    # the trace shows the pairs and never the secrets OpenSC sent. They travel in commands
    # only: an answer (a certificate's random CN, say) may hold the same digits by chance
    assert "802A0080 33 3031300D060960864801650304020105000420" in log
    sent = "\n".join(line.replace(" ", "") for line in log.splitlines() if line.lstrip().startswith("A>>"))
    assert PIN.encode().hex().upper() not in sent and PASSWORD.encode().hex().upper() not in sent
    assert "<4 bytes hidden>" in log
    secrets = _secrets(home, result.phone_id)
    assert secrets["user_auth_pin"]["tries_left"] == 3
    assert secrets["signing_password"]["tries_left"] == 5
    print(f"OpenSC session against the phone: {elapsed:.1f} s")


def test_jpki_card_atr_and_a_blocked_pin(bridge, phone):
    """With ``--atr jpki-card`` OpenSC's jpki driver recognises the ATR itself: no SELECT
    of the JPKI-AP until the PKCS #15 bind (the drivers before it still probe). A PIN blocked
    through OpenSC keeps the bind working (the empty VERIFY answers 63C0) and shows as
    locked; the PUK, sent to the SE while the bridge runs, brings it back."""
    home, result = phone
    tools = bridge("--atr", "jpki-card")
    r = ["--reader", tools.reader]
    assert "3b:e0:00:ff:81:31:fe:45:14" in tools.run("opensc-tool", *r, "--atr").lower()
    assert tools.run("opensc-tool", *r, "--name").splitlines()[-1].strip() == "jpki"
    assert JPKI_SELECT not in bridge.log()
    _check_foreign_probes(bridge.log())
    try:
        for _ in range(3):
            out = tools.run("pkcs15-tool", *r, "--verify-pin", "--auth-id", "01", "--pin", "0000",
                            check=False)
            assert "PIN code or key incorrect" in out, out
        out = tools.run("pkcs15-tool", *r, "--list-pins")
        assert re.search(r"User Authentication PIN\].*?Tries left\s*:\s*0", out, re.S), out
        assert re.search(r"Digital Signature PIN\].*?Tries left\s*:\s*5", out, re.S), out
        out = tools.run("pkcs15-tool", *r, "--verify-pin", "--auth-id", "01", "--pin", PIN,
                        check=False)
        assert "Reference data not usable" in out, out  # 6984: blocked, the right PIN too
        out = tools.run("pkcs11-tool", "--module", str(_pkcs11_module()), "--list-slots")
        user_slot = out.split("JPKI (User Authentication PIN)", 1)[1].split("Slot ", 1)[0]
        assert "user PIN locked" in user_slot, out
    finally:
        se = wallet_sim.open_secure_element(result.phone_id, home)
        assert se.transmit(bytes.fromhex("00A4040C0AD392F000260100000001")) == b"\x90\x00"
        assert se.transmit(bytes.fromhex("002C019808") + PUK.encode()) == b"\x90\x00"
    out = tools.run("pkcs15-tool", *r, "--list-pins")
    assert re.search(r"User Authentication PIN\].*?Tries left\s*:\s*3", out, re.S), out
    rc, log = bridge.stop()
    assert rc == 0, log


def test_opensc_tool_sends_raw_apdus_to_the_isd(bridge):
    """``opensc-tool -s``: a real PC/SC stack sees the SE's bytes. SELECT of the ISD with P2 0C
    answers no FCI; GET DATA CPLC with Le 05 answers 5 bytes and 6128, and OpenSC follows
    with GET RESPONSE (the bridge's trace shows both pairs) to the whole 45 bytes; a chained
    class byte is refused 6884 (specs/secure-element.md "Response length", status words)."""
    tools = bridge()
    out = tools.run("opensc-tool", "--reader", tools.reader,
                    "-s", "00:A4:04:0C:08:A0:00:00:01:51:00:00:00", "-s", "80:CA:9F:7F:05",
                    "-s", "90:CA:9F:7F:00")
    got = re.findall(r"Received \(SW1=0x([0-9a-f]{2}), SW2=0x([0-9a-f]{2})\)(?::\n((?:[0-9A-F]{2} .*\n?)+))?",
                     out, re.I)
    assert [sw1 + sw2 for sw1, sw2, _ in got] == ["9000", "9000", "6884"], out
    assert got[0][2] == "", out  # no FCI with P2 0C
    cplc = bytes.fromhex("".join(re.findall(r"((?:[0-9A-F]{2} ){1,16})", got[1][2])).replace(" ", ""))
    assert len(cplc) == 45 and cplc[:3] == bytes.fromhex("9F7F2A"), out
    rc, log = bridge.stop()
    assert rc == 0, log
    pairs = _pairs(log)
    i = pairs.index(("80CA9F7F05", "6128"))
    assert pairs[i + 1] == ("00C0000028", "9000"), pairs
