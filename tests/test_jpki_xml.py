"""An XML filing signed on the phone with its JPKI signing certificate, end to end, as e-Gov
電子申請 and e-Tax filings are signed: `mcred jpki sign --xml [--xades]` (signxml writes the
enveloped signature, the SE signs SignedInfo through the JPKI-AP), `mcred jpki verify
filing.signed.xml` (the signature over the whole document, chain, policy, validity, OCSP at
the live issuer), `POST /rp/jpki/verify-xml`, and `--rp`.

xmlsec1 (libxmlsec1 over OpenSSL, the reference C implementation) is the second opinion: it
verifies our signatures, both key types, plain and XAdES, with the JPKI root as its only
trust. xadesjs (TypeScript, over WebCrypto) is the third: it verifies ours, XAdES B-T
included, and we verify what it signs. Changes after signing, a signature moved into a wrapper (signature wrapping), a
second signature, DTDs and entities, the user-authentication certificate and a revoked
certificate are refused by name; hostile bytes are verdicts, never crashes."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time

import httpx
import pytest
from conftest import person
from cryptography.hazmat.primitives import serialization
from documented import assert_documented
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_bridge import NodeBridge
from test_rp_http import rp_app, run_cli

import wallet_sim
from issuer.api.auth import create_token
from mcred.jpki_flow import se_signer, sign_xml_file
from mcred.provision import parse_holder, provision
from mcred.timestamps import Stamper, time_stamp_authority, wait_clear_of_stamp

pytest.importorskip("signxml", reason="the xml extra (pip install 'mcred[xml]')")

from lxml import etree  # noqa: E402 - signxml's dependency

from protocols.jpki.xmlsig import (  # noqa: E402
    XmlSignatureError,
    add_signature_timestamp,
    sign_enveloped,
    verify_enveloped,
)
from reader.jpki_xml import verify_xml  # noqa: E402
from reader.relying_party import RelyingPartyService  # noqa: E402

HOLDER = {"family_name": "山田", "given_name": "次郎", "family_name_kana": "やまだ",
          "given_name_kana": "じろう", "birth_date": "1969-11-03", "sex": 1,
          "address": "福岡県福岡市中央区天神1-8-1", "prefecture": "福岡県", "municipality": "福岡市"}
PASSWORD = "XML2026SIGN"
FILING = """<?xml version="1.0" encoding="UTF-8"?>
<申請書 xmlns="urn:example:e-gov:tennyu" 様式="転入届">
  <申請者><氏名>山田 次郎</氏名><住所>福岡県福岡市中央区天神1-8-1</住所></申請者>
  <届出日>2026-12-05</届出日>
