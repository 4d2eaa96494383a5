"""``python -m benchmarks rp_watch``: the relying party's revocation watch (reader.rp_watch),
a sweep of N customers' signing certificates, next to what it cannot avoid and to a peer.

Set-up: an installation's JPKI CA (its default roots) issues N signing certificates in one
partition and revokes 2 % of them (reasons as J-LIS uses them); the issuer service runs in
this process (an ASGI app behind an httpx client, as the drills use it); the watch list holds
the N certificates.

Rows (per swept certificate, steady state: nothing changed since the last sweep):

1. ``sweep by CRL, SQLite``: :meth:`RevocationWatch.sweep` with the list in SQLite: the rows
   read, the CRL fetched, judged (signature, currency) once, each certificate parsed, its
   scope checked and looked up, the evidence time written back in batches.
2. ``sweep by CRL, PostgreSQL`` (when a server answers at ``MCRED_TEST_POSTGRES_URL``).
3. ``floor: fetch + parse``: the same CRL fetched through the same client, its signature
   verified, its entries put in a dict, the N certificates parsed and looked up: what any
   sweep in Python with ``cryptography`` does, with no database and no checks.
4. ``peer: openssl verify -crl_check``: a shell-scripted relying party's sweep, one ``openssl
   verify -crl_check -CAfile root -CRLfile crl cert`` per certificate (timed on a sample,
   the CRL fetched once).
5. ``sweep by OCSP, SQLite``: one signed, nonced OCSP request per certificate.

``--certs N`` (default 1000), ``--runs R`` (default 5; medians).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
import uuid

from benchmarks.scratch import scratch_context
from benchmarks.timing import median_time, per_item_table

HOLDER = {"family_name": "監視", "given_name": "花子", "family_name_kana": "かんし",
          "given_name_kana": "はなこ", "birth_date": "1950-04-01", "sex": 2,
          "address": "東京都千代田区1-1", "prefecture": "東京都", "municipality": "千代田区",
          "municipality_code": "131016"}
REASONS = ("affiliationChanged", "superseded", "cessationOfOperation", "certificateHold")


def _issue(issuer, n: int) -> list[tuple[str, bytes]]:
    """N signing certificates of one partition, keys made here (the SE's part is not what
    is measured): (phone id, DER)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from issuer import holders

    out = []
    run = uuid.uuid4().hex[:6]
    for i in range(n):
        phone = f"watch-{run}-{i}"
        hid = holders.register(issuer.sessions, dict(HOLDER, card_number=f"{int(run, 16) % 10**6:06d}{i:010d}"))
        holders.attach_phone(issuer.sessions, hid, phone)
        key = ec.generate_private_key(ec.SECP384R1())
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        nonce = issuer.jpki_challenge(f"job-{phone}", phone, "sign")
        cert, _root = issuer.issue_jpki_certificate(f"job-{phone}", phone, "sign", spki,
                                                    key.sign(nonce + spki, ec.ECDSA(hashes.SHA384())))
        out.append((phone, cert))
    return out


