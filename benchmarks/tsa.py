"""``python -m benchmarks tsa``: RFC 3161 time-stamps, ours next to pyHanko's and the raw
crypto floor, in one run.

Rows, each the median of ``--runs`` interleaved calls, one process, P-256 TSA unit under a
P-256 root (as the installation's TSA makes them):

1. ``stamp, TSA (parse, sign, log)``: :meth:`issuer.tsa.TimeStampAuthority.respond` of a
   scratch installation (SQLite): the request parsed, the token signed through the
   keystore, the audit row written, the response encoded. Floor: one ECDSA P-256 signature
   and the SHA-256 of the TSTInfo.
2. ``stamp, protocols.tsp alone``: :func:`protocols.tsp.grant` of a parsed request (no log,
   a key in memory). Same floor.
3. ``stamp, RSA-2048, ...``: pyHanko's in-process TSA (``DummyTimeStamper``, the peer) signs
   with RSA only, so both are timed with an RSA-2048 unit on the same request, next to
   their floor of one RSA-2048 signature and the SHA-256.
4. ``verify token, ours``: :func:`protocols.tsp.verify_token` (signature, signing
   certificate, EKU, path to the root, imprint, nonce). Floor: two ECDSA P-256 verifications
   (the token, the unit's certificate) and two SHA-256s.
5. ``verify token, pyHanko``: ``validate_tst_signed_data`` with a validation context
   trusting the root (the peer). Same floor.
6. ``stamp, as a signer asks``: :meth:`mcred.timestamps.Stamper.exchange` on that TSA in
   the same process, what ``mcred jpki sign --timestamp`` does: the request built, row 1,
   the token taken out of the response and verified under the root with its nonce. Floor:
   rows 1's and 4's.
7. ``CAdES-T signature, relying party``: :func:`reader.relying_party.verify` of a P-384
   JPKI-shaped signature with its time-stamp, revocation ``none``, next to the same
   signature without the time-stamp: what the time-stamp adds.

``--runs N`` (default 200).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from benchmarks.scratch import scratch_context
from benchmarks.timing import interleaved


def main() -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks tsa")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    os.fsync = lambda fd: None  # the keystore's durability is not what is measured

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from issuer.tsa import TimeStampAuthority
    from mcred.timestamps import Stamper
    from protocols import tsp
    from protocols.jpki.cms import build_detached_signature
    from reader.relying_party import verify

    _tmp, ctx = scratch_context("mcred-tsa-")
    authority = TimeStampAuthority(ctx.sessions, ctx.keystore)
    roots = authority.roots()
    unit = authority.unit()
    data = os.urandom(256)
    nonce = 0x1234_5678_9ABC_DEF0
    request_der = tsp.build_request(tsp.digest("sha256", data), nonce=nonce)
    request = tsp.parse_request(request_der)
    now = dt.datetime.now(dt.UTC)
    token = tsp.token_of_response(authority.respond(request_der))

    # the peer: pyHanko's DummyTimeStamper with a key of the same type, its certificate ours
    peer = None
    try:
        from asn1crypto import cms as asn1_cms
        from asn1crypto import keys as asn1_keys
        from asn1crypto import tsp as asn1_tsp
        from asn1crypto import x509 as asn1_x509
        from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
        from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
        from pyhanko_certvalidator import ValidationContext

        from protocols.tsp.certificates import build_tsa_root, build_tsa_unit

        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench TSA")])
        peer_root_key, peer_key = ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048)
        peer_root = build_tsa_root(name=name, key=peer_root_key, serial=2**64, not_before=now - dt.timedelta(days=1),
                                   not_after=now + dt.timedelta(days=30))
        peer_cert = build_tsa_unit(name=name, public_key=peer_key.public_key(), issuer=peer_root,
                                   issuer_key=peer_root_key, serial=2**65, not_before=now - dt.timedelta(hours=1),
                                   not_after=now + dt.timedelta(days=29))
        dummy = DummyTimeStamper(
            tsa_cert=asn1_x509.Certificate.load(peer_cert.public_bytes(serialization.Encoding.DER)),
            tsa_key=asn1_keys.PrivateKeyInfo.load(peer_key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())))
        asn1_request = asn1_tsp.TimeStampReq.load(request_der)
        loop = asyncio.new_event_loop()
        asn1_roots = [asn1_x509.Certificate.load(r.public_bytes(serialization.Encoding.DER)) for r in roots]
        signed_data = asn1_cms.ContentInfo.load(token)["content"]
        imprint = tsp.digest("sha256", data)

        rsa_unit = tsp.TsaUnit(certificate=peer_cert, policy=unit.policy,
                               sign=lambda b: peer_key.sign(b, padding.PKCS1v15(), hashes.SHA256()))

        def peer_stamp() -> None:
            dummy.request_tsa_response(asn1_request)

        def ours_rsa() -> None:
            tsp.grant(request, unit=rsa_unit, serial=99, gen_time=now)

        def floor_rsa() -> None:
            sha256(tbs)
            peer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())

        def peer_verify() -> None:
            status = loop.run_until_complete(validate_tst_signed_data(
                signed_data, ValidationContext(trust_roots=asn1_roots), lambda _alg: imprint))
            assert status["intact"] and status["valid"], status

        peer = {"peer stamp": peer_stamp, "ours rsa": ours_rsa, "floor rsa": floor_rsa,
                "peer verify": peer_verify}
    except ImportError:
        print("(pyHanko not installed: its rows are left out; pip install 'mcred[pdf]')")

    key = ec.generate_private_key(ec.SECP256R1())
    key_pub = key.public_key()
    tbs = os.urandom(120)
    sample = key.sign(tbs, ec.ECDSA(hashes.SHA256()))

    def sha256(b: bytes) -> None:
        h = hashes.Hash(hashes.SHA256())
        h.update(b)
        h.finalize()

    def floor_stamp() -> None:
        sha256(tbs)
        key.sign(tbs, ec.ECDSA(hashes.SHA256()))

    def floor_verify() -> None:
        sha256(data)
        sha256(tbs)
        key_pub.verify(sample, tbs, ec.ECDSA(hashes.SHA256()))
        key_pub.verify(sample, tbs, ec.ECDSA(hashes.SHA256()))

    # a JPKI-shaped P-384 detached signature, with and without its time-stamp
    signer_key = ec.generate_private_key(ec.SECP384R1())
    jname = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench signer")])
    signer_cert = (x509.CertificateBuilder().subject_name(jname).issuer_name(jname)
                   .public_key(signer_key.public_key()).serial_number(7)
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
                   .sign(signer_key, hashes.SHA384()))
    cms = build_detached_signature(content=data, certificate=signer_cert, signing_time=now,
                                   sign=lambda b: signer_key.sign(b, ec.ECDSA(hashes.SHA384())))
    from protocols.jpki.cms import add_signature_timestamp, signature_value

    stamped = add_signature_timestamp(cms, tsp.token_of_response(authority.respond(
        tsp.build_request(tsp.digest("sha256", signature_value(cms))))))

    stamper = Stamper(authority.respond, "bench", tuple(roots))

    def floor_exchange() -> None:
        floor_stamp()
        floor_verify()

    fns = {
        "stamp": lambda: authority.respond(request_der),
        "exchange": lambda: stamper.exchange(data),
        "floor exchange": floor_exchange,
        "grant": lambda: tsp.grant(request, unit=unit, serial=99, gen_time=now),
        "floor stamp": floor_stamp,
        "verify": lambda: tsp.verify_token(token, data=data, roots=roots, nonce=nonce),
        "floor verify": floor_verify,
        "rp plain": lambda: verify(data, cms, roots=[signer_cert], revocation="none"),
        "rp stamped": lambda: verify(data, stamped, roots=[signer_cert], revocation="none", tsa_roots=roots),
        **(peer or {}),
    }
    times = interleaved(fns, args.runs)
    rows = [("stamp, TSA (parse, sign, log)", times["stamp"], times["floor stamp"]),
            ("stamp, protocols.tsp alone", times["grant"], times["floor stamp"])]
    if peer:
        rows += [("stamp, RSA-2048, protocols.tsp", times["ours rsa"], times["floor rsa"]),
                 ("stamp, RSA-2048, pyHanko's Dummy", times["peer stamp"], times["floor rsa"])]
    rows.append(("verify token, ours", times["verify"], times["floor verify"]))
    rows.append(("stamp, as a signer asks", times["exchange"], times["floor exchange"]))
    if peer:
        rows.append(("verify token, pyHanko", times["peer verify"], times["floor verify"]))
    print(f"RFC 3161 time-stamps, P-256 TSA unit, median of {args.runs}, one process")
    print(f"{'row':<36}{'us':>10}{'floor us':>10}{'x floor':>9}")
    out = {}
    for name, t, floor in rows:
        print(f"{name:<36}{t * 1e6:>10.1f}{floor * 1e6:>10.1f}{t / floor:>8.2f}x")
        out[name] = {"seconds": t, "floor_seconds": floor, "ratio": t / floor}
    if peer:
        print(f"{'ours / pyHanko, stamp (RSA-2048)':<36}{times['ours rsa'] / times['peer stamp']:>10.2f}")
        print(f"{'ours / pyHanko, verify':<36}{times['verify'] / times['peer verify']:>10.2f}")
    added = times["rp stamped"] - times["rp plain"]
    print(f"{'CAdES-T signature, relying party':<36}{times['rp stamped'] * 1e6:>10.1f} us, "
          f"{times['rp plain'] * 1e6:.1f} us without its time-stamp (+{added * 1e6:.1f} us)")
    out["CAdES-T signature, relying party"] = {"seconds": times["rp stamped"], "without": times["rp plain"]}
    print("x floor = measured time / the crypto (and hashing) the step must do")
    return out


if __name__ == "__main__":
    main()