</申請書>
""".encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from test_rp_http import served_installation

    with served_installation(tmp_path_factory, HOLDER, PASSWORD, ("p384", "rsa2048")) as w:
        (w["files"] / "filing.xml").write_bytes(FILING)
        signed = {(kt, xades): sign_xml_file(phone, PASSWORD.encode(), FILING, w["home"], xades=xades)
                  for kt, phone in w["phones"].items() for xades in (False, True)}
        signed["p384", "T"] = sign_xml_file(w["phones"]["p384"], PASSWORD.encode(), FILING, w["home"], xades=True,
                                            stamper=Stamper.local(w["ctx"]))
        roots_pem = w["files"] / "roots.pem"
        roots_pem.write_bytes(b"".join(r.public_bytes(serialization.Encoding.PEM) for r in w["roots"]))
        yield {**w, "signed": signed, "roots_pem": roots_pem, "tsa_roots": time_stamp_authority(w["ctx"]).roots()}


def _checks(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def test_signed_on_the_phone_and_verified_by_the_command_line(world):
    files, phone = world["files"], world["phones"]["p384"]
    out = run_cli("jpki", "sign", "--phone", phone, "--pin-file", str(files / "pw"), str(files / "filing.xml"),
               "--xml", "--xades")
    target = files / "filing.signed.xml"
    assert f"wrote {target}" in out
    signed = target.read_bytes()
    assert signed.startswith(b"<?xml") and "<氏名>山田 次郎</氏名>".encode() in signed
    result = json.loads(run_cli("jpki", "verify", str(target), "--json"))
    checks = _checks(result)
    assert result["valid"], result
    assert list(checks) == ["signature", "chain", "policy", "key_usage", "validity", "revocation"]
    assert "XAdES B-B" in checks["signature"]["reason"] and "ecdsa-sha384" in checks["signature"]["reason"]
    assert "OCSP" in checks["revocation"]["reason"] and "good" in checks["revocation"]["reason"]
    doc = result["documents"][0]
    assert doc["purpose"] == "sign" and doc["basic_four"]["name"] == "山田\u3000次郎"
    assert doc["xml"]["root"] == "{urn:example:e-gov:tennyu}申請書" and doc["xml"]["claimed_signing_time"]
    text = run_cli("jpki", "verify", str(target))
    assert "ok   signature" in text and text.rstrip().endswith("VALID")


@pytest.mark.parametrize("key_type", ["p384", "rsa2048"])
@pytest.mark.parametrize("xades", [False, True], ids=["xmldsig", "xades"])
def test_both_key_types_both_forms(world, key_type, xades):
    signed = world["signed"][(key_type, xades)]
    parsed = verify_enveloped(signed)
    assert parsed.xades is xades and parsed.signature_method.endswith(
        "ecdsa-sha384" if key_type == "p384" else "rsa-sha256")
    result = verify_xml(signed, roots=world["roots"], revocation="crl")
    assert result["valid"], result
    root = etree.fromstring(signed)
    assert root[-1].tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    assert len(root.findall(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate")) == 1


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 not installed (apt-get install xmlsec1)")
@pytest.mark.parametrize("key_type", ["p384", "rsa2048"])
@pytest.mark.parametrize("xades", [False, True], ids=["xmldsig", "xades"])
def test_xmlsec1_verifies_our_signatures(world, tmp_path, key_type, xades):
    path = tmp_path / "signed.xml"
    path.write_bytes(world["signed"][(key_type, xades)])
    out = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(world["roots_pem"]), str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "OK" in out.stdout + out.stderr, out.stdout + out.stderr
    # and refuses one changed after signing
    path.write_bytes(path.read_bytes().replace("天神1-8-1</住所>".encode(), "天神9-9-9</住所>".encode()))
    bad = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(world["roots_pem"]), str(path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


XADESJS = NodeBridge("xadesjs", "xadesjs", "verify.mjs")


@pytest.mark.parametrize("key_type", ["p384", "rsa2048"])
@pytest.mark.parametrize("form", ["xmldsig", "xades", "xades-t"])
def test_xadesjs_verifies_our_signatures(world, key_type, form):
    """xadesjs (PeculiarVentures, over xmldsigjs and node's WebCrypto), a second independent
    implementation: the signature and every reference, and for XAdES the SigningTime it reads
    and the unsigned properties it finds (the SignatureTimeStamp)."""
    if (why := XADESJS.unavailable()) is not None:
        pytest.skip(f"xadesjs interop: {why}")
    signed = world["signed"][("p384", "T")] if form == "xades-t" and key_type == "p384" else \
        world["signed"][(key_type, form != "xmldsig")] if form != "xades-t" else None
    if signed is None:
        signed = sign_xml_file(world["phones"][key_type], PASSWORD.encode(), FILING, world["home"], xades=True,
                               stamper=Stamper.local(world["ctx"]))
    answer = XADESJS.call({"verify": signed.decode()})
    assert answer["valid"] is True and answer["signatures"] == 1, answer
    if form != "xmldsig":
        claimed = verify_enveloped(signed).claimed_signing_time
        assert answer["signingTime"] == claimed.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert answer["unsignedProperties"] == (1 if form == "xades-t" else 0)
    changed = signed.replace("山田 次郎</氏名>".encode(), "山田 三郎</氏名>".encode())
    assert XADESJS.call({"verify": changed.decode()})["valid"] is False


@pytest.mark.parametrize("key_type", ["p384", "rsa2048"])
def test_we_read_xadesjs_signatures(key_type):
    """The other way: a filing signed by xadesjs (XAdES-BES, SigningCertificate v1 with its
    IssuerSerial) verifies here, its SigningTime read; one whose reference omits URI (xadesjs's
    default) is refused by name, and so is one changed after signing."""
    if (why := XADESJS.unavailable()) is not None:
        pytest.skip(f"xadesjs interop: {why}")
    import base64

    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = ec.generate_private_key(ec.SECP384R1()) if key_type == "p384" else rsa.generate_private_key(65537, 2048)
    now = dt.datetime.now(dt.UTC)
    cert = _self_signed(key, "xadesjs peer")
    request = {"sign": FILING.decode(), "uri": "",
               "pkcs8": base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption())).decode(),
               "certificate": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
               **({"algorithm": "ECDSA", "namedCurve": "P-384", "hash": "SHA-384"} if key_type == "p384"
                  else {"algorithm": "RSASSA-PKCS1-v1_5", "hash": "SHA-256"})}
    document = XADESJS.call(request)["xml"].encode()
    parsed = verify_enveloped(document)
    assert parsed.xades and parsed.signer_certificate == cert and parsed.root == "{urn:example:e-gov:tennyu}申請書"
    assert abs(parsed.claimed_signing_time - now) < dt.timedelta(minutes=1)
    with pytest.raises(XmlSignatureError, match="does not verify"):
        verify_enveloped(document.replace("山田 次郎</氏名>".encode(), "山田 三郎</氏名>".encode()))
    implied = XADESJS.call({**request, "uri": None})["xml"].encode()
    with pytest.raises(XmlSignatureError, match="the first reference has no URI"):
        verify_enveloped(implied)


def test_what_is_wrong_is_named(world):
    signed = world["signed"][("p384", True)]
    roots = world["roots"]

    def reason(document: bytes) -> str:
        result = verify_xml(document, roots=roots, revocation="none")
        assert not result["valid"] and result["checks"][0]["name"] == "signature", result
        return result["checks"][0]["reason"]

    changed = signed.replace("山田 次郎</氏名>".encode(), "山田 三郎</氏名>".encode())
    assert "does not verify" in reason(changed)
    # signature wrapping: the signed document moved under a new root, new content beside it
    root = etree.fromstring(signed)
    wrapper = etree.Element("{urn:example:e-gov:tennyu}申請書")
    etree.SubElement(wrapper, "{urn:example:e-gov:tennyu}氏名").text = "悪意 太郎"
    wrapper.append(root)
    assert "not a child of the document's root" in reason(etree.tostring(wrapper, encoding="UTF-8"))
    # a second signature
    twice = etree.fromstring(signed)
    twice.insert(0, etree.fromstring(signed)[-1])
    assert "2 ds:Signature elements" in reason(etree.tostring(twice, encoding="UTF-8"))
    # no certificate
    bare = etree.fromstring(signed)
    for x509data in bare.iter("{http://www.w3.org/2000/09/xmldsig#}X509Data"):
        x509data.getparent().remove(x509data)
    assert "no ds:X509Certificate" in reason(etree.tostring(bare, encoding="UTF-8"))
    assert "DTD" in reason(b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>')
    assert "not well-formed" in reason(b"<a><b></a>")
    assert "0 ds:Signature" in reason(FILING)
    assert "not well-formed" in reason("申請書".encode())
    with pytest.raises(XmlSignatureError, match="not well-formed"):
        sign_enveloped(b"<a", certificate=verify_enveloped(signed).signer_certificate, sign=lambda b: b)


def test_the_user_authentication_certificate_signs_no_filing(world):
    transmit = wallet_sim.open_secure_element(world["phones"]["p384"], world["home"]).transmit
    auth = se_signer(transmit, "auth", b"1234")
    signed = sign_enveloped(FILING, certificate=auth.certificate, sign=auth.sign)
    assert verify_enveloped(signed).signer_certificate == auth.certificate  # the signature itself is sound
    result = verify_xml(signed, roots=[*world["roots"]], revocation="none")
    assert not result["valid"] and not _checks(result)["policy"]["passed"]


def test_a_revoked_certificate_is_refused(world):
    ctx, home = world["ctx"], world["home"]
    phone = wallet_sim.create_phone(home)
    provision(ctx, phone, parse_holder(person(HOLDER)), key_type="p384", mdoc_batch=1, pin="1234", password=PASSWORD)
    signed = sign_xml_file(phone, PASSWORD.encode(), FILING, home)
    assert verify_xml(signed, roots=world["roots"])["valid"]
    run_cli("revoke", "--phone", phone, "--reason", "cessationOfOperation")
    for mode in ("ocsp", "crl", "auto"):
        result = verify_xml(signed, roots=world["roots"], revocation=mode)
        assert not result["valid"], mode
        assert "cessationOfOperation" in _checks(result)["revocation"]["reason"], result


def test_a_time_stamped_filing_outlives_the_certificates_revocation(world, tmp_path):
    """XAdES B-T: a signature time-stamp from the installation's TSA (or over HTTP) over the
    canonical ds:SignatureValue; after the holder moves, the stamped filing stays valid, the
    unstamped one is refused; a broken or borrowed token is refused by name."""
    ctx, home, files = world["ctx"], world["home"], world["files"]
    phone = wallet_sim.create_phone(home)
    provision(ctx, phone, parse_holder(person(HOLDER)), key_type="rsa2048", mdoc_batch=1, pin="1234", password=PASSWORD)
    tsa_roots = time_stamp_authority(ctx).roots()
    tsa_pem = tmp_path / "tsa.pem"
    tsa_pem.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in tsa_roots))
    base = ["jpki", "sign", "--phone", phone, "--pin-file", str(files / "pw"), str(files / "filing.xml"), "--xml"]
    run_cli(*base, "--xades", "--timestamp", "--out", str(tmp_path / "stamped.xml"))
    run_cli(*base, "--xades", "--tsa", f"{world['issuer_url']}/tsa", "--tsa-root", str(tsa_pem),
            "--out", str(tmp_path / "over-http.xml"))
    run_cli(*base, "--xades", "--out", str(tmp_path / "plain.xml"))
    run_cli(*base, "--xades", "--timestamp", "--ltv", "--out", str(tmp_path / "lt.xml"))  # XAdES B-LT
    lt = verify_enveloped((tmp_path / "lt.xml").read_bytes())
    assert len(lt.timestamps) == 1 and len(lt.ocsp_responses) == 1 and len(lt.crls) == 1  # the TSA unit's CRL
    assert "add --xades" in run_cli(*base, "--timestamp", "--out", str(tmp_path / "x.xml"), code=2)
    stamped, over_http = (tmp_path / "stamped.xml").read_bytes(), (tmp_path / "over-http.xml").read_bytes()
    parsed = verify_enveloped(stamped)
    assert len(parsed.timestamps) == 1  # over the exclusive canonical form of ds:SignatureValue
    assert parsed.timestamps[0][1].startswith(b'<ds:SignatureValue xmlns:ds="http://www.w3.org/2000/09/xmldsig#">')

    def verdict(path, *extra: str, code: int = 0) -> dict:
        return json.loads(run_cli("jpki", "verify", str(path), "--json", *extra, code=code))

    before = verdict(tmp_path / "stamped.xml")
    assert before["valid"], before
    c = _checks(before)
    assert list(c) == ["signature", "signature_timestamp", "chain", "policy", "key_usage", "validity", "revocation"]
    assert "XAdES B-T" in c["signature"]["reason"] and c["signature_timestamp"]["reason"].startswith("signed before ")
    assert c["validity"]["reason"].endswith("judged at the time-stamp")
    assert verify_xml(over_http, roots=world["roots"], tsa_roots=tsa_roots)["valid"]
    if shutil.which("xmlsec1"):  # the unsigned properties leave the signature as xmlsec1 reads it
        out = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(world["roots_pem"]),
                              str(tmp_path / "stamped.xml")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    # the holder moves: revoked (affiliationChanged), clear of the stamp's whole second
    wait_clear_of_stamp(time.monotonic())
    run_cli("revoke", "--phone", phone, "--reason", "affiliationChanged", "--credential", "sign")
    for mode in ("ocsp", "crl", "auto"):
        after = verify_xml(stamped, roots=world["roots"], tsa_roots=tsa_roots, revocation=mode)
        assert after["valid"], (mode, after["checks"])
        assert "after the signature's time-stamp" in _checks(after)["revocation"]["reason"]
    assert verdict(tmp_path / "over-http.xml")["valid"]
    offline = verdict(tmp_path / "lt.xml", "--revocation", "embedded")  # no network: its own validation data
    assert "XAdES B-LT" in _checks(offline)["signature"]["reason"]
    assert "(embedded), current at the signature's time-stamp" in _checks(offline)["revocation"]["reason"], offline
    assert "validation data needs a signature time-stamp" in _checks(
        verify_xml(world["signed"][("p384", True)], roots=world["roots"], revocation="embedded"))["revocation"]["reason"]
    refused = verdict(tmp_path / "plain.xml", "--revocation", "ocsp", code=1)
    assert not refused["valid"] and "revoked (affiliationChanged)" in _checks(refused)["revocation"]["reason"]
    # the service with the installation's TSA roots says the same
    rp = RelyingPartyService(world["roots"], tsa_roots=tsa_roots)
    assert rp.verify_xml(stamped)["valid"] and not rp.verify_xml(tmp_path.joinpath("plain.xml").read_bytes())["valid"]
    # no trusted TSA root, a token of another signature, a broken token
    no_roots = verify_xml(stamped, roots=world["roots"], revocation="none")
    assert "no time-stamping root is trusted here" in _checks(no_roots)["signature_timestamp"]["reason"]
    token = parsed.timestamps[0][0]
    other = add_signature_timestamp(sign_xml_file(world["phones"]["p384"], PASSWORD.encode(), FILING, home,
                                                  xades=True), token)
    borrowed = verify_xml(other, roots=world["roots"], tsa_roots=tsa_roots, revocation="none")
    assert not borrowed["valid"] and "imprint" in _checks(borrowed)["signature_timestamp"]["reason"], borrowed
    broken = stamped.replace(b"<xades:EncapsulatedTimeStamp>MI", b"<xades:EncapsulatedTimeStamp>MA")
    assert broken != stamped
    assert not _checks(verify_xml(broken, roots=world["roots"], tsa_roots=tsa_roots,
                                  revocation="none"))["signature_timestamp"]["passed"]
    with pytest.raises(XmlSignatureError, match="sign with XAdES"):
        add_signature_timestamp(world["signed"][("p384", False)], token)


def test_the_relying_party_service_and_rp_flag(world, tmp_path):
    signed = world["signed"][("rsa2048", False)]
    url = world["reader_url"] + "/rp/jpki/verify-xml"
    answer = httpx.post(url, content=signed, headers={"Content-Type": "application/xml"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["valid"], answer.text
    assert answer.json()["documents"][0]["xml"]
    assert_documented(rp_app(RelyingPartyService([])), "POST", "/rp/jpki/verify-xml", answer)  # a JpkiVerdict
    assert httpx.post(url + "?revocation=crl", content=signed, headers={"Content-Type": "text/xml"},
                      timeout=30).json()["valid"]
    assert httpx.post(url, content=signed, headers={"Content-Type": "application/pdf"}, timeout=30).status_code == 415
    assert httpx.post(url, content=b"", headers={"Content-Type": "application/xml"}, timeout=30).status_code == 422
    assert httpx.post(url + "?revocation=everything", content=signed, headers={"Content-Type": "application/xml"},
                      timeout=30).status_code == 422
    embedded = httpx.post(url + "?revocation=embedded", content=signed, headers={"Content-Type": "application/xml"},
                          timeout=30).json()  # no time-stamp, so the validation data speaks for no time
    assert not embedded["valid"] and "needs a signature time-stamp" in _checks(embedded)["revocation"]["reason"]
    refused = httpx.post(url, content=b"<a/>", headers={"Content-Type": "application/xml"}, timeout=30)
    assert refused.status_code == 200 and not refused.json()["valid"]
    # the issuer service's own relying party (/reader, scope reader) trusts the installation's
    # TSA: a XAdES B-T filing is judged at its time-stamp there
    token = create_token(world["ctx"].sessions, ["reader"], "xml-test")[1]
    at_issuer = world["issuer_url"] + "/reader/rp/jpki/verify-xml"
    stamped = httpx.post(at_issuer, content=world["signed"][("p384", "T")], timeout=30,
                         headers={"Content-Type": "application/xml", "Authorization": f"Bearer {token}"})
    assert stamped.status_code == 200 and stamped.json()["valid"], stamped.text
    assert _checks(stamped.json())["signature_timestamp"]["passed"]
    assert httpx.post(at_issuer, content=signed, headers={"Content-Type": "application/xml"},
                      timeout=30).status_code == 401
    path = tmp_path / "posted.xml"
    path.write_bytes(signed)
    result = json.loads(run_cli("jpki", "verify", str(path), "--rp", world["reader_url"], "--json"))
    assert result["valid"] and result["documents"][0]["xml"]["form"] == "XML signature"


def test_the_commands_name_what_is_wrong(world):
    files, phone = world["files"], world["phones"]["p384"]
    base = ["jpki", "sign", "--phone", phone, "--pin-file", str(files / "pw")]
    (files / "note.txt").write_text("not xml")
    assert "not well-formed XML" in run_cli(*base, str(files / "note.txt"), "--xml", code=2)
    assert not (files / "note.signed.xml").exists()
    assert "add --xml" in run_cli(*base, str(files / "filing.xml"), "--xades", code=2)
    assert "no --pdf" in run_cli(*base, str(files / "filing.xml"), "--xml", "--pdf", code=2)
    assert "add --xades" in run_cli(*base, str(files / "filing.xml"), "--xml", "--ltv", code=2)
    assert "--ltv on an XML signature needs its time-stamp" in run_cli(*base, str(files / "filing.xml"), "--xml",
                                                                         "--xades", "--ltv", code=2)
    assert "signing certificate" in run_cli(*base, str(files / "filing.xml"), "--xml", "--slot", "auth", code=2)
    signed = files / "twice.xml"
    signed.write_bytes(world["signed"][("p384", False)])
    assert "already carries a ds:Signature" in run_cli(*base, str(signed), "--xml", "--out", str(files / "t2.xml"),
                                                    code=2)
    out = run_cli("jpki", "verify", str(files / "filing.xml"), code=1)
    assert "FAIL signature [bad_signature]: 0 ds:Signature elements" in out and out.rstrip().endswith("INVALID")


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hostile_documents_are_verdicts_never_crashes(world, data):
    signed = world["signed"][data.draw(st.sampled_from([("p384", True), ("p384", "T")]))]  # XAdES B-B, B-T
    kind = data.draw(st.sampled_from(["bytes", "flip", "cut", "splice"]))
    if kind == "bytes":
        document = data.draw(st.binary(max_size=300))
    elif kind == "flip":
        i = data.draw(st.integers(0, len(signed) - 1))
        document = signed[:i] + bytes([signed[i] ^ data.draw(st.integers(1, 255))]) + signed[i + 1:]
    elif kind == "cut":
        document = signed[:data.draw(st.integers(0, len(signed)))]
    else:
        i = data.draw(st.integers(0, len(signed)))
        document = signed[:i] + data.draw(st.binary(min_size=1, max_size=40)) + signed[i:]
    result = verify_xml(document, roots=world["roots"], revocation="none", tsa_roots=world["tsa_roots"])
    assert isinstance(result["valid"], bool)
    if result["valid"]:  # then what was signed is unchanged: the document without its signature
        assert _content(document) == _content(signed)


def _content(document: bytes) -> bytes:
    root = etree.fromstring(document)
    root.remove(root.find("{http://www.w3.org/2000/09/xmldsig#}Signature"))
    return etree.tostring(root, method="c14n", with_comments=False)  # URI="" signs no comment


def _self_signed(key, name: str):  # noqa: ANN001, ANN202 - a private key; its certificate
    """A self-signed end-entity certificate of ``key``, valid from yesterday to tomorrow: a
    signer outside the JPKI, for the tests where another implementation signs or the SE's
    round trips would cost more than the documents."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA384()))


def _software_signer(directory):  # noqa: ANN001, ANN202 - (certificate, sign, trusted PEM path)
    """A P-384 key in software with a self-signed certificate, written to ``directory`` as
    ``signer.pem`` and its key as ``signer.key`` (PKCS#8)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    cert = _self_signed(key, "property signer")
    pem = directory / "signer.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.with_name("signer.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    return cert, (lambda data: key.sign(data, ec.ECDSA(hashes.SHA384()))), pem


#: an enveloped signature template for xmlsec1 --sign: inclusive C14N 1.0, the ds:Signature in
#: the default namespace (as xmlsec1, .NET and Java write it)
_TEMPLATE = ("<Signature xmlns='http://www.w3.org/2000/09/xmldsig#'><SignedInfo>"
             "<CanonicalizationMethod Algorithm='http://www.w3.org/TR/2001/REC-xml-c14n-20010315'/>"
             "<SignatureMethod Algorithm='http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384'/>"
             "<Reference URI=''><Transforms>"
             "<Transform Algorithm='http://www.w3.org/2000/09/xmldsig#enveloped-signature'/>"
             "<Transform Algorithm='http://www.w3.org/TR/2001/REC-xml-c14n-20010315'/></Transforms>"
             "<DigestMethod Algorithm='http://www.w3.org/2001/04/xmldsig-more#sha384'/><DigestValue/></Reference>"
             "</SignedInfo><SignatureValue/><KeyInfo><X509Data/></KeyInfo></Signature>")


_NAMES = st.sampled_from(["a", "b", "申請", "氏名", "x-y", "z.1"])
_TEXT = st.lists(st.sampled_from(list("ab 和&<>\"'\t\n\r]") + ["]]>", "\u3000"]), max_size=12).map("".join)


@st.composite
def _documents(draw, depth: int = 0) -> str:
    """A well-formed document's root element: names (ASCII and Japanese), default and
    prefixed namespaces (declared, redeclared, undeclared), attributes with characters that
    must be escaped, xml:lang, text, CDATA, comments, nested to depth 3."""
    from xml.sax.saxutils import escape, quoteattr

    name = draw(_NAMES)
    prefix = draw(st.sampled_from(["", "", "p:", "q:"]))
    attrs = []
    if prefix or draw(st.booleans()):
        attrs.append(f"xmlns:{(prefix or 'p:')[:-1]}={quoteattr(draw(st.sampled_from(['urn:p', 'urn:q', 'urn:和'])))}")
    if draw(st.booleans()):
        attrs.append(f"xmlns={quoteattr(draw(st.sampled_from(['urn:d', 'urn:e', ''])))}" if depth else
                     f"xmlns={quoteattr(draw(st.sampled_from(['urn:d', 'urn:e'])))}")
    for n, value in enumerate(draw(st.lists(_TEXT, max_size=3))):
        attrs.append(f"{'zyx'[n]}={quoteattr(value)}")
    if draw(st.booleans()):
        attrs.append(f"xml:lang={quoteattr(draw(st.sampled_from(['ja', 'en'])))}")
    parts = []
    for _ in range(draw(st.integers(0, 3 if depth < 3 else 0))):
        kind = draw(st.sampled_from(["text", "child", "cdata", "comment"]))
        if kind == "text":
            parts.append(escape(draw(_TEXT)))
        elif kind == "child":
            parts.append(draw(_documents(depth + 1)))
        elif kind == "cdata":
            parts.append(f"<![CDATA[{draw(_TEXT).replace(']]>', '')}]]>")
        else:
            parts.append(f"<!--{draw(_TEXT).replace('--', '').rstrip('-')}-->")
    tag = f"{prefix}{name}"
    return f"<{tag}{''.join(' ' + a for a in attrs)}>{''.join(parts)}</{tag}>"


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 not installed (apt-get install xmlsec1)")
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_documents(), xades=st.booleans())
def test_any_document_we_sign_verifies_here_and_in_xmlsec1(tmp_path_factory, body, xades):
    """Canonicalization is where XML signature implementations part ways: documents with
    namespaces declared, redeclared and undeclared, escaped characters, CRs, CDATA, comments
    and xml:lang, signed here, verify here, in xmlsec1 and in xadesjs; signed by xmlsec1
    with inclusive C14N and a default-namespace ds:Signature, verify here. It found that with
    inclusive C14N a root carrying xml:lang or xml:space was signed over other bytes than
    xmlsec1 canonicalizes (lxml's C14N of an element leaves out the xml:* attributes it
    inherits; so does xadesjs), hence exclusive C14N for what we sign."""
    document = ("<?xml version='1.0' encoding='UTF-8'?>\n" + body).encode()
    if not hasattr(test_any_document_we_sign_verifies_here_and_in_xmlsec1, "signer"):
        test_any_document_we_sign_verifies_here_and_in_xmlsec1.signer = _software_signer(
            tmp_path_factory.mktemp("signer"))
    cert, sign, pem = test_any_document_we_sign_verifies_here_and_in_xmlsec1.signer
    try:
        signed = sign_enveloped(document, certificate=cert, sign=sign, xades=xades)
    except XmlSignatureError as exc:  # a namespace the generator made unbound: not well-formed
        assert "not well-formed" in str(exc)
        return
    assert verify_enveloped(signed).signer_certificate == cert
    path = tmp_path_factory.mktemp("doc") / "signed.xml"
    path.write_bytes(signed)
    out = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(pem), str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (signed, out.stderr)
    # xmldsigjs (under xadesjs) keeps a superfluous xmlns="" that C14N drops (a child
    # undeclaring a default namespace its parent never had): such a document is left to xmlsec1
    if b'xmlns=""' not in document and XADESJS.unavailable() is None:
        answer = XADESJS.call({"verify": signed.decode()})
        assert answer["valid"] is True, (signed, answer)
    # and the other way: xmlsec1 signs the same document with inclusive C14N, we verify it
    root = etree.fromstring(document)
    root.append(etree.fromstring(_TEMPLATE))
    template = path.with_name("template.xml")
    template.write_bytes(etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"))
    theirs = path.with_name("theirs.xml")
    done = subprocess.run(["xmlsec1", "--sign", "--privkey-pem", f"{pem.with_name('signer.key')},{pem}",
                           "--output", str(theirs), str(template)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert verify_enveloped(theirs.read_bytes()).signer_certificate == cert


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 not installed (apt-get install xmlsec1)")
@pytest.mark.parametrize("root_attributes", ['xml:lang="ja"', 'xml:space="preserve" xml:lang="en" xmlns="urn:d"', ""])
def test_we_read_what_xmlsec1_signs_with_inclusive_c14n(tmp_path, root_attributes):
    """The other way round with xmlsec1: a filing whose template asks inclusive C14N 1.0,
    signed by xmlsec1 with a key in software. Where the root carries xml:lang or xml:space,
    SignedInfo's canonical form carries them too (C14N 1.0 section 2.4): we verify it, where
    signxml alone (no inheritance) finds the signature does not verify."""
    cert, _sign, pem = _software_signer(tmp_path)
    c14n = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    template = f"""<?xml version="1.0" encoding="UTF-8"?>
<申請書 {root_attributes}><氏名>山田 次郎</氏名><Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>\
<CanonicalizationMethod Algorithm="{c14n}"/>\
<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"/>\
<Reference URI=""><Transforms><Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>\
<Transform Algorithm="{c14n}"/></Transforms>\
<DigestMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#sha384"/><DigestValue/></Reference></SignedInfo>\
<SignatureValue/><KeyInfo><X509Data/></KeyInfo></Signature></申請書>"""
    (tmp_path / "template.xml").write_text(template, encoding="utf-8")
    done = subprocess.run(["xmlsec1", "--sign", "--privkey-pem", f"{pem.with_name('signer.key')},{pem}",
                           "--output", str(tmp_path / "signed.xml"), str(tmp_path / "template.xml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    signed = (tmp_path / "signed.xml").read_bytes()
    parsed = verify_enveloped(signed)
    assert parsed.signer_certificate == cert and parsed.root.endswith("申請書")
    with pytest.raises(XmlSignatureError, match="does not verify"):
        verify_enveloped(signed.replace("山田 次郎".encode(), "山田 三郎".encode()))


_FIRST_USE_IN_THREADS = r"""
import sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import signxml.processor

_load = signxml.processor.get_schema
def slow_load(name):  # a slow disk: the window between two threads' loads made wide
    time.sleep(0.05)
    return _load(name)
signxml.processor.get_schema = slow_load
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from protocols.jpki.xmlsig import sign_enveloped, verify_enveloped, XmlSignatureError

cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
sign = lambda data: key.sign(data, ec.ECDSA(hashes.SHA384()))
doc = b"<?xml version='1.0' encoding='UTF-8'?><filing><name>x</name></filing>"
signed = [sign_enveloped(doc, certificate=cert, sign=sign, xades=x) for x in [True] * 12 + [False] * 4]

def verify(numbered):
    i, document = numbered
    time.sleep(0.02 * i)  # one after another, while the first still loads
    try:
        verify_enveloped(document)
        return "ok"
    except XmlSignatureError as exc:
        return str(exc)

with ThreadPoolExecutor(len(signed)) as pool:
    verdicts = list(pool.map(verify, enumerate(signed)))
bad = [v for v in verdicts if v != "ok"]
print(len(bad), bad[:2])
"""


def test_first_verifications_in_parallel_threads_agree(tmp_path):
    """A reader's first XML verifications arrive together (a service's thread pool, a
    drill): signxml loads its schemas lazily into one list that every verifier class
    shares, under a lock made anew at each call, so threads once validated XAdES against
    half-loaded schemas (valid signatures called invalid) or parsed the schema files at the
    same time (libxml2: "not valid XML Schema"). Found by a README walk-through:
    `mcred drill moved` judged valid filings invalid. Here a fresh interpreter, whose schema
    loads are slowed down to widen the window, verifies sixteen signatures (twelve XAdES,
    four plain) in threads arriving one after another while the first is still loading."""
    import sys

    cert, _sign, pem = _software_signer(tmp_path)
    script = tmp_path / "first_use.py"
    script.write_text(_FIRST_USE_IN_THREADS)
    for _ in range(2):
        out = subprocess.run([sys.executable, "-W", "ignore", str(script), str(pem), str(pem.with_name("signer.key"))],
                             capture_output=True, text=True, timeout=120, check=True)
        assert out.stdout.startswith("0 "), out.stdout + out.stderr


@pytest.mark.parametrize("damage", ["version 4", "ExtendedKeyUsage twice", "a BIT STRING in the issuer"])
def test_a_keyinfo_certificate_cryptography_refuses_late_is_a_failed_signature_check(damage):
    """ds:KeyInfo is outside SignedInfo: anyone may put another certificate there. One that
    cryptography loads but refuses on first use (version 4: InvalidVersion, no ValueError; a
    repeated extension: DuplicateExtension; an issuer Name it cannot build: TypeError)
    escaped verify_enveloped, and verify_xml, which "never raises on bad input", raised it
    (`mcred jpki verify FILE.xml` crashed; the HTTP service turned it into "unverifiable:
    InvalidVersion"). Found by the deep fuzz campaign; refused now as the loader of
    protocols.certs refuses it."""
    import base64
    import re

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from test_certs import _with_two_ekus, with_version_4

    key = ec.generate_private_key(ec.SECP384R1())
    cert = _self_signed(key, "keyinfo")
    der = cert.public_bytes(serialization.Encoding.DER)
    if damage == "version 4":
        bad = with_version_4(der)
    elif damage == "ExtendedKeyUsage twice":
        bad = _with_two_ekus()
    else:
        at = der.index(bytes.fromhex("0603550403") + b"\x0c") + 5  # the issuer's commonName, UTF8String
        bad = der[:at] + b"\x03" + der[at + 1:]
    signed = sign_enveloped(b"<filing>contract</filing>", certificate=cert,
                            sign=lambda data: key.sign(data, ec.ECDSA(hashes.SHA384())))
    swapped = re.sub(rb"<ds:X509Certificate>[^<]*<", b"<ds:X509Certificate>" + base64.b64encode(bad) + b"<", signed)
    assert swapped != signed
    with pytest.raises(XmlSignatureError, match="not a certificate"):
        verify_enveloped(swapped)
    result = verify_xml(swapped, roots=[cert], revocation="none")
    assert result["valid"] is False and result["checks"][0]["name"] == "signature"
