"""``python -m benchmarks rp_pdf``: a PDF signed on the phone (PAdES) and verified by the
relying party, next to pyHanko's own validator and the raw crypto floor, in one run.

Two documents: a one-page contract, and the same with a 4 MiB attachment-like stream (a
contract with its scans), each signed once by a phone provisioned with ``--key-type``
(default p384; the JPKI roots are RSA-2048 as ``mcred jpki setup`` makes them). Rows, each
the median of ``--runs`` interleaved calls:

1. ``sign (pyHanko + SE)``: :func:`mcred.jpki_pdf.sign_pdf_with_se`, the password verified
   in the simulated SE, pyHanko's incremental update, the SE's signature. Floor: the hash of
   the file and one signature with the same key type in software.
2. ``verify, ours``: :func:`reader.jpki_pdf.verify_pdf`, revocation ``none``: pyHanko
   reads the PDF and its coverage; our relying party checks the CMS, the chain, policy, key
   usage, validity. Floor: the hash of the signed bytes, the signature's verification and
   the certificate's by the root.
3. ``verify, pyHanko alone``: ``validate_pdf_signature`` with the same trust roots and no
   revocation (the peer, on the same file). Same floor.
4. ``verify + OCSP, ours``: row 2 asking the issuer's responder in the same process (the
   issuer service as an ASGI app). Floor: row 2's, plus the responder's signature and its
   verification.

``--runs N`` (default 15).
"""

from __future__ import annotations

import argparse
import io
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.scratch import scratch_context, software_key
from benchmarks.timing import interleaved

HOLDER = {"family_name": "速度", "given_name": "署名", "family_name_kana": "そくど",
          "given_name_kana": "しょめい", "birth_date": "1980-01-01", "sex": 1,
          "address": "東京都千代田区1-1", "prefecture": "東京都", "municipality": "千代田区"}
PASSWORD = "BENCH123"


def main() -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks rp_pdf")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--key-type", choices=("p384", "rsa2048"), default="p384")
    ap.add_argument("--attachment", type=int, default=4 * 1024 * 1024, help="bytes of the larger document's stream")
    args = ap.parse_args()
    try:
        from asn1crypto import x509 as asn1_x509
        from pyhanko.pdf_utils.reader import PdfFileReader
        from pyhanko.sign.validation import validate_pdf_signature
        from pyhanko_certvalidator import ValidationContext
    except ImportError:
        print("rp_pdf: needs pyHanko (pip install 'mcred[pdf]')")
        return {}

    os.fsync = lambda fd: None  # the SE image's durability is not what is measured here
    from cryptography.hazmat.primitives import serialization

    import wallet_sim
    from mcred.jpki_flow import jpki_issuer
    from mcred.jpki_pdf import blank_pdf, sign_pdf_with_se
    from mcred.provision import parse_holder, provision
    from reader.jpki_pdf import signatures, verify_pdf

    _tmp, ctx = scratch_context("mcred-rp-pdf-")
    pid = ctx.new_phone()
    provision(ctx, pid, parse_holder(HOLDER), key_type=args.key_type, mdoc_batch=1, pin="1234", password=PASSWORD)
    roots = jpki_issuer(ctx).roots("sign")
    transmit = wallet_sim.open_secure_element(pid, ctx.home).transmit
    asn1_roots = [asn1_x509.Certificate.load(r.public_bytes(serialization.Encoding.DER)) for r in roots]

    from fastapi.testclient import TestClient

    from mcred.service import create_app

    issuer_app = create_app(ctx, job_workers=1)
    client = TestClient(issuer_app, base_url=ctx.public_url)

    soft_sign, soft_verify, digest = software_key(args.key_type)

    responder = ec.generate_private_key(ec.SECP384R1())
    attrs = os.urandom(200)
    out = {}
    print(f"PDF signatures (PAdES) with a {args.key_type} signing key, median of {args.runs}, one process")
    print(f"{'document':<22}{'row':<26}{'ms':>9}{'floor ms':>10}{'x floor':>9}")
    def measure(label: str, size: int) -> None:
        original = blank_pdf(stream=os.urandom(size))
        signed = sign_pdf_with_se(transmit, PASSWORD.encode(), original)
        (sig,) = signatures(signed)
        cert = sig.embedded.signer_cert
        from cryptography import x509

        leaf = x509.load_der_x509_certificate(cert.dump())
        root = next(r for r in roots if r.subject == leaf.issuer)
        sample = soft_sign(attrs)
        resp_sig = responder.sign(attrs, ec.ECDSA(hashes.SHA384()))

        def hash_of(data: bytes) -> None:
            h = hashes.Hash(digest)
            h.update(data)
            h.finalize()

        def floor_sign() -> None:
            hash_of(original)
            soft_sign(attrs)

        def floor_verify() -> None:
            a, n, b, m = sig.byte_range
            hash_of(signed[a:a + n] + signed[b:b + m])
            soft_verify(sample, attrs)
            leaf.verify_directly_issued_by(root)

        def floor_ocsp() -> None:
            floor_verify()
            s = responder.sign(attrs, ec.ECDSA(hashes.SHA384()))
            responder.public_key().verify(s, attrs, ec.ECDSA(hashes.SHA384()))
            responder.public_key().verify(resp_sig, attrs, ec.ECDSA(hashes.SHA384()))

        def ours(revocation: str = "none", http=None):  # noqa: ANN001, ANN202
            def one() -> None:
                result = verify_pdf(signed, roots=roots, revocation=revocation, client=http)
                assert result["valid"], result
            return one

        def pyhanko_alone() -> None:
            reader = PdfFileReader(io.BytesIO(signed), strict=False)
            status = validate_pdf_signature(reader.embedded_signatures[0], ValidationContext(
                trust_roots=asn1_roots, allow_fetching=False, revocation_mode="soft-fail"))
            assert status.intact and status.valid

        times = interleaved({
            "sign": lambda: sign_pdf_with_se(transmit, PASSWORD.encode(), original),
            "floor sign": floor_sign, "ours": ours(), "pyhanko": pyhanko_alone, "floor verify": floor_verify,
            "ours ocsp": ours("ocsp", client), "floor ocsp": floor_ocsp}, args.runs)
        rows = [("sign (pyHanko + SE)", times["sign"], times["floor sign"]),
                ("verify, ours", times["ours"], times["floor verify"]),
                ("verify, pyHanko alone", times["pyhanko"], times["floor verify"]),
                ("verify + OCSP, ours", times["ours ocsp"], times["floor ocsp"])]
        for name, t, floor in rows:
            print(f"{label:<22}{name:<26}{t * 1000:>9.2f}{floor * 1000:>10.3f}{t / floor:>8.1f}x")
            out[f"{label}: {name}"] = {"seconds": t, "floor_seconds": floor, "ratio": t / floor}
        print(f"{label:<22}{'ours / pyHanko alone':<26}{times['ours'] / times['pyhanko']:>9.2f}")

    for label, size in (("1 page", 0), (f"+{args.attachment // 1024} KiB stream", args.attachment)):
        measure(label, size)
    issuer_app.state.jobs.shutdown()
    print("x floor = measured time / the crypto (and hashing) the step must do")
    return out


if __name__ == "__main__":
    main()
