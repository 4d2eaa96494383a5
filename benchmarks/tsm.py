"""``python -m benchmarks tsm``: full TSM sessions per second against the simulated SE
(open SCP03 at SL 33, rotate the factory keys to the diversified keyset with PUT KEY,
install the JPKI and mdoc applets, generate both JPKI keys and one mdoc device key), with
P-384 and with RSA-2048 JPKI keys, next to the cryptography such a session must do,
measured in the same run, and the ratio of the two (the target of issue 3 is 1.5x). Then
the P-384 session over the air (GP SERAM over HTTP on loopback, specs/tsm.md "Over the
air") beside the same session in-process, the phone's Local Agent in a thread of this
process and in a process of its own: the extra time per poll against a bare HTTP round trip
of the same client and server, measured in the same run.

The session runs exactly as ``mcred`` runs a job: :meth:`tsm.jobs.Tsm.run` on a job row
holding the session's steps, so it includes the per-SE lock, the per-step commit of the
job's progress with its audit records, the sequence counter and identity records (SQLite
in a temporary directory, WAL + synchronous=NORMAL as ``mcred.db`` sets it), and the
simulator writing its NVM image after each command that changed it. (Until this change the
benchmark called the steps directly, leaving out the lock and the per-step commits.)

The crypto floor counts what the protocol obliges the two parties to compute, derived
from the commands the session actually sent (see :func:`_crypto_floor`): the in-SE key
generations and their proofs of possession, the SCP03 handshakes (key diversification,
session keys, challenges, cryptograms) and, per wrapped command, the C-MAC and R-MAC on
both sides and the C-DEC / R-ENC encipherments with their ICVs on both sides, and the
PUT KEY key blocks and check values. Each primitive is timed on its own with
``cryptography`` in the same process; anything else (encodings, parsing, the database,
file writes) is overhead. "in SE" is the part of the session spent inside the simulated
SE's ``transmit`` (card-side SCP03, applets, key generation, NVM writes).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from sqlalchemy.orm import Session

import wallet_sim
from mcred.db import make_engine, migrate
from tsm.db import JobRow
from tsm.jobs import Tsm
from tsm.keys import InMemoryMasterKey
from wallet_sim.se.maker import root_path

SESSION_STEPS = ["open-session", "rotate-keys", "survey", "install-jpki", "install-mdoc",
                 "generate-sign-key", "generate-auth-key", "generate-device-keys"]


@dataclass
class Traffic:
    """What one session sent: plain commands, and wrapped ones with their data sizes."""

    plain: int = 0
    handshakes: int = 0
    wrapped: int = 0
    command_data: int = 0  # wrapped commands with a data field (enciphered under C-DEC)
    response_data: int = 0  # wrapped answers with data (enciphered under R-ENC)
    in_se: float = 0.0  # seconds inside the simulated SE (card side, NVM writes)

    @property
    def total(self) -> int:
        return self.plain + self.wrapped


def _session_job(tsm: Tsm, pid: str, alg: str) -> str:
    """A job row holding the session's steps for phone ``pid``; its id."""
    job_id = uuid.uuid4().hex
    with Session(tsm.engine) as s, s.begin():
        s.add(JobRow(id=job_id, se_id=pid, kind="provision", state="pending", steps=SESSION_STEPS,
                     next_step=0, input={"phone_id": pid, "algorithm": alg, "mdoc_count": 1},
                     sealed_secrets=None, results={}, actor="bench", attempts=0))
    return job_id


def _session(tsm: Tsm, home: Path, alg: str, kloc=None) -> tuple[float, Traffic]:  # noqa: ANN001
    pid = wallet_sim.create_phone(home, kloc=kloc)
    se = wallet_sim.open_secure_element(pid, home)
    traffic = Traffic()

    def transmit(apdu: bytes) -> bytes:
        t = time.perf_counter()
        resp = se.transmit(apdu)
        traffic.in_se += time.perf_counter() - t
        if apdu[0] & 0x04 and apdu[1] != 0x82:  # secure messaging, not EXTERNAL AUTHENTICATE
            traffic.wrapped += 1
            traffic.command_data += len(apdu) > 5 + 8 + 1  # more than the C-MAC (and Le)
            traffic.response_data += len(resp) > 2 + 8  # more than the R-MAC and SW
        else:
            traffic.plain += 1
            traffic.handshakes += apdu[1] == 0x50
        return resp

    job_id = _session_job(tsm, pid, alg)
    t0 = time.perf_counter()
    view = tsm.run(job_id, transmit)
    elapsed = time.perf_counter() - t0
    assert view.state == "done", view
    return elapsed, traffic