def _postgres_engine():  # noqa: ANN202 - (engine, cleanup) or None
    import sqlalchemy as sa

    from mcred.db import make_engine, migrate

    url = os.environ.get("MCRED_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        admin = sa.create_engine(url, connect_args={"connect_timeout": 3})
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - no server: the row is skipped, and said
        print(f"  (PostgreSQL row skipped: {type(exc).__name__})")
        return None
    sep = "&" if "?" in url else "?"
    engine = make_engine(f"{url}{sep}options=-csearch_path%3D{schema}")
    migrate(engine, "reader@head")

    def cleanup() -> None:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return engine, cleanup


def main() -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks rp_watch")
    ap.add_argument("--certs", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sample", type=int, default=20, help="certificates timed for the openssl row")
    args = ap.parse_args()

    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    from issuer import revocation
    from mcred.db import make_engine, migrate
    from mcred.jpki_flow import jpki_issuer
    from mcred.service import create_app
    from protocols import certs
    from reader.rp_watch import RevocationWatch

    tmp, ctx = scratch_context("mcred-rp-watch-")
    issuer = jpki_issuer(ctx)
    t0 = time.perf_counter()
    issued = _issue(issuer, args.certs)
    for i, (phone, _der) in enumerate(issued[:: 50]):
        revocation.revoke(issuer.sessions, phone, REASONS[i % len(REASONS)], "sign")
    print(f"set-up: {args.certs} signing certificates issued, {len(issued[::50])} revoked, "
          f"in {time.perf_counter() - t0:.1f} s")
    roots = issuer.roots("sign")
    app = create_app(ctx, job_workers=1)
    client = TestClient(app, base_url=ctx.public_url)

    def watch_on(engine) -> RevocationWatch:
        watch = RevocationWatch(engine, roots, client=client)
        for phone, der in issued:
            watch.add(phone, der)
        first = watch.sweep()
        assert first.complete and len(first.changes) == args.certs, first.unjudged[:3]
        return watch

    rows: list[tuple[str, float]] = []
    sqlite = make_engine(f"sqlite:///{tmp / 'rp.sqlite3'}")
    migrate(sqlite, "reader@head")
    watch = watch_on(sqlite)

    def sweep() -> None:
        report = watch.sweep()
        assert report.complete and not report.changes

    rows.append(("sweep by CRL, SQLite", median_time(sweep, args.runs)))
    pg = _postgres_engine()
    if pg is not None:
        pg_watch = watch_on(pg[0])

        def sweep_pg() -> None:
            report = pg_watch.sweep()
            assert report.complete and not report.changes

        rows.append(("sweep by CRL, PostgreSQL", median_time(sweep_pg, args.runs)))
        pg[1]()

    ders = [der for _phone, der in issued]
    cert0 = x509.load_der_x509_certificate(ders[0])
    url = certs.crl_url(cert0)
    root = next(r for r in roots if r.subject == cert0.issuer)

    def floor() -> None:
        crl = x509.load_der_x509_crl(client.get(url).content)
        assert crl.is_signature_valid(root.public_key())
        revoked = {e.serial_number: e for e in crl}
        for der in ders:
            revoked.get(x509.load_der_x509_certificate(der).serial_number)

    t_floor = median_time(floor, args.runs)
    rows.append(("floor: fetch + parse", t_floor))

    openssl = shutil.which("openssl")
    if openssl:
        work = tmp / "openssl"
        work.mkdir()
        (work / "root.pem").write_bytes(b"".join(r.public_bytes(Encoding.PEM) for r in roots))
        sample = ders[: args.sample]
        for i, der in enumerate(sample):
            (work / f"{i}.pem").write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))

        def peer() -> None:
            (work / "crl.pem").write_bytes(x509.load_der_x509_crl(client.get(url).content)
                                           .public_bytes(Encoding.PEM))
            for i in range(len(sample)):
                subprocess.run([openssl, "verify", "-crl_check", "-CAfile", str(work / "root.pem"),
                                "-CRLfile", str(work / "crl.pem"), str(work / f"{i}.pem")],
                               capture_output=True, check=False)

        rows.append(("peer: openssl verify -crl_check", median_time(peer, 1) * args.certs / len(sample)))
    ocsp_engine = make_engine(f"sqlite:///{tmp / 'rp-ocsp.sqlite3'}")
    migrate(ocsp_engine, "reader@head")
    ocsp_watch = RevocationWatch(ocsp_engine, roots, client=client)
    for phone, der in issued[: min(200, args.certs)]:
        ocsp_watch.add(phone, der)
    ocsp_watch.sweep("ocsp")

    def sweep_ocsp() -> None:
        report = ocsp_watch.sweep("ocsp")
        assert report.complete and not report.changes

    t_ocsp = median_time(sweep_ocsp, max(1, args.runs // 2))
    rows.append(("sweep by OCSP, SQLite", t_ocsp * args.certs / min(200, args.certs)))
    app.state.jobs.shutdown()

    root_alg = type(root.public_key()).__name__.removeprefix("_").replace("PublicKey", "")
    print(f"revocation watch: {args.certs} signing certificates, one partition, root {root_alg}; "
          f"per sweep and per certificate (medians of {args.runs})")
    out = per_item_table(rows, args.certs, t_floor, unit="cert", total="sweep")
    print("x floor = time / the floor's time (fetch, CRL signature, entries, certificates parsed); "
          "openssl and OCSP rows timed on a sample and scaled to N")
    shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
