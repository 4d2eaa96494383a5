"""``python -m benchmarks rp_auth``: JPKI user authentication (利用者証明) at the relying
party, each figure next to its raw crypto floor measured in the same run.

Rows (a P-384 user-authentication certificate, as a phone provisioned with ``p384`` has):

1. ``verify, memory``: the relying party's side alone: a challenge handed out and taken
   back (in memory), the signature over its nonce, the chain to the root, policy, key usage
   and validity (revocation ``none``). Floor: the two verifications (the ECDSA P-384
   signature; the certificate's by the root, RSA-2048 as ``mcred jpki setup`` makes it).
2. ``verify, SQLite``: the same with the challenges in the reader's table (two short
   transactions per login: the issue, the take). Same floor.
3. ``verify + OCSP``: revocation asked of the issuer's responder in the same process (the
   issuer service as an ASGI app; the responder signs with its own P-384 key). Floor: the
   two verifications, the responder's signature and its verification, and the verification
   of the delegated responder certificate.
4. ``verify + OCSP, HTTP``: row 3 with the issuer's service as a deployment runs it
   (``uvicorn --factory mcred.service:app_from_env``, one worker, another process) and the
   relying party asking it over a keep-alive HTTP connection on 127.0.0.1. Same floor.
   Row 3 pays Starlette's TestClient thread portal instead of a socket.
5. ``login (phone + RP)``: the phone's part too: the PIN verified in the simulated SE, the
   user-authentication certificate read, the nonce signed by the SE's key; then row 1.
   Floor: row 1's plus one ECDSA P-384 signature.

``--seconds S`` per row (default 2).
"""

from __future__ import annotations

import argparse
import os
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.scratch import free_port, scratch_context
from benchmarks.timing import rate

HOLDER = {"family_name": "速度", "given_name": "計測", "family_name_kana": "そくど",
          "given_name_kana": "けいそく", "birth_date": "1980-01-01", "sex": 1,
          "address": "東京都千代田区1-1", "prefecture": "東京都", "municipality": "千代田区"}


def _rate(fn, seconds: float) -> float:
    return rate(fn, seconds, warmup=True)


def main() -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks rp_auth")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()

    os.fsync = lambda fd: None  # the SE image's durability is not what is measured here
    import wallet_sim
    from mcred.db import make_engine, migrate
    from mcred.jpki_flow import jpki_issuer, sign_challenge
    from mcred.provision import parse_holder, provision
    from reader.relying_party import RelyingPartyService
    from reader.rp_auth import MemoryChallengeStore, SqlChallengeStore

    # the issuer's public URL is where the HTTP row's server listens: certificates carry it
    port = free_port()
    os.environ["MCRED_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    tmp, ctx = scratch_context("mcred-rp-auth-")
    pid = ctx.new_phone()
    provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1, pin="1234", password="BENCH123")
    roots = jpki_issuer(ctx).roots("auth")
    transmit = wallet_sim.open_secure_element(pid, ctx.home).transmit

    probe = RelyingPartyService(roots)
    c = probe.challenge()
    signature, cert_der = sign_challenge(transmit, b"1234", c.nonce)
    cert = x509.load_der_x509_certificate(cert_der)
    root = next(r for r in roots if r.subject == cert.issuer)

    # floors ------------------------------------------------------------------------------
    nonce = c.nonce

    def verify_two() -> None:
        cert.public_key().verify(signature, nonce, ec.ECDSA(hashes.SHA384()))
        cert.verify_directly_issued_by(root)  # the root's signature (RSA-2048 by default)

    floor2 = _rate(verify_two, args.seconds)
    responder_key = ec.generate_private_key(ec.SECP384R1())
    data = os.urandom(300)
    resp_sig = responder_key.sign(data, ec.ECDSA(hashes.SHA384()))

    def verify_ocsp_floor() -> None:
        verify_two()
        s = responder_key.sign(data, ec.ECDSA(hashes.SHA384()))
        responder_key.public_key().verify(s, data, ec.ECDSA(hashes.SHA384()))
        responder_key.public_key().verify(resp_sig, data, ec.ECDSA(hashes.SHA384()))

    floor_ocsp = _rate(verify_ocsp_floor, args.seconds)
    phone_key = ec.generate_private_key(ec.SECP384R1())

    def login_floor() -> None:
        phone_key.sign(nonce, ec.ECDSA(hashes.SHA384()))
        verify_two()

    floor_login = _rate(login_floor, args.seconds)

    # the relying party -------------------------------------------------------------------
    # challenges issued here are part of the RP's work: issue and take both timed
    def rp_only(rp: RelyingPartyService, revocation: str = "none"):
        def one() -> None:
            ch = rp.challenge()
            t_pause = time.perf_counter()  # the phone's signature: not the RP's time
            sig = sign_challenge(transmit, b"1234", ch.nonce)[0]
            one.paused += time.perf_counter() - t_pause
            out = rp.authenticate(ch.id, sig, cert_der, revocation=revocation)
            assert out["valid"], out
        one.paused = 0.0
        return one

    def rate_excluding(fn, seconds: float) -> float:
        fn()
        fn.paused = 0.0
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0 - fn.paused
            if elapsed >= seconds:
                return n / elapsed

    memory = RelyingPartyService(roots, challenges=MemoryChallengeStore())
    engine = make_engine(f"sqlite:///{tmp / 'reader.sqlite3'}")
    migrate(engine, "reader@head")
    sql = RelyingPartyService(roots, challenges=SqlChallengeStore(engine))

    from fastapi.testclient import TestClient

    from mcred.service import create_app

    issuer_app = create_app(ctx, job_workers=1)
    client = TestClient(issuer_app, base_url=ctx.public_url)
    with_ocsp = RelyingPartyService(roots, client=client)

    rows = [("verify, memory", rate_excluding(rp_only(memory), args.seconds), floor2),
            ("verify, SQLite", rate_excluding(rp_only(sql), args.seconds), floor2),
            ("verify + OCSP", rate_excluding(rp_only(with_ocsp, "ocsp"), args.seconds), floor_ocsp)]
    import httpx

    from benchmarks.api import serve

    server = serve(ctx.home, ctx.database, port, 1, 1)
    try:
        with httpx.Client(timeout=30) as http:
            over_http = RelyingPartyService(roots, client=http)
            rows.append(("verify + OCSP, HTTP", rate_excluding(rp_only(over_http, "ocsp"), args.seconds),
                         floor_ocsp))
    finally:
        server.terminate()
        server.wait(15)

    def login() -> None:
        ch = memory.challenge()
        sig, der = sign_challenge(transmit, b"1234", ch.nonce)
        out = memory.authenticate(ch.id, sig, der, revocation="none")
        assert out["valid"], out

    rows.append(("login (phone + RP)", _rate(login, args.seconds), floor_login))
    issuer_app.state.jobs.shutdown()
    engine.dispose()

    print("JPKI user authentication (利用者証明), P-384, one process")
    print(f"{'row':<22}{'per s':>10}{'ms':>8}{'floor/s':>10}{'ratio':>8}")
    out = {}
    for name, per_s, floor in rows:
        print(f"{name:<22}{per_s:>10,.0f}{1000 / per_s:>8.2f}{floor:>10,.0f}{floor / per_s:>7.2f}x")
        out[name] = {"per_s": per_s, "floor_per_s": floor, "ratio": floor / per_s}
    print("ratio = floor rate / measured rate (1.00x: all time in the crypto the step must do)")
    return out


if __name__ == "__main__":
    main()
