"""mdoc issue / verify timings next to the raw crypto floor and pymdoccbor (issue 2 item 8).

Floors, measured in the same run: issuing = one ECDSA P-256 sign + the SHA-256 digests of
the items; full verification = three ECDSA verifies (DS certificate by the IACA, issuerAuth,
deviceSignature) + the digests; cached verification = two verifies + the digests.

Every timed call works on an mdoc it has not seen before, as an issuer and a reader meet
them: each issue call signs over a device public key of its own (made up front, as the
issuer receives it from a phone's SE; deriving it from a private key is no part of
issuing), and each verify call verifies a DeviceResponse of its own (its own MSO, salts and
device key, from the same document signer). So "verify cached chain" is the issue's case
"the DS chain already verified and cached": a known document signer, a new mdoc. The
verifier's per-MSO cache (the same mdoc presented again) is timed apart, on one response
verified over and over, and reported without a target.

Peers, on the same DeviceResponse: pymdoccbor (Python; checks less: no device
authentication) and, where node and the pinned packages are installed (``npm install --no-save`` in
interop/auth0-mdl and interop/owf-mdoc, as .ci/run does), @auth0/mdl (TypeScript, ``Verifier.verify``: chain,
issuer signature, digests, device signature) and @owf/mdoc (TypeScript, ``DeviceResponse.verify``, the
same checks, its crypto node:crypto), each timed inside its own node process.

A yardstick between the floor and us: :mod:`benchmarks.bare`'s sketches, the least a
CPython issuer and reader do with cbor2 and cryptography (the decodes, encodes, key load
and signature conversions; no checks at all), timed on their own new mdocs. Its ratio to
the floor is what the language and these libraries cost before any check is made; ours
over the sketch is what our checks and structure cost.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from benchmarks import bare
from benchmarks.timing import interleaved, median_time
from protocols import cbor, cose, mdoc

NS = "org.iso.18013.5.1"
DOC_TYPE = "org.iso.18013.5.1.mDL"
ELEMENTS = {
    NS: {
        "family_name": "山田", "given_name": "太郎", "birth_date": dt.date(1990, 4, 1),
        "issue_date": dt.date(2025, 4, 1), "expiry_date": dt.date(2035, 4, 1),
        "issuing_country": "JP", "issuing_authority": "Digital Agency", "document_number": "123456789012",
        "portrait": bytes(2048), "age_over_18": True, "resident_address": "東京都千代田区",
    }
}


def make_pki(now: dt.datetime):
    def name(cn):  # countryName, as Annex B wants (and @auth0/mdl requires)
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    iaca_key, ds_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    iaca = (x509.CertificateBuilder().subject_name(name("bench iaca")).issuer_name(name("bench iaca"))
            .public_key(iaca_key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(iaca_key, hashes.SHA256()))
    ds = (x509.CertificateBuilder().subject_name(name("bench ds")).issuer_name(iaca.subject)
          .public_key(ds_key.public_key()).serial_number(2)
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.ExtendedKeyUsage([mdoc.EKU_MDL_DS]), critical=True)
          .sign(iaca_key, hashes.SHA256()))
    return iaca, ds_key, ds


INTEROP = Path(__file__).resolve().parents[1] / "interop"


def _node_peer(folder: str, package: str, request: dict) -> tuple[float | None, str]:
    """Median seconds a TypeScript peer under interop/ reports for ``request`` (its
    ``verify.mjs`` in ``bench`` mode, timed inside node), or None and why not."""
    where = INTEROP / folder
    if shutil.which("node") is None:
        return None, "no node"
    if not (where / "node_modules" / package).is_dir():
        return None, f"not installed: cd {where} && npm install --no-save --ignore-scripts"
    done = subprocess.run(["node", "verify.mjs"], cwd=where, input=json.dumps({"mode": "bench", **request}),
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return None, f"node failed: {done.stderr.strip()[-200:]}"
    return json.loads(done.stdout)["median_us"] / 1e6, ""


def auth0_verify(response: bytes, session_transcript: mdoc.SessionTranscript | bytes,
                 iaca: x509.Certificate, runs: int) -> tuple[float | None, str]:
    """Median seconds of one @auth0/mdl full verification (in node), or None and why not."""
    return _node_peer("auth0-mdl", "@auth0/mdl", {
        "iaca": [iaca.public_bytes(Encoding.PEM).decode()], "response": response.hex(), "runs": runs,
        "transcript": mdoc.SessionTranscript.coerce(session_transcript).tagged.hex()})


def owf_verify(response: bytes, session_transcript: mdoc.SessionTranscript | bytes,
               iaca: x509.Certificate, runs: int) -> tuple[float | None, str]:
    """Median seconds of one @owf/mdoc full verification (``DeviceResponse.verify``: chain,
    issuer signature, digests, validity, device signature; node:crypto in its context), or
    None and why not."""
    return _node_peer("owf-mdoc", "@owf/mdoc", {
        "iaca": [iaca.public_bytes(Encoding.PEM).decode()], "response": response.hex(), "runs": runs,
        "transcript": mdoc.SessionTranscript.coerce(session_transcript).raw.hex()})


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks mdoc")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    runs = args.runs
    now = dt.datetime.now(dt.UTC)
    iaca, ds_key, ds_cert = make_pki(now)
    ds_der = ds_cert.public_bytes(Encoding.DER)
    device_key = ec.generate_private_key(ec.SECP256R1())
    signer = cose.key_signer(ds_key)
    e_key = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    st = mdoc.SessionTranscript.build(mdoc.DeviceEngagement.build(e_key).encode(), e_key, None)

    valid_from, valid_until = now - dt.timedelta(hours=1), now + dt.timedelta(days=30)

    def respond(key: ec.EllipticCurvePrivateKey) -> bytes:
        """A DeviceResponse over a new MSO for ``key``: what a reader meets at each presentation."""
        issued = mdoc.build_issuer_signed(ELEMENTS, DOC_TYPE, key.public_key(), signer, [ds_der], valid_from,
                                          valid_until)
        return mdoc.DeviceResponse((mdoc.build_document(issued, st, signer=cose.key_signer(key)),)).encode()

    # one device key / one response per call (the warm-up call included), none seen twice
    device_keys = iter([ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(runs + 1)]).__next__
    new_for_full = iter([respond(ec.generate_private_key(ec.SECP256R1())) for _ in range(runs + 1)]).__next__
    new_for_cached = iter([respond(ec.generate_private_key(ec.SECP256R1())) for _ in range(runs + 1)]).__next__
    keys_for_sketch = iter([ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(runs + 1)]).__next__
    new_for_sketch = iter([respond(ec.generate_private_key(ec.SECP256R1())) for _ in range(runs + 1)]).__next__
    ds_public = ds_cert.public_key()  # the sketch's "cached chain": the DS key at hand

    def issue():
        return mdoc.build_issuer_signed(ELEMENTS, DOC_TYPE, device_keys(), signer, [ds_der], valid_from, valid_until)

    issued = mdoc.build_issuer_signed(ELEMENTS, DOC_TYPE, device_key.public_key(), signer, [ds_der], valid_from,
                                      valid_until)
    doc = mdoc.build_document(issued, st, signer=cose.key_signer(device_key))
    response = mdoc.DeviceResponse((doc,)).encode()
    assert mdoc.verify_device_response(response, trust_anchors=[iaca], session_transcript=st, now=now).valid
    cached = mdoc.MdocVerifier([iaca])
    assert cached.verify(response, session_transcript=st, now=now).valid  # the DS chain verified and cached
    again = mdoc.MdocVerifier([iaca])

    # -- the floor ---------------------------------------------------------------------
    tbs = cose.sig_structure(issued.issuer_auth.protected_bytes, b"", issued.issuer_auth.payload)
    ecdsa = ec.ECDSA(hashes.SHA256())  # built once, as our code keeps its own (~2.5 us a call)
    der = ds_key.sign(tbs, ecdsa)
    pub = ds_key.public_key()
    items = [cbor.dumps(cbor.CBORTag(24, raw)) for raw in issued.name_spaces[NS]]
    # -- ours, interleaved with the floor ---------------------------------------------------
    t = interleaved({
        "sign": lambda: ds_key.sign(tbs, ecdsa),
        "verify": lambda: pub.verify(der, tbs, ecdsa),
        "sha": lambda: [hashlib.sha256(i).digest() for i in items],
        "issue": issue,
        "full": lambda: mdoc.verify_device_response(new_for_full(), trust_anchors=[iaca], session_transcript=st,
                                                    now=now),
        "cached": lambda: cached.verify(new_for_cached(), session_transcript=st, now=now),
        "again": lambda: again.verify(response, session_transcript=st, now=now),
        "sketch_issue": lambda: bare.sketch_issue(ELEMENTS[NS], NS, DOC_TYPE, keys_for_sketch(), ds_key, ds_der,
                                                  valid_from, valid_until),
        "sketch_verify": lambda: bare.sketch_verify(new_for_sketch(), st.raw, ds_public),
    }, runs)
    t_sign, t_verify, t_sha = t["sign"], t["verify"], t["sha"]
    t_issue, t_full, t_cached, t_again = t["issue"], t["full"], t["cached"], t["again"]
    t_sketch_issue, t_sketch_verify = t["sketch_issue"], t["sketch_verify"]

    # -- pymdoccbor (issuerAuth + digests only: it does not check the device signature) --
    t_py_issue = t_py_verify = None
    try:
        from pymdoccbor.mdoc.issuer import MdocCborIssuer
        from pymdoccbor.mdoc.verifier import MdocCbor

        with tempfile.TemporaryDirectory() as tmp:
            cert_path = Path(tmp) / "ds.pem"
            cert_path.write_bytes(ds_cert.public_bytes(Encoding.PEM))
            d = ds_key.private_numbers().private_value.to_bytes(32, "big")
            pem = device_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            py_elements = {NS: {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in ELEMENTS[NS].items()}}

            def py_issue():
                issuer = MdocCborIssuer(private_key={"KTY": "EC2", "CURVE": "P_256", "ALG": "ES256", "D": d}, alg="ES256")
                issuer.new(data=py_elements, doctype=DOC_TYPE, cert_path=str(cert_path),
                           validity={"issuance_date": now.date().isoformat(),
                                     "expiry_date": (now + dt.timedelta(days=30)).date().isoformat()},
                           devicekeyinfo=base64.urlsafe_b64encode(pem).decode())
                return issuer

            py_runs = max(20, runs // 5)
            t_py_issue = median_time(py_issue, py_runs)

            def py_verify():
                m = MdocCbor()
                m.loads(response)
                assert m.verify(trusted_root_certs=[iaca])

            t_py_verify = median_time(py_verify, py_runs)
    except ImportError:
        pass

    t_auth0, auth0_note = auth0_verify(response, st, iaca, runs)
    t_owf, owf_note = owf_verify(response, st, iaca, runs)

    floor_issue = t_sign + t_sha
    floor_full = 3 * t_verify + t_sha
    floor_cached = 2 * t_verify + t_sha
    us = 1e6
    print(f"mdoc benchmark: {len(items)} elements, P-256/SHA-256, median of {runs} runs")
    print(f"  floor: ECDSA sign {t_sign * us:8.1f} us   verify {t_verify * us:8.1f} us   SHA-256 x{len(items)} {t_sha * us:6.1f} us")
    rows = [
        ("issue (ours)", t_issue, floor_issue, "1 sign + digests", 1.5),
        ("verify full (ours)", t_full, floor_full, "3 verifies + digests", 1.5),
        ("verify cached chain (ours)", t_cached, floor_cached, "2 verifies + digests", 1.4),
        ("verify same mdoc again (ours)", t_again, floor_cached, "2 verifies + digests", None),
        ("issue (bare sketch, no checks)", t_sketch_issue, floor_issue, "1 sign + digests", None),
        ("verify DS known (bare sketch, no checks)", t_sketch_verify, floor_cached, "2 verifies + digests", None),
    ]
    if t_py_issue is not None:
        rows += [
            ("issue (pymdoccbor)", t_py_issue, floor_issue, "1 sign + digests", None),
            ("verify (pymdoccbor, no device auth)", t_py_verify, floor_full, "3 verifies + digests", None),
        ]
    if t_auth0 is not None:
        rows.append(("verify (@auth0/mdl, node)", t_auth0, floor_full, "3 verifies + digests", None))
    if t_owf is not None:
        rows.append(("verify (@owf/mdoc, node)", t_owf, floor_full, "3 verifies + digests", None))
    for label, t, floor, what, target in rows:
        goal = f"  target <= {target}x {'met' if t / floor <= target else 'MISSED'}" if target else ""
        print(f"  {label:42s} {t * us:9.1f} us  = {t / floor:5.2f}x floor ({what}){goal}")
    print(f"  ours / bare sketch: issue {t_issue / t_sketch_issue:5.2f}x   verify cached chain "
          f"{t_cached / t_sketch_verify:5.2f}x (the sketch: cbor2 + cryptography, happy path, no checks;"
          " see benchmarks/bare.py)")
    if t_py_verify is not None:
        print(f"  pymdoccbor / ours: issue {t_py_issue / t_issue:5.2f}x   verify {t_py_verify / t_full:5.2f}x")
    if t_auth0 is not None:
        print(f"  @auth0/mdl / ours: verify {t_auth0 / t_full:5.2f}x (full)")
    else:
        print(f"  @auth0/mdl: not run ({auth0_note})")
    if t_owf is not None:
        print(f"  @owf/mdoc / ours: verify {t_owf / t_full:5.2f}x (full)")
    else:
        print(f"  @owf/mdoc: not run ({owf_note})")
    return 0
