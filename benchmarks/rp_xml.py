"""``python -m benchmarks rp_xml``: an XML filing signed on the phone (an enveloped XML
signature, or XAdES B-B with ``--xades``) and verified by the relying party, next to
signxml alone, xmlsec1 and the raw crypto floor, in one run.

Two documents: a short filing (a form of a dozen fields), and a long one (``--items``
repeated entries, like an e-Tax return's detail lines), each signed by a phone provisioned
with ``--key-type`` (default p384; the JPKI roots are RSA-2048 as ``mcred jpki setup``
makes them). Rows, each the median of ``--runs`` interleaved calls:

1. ``sign (signxml + SE)``: :func:`mcred.jpki_flow.sign_xml_with_se`, the password verified
   in the simulated SE, the document parsed and canonicalized, the SE's signature. Floor:
   the hash of the document and one signature with the same key type in software.
2. ``verify, ours``: :func:`reader.jpki_xml.verify_xml`, revocation ``none``: the shape
   checks, signxml's verification, chain, policy, key usage, validity. Floor: the hash of
   the document, the signature's verification and the certificate's by the root.
3. ``verify, signxml alone``: signxml's ``XMLVerifier().verify`` (``XAdESVerifier``) with
   the signer's certificate given (no chain, no shape checks): the peer in the same
   process, in the UTF-8 subclass ours uses (stock signxml cannot read these documents'
   Japanese element names back). Same floor.
4. ``verify, xmlsec1``: the C implementation (libxmlsec1 over OpenSSL) as a process, with
   the chain to the root: its start-up included, as a relying party calling it pays.
   Skipped where xmlsec1 is not installed.

``--runs N`` (default 15).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization

from benchmarks.scratch import scratch_context, software_key
from benchmarks.timing import interleaved

HOLDER = {"family_name": "速度", "given_name": "申請", "family_name_kana": "そくど",
          "given_name_kana": "しんせい", "birth_date": "1980-01-01", "sex": 1,
          "address": "東京都千代田区1-1", "prefecture": "東京都", "municipality": "千代田区"}
PASSWORD = "BENCH123"


def filing(items: int) -> bytes:
    """A filing of a dozen fields and ``items`` detail lines."""
    lines = "".join(f"<明細 番号=\"{n}\"><科目>給与</科目><金額>{1000 + n}</金額><備考>第{n}行</備考></明細>"
                    for n in range(items))
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<申告書 xmlns=\"urn:example:bench\">"
            "<申告者><氏名>速度 申請</氏名><住所>東京都千代田区1-1</住所><生年月日>1980-01-01</生年月日>"
            "<電話>03-0000-0000</電話></申告者><年分>2026</年分><種類>確定</種類><提出先>麹町</提出先>"
            f"<明細一覧>{lines}</明細一覧></申告書>\n").encode()


def main() -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks rp_xml")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--key-type", choices=("p384", "rsa2048"), default="p384")
    ap.add_argument("--xades", action="store_true", help="XAdES B-B instead of a plain enveloped signature")
    ap.add_argument("--timestamp", action="store_true", help="XAdES B-T: a signature time-stamp from the "
                    "installation's TSA, in-process (implies --xades); its verification is in ours, not the floor")
    ap.add_argument("--items", type=int, default=2000, help="detail lines of the long filing")
    args = ap.parse_args()
    args.xades = args.xades or args.timestamp
    try:
        import signxml  # noqa: F401
    except ImportError:
        print("rp_xml: needs signxml (pip install 'mcred[xml]')")
        return {}

    os.fsync = lambda fd: None  # the SE image's durability is not what is measured here
    import wallet_sim
    from mcred.jpki_flow import jpki_issuer, sign_xml_with_se
    from mcred.provision import parse_holder, provision
    from protocols.jpki.xmlsig import _classes, verify_enveloped
    from reader.jpki_xml import verify_xml

    # signxml's verifiers as ours runs them: stock signxml copies the tree through ASCII and
    # cannot read back a non-ASCII element name (<申告書>); the UTF-8 subclasses can
    _, verifier, _, xades_verifier = _classes()
    from mcred.timestamps import Stamper, time_stamp_authority

    tmp, ctx = scratch_context("mcred-rp-xml-")
    pid = ctx.new_phone()
    provision(ctx, pid, parse_holder(HOLDER), key_type=args.key_type, mdoc_batch=1, pin="1234", password=PASSWORD)
    roots = jpki_issuer(ctx).roots("sign")
    stamper = Stamper.local(ctx) if args.timestamp else None
    tsa_roots = time_stamp_authority(ctx).roots() if args.timestamp else []
    transmit = wallet_sim.open_secure_element(pid, ctx.home).transmit
    roots_pem = Path(tempfile.mkdtemp(dir=tmp)) / "roots.pem"
    roots_pem.write_bytes(b"".join(r.public_bytes(serialization.Encoding.PEM) for r in roots))
    xmlsec1 = shutil.which("xmlsec1")

    soft_sign, soft_verify, digest = software_key(args.key_type)

    signed_info = os.urandom(600)
    sample = soft_sign(signed_info)
    out = {}
    form = "XAdES B-T" if args.timestamp else "XAdES B-B" if args.xades else "enveloped XML signature"
    print(f"XML signatures ({form}) with a {args.key_type} signing key, median of {args.runs}, one process")
    print(f"{'document':<22}{'row':<26}{'ms':>9}{'floor ms':>10}{'x floor':>9}")

    def measure(label: str, document: bytes) -> None:
        signed = sign_xml_with_se(transmit, PASSWORD.encode(), document, xades=args.xades, stamper=stamper)
        leaf = verify_enveloped(signed).signer_certificate
        root = next(r for r in roots if r.subject == leaf.issuer)
        path = roots_pem.with_name(f"signed-{len(document)}.xml")
        path.write_bytes(signed)

        def hash_of(data: bytes) -> None:
            h = hashes.Hash(digest)
            h.update(data)
            h.finalize()

        def floor_sign() -> None:
            hash_of(document)
            soft_sign(signed_info)

        def floor_verify() -> None:
            hash_of(document)
            soft_verify(sample, signed_info)
            leaf.verify_directly_issued_by(root)

        def ours() -> None:
            result = verify_xml(signed, roots=roots, revocation="none", tsa_roots=tsa_roots)
            assert result["valid"], result

        def signxml_alone() -> None:
            from signxml.xades import XAdESSignatureConfiguration

            if args.xades:
                xades_verifier().verify(signed, x509_cert=leaf, expect_config=XAdESSignatureConfiguration())
            else:
                verifier().verify(signed, x509_cert=leaf)

        def with_xmlsec1() -> None:
            subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(roots_pem), str(path)],
                           check=True, capture_output=True)

        calls = {"sign": lambda: sign_xml_with_se(transmit, PASSWORD.encode(), document, xades=args.xades, stamper=stamper),
                 "floor sign": floor_sign, "ours": ours, "floor verify": floor_verify, "signxml": signxml_alone}
        if xmlsec1:
            calls["xmlsec1"] = with_xmlsec1
        times = interleaved(calls, args.runs)
        rows = [("sign (signxml + SE)", times["sign"], times["floor sign"]),
                ("verify, ours", times["ours"], times["floor verify"]),
                ("verify, signxml alone", times["signxml"], times["floor verify"])]
        if xmlsec1:
            rows.append(("verify, xmlsec1 (process)", times["xmlsec1"], times["floor verify"]))
        for name, t, floor in rows:
            print(f"{label:<22}{name:<26}{t * 1000:>9.2f}{floor * 1000:>10.3f}{t / floor:>8.1f}x")
            out[f"{label}: {name}"] = {"seconds": t, "floor_seconds": floor, "ratio": t / floor}
        print(f"{label:<22}{'ours / signxml alone':<26}{times['ours'] / times['signxml']:>9.2f}")
        if xmlsec1:
            print(f"{label:<22}{'ours / xmlsec1':<26}{times['ours'] / times['xmlsec1']:>9.2f}")

    short, long = filing(0), filing(args.items)
    for label, document in (("short filing", short), (f"{args.items} lines, {len(long) // 1024} KiB", long)):
        measure(label, document)
    if not xmlsec1:
        print("(xmlsec1 not installed: apt-get install xmlsec1 for its row)")
    print("x floor = measured time / the crypto (and hashing) the step must do")
    return out


if __name__ == "__main__":
    main()
