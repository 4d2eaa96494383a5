"""``python -m benchmarks request [--runs N] [--docs N]``: reader authentication of a
DeviceRequest asking for several documents, the 2021 way (a readerAuth per DocRequest) and
the second edition's (one readerAuthAll over all of them), on both sides: the reader
signing the request, the wallet reading and verifying it (chain to its reader CA and the
signature). Each next to its crypto floor measured in the same run (ECDSA P-256 signs and
verifies; a chain costs one verify, the CA's signature on the reader certificate).

No peer implementation here reads readerAuthAll (pymdoccbor, @auth0/mdl and @owf/mdoc are
2021-edition); the floor is the comparison.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.timing import interleaved
from protocols import cbor
from protocols.mdoc import (
    AlternativeDataElements,
    DeviceRequest,
    DeviceRequestInfo,
    DocRequest,
    DocRequestInfo,
    ItemsRequest,
    UseCase,
    verify_reader_auth,
)


def _reader_pki(now: dt.datetime):
    from cryptography.hazmat.primitives import serialization

    from mcred.reader_pki import issue_reader_certificate, new_reader_ca
    from protocols import cose

    ca, ca_key = new_reader_ca("Bench Reader CA", years=1, now=now)
    cert, key = issue_reader_certificate(ca, ca_key, "Bench Reader", days=30, now=now)
    return ca, cose.key_signer(key), [cert.public_bytes(serialization.Encoding.DER)]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks request")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--docs", type=int, default=3, help="document requests in the DeviceRequest")
    args = ap.parse_args()
    now = dt.datetime.now(dt.UTC)
    ca, signer, chain = _reader_pki(now)
    transcript = cbor.dumps([None, None, ["bench", os.urandom(16)]])
    ns = "org.iso.18013.5.1"
    specs = []
    for i in range(args.docs):
        info = DocRequestInfo(alternative_data_elements=(AlternativeDataElements(
            (ns, "age_over_21"), (((ns, "birth_date"),),)),))
        specs.append((f"org.example.doc.{i}", {ns: {"family_name": False, "age_over_21": True, "portrait": False}}, info))
    cases = [UseCase(True, tuple((i,) for i in range(args.docs)))]

    def per_doc() -> bytes:
        docs = [DocRequest.build(ItemsRequest.build(t, items), reader_signer=signer, reader_chain=chain,
                                 session_transcript=transcript) for t, items, _ in specs]
        return DeviceRequest.build(docs).encode()

    def all_at_once() -> bytes:
        docs = [DocRequest(ItemsRequest.build(t, items, info=info)) for t, items, info in specs]
        return DeviceRequest.build(docs, device_request_info=DeviceRequestInfo.build(cases), reader_signer=signer,
                                   reader_chain=chain, session_transcript=transcript).encode()

    old, new = per_doc(), all_at_once()

    def check(raw: bytes) -> None:
        result = verify_reader_auth(DeviceRequest.decode(raw), session_transcript=transcript, trust_anchors=[ca],
                                    now=now)
        assert result.valid, result

    check(old)
    check(new)
    key = ec.generate_private_key(ec.SECP256R1())
    msg = os.urandom(200)
    ecdsa = ec.ECDSA(hashes.SHA256())
    sig, pub = key.sign(msg, ecdsa), key.public_key()
    timed = interleaved({"sign 1.0": per_doc, "sign 1.1": all_at_once,
                         "verify 1.0": lambda: check(old), "verify 1.1": lambda: check(new),
                         "ecdsa sign": lambda: key.sign(msg, ecdsa), "ecdsa verify": lambda: pub.verify(sig, msg, ecdsa)},
                        args.runs)
    n, us = args.docs, 1e6
    s, v = timed["ecdsa sign"], timed["ecdsa verify"]
    rows = [
        (f"reader builds, readerAuth per DocRequest ({n} signs)", timed["sign 1.0"], n * s),
        ("reader builds, readerAuthAll (1 sign)", timed["sign 1.1"], s),
        (f"wallet verifies, readerAuth per DocRequest ({n} chains + {n} signatures)", timed["verify 1.0"], 2 * n * v),
        ("wallet verifies, readerAuthAll (1 chain + 1 signature)", timed["verify 1.1"], 2 * v),
    ]
    print(f"DeviceRequest reader authentication: {n} document requests, P-256, median of {args.runs} runs "
          f"(request sizes: 1.0 {len(old)} B, 1.1 {len(new)} B)")
    print(f"  floors: ECDSA sign {s * us:.1f} us, verify {v * us:.1f} us")
    for label, t, floor in rows:
        print(f"  {label:68s} {t * us:8.1f} us  = {t / floor:5.2f}x floor")
    print(f"  readerAuthAll against a readerAuth each: reader {timed['sign 1.0'] / timed['sign 1.1']:.2f}x faster, "
          f"wallet {timed['verify 1.0'] / timed['verify 1.1']:.2f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
