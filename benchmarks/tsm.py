"""``python -m benchmarks tsm``: full TSM sessions per second against the simulated SE
(open SCP03 at SL 33, rotate the factory keys to the diversified keyset with PUT KEY,
install the JPKI and mdoc applets, generate both JPKI keys and one mdoc device key), with
P-384 and with RSA-2048 JPKI keys, next to the raw cryptography such a session must do
(the in-SE key generations and proofs of possession, the SCP03 handshake KDFs and the
per-command AES-CMAC / AES-CBC) measured in the same run; and the ratio of the two.

The session includes the TSM's database work (SQLite in a temporary directory, the
sequence counter and identity records, the audit log) and the simulator persisting its
SE image after each command, exactly as ``mcred`` runs it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

import wallet_sim
from mcred.db import make_engine, migrate
from tsm.audit import AuditLog
from tsm.jobs import JobView, StepContext, Tsm
from tsm.keys import InMemoryMasterKey
from tsm.session import SeLink
from tsm.steps import STEPS

SESSION_STEPS = ["open-session", "rotate-keys", "survey", "install-jpki", "install-mdoc",
                 "generate-sign-key", "generate-auth-key", "generate-device-keys"]


def _session(tsm: Tsm, home: Path, alg: str) -> tuple[float, int]:
    pid = wallet_sim.create_phone(home)
    se = wallet_sim.open_secure_element(pid, home)
    sent = [0]

    def transmit(apdu: bytes) -> bytes:
        sent[0] += 1
        return se.transmit(apdu)

    job = JobView("bench", pid, "provision", "running", tuple(SESSION_STEPS), 0,
                  {"phone_id": pid, "algorithm": alg, "mdoc_count": 1}, {}, "bench", 1, None)
    t0 = time.perf_counter()
    link = SeLink(tsm.engine, pid, transmit, tsm.master, AuditLog("bench", pid, "bench"))
    results: dict = {}
    session = None
    for step in SESSION_STEPS:
        ctx = StepContext(tsm, link, job, step, results, None, session)
        STEPS[step](ctx)
        session = ctx._session
        results[step] = ctx.results
    link.audit.flush_now(tsm.engine)
    return time.perf_counter() - t0, sent[0]


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _crypto_floor(alg: str, commands: int, n: int) -> float:
    """Seconds of raw crypto one session needs: two JPKI key generations + proofs, one
    P-256 device key + proof, three SCP03 handshakes (5 KDF CMACs each) and, per command,
    one C-MAC, one R-MAC and two AES-CBC operations with their ICVs."""
    msg = os.urandom(600)
    if alg == "rsa2048":
        def jpki():
            k = rsa.generate_private_key(65537, 2048)
            k.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    else:
        def jpki():
            k = ec.generate_private_key(ec.SECP384R1())
            k.sign(msg, ec.ECDSA(hashes.SHA384()))

    def device():
        ec.generate_private_key(ec.SECP256R1()).sign(msg, ec.ECDSA(hashes.SHA256()))

    key, block = os.urandom(16), os.urandom(80)

    def cmac():
        c = CMAC(algorithms.AES(key))
        c.update(block)
        c.finalize()

    def cbc():
        e = Cipher(algorithms.AES(key), modes.CBC(b"\x00" * 16)).encryptor()
        e.update(block)
        e.finalize()

    t_jpki = statistics.median(_time(jpki, 1) for _ in range(n if alg == "rsa2048" else 20 * n))
    t_dev = _time(device, 50)
    t_cmac, t_cbc = _time(cmac, 2000), _time(cbc, 2000)
    return 2 * t_jpki + t_dev + 3 * 5 * t_cmac + commands * (2 * t_cmac + 4 * t_cbc)


def main(argv: list[str] | None = None) -> int:
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        engine = make_engine(f"sqlite:///{home / 'bench.sqlite3'}")
        migrate(engine)
        tsm = Tsm(engine, InMemoryMasterKey(os.urandom(16)))
        print("TSM full session: open SL33, rotate keys, install JPKI + mdoc, generate keys")
        print(f"{'keys':10} {'sessions/s':>11} {'ms/session':>11} {'APDUs':>6} "
              f"{'crypto ms':>10} {'ratio':>6}")
        for alg, runs in (("p384", 30), ("rsa2048", 8)):
            _session(tsm, home, alg)  # warm up
            times, cmds = [], 0
            for _ in range(runs):
                t, cmds = _session(tsm, home, alg)
                times.append(t)
            t = statistics.median(times)
            floor = _crypto_floor(alg, cmds, runs)
            print(f"{alg:10} {1 / t:11.1f} {t * 1000:11.2f} {cmds:6d} {floor * 1000:10.2f} "
                  f"{t / floor:6.2f}x")
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
