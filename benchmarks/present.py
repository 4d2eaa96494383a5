"""``python -m benchmarks present``: issue 6 item 6.

One complete presentation (engagement -> SessionEstablishment -> encrypted DeviceRequest ->
consent -> SE-signed DeviceResponse -> decryption -> full reader pipeline -> verdict) per
second, in-process and over HTTP (reader service in uvicorn on 127.0.0.1), and one reader
verification alone; each next to the sum of its raw crypto operations measured in the same
run, and next to pymdoccbor, @auth0/mdl and @owf/mdoc (node; see benchmarks/mdoc.py) verifying the same
DeviceResponse.

Proximity over BLE (``present_ble_in_process``: the QR code offers BLE, then the wallet and
the reader each run a bumble Bluetooth host on one virtual radio) is timed in both modes
against the same floor as the in-process presentation: what it adds is the link itself.

Online presentation (ISO/IEC TS 18013-7 Annex C, ``present_online_in_process`` and
``present_online_over_http``, the reader process serving its own origin) is timed too:
request, consent, SE-signed response sealed with HPKE, opened and verified. Its floor is one
P-256 key generation (the reader's HPKE key) + one HPKE seal and one open of the response
(``cryptography``'s single-shot HPKE: ephemeral key, ECDH, key schedule, AES-128-GCM)
+ 1 ECDSA sign + 2 verifies + the digests. OpenID4VP 1.0 over the same API
(``Oid4vpReaderSession``: DCQL, the response a JWE with ECDH-ES and A128GCM by joserfc)
is timed in-process against the same floor, the JWE's key agreement standing for HPKE's.
The cross-device flow (``Oid4vpRedirectReaderSession``: the QR code's URI, the request by
value or a signed request object, the answer posted as direct_post.jwt) is timed against
the same floor, plus one sign and one verify for the signed request object; over HTTP the
phone's POST goes to the reader process's response_uri.

Floors (``cryptography`` calls, same run):
  presentation  = 2 P-256 key generations (EDeviceKey, EReaderKey) + 2 ECDH + 4 HKDF
                  + 4 AES-256-GCM (request and response, each encrypted and decrypted)
                  + 1 ECDSA sign (device) + 2 ECDSA verifies (issuerAuth, deviceSignature)
                  + the SHA-256 of the disclosed items and of DeviceAuthenticationBytes
  verification  = 2 ECDSA verifies + the digests (DS chain, profiles, status list cached),
                  3 verifies + digests with a cold DS chain cache.
The reader's status list and Annex B profile results are cached across presentations (as
in the field). The warm row verifies a new mdoc at every call (a new holder's MSO from the
known document signer: new salts, status slot and device key, the same transcript and
items), which is the issue's case "two [verifies] once the DS chain is cached"; the same
response verified again and again, which the verifier's per-MSO cache serves, is reported
apart, without a target. The cold row (a new pipeline over the same trust store) pays for the DS chain,
its signature and the DS profile again. The IACA's own time-independent rules, its
self-signature among them, are kept with its trust anchor (``TrustAnchor.profile``): a
trust anchor is configuration, met at every verification, and not part of the floor's three
verifies (before this was kept there, the cold row verified four signatures).

The reader verification, warm and cold, are each timed interleaved with the ECDSA verify
and the digests (``benchmarks.timing.interleaved``, as ``benchmarks mdoc`` does; two
rotations, so that the cold path's code does not evict the warm path's between its calls)
and both target ratios are taken from those runs: timed one after the other, a change of
load on the shared machine between them moved the ratio more than the code did. The issue's target (1.5x)
applies to both: three verifies plus the digests cold, two once the DS chain is cached.
The other rows are timed as before.

Over HTTP, the reader runs as it is deployed (``mcred reader serve``): uvicorn in a process of
its own (``multiprocessing`` spawn, the same app, pipeline and cached status list), and the
client in this one. Until this was so, the server ran in a thread of the benchmark's process,
sharing the client's GIL (and its CPU time); that setup is still timed, in the row marked
"reader thread", for comparison with older figures. The row "a client each" is one
presentation as ``mcred present`` makes it: ``present_over_http`` with a client and a
connection of its own (before the clients shared one TLS context, building that client
parsed the CA bundle: 100-150 ms here). The HTTP line after the rows splits a
presentation's CPU time between the client (wallet, SE, httpx) and the reader process
(uvicorn, FastAPI, the reader session and pipeline), from the operating system's counters
(Linux ``/proc``; left out elsewhere); on a 2-core machine the two run one after the other,
so the wall time is about their sum.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import multiprocessing
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import wallet_sim
from benchmarks.scratch import free_port
from benchmarks.timing import interleaved, median_time
from issuer.mdoc.issuance import device_key_from_spki, sign_card_substitute
from issuer.mdoc.pki import ActiveKey
from mcred.present import (
    personalise_mdoc_directly,
    present_cross_device_in_process,
    present_cross_device_over_http,
    present_in_process,
    present_nfc_in_process,
    present_online_in_process,
    present_online_over_http,
    present_over_http,
    reader_app,
    reader_pipeline,
)
from mcred.present_ble import present_ble_in_process
from protocols import cardsub, cbor, cose, iaca
from protocols.mdoc import DeviceResponse, MsoStatus, StatusListRef, build_document, dcapi
from protocols.status import StatusList, build_status_list_token
from reader.http import ReaderService
from reader.online import Oid4vpReaderSession, Oid4vpRedirectReaderSession, OnlineReaderSession
from reader.pipeline import HttpAnswer, ReaderPipeline
from reader.session import ReaderSession, RequestSpec
from reader.trust import TrustStore
from wallet_sim.consent import RulesConsent
from wallet_sim.wallet import Wallet

NS = DOC_TYPE = cardsub.DEFAULT_NAMES.doctype
ITEMS = ("family_name", "given_name", "birth_date", "age_over_20", "document_number", "portrait")
STATUS_URI = "https://issuer.bench/status/1"
ORIGIN = "https://shop.bench"


class _Signer:
    def __init__(self, key):
        self._s = cose.key_signer(key)
        self.alg = self._s.alg

    def sign(self, tbs):
        return self._s.sign(tbs)


def _setup(home: Path, now: dt.datetime):
    start = now - dt.timedelta(days=1)
    ik = ec.generate_private_key(ec.SECP256R1())
    ic = iaca.sign(iaca.iaca_builder(ik.public_key(), common_name="bench IACA", not_before=start,
                                     not_after=start + dt.timedelta(days=3000),
                                     issuer_alt_name_uri="https://issuer.bench", crl_uri="https://issuer.bench/crl"), ik)
    dk, sk = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    dc = iaca.sign(iaca.document_signer_builder(dk.public_key(), ic, common_name="bench DS", not_before=start,
                                                not_after=start + dt.timedelta(days=400),
                                                crl_uri="https://issuer.bench/crl"), ik)
    sc = iaca.sign(iaca.status_list_signer_builder(sk.public_key(), ic, common_name="bench status", not_before=start,
                                                   not_after=start + dt.timedelta(days=400),
                                                   crl_uri="https://issuer.bench/crl"), ik)
    holder = cardsub.parse_holder({
        "family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ", "given_name_kana": "たろう",
        "birth_date": "1990-04-01", "sex": 1, "address": "東京都千代田区千代田1-1", "prefecture": "東京都",
        "municipality": "千代田区"})
    portrait = b"\xff\xd8\xff\xe0" + os.urandom(4000) + b"\xff\xd9"
    ds = ActiveKey("bench-ds", "ds", dc, _Signer(dk))

    def signed(slot, device_key):
        return sign_card_substitute(holder, portrait, device_key, ds, now=now, record_expiry=dt.date(2030, 4, 1),
                                    document_no="JPCS-BENCH", status=MsoStatus(StatusListRef(slot, STATUS_URI)))

    def issue(slot, spki, proof):
        return signed(slot, device_key_from_spki(spki)).encode()

    phone = wallet_sim.create_phone(home)
    se = wallet_sim.open_secure_element(phone, home)
    personalise_mdoc_directly(se.transmit, [0, 1, 2, 3], lambda s: bytes(32), issue)
    token = build_status_list_token(StatusList.empty(1024, bits=2), uri=STATUS_URI, iat=now,
                                    exp=now + dt.timedelta(days=1), ttl=3600, signer=_Signer(sk), certificate=sc)
    store = TrustStore()
    store.add(ic)
    return se, store, ic, token, signed


def _verifier_certificate():
    """A verifier's P-256 key (behind a CoseSigner), its reader certificate naming the
    benchmark's origin as `mcred reader certificate` issues it (EKU mdlReaderAuth), and the
    reader CA the wallet trusts for it (OID4VP 1.0 5.9.3: the wallet validates the path of
    a signed request's certificate), for signed cross-device requests."""
    from mcred.reader_pki import issue_reader_certificate, new_reader_ca
    from protocols import cose

    ca, ca_key = new_reader_ca("benchmark reader CA")
    cert, key = issue_reader_certificate(ca, ca_key, "benchmark verifier", dns_names=(ORIGIN.split("://")[1],))
    return cose.key_signer(key), [cert.public_bytes(Encoding.DER)], ca


def _reader_config(app, port: int):
    import uvicorn

    return uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")  # as `mcred reader serve`


def _reader_process(iaca_der: bytes, token: bytes, port: int) -> None:
    """The reader service in a process of its own: the benchmark's trust anchor and status
    list (served from memory, as cached in the field), the same request."""
    import uvicorn

    store = TrustStore()
    store.add(x509.load_der_x509_certificate(iaca_der))
    fetcher = lambda uri, etag: HttpAnswer(200, token, {"etag": '"1"'})  # noqa: E731
    request = RequestSpec(DOC_TYPE, {NS: {i: False for i in ITEMS}})
    service = ReaderService(reader_pipeline(trust=store, fetcher=fetcher), [request],
                            origin=f"http://127.0.0.1:{port}", public_url=f"http://127.0.0.1:{port}")
    uvicorn.Server(_reader_config(reader_app(service), port)).run()


def _wait_for(port: int, process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the reader process did not start") from None
            time.sleep(0.05)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux), None where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks present")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--ble-runs", type=int, default=None,
                    help="BLE presentations timed per mode (default: --runs / 5, at least 10)")
    ap.add_argument("--http-runs", type=int, default=None,
                    help="presentations timed per HTTP row (default: --runs / 2, at least 20)")
    args = ap.parse_args()
    runs = args.runs
    import uvicorn

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        se, store, iaca_cert, token, signed = _setup(Path(tmp), now)
        fetcher = lambda uri, etag: HttpAnswer(200, token, {"etag": '"1"'})  # noqa: E731
        pipeline = reader_pipeline(trust=store, fetcher=fetcher)
        request = RequestSpec(DOC_TYPE, {NS: {i: False for i in ITEMS}})
        verifier_key, verifier_chain, verifier_ca = _verifier_certificate()
        wallet = Wallet(se.transmit, RulesConsent.allow_all(), reader_trust_anchors=[verifier_ca])

        def in_process():
            out = present_in_process(wallet, ReaderSession([request], pipeline))
            assert out.valid, out.result
            return out

        t_inproc = median_time(in_process, runs)

        def nfc_in_process():
            out = present_nfc_in_process(wallet, ReaderSession([request], pipeline))
            assert out.valid, out.result

        t_nfc = median_time(nfc_in_process, runs)

        def nfc_negotiated():
            out = present_nfc_in_process(wallet, ReaderSession([request], pipeline), handover="negotiated")
            assert out.valid, out.result

        t_nfc_negotiated = median_time(nfc_negotiated, runs)

        def ble_in_process(mode: str):
            out, _ = present_ble_in_process(wallet, ReaderSession([request], pipeline), mode=mode)
            assert out.valid, out.result

        # a Bluetooth host stack each side: tens of ms a presentation
        ble_runs = args.ble_runs if args.ble_runs is not None else max(10, runs // 5)
        t_ble = median_time(lambda: ble_in_process("peripheral"), ble_runs)
        t_ble_central = median_time(lambda: ble_in_process("central"), ble_runs)

        def online_in_process():
            out = present_online_in_process(wallet, OnlineReaderSession([request], pipeline, ORIGIN))
            assert out.valid, out.result

        t_online = median_time(online_in_process, runs)

        def oid4vp_in_process():
            out = present_online_in_process(wallet, Oid4vpReaderSession([request], pipeline, ORIGIN))
            assert out.valid, out.result

        t_oid4vp = median_time(oid4vp_in_process, runs)

        def cross_device_in_process():
            reader = Oid4vpRedirectReaderSession([request], pipeline, response_uri=f"{ORIGIN}/oid4vp/responses/b")
            out = present_cross_device_in_process(wallet, reader)
            assert out.valid, out.result

        t_cross = median_time(cross_device_in_process, runs)

        def cross_device_signed():
            reader = Oid4vpRedirectReaderSession([request], pipeline, response_uri=f"{ORIGIN}/oid4vp/responses/b",
                                                 request_uri=f"{ORIGIN}/oid4vp/requests/b",
                                                 reader_signer=verifier_key, reader_chain=verifier_chain)
            out = present_cross_device_in_process(wallet, reader)
            assert out.valid, out.result

        t_cross_signed = median_time(cross_device_signed, runs)
        sample = in_process()
        response, transcript = sample.device_response, sample.session_transcript

        http_runs = args.http_runs if args.http_runs is not None else max(20, runs // 2)
        # the reader as deployed: a process of its own
        port = free_port()
        reader = multiprocessing.get_context("spawn").Process(
            target=_reader_process, args=(iaca_cert.public_bytes(Encoding.DER), token, port), daemon=True)
        reader.start()
        try:
            _wait_for(port, reader)
            with httpx.Client(timeout=30) as client:
                def over_http():
                    out = present_over_http(wallet, f"http://127.0.0.1:{port}", client=client)
                    assert out.valid, out.result

                over_http()  # warm-up, outside the CPU counts
                cpu_reader, cpu_client = _cpu_seconds(reader.pid), time.process_time()
                t_http = median_time(over_http, http_runs, warmup=False)
                cpu_client = (time.process_time() - cpu_client) / http_runs
                after = _cpu_seconds(reader.pid)
                cpu_reader = None if after is None or cpu_reader is None else (after - cpu_reader) / http_runs

            def own_client():  # as `mcred present` does: a client (and connection) of its own
                out = present_over_http(wallet, f"http://127.0.0.1:{port}")
                assert out.valid, out.result

            t_http_own = median_time(own_client, max(10, runs // 5))
            with httpx.Client(timeout=30) as client:
                def online_over_http():
                    out = present_online_over_http(wallet, f"http://127.0.0.1:{port}", client=client)
                    assert out.valid, out.result

                t_online_http = median_time(online_over_http, http_runs)

                def oid4vp_over_http():
                    out = present_online_over_http(wallet, f"http://127.0.0.1:{port}", client=client,
                                                   protocol="openid4vp-v1-unsigned")
                    assert out.valid, out.result

                t_oid4vp_http = median_time(oid4vp_over_http, http_runs)

                def cross_device_over_http():
                    out = present_cross_device_over_http(wallet, f"http://127.0.0.1:{port}", client=client)
                    assert out.valid, out.result

                t_cross_http = median_time(cross_device_over_http, http_runs)
        finally:
            reader.terminate()
            reader.join(5)

        # the former setup: the reader in a thread of this process (one GIL for both sides)
        port = free_port()
        server = uvicorn.Server(_reader_config(reader_app(ReaderService(pipeline, [request])), port))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        with httpx.Client(timeout=30) as client:
            def over_http_thread():
                out = present_over_http(wallet, f"http://127.0.0.1:{port}", client=client)
                assert out.valid, out.result

            t_http_thread = median_time(over_http_thread, http_runs)
        server.should_exit = True
        thread.join(5)


        def new_response(i: int) -> bytes:
            """What the wallet answers, for a holder of its own: a new MSO (status slot, salts,
            device key in place of the SE's) from the same document signer, over the same
            transcript, disclosing the same items."""
            key = ec.generate_private_key(ec.SECP256R1())
            doc = build_document(signed(4 + i % 1020, key.public_key()), transcript, disclose={NS: ITEMS},
                                 signer=cose.key_signer(key))
            return DeviceResponse((doc,)).encode()

        # the warm pipeline meets a new mdoc at every call (warm-up included), none twice
        fresh = [new_response(i) for i in range(runs * 3 + 1)]
        check = ReaderPipeline(store, status=pipeline.status).verify(fresh[0], session_transcript=transcript)
        # the same documents as the session's, less its reading of the request's age_over_NN
        # (ageOver: the session knows what it asked; a bare pipeline does not)
        same = [{k: v for k, v in d.items() if k != "ageOver"} for d in sample.result["documents"]]
        assert check.valid and check.to_json()["documents"] == same, check
        next_fresh = iter(fresh).__next__

        def cold():
            p = ReaderPipeline(store, status=pipeline.status)  # status list still cached
            p.verify(response, session_transcript=transcript)

        # -- floors -------------------------------------------------------------------------
        key = ec.generate_private_key(ec.SECP256R1())
        peer = ec.generate_private_key(ec.SECP256R1()).public_key()
        msg = os.urandom(64)
        ecdsa = ec.ECDSA(hashes.SHA256())  # built once, as our code keeps its own
        der = key.sign(msg, ecdsa)
        pub = key.public_key()
        t_gen = median_time(lambda: ec.generate_private_key(ec.SECP256R1()), runs * 3)
        t_ecdh = median_time(lambda: key.exchange(ec.ECDH(), peer), runs * 3)
        t_sign = median_time(lambda: key.sign(msg, ecdsa), runs * 3)
        secret = os.urandom(32)
        t_hkdf = median_time(lambda: HKDF(hashes.SHA256(), 32, secret, b"SKDevice").derive(secret), runs * 3)
        # Annex C: HPKE seal (ephemeral key, ECDH, key schedule, AES-128-GCM) and open, over
        # the response's size, with the transcript as info
        info = os.urandom(60)
        sealed = dcapi.HPKE_SUITE.encrypt(response, pub, info=info)
        t_seal = median_time(lambda: dcapi.HPKE_SUITE.encrypt(response, pub, info=info), runs * 3)
        t_open = median_time(lambda: dcapi.HPKE_SUITE.decrypt(sealed, key, info=info), runs * 3)
        gcm, iv = AESGCM(os.urandom(32)), os.urandom(12)
        req_plain = b"\x00" * 200
        ct = gcm.encrypt(iv, response, None)
        t_aes = (median_time(lambda: gcm.encrypt(iv, response, None), runs * 3)
                 + median_time(lambda: gcm.decrypt(iv, ct, None), runs * 3)
                 + 2 * median_time(lambda: gcm.encrypt(iv, req_plain, None), runs * 3))
        doc = DeviceResponse.decode(response).documents[0]
        raws = [cbor.dumps(cbor.CBORTag(24, r)) for rs in doc.issuer_signed.name_spaces.values() for r in rs]
        # the verification target, warm and cold: each interleaved with the floor
        # (benchmarks.timing.interleaved), in rotations of their own: the cold path's larger
        # code, run between the warm calls, would leave the warm path's caches cold
        def verify_one():
            pub.verify(der, msg, ecdsa)

        def digests():
            return [hashlib.sha256(r).digest() for r in raws] + [hashlib.sha256(transcript).digest()]

        timed = interleaved({"ours": lambda: pipeline.verify(next_fresh(), session_transcript=transcript),
                             "verify": verify_one, "sha": digests}, runs * 3)
        t_verify, t_ver, t_sha = timed["ours"], timed["verify"], timed["sha"]
        timed_again = interleaved({"again": lambda: pipeline.verify(response, session_transcript=transcript),
                                   "verify": verify_one, "sha": digests}, runs * 3)
        t_again, floor_again = timed_again["again"], 2 * timed_again["verify"] + timed_again["sha"]
        timed_cold = interleaved({"cold": cold, "verify": verify_one, "sha": digests}, runs * 3)
        t_cold = timed_cold["cold"]
        # not in any floor, for scale: what a new mdoc's device key costs the crypto alone (its
        # point loaded and checked, a first verify with the new key object) against a verify
        # with a key object already used
        new_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(runs * 3 + 1)]
        signed_by = iter([(k.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint),
                           k.sign(msg, ecdsa)) for k in new_keys]).__next__

        def new_key_verify():
            point, sig = signed_by()
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).verify(sig, msg, ecdsa)

        timed_key = interleaved({"new key": new_key_verify, "verify": verify_one}, runs * 3)
        t_new_key = timed_key["new key"] - timed_key["verify"]
        floor_present = 2 * t_gen + 2 * t_ecdh + 4 * t_hkdf + t_aes + t_sign + 2 * t_ver + t_sha
        floor_verify = 2 * t_ver + t_sha
        floor_online = t_gen + t_seal + t_open + t_sign + 2 * t_ver + t_sha
        floor_cold = 3 * timed_cold["verify"] + timed_cold["sha"]

        t_py = py_error = None
        try:
            from pymdoccbor.mdoc.verifier import MdocCbor

            def py_verify():
                m = MdocCbor()
                m.loads(response)
                return m.verify(trusted_root_certs=[iaca_cert])

            py_ok = py_verify()
            t_py = median_time(py_verify, max(20, runs // 2))
        except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
            py_error = f"{type(exc).__name__}: {exc}"
        from benchmarks.mdoc import auth0_verify, owf_verify

        t_auth0, auth0_note = auth0_verify(response, transcript, iaca_cert, max(20, runs // 2))
        t_owf, owf_note = owf_verify(response, transcript, iaca_cert, max(20, runs // 2))

    us = 1e6
    print(f"presentation benchmark: {len(ITEMS)} items requested and released, P-256, median of {runs} runs")
    print(f"  floors: keygen {t_gen * us:.1f} us, ECDH {t_ecdh * us:.1f} us, sign {t_sign * us:.1f} us, "
          f"verify {t_ver * us:.1f} us, HKDF {t_hkdf * us:.1f} us, AES-GCM x4 {t_aes * us:.1f} us, "
          f"SHA-256 x{len(raws) + 1} {t_sha * us:.1f} us, HPKE seal {t_seal * us:.1f} us, open {t_open * us:.1f} us")
    rows = [
        ("presentation in-process", t_inproc, floor_present, "2 keygen+2 ECDH+4 HKDF+4 GCM+sign+2 verify+digests"),
        ("presentation over HTTP (reader process)", t_http, floor_present, "same floor"),
        ("presentation over HTTP (reader thread)", t_http_thread, floor_present, "same floor; shares our GIL"),
        ("presentation over HTTP (a client each)", t_http_own, floor_present, "same floor; as `mcred present`"),
        ("proximity by an NFC tap in-process", t_nfc, floor_present,
         "same floor; NDEF engagement, ENVELOPE / GET RESPONSE APDUs"),
        ("proximity by an NFC tap, negotiated handover", t_nfc_negotiated, floor_present,
         "same floor; + TNEP service select and Handover Request"),
        ("proximity over BLE, peripheral server mode", t_ble, floor_present,
         "same floor; QR, then two bumble hosts on a virtual radio"),
        ("proximity over BLE, central client mode", t_ble_central, floor_present,
         "same floor; + the Ident read"),
        ("online (Annex C) in-process", t_online, floor_online, "keygen+HPKE seal+open+sign+2 verify+digests"),
        ("online (Annex C) over HTTP (reader process)", t_online_http, floor_online, "same floor"),
        ("online (OpenID4VP 1.0) in-process", t_oid4vp, floor_online, "same floor (JWE ECDH-ES in place of HPKE)"),
        ("online (OpenID4VP 1.0) over HTTP (reader process)", t_oid4vp_http, floor_online, "same floor"),
        ("cross-device (OpenID4VP, by value) in-process", t_cross, floor_online, "same floor (direct_post.jwt)"),
        ("cross-device (OpenID4VP, by value) over HTTP", t_cross_http, floor_online,
         "same floor; 3 requests: open, the phone's POST, the verdict"),
        ("cross-device (OpenID4VP, signed) in-process", t_cross_signed, floor_online + t_sign + t_ver,
         "+1 sign +1 verify (the request object)"),
        ("reader verification (warm, new mdoc)", t_verify, floor_verify, "2 verifies + digests"),
        ("reader verification (cold DS chain)", t_cold, floor_cold, "3 verifies + digests"),
        ("reader verification (same mdoc again)", t_again, floor_again, "2 verifies + digests, no target"),
    ]
    for label, t, floor, what in rows:
        print(f"  {label:44s} {t * us:9.1f} us  {1 / t:8.1f}/s  = {t / floor:5.2f}x floor ({what})")
    split = "" if cpu_reader is None else f", reader process {cpu_reader * 1e3:.2f} ms"
    print(f"  HTTP (reader process): {(t_http - t_inproc) * 1e3:.2f} ms over in-process for 3 requests "
          f"({(t_http - t_inproc) / 3 * 1e3:.2f} ms each); CPU per presentation: client {cpu_client * 1e3:.2f} ms{split}")
    print(f"  BLE: {(t_ble - t_inproc) * 1e3:.1f} ms over in-process for the link (power-on of two hosts, advertising, "
          f"scan, connection, MTU exchange, discovery, subscriptions, the values, disconnection); a real radio adds "
          f"its connection intervals")
    print(f"  for scale: a new device key (point loaded and checked, first verify with it) costs {t_new_key * us:.1f} us "
          f"more than a verify with a key object already used; in no floor")
    for label, ratio in (("warm, new mdoc", t_verify / floor_verify), ("cold DS chain", t_cold / floor_cold)):
        print(f"  target: reader verification ({label}) within 1.5x of its floor: "
              f"{'met' if ratio <= 1.5 else 'MISSED'} ({ratio:.2f}x)")
    if t_py is not None:
        print(f"  pymdoccbor verify, same DeviceResponse   {t_py * us:9.1f} us  = {t_py / floor_cold:5.2f}x the 3-verify floor"
              f"; returned {py_ok}; ours (warm) is {t_py / t_verify:.2f}x faster, ours (cold) {t_py / t_cold:.2f}x")
    else:
        print(f"  pymdoccbor: could not verify our DeviceResponse ({py_error})")
    if t_auth0 is not None:
        print(f"  @auth0/mdl verify (node), same response {t_auth0 * us:9.1f} us  = {t_auth0 / floor_cold:5.2f}x the "
              f"3-verify floor; ours (warm) is {t_auth0 / t_verify:.2f}x faster, ours (cold) {t_auth0 / t_cold:.2f}x")
    else:
        print(f"  @auth0/mdl: not run ({auth0_note})")
    if t_owf is not None:
        print(f"  @owf/mdoc verify (node), same response  {t_owf * us:9.1f} us  = {t_owf / floor_cold:5.2f}x the "
              f"3-verify floor; ours (warm) is {t_owf / t_verify:.2f}x faster, ours (cold) {t_owf / t_cold:.2f}x")
    else:
        print(f"  @owf/mdoc: not run ({owf_note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
