"""``python -m benchmarks linkage``: the user-authentication certificate linkage service
(issuer.jpki.linkage) and a relying party following it (RevocationWatch.relink), per serial,
next to what an answer cannot avoid.

Set-up: an installation's JPKI CA (its default roots) issues N holders a user-authentication
certificate each, then a second one (a new phone), revoking the first as
cessationOfOperation; the issuer service runs in this process (an ASGI app behind an httpx
client, as the drills use it).

Rows (per old serial, a batch of at most 1000 per request):

1. ``issuer: successors(), SQLite``: the registry read (the old certificates by serial, every
   user-authentication certificate of their holders), the answer built (DER included), the
   batch audited.
2. ``issuer: POST /jpki/linkage``: the same over HTTP with a reader token (JSON both ways).
3. ``floor: the two reads``: the same two SELECTs as plain rows, nothing built or written:
   what any answer from this registry costs.
4. ``relying party: relink, SQLite``: the watch's N replaced certificates asked about over
   HTTP, each successor's certificate checked (parse, purpose, serial, chain to the root) and
   watched, the old row linked.
5. ``floor (RP): parse + root signature``: each successor's certificate parsed and its
   signature by the root verified, what any relying party that believes the answer must do;
   the relink's ratio to it is printed below the table.

``--holders N`` (default 500), ``--runs R`` (default 5; medians).
"""

from __future__ import annotations

import argparse
import base64
import shutil
import statistics
import time
import uuid

from benchmarks.scratch import scratch_context
from benchmarks.timing import interleaved, median_time, per_item_table

HOLDER = {"family_name": "紐付", "given_name": "太郎", "family_name_kana": "ひもづけ",
          "given_name_kana": "たろう", "birth_date": "1980-04-01", "sex": 1,
          "address": "東京都千代田区1-1", "prefecture": "東京都", "municipality": "千代田区",
          "municipality_code": "131016"}


def _auth_certificate(issuer, phone: str) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    nonce = issuer.jpki_challenge(f"job-{phone}", phone, "auth")
    cert, _root = issuer.issue_jpki_certificate(f"job-{phone}", phone, "auth", spki,
                                                key.sign(nonce + spki, ec.ECDSA(hashes.SHA384())))
    return cert


def _issue(issuer, n: int) -> list[bytes]:
    """N holders, each with an old user-authentication certificate (revoked) and a new one:
    the old ones' DER."""
    from issuer import holders, revocation

    run = uuid.uuid4().hex[:6]
    olds = []
    for i in range(n):
        hid = holders.register(issuer.sessions, dict(HOLDER, card_number=f"{int(run, 16) % 10**6:06d}{i:010d}"))
        first, second = f"link-{run}-{i}-a", f"link-{run}-{i}-b"
        holders.attach_phone(issuer.sessions, hid, first)
        olds.append(_auth_certificate(issuer, first))
        holders.attach_phone(issuer.sessions, hid, second)
        _auth_certificate(issuer, second)
        revocation.revoke(issuer.sessions, first, "cessationOfOperation")
    return olds


def main() -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks linkage")
    ap.add_argument("--holders", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    import warnings

    from cryptography import x509
    from sqlalchemy import select

    with warnings.catch_warnings():  # starlette's note about httpx2; httpx is what we use
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from issuer.api.auth import create_token
    from issuer.db import Credential
    from issuer.jpki import linkage
    from mcred.db import make_engine, migrate
    from mcred.jpki_flow import jpki_issuer
    from mcred.service import create_app
    from reader.rp_watch import RevocationWatch

    tmp, ctx = scratch_context("mcred-linkage-")
    issuer = jpki_issuer(ctx)
    t0 = time.perf_counter()
    olds = _issue(issuer, args.holders)
    serials = [format(x509.load_der_x509_certificate(d).serial_number, "x") for d in olds]
    batches = [serials[i:i + linkage.MAX_BATCH] for i in range(0, len(serials), linkage.MAX_BATCH)]
    print(f"set-up: {args.holders} holders, two user-authentication certificates each (the first "
          f"revoked), in {time.perf_counter() - t0:.1f} s")
    app = create_app(ctx, job_workers=1)
    client = TestClient(app, base_url=ctx.public_url)
    token = create_token(ctx.sessions, ["reader"], "benchmark bank")[1]
    headers = {"Authorization": f"Bearer {token}"}

    def local() -> None:
        for batch in batches:
            links = linkage.successors(ctx.sessions, batch, relying_party="bench", actor="bench")
            assert all(link.current is not None for link in links)

    def http() -> None:
        for batch in batches:
            r = client.post("/jpki/linkage", json={"serials": batch}, headers=headers)
            assert r.status_code == 200 and all(x["current"] for x in r.json()["links"]), r.text

    def floor() -> None:
        with ctx.engine.connect() as conn:
            for batch in batches:
                olds = conn.execute(select(Credential.serial, Credential.holder_id, Credential.issued_at)
                                    .where(Credential.kind == "jpki-auth", Credential.serial.in_(batch))).all()
                rows = conn.execute(select(Credential.holder_id, Credential.serial, Credential.issued_at,
                                           Credential.not_after, Credential.status, Credential.reason,
                                           Credential.body)
                                    .where(Credential.kind == "jpki-auth",
                                           Credential.holder_id.in_({o.holder_id for o in olds}))).all()
                assert len(rows) == 2 * len(batch)

    # in rotation, so that a shared machine's load slows them alike and the ratios hold
    issuer_rows = interleaved({"issuer: successors(), SQLite": local, "issuer: POST /jpki/linkage": http,
                               "floor: the two reads": floor}, args.runs)
    rows = list(issuer_rows.items())
    t_floor = issuer_rows["floor: the two reads"]

    roots = issuer.roots("auth")

    def ask(batch: list[str]) -> list[dict]:
        return client.post("/jpki/linkage", json={"serials": batch}, headers=headers).json()["links"]

    relinks = []
    for _ in range(max(1, args.runs // 2)):
        engine = make_engine(f"sqlite:///{tmp / f'rp-{uuid.uuid4().hex[:6]}.sqlite3'}")
        migrate(engine, "reader@head")
        watch = RevocationWatch(engine, roots, client=client)
        for i, der in enumerate(olds):
            watch.add(f"acct-{i}", der)
        watch.sweep()
        t = time.perf_counter()
        found = watch.relink(ask)
        relinks.append(time.perf_counter() - t)
        assert len(found) == args.holders and {r.outcome for r in found} == {"linked"}, found[:2]
        engine.dispose()
    rows.append(("relying party: relink, SQLite", statistics.median(relinks)))
    news = [base64.b64decode(link["successors"][-1]["certificate"]) for batch in batches for link in ask(batch)]

    def rp_floor() -> None:
        for der in news:
            x509.load_der_x509_certificate(der).verify_directly_issued_by(roots[0])

    t_rp_floor = median_time(rp_floor, args.runs)
    rows.append(("floor (RP): parse + root signature", t_rp_floor))
    app.state.jobs.shutdown()

    print(f"linkage: {args.holders} old user-authentication serials, batches of {linkage.MAX_BATCH}; "
          f"per serial (medians of {args.runs})")
    out = per_item_table(rows, args.holders, t_floor, unit="serial")
    print("x floor = time / the two plain SELECTs' time (no answer built, nothing audited); the "
          f"relink takes {statistics.median(relinks) / t_rp_floor:.2f}x its own floor (each successor "
          "parsed and its signature by the root verified)")
    shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