def _ota_session(tsm: Tsm, home: Path, alg: str, endpoint,  # noqa: ANN001
                 apart: _AgentProcess | None = None, opener=None) -> tuple[float, int, int]:  # noqa: ANN001
    """One session as :func:`_session`, but over the air: the job's transmit is a GP SERAM
    session and the phone's Local Agent polls for each C-APDU over HTTP, in a thread, or
    in the process ``apart`` (no shared GIL). Returns (seconds, APDUs, polls)."""
    from mcred.ota import PhoneAgentThread, over_the_air

    pid = wallet_sim.create_phone(home)
    job_id = _session_job(tsm, pid, alg)
    if apart is None:
        agent = PhoneAgentThread(endpoint.url, pid, home)
        on_session = agent.start

        def join() -> tuple[int, int]:
            result = agent.join()
            return result.apdus, result.orders
    else:
        on_session, join = apart.start(endpoint.url, pid, home), apart.join
    t0 = time.perf_counter()
    view = over_the_air(opener or endpoint.hub, pid, lambda transmit: tsm.run(job_id, transmit),
                        on_session=on_session)
    apdus, polls = join()
    elapsed = time.perf_counter() - t0
    assert view.state == "done", view
    return elapsed, apdus, polls


def agent_worker() -> None:
    """The phone in a process of its own, for :func:`_over_the_air`: one line per session on
    stdin (endpoint, session id, phone id, data directory), one line per session on stdout
    (APDUs, polls) once its Stop came."""
    import sys

    from wallet_sim.seram_agent import run_local_agent, secure_element_of

    for line in sys.stdin:
        endpoint, sid, pid, home = line.split()
        se = wallet_sim.open_secure_element(pid, Path(home))
        r = run_local_agent(endpoint, sid, se.transmit, secure_element_of(se))
        print(r.apdus, r.orders, flush=True)


class _AgentProcess:
    def __init__(self) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", "from benchmarks.tsm import agent_worker; agent_worker()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def start(self, endpoint: str, pid: str, home: Path):  # noqa: ANN202 - an on_session for over_the_air
        def on_session(link) -> None:  # noqa: ANN001
            self.proc.stdin.write(f"{endpoint} {link.session_id} {pid} {home}\n")
            self.proc.stdin.flush()
        return on_session

    def join(self) -> tuple[int, int]:
        apdus, orders = self.proc.stdout.readline().split()
        return int(apdus), int(orders)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def _http_floor(n: int) -> float:
    """The median of ``n`` bare HTTP round trips on loopback, with the same client and server
    (httpx, uvicorn) and a body of a poll's size: an ASGI app that answers at once."""
    import httpx

    from benchmarks.scratch import served

    body = b'{"delay":0,"ramCommands":[{"ramCommandType":"seRamCommand","listOfCAPDU":["' + b"00" * 40 + b'"]}]}'

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    with served(app) as base, httpx.Client() as client:
        url = f"{base}/gp/seram/remoteManagement?sessionId=x"
        report = b'{"localAgentStatus":{"localAgentStatusEnum":"PROCESSED","executedSeRamCommands":1},' \
                 b'"ramResponses":[{"ramResponseType":"seRamResponse","listOfRAPDU":["' + b"00" * 20 + b'"]}]}'
        for _ in range(20):
            client.post(url, content=report)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            client.post(url, content=report)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _over_the_air(tsm: Tsm, home: Path, runs: int) -> None:
    from mcred.ota import seram_endpoint

    print("\nThe same P-384 session over the air (GP SERAM, HTTP on loopback: the phone's Local Agent polls "
          "the TSM's Remote Agent; personalisations pipelined)")
    agent = _AgentProcess()
    try:
        with seram_endpoint("127.0.0.1:0") as endpoint:
            _ota_session(tsm, home, "p384", endpoint)  # warm up
            _ota_session(tsm, home, "p384", endpoint, agent)
            local, ota, apart, polls, apdus = [], [], [], 0, 0
            for _ in range(runs):
                local.append(_session(tsm, home, "p384")[0])
                t, apdus, polls = _ota_session(tsm, home, "p384", endpoint)
                ota.append(t)
                apart.append(_ota_session(tsm, home, "p384", endpoint, agent)[0])
        relayed = _relayed(tsm, home, runs, agent)
    finally:
        agent.close()
    rtt = _http_floor(max(50, 20 * runs))
    t_local = statistics.median(local)
    print(f"{'the phone':28} {'in-process ms':>14} {'over the air ms':>16} {'APDUs':>6} {'polls':>6} "
          f"{'extra ms/poll':>14} {'bare HTTP RTT ms':>17} {'ratio':>6}")
    for label, times in (("in a thread (shares the GIL)", ota), ("in a process of its own", apart),
                         ("... polling another process", relayed)):
        t_ota = statistics.median(times)
        extra = (t_ota - t_local) / polls
        print(f"{label:28} {t_local * 1000:14.2f} {t_ota * 1000:16.2f} {apdus:6d} {polls:6d} {extra * 1000:14.3f} "
              f"{rtt * 1000:17.3f} {extra / rtt:6.2f}x")


