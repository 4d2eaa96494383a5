"""End to end on a simulated phone: `mcred provision` (TSM over SCP03 into the phone's SE),
then `mcred jpki sign` (the SE signs through the JPKI-AP APDUs) and `mcred jpki verify`
(our relying party with the exported CRL), before and after `mcred revoke`; OpenSSL checks
the SE-made CMS signature too."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

import wallet_sim
from mcred.cli.main import app as cli
from mcred.context import Context
from protocols.cardsub.holder import parse_holder

HOLDER = {
    "family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
    "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
    "address": "東京都千代田区霞が関２丁目１番２号", "prefecture": "東京都",
    "municipality": "千代田区", "pin": "1234", "password": "ABC123",
}


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.mark.parametrize("key_type", ["rsa2048", "p384"])
def test_provision_sign_verify_revoke(home, tmp_path, key_type):
    from mcred.provision import provision

    ctx = Context.open(home)
    phone = wallet_sim.create_phone(home)
    provision(ctx, phone, parse_holder(HOLDER), key_type=key_type, mdoc_batch=1)
    doc, sig, pin = tmp_path / "doc.txt", tmp_path / "doc.p7s", tmp_path / "pw"
    doc.write_text("申請書 2026-11-23\n")
    pin.write_text("ABC123\n")
    _run("jpki", "sign", "--phone", phone, "--slot", "sign", "--pin-file", str(pin), str(doc),
         "--out", str(sig))
    crl = tmp_path / "part.crl"
    _run("export", "crl", "--slot", "sign", "--phone", phone, "--out", str(crl))
    out = _run("jpki", "verify", str(doc), "--signature", str(sig), "--revocation", "crl",
               "--crl", str(crl), "--json")
    result = json.loads(out)
    assert result["valid"] and result["documents"][0]["basic_four"]["name"] == "山田\u3000花子"
    # The same signature is refused where a user-auth certificate is required.
    _run("jpki", "verify", str(doc), "--signature", str(sig), "--slot", "auth",
         "--revocation", "none", code=1)
    if shutil.which("openssl"):
        root, cert = tmp_path / "root.pem", tmp_path / "cert.pem"
        _run("export", "jpki-root", "--slot", "sign", "--out", str(root))
        _run("export", "jpki-cert", "--phone", phone, "--slot", "sign", "--out", str(cert))
        r = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                            str(sig), "-content", str(doc), "-CAfile", str(root), "-purpose",
                            "any", "-out", "/dev/null"], capture_output=True, text=True,
                           timeout=30)
        assert "Verification successful" in r.stderr, r.stderr
    _run("revoke", "--phone", phone, "--reason", "affiliationChanged", "--credential", "sign")
    _run("export", "crl", "--slot", "sign", "--phone", phone, "--out", str(crl))
    out = _run("jpki", "verify", str(doc), "--signature", str(sig), "--revocation", "crl",
               "--crl", str(crl), "--json", code=1)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert not checks["revocation"]["passed"]
    assert "affiliationChanged" in checks["revocation"]["reason"]
    # not asked: VALID, and the output says what that VALID leaves out
    said = _run("jpki", "verify", str(doc), "--signature", str(sig), "--revocation", "none")
    assert said.splitlines()[-2:] == ["not checked: revocation (--revocation none: a revoked or held certificate "
                                      "passes)", "VALID"], said


def test_wrong_password_is_counted_and_reported(home, tmp_path):
    from mcred.provision import provision

    ctx = Context.open(home)
    phone = wallet_sim.create_phone(home)
    provision(ctx, phone, parse_holder(HOLDER), mdoc_batch=1)
    doc, pin = tmp_path / "doc.txt", tmp_path / "pw"
    doc.write_text("x")
    pin.write_text("WRONG1")
    out = _run("jpki", "sign", "--phone", phone, "--pin-file", str(pin), str(doc), code=1)
    assert "wrong signing password, 4 tries left" in out  # the password, not "PIN"; refused: exit 1


def test_a_secret_of_the_wrong_form_or_an_unwritable_output_spends_no_try(home, tmp_path):
    """A lower-case or empty password, a PIN for the password, or an --out in no directory
    used to reach the SE: VERIFY spent a try on a value the applet can never take, and the
    missing directory was a FileNotFoundError after the SE had signed."""
    from mcred.provision import provision

    ctx = Context.open(home)
    phone = wallet_sim.create_phone(home)
    provision(ctx, phone, parse_holder(HOLDER), mdoc_batch=1)
    doc, pin = tmp_path / "doc.txt", tmp_path / "pw"
    doc.write_text("x")
    for bad in ("abc123", "", "1234", "ABC12345678901234"):
        pin.write_text(bad)
        out = _run("jpki", "sign", "--phone", phone, "--pin-file", str(pin), str(doc), code=2)
        assert "no try used" in out, out
    pin.write_text("abcd")
    out = _run("jpki", "sign", "--phone", phone, "--slot", "auth", "--pin-file", str(pin), str(doc), code=2)
    assert "4 digits" in out
    pin.write_text("ABC123")
    out = _run("jpki", "sign", "--phone", phone, "--pin-file", str(pin), str(doc),
               "--out", str(tmp_path / "missing" / "x.p7s"), code=2)
    assert "no directory" in out
    pin.write_text("WRONG1")  # the right form, the wrong value: the first try the applet counts
    assert "4 tries left" in _run("jpki", "sign", "--phone", phone, "--pin-file", str(pin), str(doc), code=1)
