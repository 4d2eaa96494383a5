"""The JPKI relying party end to end: the phone's JPKI applet (wallet_sim) is personalised
with keys born in it and certificates from our CA, signs through the APDU flow of
``mcred jpki sign`` (mcred.jpki_flow), and reader.relying_party verifies signature, chain,
policy and revocation (CRL here; OCSP over HTTP is in test_issuer_jpki_openssl.py)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from test_issuer_jpki_support import HOLDER, new_key, open_issuer

from issuer import holders, revocation
from mcred.jpki_flow import SeError, sign_with_se
from reader.relying_party import verify
from wallet_sim.applets._apdu import parse_tlvs, tlv
from wallet_sim.applets._perso import dgi, parse_dgis
from wallet_sim.applets.jpki import JpkiApplet
from wallet_sim.se.applet import CommandContext

SCP = CommandContext(secure_channel=True, security_level=0x33)
PIN, PASSWORD = b"1234", b"ABC123"
SLOT_BYTE = {"auth": b"\x01", "sign": b"\x02"}
CERT_FID = {"auth": b"\x00\x0a", "sign": b"\x00\x01"}


def _perso(applet: JpkiApplet, *records: bytes) -> dict[int, bytes]:
    out = applet.store_data(0x88, 0, b"".join(records), SCP)
    assert out[-2:] == b"\x90\x00", out[-2:].hex()
    return {d.tag: d.value for d in parse_dgis(out[:-2])}


@pytest.fixture
def issuer(tmp_path):
    return open_issuer(f"sqlite:///{tmp_path / 'rp.sqlite3'}")


def personalised_phone(issuer, algorithm: str = "rsa2048", phone_id: str = "rp-phone"):
    """A JPKI applet whose keys were generated inside it and certified by our CA."""
    hid = holders.register(issuer.sessions, dict(HOLDER, card_number=f"9{len(phone_id):015d}"))
    holders.attach_phone(issuer.sessions, hid, phone_id)
    applet = JpkiApplet()
    alg = b"\x01" if algorithm == "rsa2048" else b"\x02"
    for slot in ("auth", "sign"):
        nonce = issuer.jpki_challenge(f"perso-{phone_id}", phone_id, slot)
        answer = _perso(applet, dgi(0x0101, tlv(0xC1, SLOT_BYTE[slot]) + tlv(0xC2, alg)
                                    + tlv(0xC6, nonce)))
        f = dict(parse_tlvs(answer[0x0101]))
        cert, ca = issuer.issue_jpki_certificate(f"perso-{phone_id}", phone_id, slot,
                                                 f[0xC3], f[0xC4])
        _perso(applet, dgi(0x0103, tlv(0xC7, CERT_FID[slot]) + tlv(0xC8, cert)))
    _perso(applet, dgi(0x0104, tlv(0xC9, b"\x01") + tlv(0xCA, PIN)),
           dgi(0x0104, tlv(0xC9, b"\x02") + tlv(0xCA, PASSWORD)))
    ctx = CommandContext()

    def transmit(apdu: bytes) -> bytes:
        # The SE runtime routes SELECT by AID to the applet's select(); stand in for it.
        if apdu[1:3] == b"\xa4\x04":
            return applet.select(apdu[3], ctx) + b"\x90\x00"
        return applet.process(apdu, ctx)

    return phone_id, transmit


def _checks(result) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in result["checks"]}


@pytest.mark.parametrize("algorithm", ["rsa2048", "p384"])
def test_se_signature_verifies_and_revocation_is_seen(issuer, algorithm):
    phone_id, transmit = personalised_phone(issuer, algorithm)
    content = "契約書 v1".encode()
    cms, cert_der = sign_with_se(transmit, "sign", PASSWORD, content)
    roots = issuer.roots("sign")
    crl = issuer.crl("sign", "131016")
    result = verify(content, cms, roots=roots, slot="sign", revocation="crl", crl=crl)
    assert result["valid"], result
    assert result["documents"][0]["basic_four"]["name"] == "山田\u3000花子"
    assert not verify(content + b"!", cms, roots=roots, revocation="none")["valid"]
    revocation.revoke(issuer.sessions, phone_id, "cessationOfOperation", "sign")
    result = verify(content, cms, roots=roots, revocation="crl",
                    crl=issuer.crl("sign", "131016"))
    assert not result["valid"] and _checks(result)["revocation"] is False
    assert "cessationOfOperation" in [c for c in result["checks"]
                                      if c["name"] == "revocation"][0]["reason"]


def test_auth_certificate_refused_where_signing_required(issuer):
    _phone, transmit = personalised_phone(issuer)
    cms, _ = sign_with_se(transmit, "auth", PIN, b"login challenge")
    as_auth = verify(b"login challenge", cms, roots=issuer.roots("auth"), slot="auth",
                     revocation="none")
    assert as_auth["valid"], as_auth
    as_sign = verify(b"login challenge", cms, roots=issuer.roots("auth") + issuer.roots("sign"),
                     slot="sign", revocation="none")
    assert not as_sign["valid"] and _checks(as_sign)["policy"] is False
    # Not trusted at all under the signing root alone: the chain check fails too.
    assert _checks(verify(b"login challenge", cms, roots=issuer.roots("sign"),
                          revocation="none"))["chain"] is False


def test_raw_signature_with_certificate(issuer):
    key = new_key("rsa2048")
    phone = "raw-phone"
    hid = holders.register(issuer.sessions, dict(HOLDER, card_number="8000000000000001"))
    holders.attach_phone(issuer.sessions, hid, phone)
    from test_issuer_jpki_support import prove, spki

    nonce = issuer.jpki_challenge("raw", phone, "sign")
    cert, _ = issuer.issue_jpki_certificate("raw", phone, "sign", spki(key), prove(key, nonce))
    sig = key.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
    ok = verify(b"data", sig, roots=issuer.roots("sign"), certificate=cert, revocation="none")
    assert ok["valid"], ok
    pem = x509.load_der_x509_certificate(cert).public_bytes(serialization.Encoding.PEM)
    assert not verify(b"other", sig, roots=issuer.roots("sign"), certificate=pem,
                      revocation="none")["valid"]


def test_pin_counts_through_the_signing_flow(issuer):
    _phone, transmit = personalised_phone(issuer)
    for left in (2, 1):
        with pytest.raises(SeError) as err:
            sign_with_se(transmit, "auth", b"9999", b"x")
        assert err.value.sw == 0x63C0 | left
    with pytest.raises(SeError) as err:
        sign_with_se(transmit, "auth", b"9999", b"x")
    assert err.value.sw == 0x63C0
    with pytest.raises(SeError) as err:  # locked: the right PIN no longer helps
        sign_with_se(transmit, "auth", PIN, b"x")
    assert err.value.sw == 0x6984
    # The signing password has its own counter (5) and still works.
    sign_with_se(transmit, "sign", PASSWORD, b"x")


def test_garbage_never_raises(issuer):
    for junk in (b"", b"\x30\x00", b"\x30\x82\xff\xff" + b"\x00" * 10):
        result = verify(b"c", junk, roots=issuer.roots("sign"), revocation="none")
        assert result == {"valid": False, "checks": result["checks"], "documents": []}


def test_fuzzed_inputs_never_crash_issuance_or_relying_party(issuer):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from issuer.jpki import IssuerJpkiError

    hid = holders.register(issuer.sessions, dict(HOLDER, card_number="6000000000000001"))
    holders.attach_phone(issuer.sessions, hid, "fuzz-phone")
    nonce = issuer.jpki_challenge("fuzz", "fuzz-phone", "sign")
    good = new_key()
    from test_issuer_jpki_support import prove, spki

    spki_der, proof = spki(good), prove(good, nonce)
    roots = issuer.roots("sign")

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=200), st.binary(max_size=120), st.integers(0, 3))
    def run(junk, junk2, where):
        spki_in = junk if where in (0, 1) else spki_der[: len(junk) % len(spki_der)]
        proof_in = junk2 if where != 2 else proof[:-1] + bytes([proof[-1] ^ 1])
        with pytest.raises(IssuerJpkiError):
            issuer.issue_jpki_certificate("fuzz", "fuzz-phone", "sign", spki_in, proof_in)
        for cert in (None, junk2):
            result = verify(b"c", junk, roots=roots, certificate=cert, revocation="none")
            assert result["valid"] is False and result["checks"]

    run()


def _dead_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ocsp"


def test_auto_falls_back_to_the_crl_only_when_ocsp_gives_no_answer(issuer):
    """``revocation="auto"``: an unreachable responder is no verdict, so the CRL decides, and
    the reason says both; with the certificate revoked the CRL fallback refuses it."""
    phone_id, transmit = personalised_phone(issuer, "p384", "auto-phone")
    content = b"auto"
    cms, _cert = sign_with_se(transmit, "sign", PASSWORD, content)
    roots, dead = issuer.roots("sign"), _dead_url()
    result = verify(content, cms, roots=roots, revocation="auto", ocsp_url=dead,
                    crl=issuer.crl("sign", "131016"))
    assert result["valid"], result
    reason = [c for c in result["checks"] if c["name"] == "revocation"][0]["reason"]
    assert reason.startswith(f"OCSP gave no answer (OCSP responder {dead} unreachable")
    assert reason.endswith("CRL fallback: not on the CRL")
    # plain "ocsp" has no fallback: the same unreachable responder fails the check
    assert _checks(verify(content, cms, roots=roots, revocation="ocsp", ocsp_url=dead,
                          crl=issuer.crl("sign", "131016")))["revocation"] is False

    revocation.revoke(issuer.sessions, phone_id, "keyCompromise", "sign")
    result = verify(content, cms, roots=roots, revocation="auto", ocsp_url=dead,
                    crl=issuer.crl("sign", "131016"))
    assert not result["valid"] and _checks(result)["revocation"] is False
    reason = [c for c in result["checks"] if c["name"] == "revocation"][0]["reason"]
    assert "CRL fallback: revoked (keyCompromise)" in reason
    # a CRL that does not parse fails the fallback too (never a pass by default)
    result = verify(content, cms, roots=roots, revocation="auto", ocsp_url=dead, crl=b"junk")
    assert _checks(result)["revocation"] is False


def test_unknown_revocation_mode_is_a_failed_check(issuer):
    _phone, transmit = personalised_phone(issuer, "p384", "mode-phone")
    cms, _cert = sign_with_se(transmit, "sign", PASSWORD, b"m")
    result = verify(b"m", cms, roots=issuer.roots("sign"), revocation="OCSP")
    assert not result["valid"]
    (check,) = [c for c in result["checks"] if c["name"] == "revocation"]
    assert "unknown revocation mode 'OCSP'" in check["reason"]


def test_crl_cache_keeps_a_current_crl_and_refetches_a_stale_one(issuer):
    import datetime as dt

    from reader.relying_party import CrlCache

    personalised_phone(issuer, "p384", "cache-phone")  # the partition's CRL exists from here
    crl = x509.load_der_x509_crl(issuer.crl("sign", "131016"))
    fetched: list[str] = []

    def fetch(url):
        fetched.append(url)
        return crl

    cache = CrlCache(max_age=dt.timedelta(minutes=5), size=2)
    t0 = crl.last_update_utc
    assert cache.get("http://x/a.crl", t0, fetch) is crl
    assert cache.get("http://x/a.crl", t0 + dt.timedelta(minutes=4), fetch) is crl
    assert fetched == ["http://x/a.crl"]  # kept while younger than max_age
    cache.get("http://x/a.crl", t0 + dt.timedelta(minutes=6), fetch)
    assert len(fetched) == 2  # older than max_age: fetched again
    assert crl.next_update_utc is not None
    cache.get("http://x/a.crl", crl.next_update_utc + dt.timedelta(seconds=1), fetch)
    assert len(fetched) == 3  # past nextUpdate: fetched again
    # bounded: a third URL pushes out the least recently used
    cache.get("http://x/b.crl", t0, fetch)
    cache.get("http://x/c.crl", t0, fetch)
    cache.get("http://x/a.crl", t0, fetch)
    assert fetched[-1] == "http://x/a.crl" and cache.fetches == 6
    # a failed fetch is returned, not kept
    from protocols.jpki.relying_party import Check

    failed = Check("revocation", False, "CRL at http://x/d.crl: HTTP 503")
    assert cache.get("http://x/d.crl", t0, lambda url: failed) is failed
    assert cache.get("http://x/d.crl", t0, fetch) is crl
    with pytest.raises(ValueError):
        CrlCache(size=0)


def test_a_certificate_issued_a_moment_ago_by_a_clock_ahead_is_valid():
    """The JPKI profile puts notBefore at the moment of issuance; a relying party whose clock
    runs a little behind the issuer's accepts it within CLOCK_SKEW, not beyond."""
    import datetime as dt

    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import hashes as _hashes
    from cryptography.hazmat.primitives.asymmetric import ec as _ec
    from cryptography.x509.oid import NameOID

    from protocols.jpki.relying_party import CLOCK_SKEW, check_validity

    at = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
    key = _ec.generate_private_key(_ec.SECP256R1())
    name = _x509.Name([_x509.NameAttribute(NameOID.COMMON_NAME, "t")])

    def issued(not_before):  # noqa: ANN001, ANN202
        return (_x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(not_before).not_valid_after(at + dt.timedelta(days=1))
                .sign(key, _hashes.SHA256()))

    assert check_validity(issued(at + dt.timedelta(seconds=30)), at).passed
    assert check_validity(issued(at + CLOCK_SKEW), at).passed
    late = check_validity(issued(at + CLOCK_SKEW + dt.timedelta(seconds=1)), at)
    assert not late.passed and "not valid before" in late.reason