def _relayed(tsm: Tsm, home: Path, runs: int, agent: _AgentProcess) -> list[float]:
    """The session as under `mcred serve --workers 2` when every poll reaches the worker that
    does not hold it: the TSM's hub opens the session, the phone (in a process of its own)
    polls another hub's endpoint, which relays each poll through the database
    (tsm.seram_relay; two hubs in this process stand for the two workers)."""
    from mcred.ota import seram_endpoint
    from tsm.seram import SeramHub
    from tsm.seram_relay import SeramRelay

    holder, other = SeramRelay(tsm.engine, SeramHub()), SeramRelay(tsm.engine, SeramHub())
    holder.start()
    other.start()
    try:
        with seram_endpoint("127.0.0.1:0", hub=other.hub, relay=other) as endpoint:
            _ota_session(tsm, home, "p384", endpoint, agent, opener=holder)  # warm up
            return [_ota_session(tsm, home, "p384", endpoint, agent, opener=holder)[0] for _ in range(runs)]
    finally:
        holder.stop()
        other.stop()


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _crypto_floor(alg: str, t: Traffic, runs: int, *, scale: int = 1, scp11: str = "") -> float:
    """Seconds of cryptography one session must do, given the commands it sent:

    - two JPKI key generations with their proofs of possession (a signature over
      challenge || SPKI), one P-256 device key with its proof;
    - per SCP03 handshake, both sides: the card's pseudo-random challenge, S-ENC, S-MAC,
      S-RMAC, card and host cryptograms (AES-CMAC KDF blocks: 6 on the card, 6 on the host
      with the challenge check) and the EXTERNAL AUTHENTICATE C-MAC on both sides; for a
      handshake on the diversified keyset, the TSM's three SP 800-108 KDF blocks;
    - per wrapped command at SL 33: C-MAC and R-MAC computed by one side and checked by
      the other (4 CMACs); the C-DEC ICV on both sides, plus CBC both ways when the command
      has data; the R-ENC ICV and CBC both ways when the answer has data;
    - PUT KEY: three key blocks enciphered and deciphered, six check values;
    - ``scp11``: a first contact under SCP11b instead of SCP03 on the factory keys: the SE
      certificate's signature checked, two ephemeral P-256 keys, four ECDH, two X9.63 KDF
      and the receipt's CMAC on both sides (and no SCP03 handshake on keyset 30); under
      SCP11a (``scp11="11a"``) also the SE's check of the TSM's certificate, one ECDSA verify.

    CMAC and CBC are timed on 80-byte inputs (a typical wrapped command), an ICV or a KCV
    as one ECB block. ``scale`` divides the repetitions: a sample taken between two sessions
    (see :func:`main`) is ``runs=1, scale=10``."""
    msg = os.urandom(150)  # challenge || SPKI
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

    key, block, one = os.urandom(16), os.urandom(80), os.urandom(16)

    def cmac():
        c = CMAC(algorithms.AES(key))
        c.update(block)
        c.finalize()

    def cbc():
        e = Cipher(algorithms.AES(key), modes.CBC(one)).encryptor()
        e.update(block)
        e.finalize()

    def ecb():
        e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        e.update(one)
        e.finalize()

    # the session's median is over sums of two JPKI generations (RSA's time is heavy-tailed,
    # so twice a single median would understate it): time them in pairs too
    t_jpki2 = statistics.median(_time(jpki, 2) * 2 for _ in range(3 * runs if alg == "rsa2048" else 20 * runs))
    t_dev = _time(device, max(1, 50 // scale))
    n = max(1, 2000 // scale)
    t_cmac, t_cbc, t_ecb = _time(cmac, n), _time(cbc, n), _time(ecb, n)
    handshake = (12 + 2) * t_cmac
    diversify = 3 * t_cmac * max(0, t.handshakes - (0 if scp11 else 1))
    per_command = t.wrapped * (4 * t_cmac + 2 * t_ecb) + t.command_data * 2 * t_cbc \
        + t.response_data * (2 * t_ecb + 2 * t_cbc)
    put_key = 6 * t_cbc + 6 * t_ecb
    first_contact = _scp11_floor(max(1, 50 // scale), oce=scp11 == "11a") if scp11 else 0.0
    return t_jpki2 + t_dev + t.handshakes * handshake + diversify + per_command + put_key + first_contact


def _scp11_floor(n: int, *, oce: bool = False) -> float:
    """Seconds of the crypto an SCP11 first contact adds (see :func:`_crypto_floor`)."""
    from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

    ca = ec.generate_private_key(ec.SECP256R1())
    msg = os.urandom(400)
    sig = ca.sign(msg, ec.ECDSA(hashes.SHA256()))
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    key = os.urandom(16)

    def once() -> None:
        ca.public_key().verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        if oce:
            ca.public_key().verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        for _ in range(2):
            e = ec.generate_private_key(ec.SECP256R1())
            z = e.exchange(ec.ECDH(), peer) + e.exchange(ec.ECDH(), peer)
            X963KDF(hashes.SHA256(), 80, b"\x3c\x88\x10").derive(z)
            c = CMAC(algorithms.AES(key))
            c.update(msg[:150])
            c.finalize()

    return _time(once, n)


def _parts(tsm: Tsm, home: Path, alg: str, runs: int) -> None:
    """Where one session's time goes: each part timed by a wrapper around it, for ``runs``
    sessions (``--parts``). The wrappers add their own few microseconds per call."""
    import sqlalchemy.engine.default as default

    from wallet_sim.applets import _keys
    from wallet_sim.se import store

    spent: dict[str, float] = {}
    patched = []
    inside = [False]  # counted only inside Tsm.run, as the session time is (not the job row's insert)

    def wrap(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*a, **k):
            if not inside[0]:
                return original(*a, **k)
            t = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t

        patched.append((owner, name, original))
        setattr(owner, name, timed)

    wrap(default.DefaultDialect, "do_commit", "database commits")
    wrap(store.ImageFile, "write", "NVM image writes")
    wrap(_keys, "generate", "in-SE key generations")
    wrap(_keys, "proof_of_possession", "proofs of possession")
    run = tsm.run

    def run_inside(*a, **k):
        inside[0] = True
        try:
            return run(*a, **k)
        finally:
            inside[0] = False

    tsm.run = run_inside
    try:
        total = in_se = 0.0
        for _ in range(runs):
            t, traffic = _session(tsm, home, alg)
            total, in_se = total + t, in_se + traffic.in_se
    finally:
        del tsm.run
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    print(f"  {alg} session {total / runs * 1000:.2f} ms, inside the SE {in_se / runs * 1000:.2f} ms; of which:")
    for label, t in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"    {label:24} {t / runs * 1000:6.2f} ms")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks tsm")
    ap.add_argument("--parts", action="store_true",
                    help="also time the parts of a P-384 session (commits, NVM writes, key generation)")
    ap.add_argument("--ota-runs", type=int, default=20, help="P-384 sessions over the air (and in-process "
                    "beside each)")
    ap.add_argument("--runs", type=int, default=None, help="sessions per key type (default 30 P-384, "
                    "20 RSA-2048)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        engine = make_engine(f"sqlite:///{home / 'bench.sqlite3'}")
        migrate(engine)
        from tsm.oce import kloc_certificate, lab_oce, retired_oce, rotate_kloc_ca

        tsm = Tsm(engine, InMemoryMasterKey(os.urandom(16)))
        wallet_sim.create_phone(home)  # the home's SE maker, for the SCP11 rows
        roots = x509.load_pem_x509_certificates(root_path(home).read_bytes())
        old_kloc = kloc_certificate(home).public_key()
        rotate_kloc_ca(home)  # for "p384 11a moved": SEs from stock that name the retired CA
        kloc = kloc_certificate(home).public_key()
        tsms = {"": Tsm(engine, tsm.master), "11b": Tsm(engine, tsm.master, se_roots=roots),
                "11a": Tsm(engine, tsm.master, se_roots=roots, oce=lab_oce(home), require_scp11a=True),
                "11a moved": Tsm(engine, tsm.master, se_roots=roots, oce=lab_oce(home),
                                 retired_oce=retired_oce(home), require_scp11a=True)}
        print("TSM full session (Tsm.run): open SL33, rotate keys, install JPKI + mdoc, generate keys")
        print(f"{'keys':14} {'sessions/s':>11} {'ms/session':>11} {'in SE ms':>9} {'APDUs':>6} "
              f"{'crypto ms':>10} {'ratio':>6}")
        # RSA key generation is heavy-tailed (a random prime search): more sessions for a steady median
        # "p384 11a": the first contact under SCP11a (the SE's certificate and the TSM's,
        # specs/tsm.md "First contact"), as mcred meets the SEs its factory makes; "p384 11b"
        # under SCP11b (an SE whose issuer named no TSM); the others under SCP03 on the
        # published factory keys, as issue 3 times it; "p384 11a moved": an SE from stock that
        # names a KLOC CA the TSM rotated away from, met with the retired chain and moved to the
        # current CA in the same session (specs/tsm.md "Rotating the KLOC CA")
        for alg, runs, scp11 in (("p384", args.runs or 30, ""), ("p384", args.runs or 30, "11b"),
                                 ("p384", args.runs or 30, "11a"), ("p384", args.runs or 30, "11a moved"),
                                 ("rsa2048", args.runs or 20, "")):
            tsm = tsms[scp11]
            kl = {"11a": kloc, "11a moved": old_kloc}.get(scp11)
            _session(tsm, home, alg, kl)  # warm up
            times, in_se, floors, traffic = [], [], [], Traffic()
            for _ in range(runs):
                t, traffic = _session(tsm, home, alg, kl)
                times.append(t)
                in_se.append(traffic.in_se)
                # a floor sample after each session, so that a change of load on a shared
                # machine moves both alike (measured once after all sessions, the floor
                # moved 1.4-2.2 ms between runs and the ratio with it)
                floors.append(_crypto_floor(alg, traffic, 1, scale=10, scp11=scp11.split()[0] if scp11 else ""))
            t = statistics.median(times)
            floor = statistics.median(floors)
            label = f"{alg} {scp11}" if scp11 else alg
            print(f"{label:14} {1 / t:11.1f} {t * 1000:11.2f} {statistics.median(in_se) * 1000:9.2f} "
                  f"{traffic.total:6d} {floor * 1000:10.2f} {t / floor:6.2f}x")
        if args.parts:
            _parts(tsm, home, "p384", args.runs or 100)
        _over_the_air(tsm, home, args.ota_runs)
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
