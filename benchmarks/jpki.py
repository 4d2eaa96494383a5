"""``python -m benchmarks jpki``: the issuer's JPKI figures, each next to its raw crypto floor
measured in the same run.

1. certificates issued per second (registry + CA, SQLite in a temp dir), RSA-2048 and P-384,
   next to raw signatures per second with the same CA key type;
2. a CRL of N revoked entries (default 1 000 000) built and signed, next to the floor of
   hashing the same TBS bytes and one signature; also the pure layer's
   ``protocols.jpki.crl.build_crl`` at smaller sizes (it adds entries one builder at a time);
3. OCSP responses per second through the HTTP responder (uvicorn on 127.0.0.1, one
   keep-alive client), next to the in-process responder and raw signatures per second; the
   server in a thread of the benchmark (sharing its interpreter with the client), and the
   whole ``mcred serve`` in its own process, as OpenSSL's responder runs.

Peer, where the ``openssl`` command exists: OpenSSL's own CA and responder on the same
work, in the same run. ``openssl ca -gencrl`` builds and signs a CRL of the same entries
(serials, revocation date, reason; RSA-2048, SHA-256) from an index file (written
beforehand, not timed; its output is PEM), and ``openssl ocsp -index ... -port`` answers
the same kind of request (RSA-2048 responder, one certificate) over HTTP to the same client.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from benchmarks.scratch import free_port, served
from benchmarks.timing import rate


def _rate(fn, seconds: float = 1.0) -> float:
    return rate(fn, seconds)


def _raw_sign_rate(key_type: str, seconds: float) -> float:
    data = b"x" * 600
    if key_type == "rsa2048":
        key = rsa.generate_private_key(65537, 2048)
        return _rate(lambda: key.sign(data, padding.PKCS1v15(), hashes.SHA256()), seconds)
    key = ec.generate_private_key(ec.SECP384R1())
    return _rate(lambda: key.sign(data, ec.ECDSA(hashes.SHA384())), seconds)


def _issuer(tmp: Path, key_type: str, name: str = "issue"):
    from sqlalchemy.orm import sessionmaker

    from issuer.jpki import JpkiIssuer, profile_for
    from issuer.keystore import MemoryKeyStore
    from mcred.db import make_engine, migrate
    from protocols.jpki.profile import KeyType

    engine = make_engine(f"sqlite:///{tmp / f'bench-{name}-{key_type}.sqlite3'}")
    migrate(engine)
    issuer = JpkiIssuer(sessionmaker(engine, expire_on_commit=False), MemoryKeyStore(),
                        profile_for("http://127.0.0.1:8470"))
    issuer.setup(KeyType(key_type))
    return issuer


HOLDER = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "ヤマダ",
          "given_name_kana": "タロウ", "birth_date": "1980-05-05", "sex": 1,
          "address": "東京都千代田区霞が関２丁目１番２号", "prefecture": "東京都",
          "municipality": "千代田区", "municipality_code": "131016"}


def _subject(key_type: str):
    from cryptography.hazmat.primitives import serialization

    key = (rsa.generate_private_key(65537, 2048) if key_type == "rsa2048"
           else ec.generate_private_key(ec.SECP384R1()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, spki


def _prove(key, message: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(message, ec.ECDSA(hashes.SHA384()))


def bench_issuance(tmp: Path, key_type: str, count: int) -> tuple[float, float]:
    from issuer import holders

    issuer = _issuer(tmp, key_type)
    subjects = [_subject(key_type) for _ in range(4)]  # keys are the SE's cost, not the CA's
    jobs = []
    for n in range(count):
        phone = f"bench-{key_type}-{n}"
        hid = holders.register(issuer.sessions, dict(HOLDER, card_number=f"{n:016d}"))
        holders.attach_phone(issuer.sessions, hid, phone)
        key, spki = subjects[n % len(subjects)]
        nonce = issuer.jpki_challenge(f"j{n}", phone, "auth")
        jobs.append((f"j{n}", phone, spki, _prove(key, nonce + spki)))
    t0 = time.perf_counter()
    for job, phone, spki, proof in jobs:
        issuer.issue_jpki_certificate(job, phone, "auth", spki, proof)
    return count / (time.perf_counter() - t0), _raw_sign_rate(key_type, 1.0)


def _crl_inputs(n: int):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    reasons = [x509.ReasonFlags.cessation_of_operation, x509.ReasonFlags.affiliation_changed,
               x509.ReasonFlags.superseded, x509.ReasonFlags.certificate_hold]
    return now, [(0x1000_0000_0000_0000 + i * 7919, reasons[i % 4]) for i in range(n)]


def bench_crl(entries: int) -> dict:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench CRL issuer")])
    now, rows = _crl_inputs(entries)
    t0 = time.perf_counter()
    revoked = [x509.RevokedCertificateBuilder().serial_number(s).revocation_date(now)
               .add_extension(x509.CRLReason(r), critical=False).build() for s, r in rows]
    builder = x509.CertificateRevocationListBuilder(
        name, now, now + dt.timedelta(days=1), [], revoked).add_extension(
        x509.CRLNumber(1), critical=False)
    crl = builder.sign(key, hashes.SHA256())
    der = crl.public_bytes(Encoding.DER)
    build_s = time.perf_counter() - t0
    tbs = crl.tbs_certlist_bytes
    t0 = time.perf_counter()
    h = hashes.Hash(hashes.SHA256())
    h.update(tbs)
    key.sign(h.finalize(), padding.PKCS1v15(),
             __import__("cryptography.hazmat.primitives.asymmetric.utils",
                        fromlist=["Prehashed"]).Prehashed(hashes.SHA256()))
    floor_s = time.perf_counter() - t0
    return {"entries": entries, "seconds": build_s, "bytes": len(der), "floor_seconds": floor_s}


def bench_pure_build_crl(sizes: list[int]) -> list[tuple[int, float]]:
    from protocols.jpki.certificates import build_root_ca
    from protocols.jpki.crl import Revocation, RevocationReason, build_crl
    from protocols.jpki.profile import JpkiProfile, Municipality, Purpose
    from protocols.jpki.validity import Validity

    profile = JpkiProfile()
    key = rsa.generate_private_key(65537, 2048)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root = build_root_ca(profile=profile, purpose=Purpose.SIGN, key=key, serial=1,
                         validity=Validity(now, now + dt.timedelta(days=10)))
    muni = Municipality("東京都", "千代田区", "131016")
    out = []
    for n in sizes:
        revs = [Revocation(10_000 + i, now, RevocationReason.CESSATION_OF_OPERATION)
                for i in range(n)]
        t0 = time.perf_counter()
        build_crl(profile=profile, purpose=Purpose.SIGN, issuer=root, issuer_key=key,
                  partition=muni, revocations=revs, crl_number=1, this_update=now,
                  next_update=now + dt.timedelta(days=1))
        out.append((n, time.perf_counter() - t0))
    return out


def bench_ocsp(tmp: Path, seconds: float) -> dict:
    import httpx
    from fastapi import FastAPI

    from issuer.api.jpki import jpki_router

    issuer = _issuer(tmp, "rsa2048", "ocsp")
    key, spki = _subject("rsa2048")
    from issuer import holders

    hid = holders.register(issuer.sessions, dict(HOLDER, card_number="7" * 16))
    holders.attach_phone(issuer.sessions, hid, "ocsp-phone")
    nonce = issuer.jpki_challenge("o", "ocsp-phone", "sign")
    cert_der, _ = issuer.issue_jpki_certificate("o", "ocsp-phone", "sign", spki,
                                                _prove(key, nonce + spki))
    cert = x509.load_der_x509_certificate(cert_der)
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer.root("sign"),
                                                    hashes.SHA256()).build()
    der = req.public_bytes(Encoding.DER)
    in_process = _rate(lambda: issuer.ocsp_respond(der), seconds)
    app = FastAPI()
    app.include_router(jpki_router(lambda: issuer))
    with served(app, log_level="error") as base, httpx.Client() as client:
        url = f"{base}/ocsp"
        headers = {"Content-Type": "application/ocsp-request"}
        http = _rate(lambda: client.post(url, content=der, headers=headers), seconds)
    return {"http": http, "in_process": in_process,
            "raw_sign": _raw_sign_rate("rsa2048", seconds)}


def _openssl_ca(tmp: Path, rows, now: dt.datetime) -> Path:
    """An OpenSSL CA directory: RSA-2048 key and self-signed certificate, ``ca.cnf``, and an
    index file revoking ``rows`` (serial, reason) at ``now``."""
    from cryptography.hazmat.primitives import serialization

    d = tmp / "openssl-ca"
    d.mkdir(exist_ok=True)
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench CRL issuer")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (d / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    (d / "ca.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    names = {x509.ReasonFlags.cessation_of_operation: "cessationOfOperation",
             x509.ReasonFlags.affiliation_changed: "affiliationChanged",
             x509.ReasonFlags.superseded: "superseded", x509.ReasonFlags.certificate_hold: "certificateHold"}
    when = now.strftime("%y%m%d%H%M%SZ")
    with open(d / "index.txt", "w") as f:
        for serial, reason in rows:
            f.write(f"R\t301231000000Z\t{when},{names[reason]}\t{serial:X}\tunknown\t/CN={serial:x}\n")
    (d / "index.txt.attr").write_text("unique_subject = no\n")
    (d / "crlnumber").write_text("01\n")
    (d / "ca.cnf").write_text("[ca]\ndefault_ca = bench\n[bench]\ndatabase = index.txt\ncrlnumber = crlnumber\n"
                              "certificate = ca.pem\nprivate_key = ca.key\ndefault_md = sha256\n"
                              "default_crl_days = 1\nunique_subject = no\n")
    return d


def bench_openssl_crl(tmp: Path, entries: int) -> float | None:
    """Seconds ``openssl ca -gencrl`` takes for ``entries`` revoked certificates; None
    without openssl."""
    if shutil.which("openssl") is None:
        return None
    now, rows = _crl_inputs(entries)
    d = _openssl_ca(tmp, rows, now)
    t0 = time.perf_counter()
    subprocess.run(["openssl", "ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"], cwd=d,
                   check=True, capture_output=True)
    took = time.perf_counter() - t0
    crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
    assert len(crl) == entries  # the peer did the whole job
    return took


def bench_openssl_ocsp(tmp: Path, seconds: float) -> float | None:
    """Responses per second from ``openssl ocsp`` as an HTTP responder (RSA-2048 signer,
    the CA itself), one client asking about one good certificate; None without openssl."""
    import httpx
    from cryptography.hazmat.primitives import serialization

    if shutil.which("openssl") is None:
        return None
    now = dt.datetime.now(dt.UTC)
    d = _openssl_ca(tmp, [], now)
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    _, spki = _subject("rsa2048")
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "l")]))
            .issuer_name(ca.subject).public_key(serialization.load_der_public_key(spki)).serial_number(0x77)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=5))
            .sign(ca_key, hashes.SHA256()))
    (d / "index.txt").write_text("V\t301231000000Z\t\t77\tunknown\t/CN=l\n")
    port = free_port()
    server = subprocess.Popen(["openssl", "ocsp", "-index", "index.txt", "-port", str(port),
                               "-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem", "-ignore_err"],
                              cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        der = ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, hashes.SHA256()).build().public_bytes(Encoding.DER)
        url = f"http://127.0.0.1:{port}/"
        with httpx.Client() as client:
            for _ in range(100):
                try:
                    answer = client.post(url, content=der, headers={"Content-Type": "application/ocsp-request"})
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            else:
                return None
            status = ocsp.load_der_ocsp_response(answer.content).certificate_status
            assert status is ocsp.OCSPCertStatus.GOOD, status
            return _rate(lambda: client.post(url, content=der, headers={"Content-Type": "application/ocsp-request"}),
                         seconds)
    finally:
        server.terminate()
        server.wait(5)


def bench_ocsp_service(tmp: Path, seconds: float) -> float | None:
    """Responses per second from ``mcred serve`` in its own process (as OpenSSL's responder
    runs in its own), on an installation with one phone provisioned (RSA-2048), asked about
    that phone's signing certificate by the same kind of client; None if it did not start."""
    import os
    import sys

    import httpx

    from mcred.context import Context
    from mcred.provision import parse_holder, provision

    home = tmp / "service-home"
    ctx = Context.open(home)
    pid = ctx.new_phone()
    holder = {k: v for k, v in HOLDER.items() if k != "municipality_code"}
    done = provision(ctx, pid, parse_holder(holder), key_type="rsa2048", mdoc_batch=1)
    ctx.engine.dispose()
    cert = x509.load_der_x509_certificate(done.sign_certificate)
    root = x509.load_der_x509_certificate(done.sign_ca)
    der = ocsp.OCSPRequestBuilder().add_certificate(cert, root, hashes.SHA256()).build().public_bytes(Encoding.DER)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mcred.cli.main", "serve", "--port", str(port)],
                              env={**os.environ, "MCRED_HOME": str(home)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        headers = {"Content-Type": "application/ocsp-request"}
        with httpx.Client() as client:
            for _ in range(200):
                try:
                    if client.get(url + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            else:
                return None
            answer = ocsp.load_der_ocsp_response(client.post(url + "/ocsp", content=der, headers=headers).content)
            assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
            return _rate(lambda: client.post(url + "/ocsp", content=der, headers=headers), seconds)
    finally:
        server.terminate()
        server.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks jpki")
    ap.add_argument("--certificates", type=int, default=200)
    ap.add_argument("--crl-entries", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for key_type in ("rsa2048", "p384"):
            rate, floor = bench_issuance(tmp, key_type, args.certificates)
            print(f"issue {key_type:8s}: {rate:8.1f} certificates/s   "
                  f"(floor: {floor:8.1f} raw {key_type} signatures/s; ratio {rate / floor:.2f})")
        crl = bench_crl(args.crl_entries)
        print(f"CRL {crl['entries']:,} entries: built+signed in {crl['seconds']:.2f} s, "
              f"{crl['bytes'] / 1e6:.1f} MB   (floor: SHA-256 over the TBS + one RSA "
              f"signature {crl['floor_seconds']:.3f} s)")
        peer = bench_openssl_crl(tmp, args.crl_entries)
        if peer is not None:
            print(f"  openssl ca -gencrl, same entries: {peer:.2f} s (PEM out); ours/openssl = "
                  f"{crl['seconds'] / peer:.2f}")
        for n, secs in bench_pure_build_crl([5_000, 10_000, 20_000]):
            print(f"protocols.jpki.crl.build_crl {n:>6,} entries: {secs:.2f} s")
        o = bench_ocsp(tmp, args.seconds)
        print(f"OCSP over HTTP: {o['http']:8.1f} responses/s   (in-process responder "
              f"{o['in_process']:8.1f}/s; floor {o['raw_sign']:8.1f} raw RSA-2048 signatures/s)")
        service = bench_ocsp_service(tmp, args.seconds)
        if service is not None:
            print(f"OCSP from `mcred serve` in its own process: {service:8.1f} responses/s")
        peer_ocsp = bench_openssl_ocsp(tmp, args.seconds)
        if peer_ocsp is not None:
            ours = f"; mcred serve/openssl = {service / peer_ocsp:.2f}" if service is not None else ""
            print(f"  openssl ocsp responder in its own process, same client: {peer_ocsp:8.1f} responses/s"
                  + ours)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
