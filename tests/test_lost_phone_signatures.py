"""A lost phone's signatures, end to end (specs/revocation.md 1 and 5.2): the holder signs
with a signature time-stamp, then reports the phone lost (``lost_hold``: certificateHold);
while it is lost the thief signs, time-stamped too; the phone is found (``found``: the
user-authentication hold lifted, the old signing certificate revoked, cessationOfOperation,
with the time of the found). The relying party asked afterwards over OCSP and over the CRL
(the issuer's, over HTTP) refuses the signature made during the hold, since the CRL entry and
the OCSP answer say the certificate was invalid since the hold (invalidityDate, RFC 5280
5.3.2), and still accepts the holder's, made before it, as revoked after signing. Before
the issuer gave the invalidity date, both passed as "revoked after signing". OpenSSL reads
the served CRL and OCSP answer with the extension."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from test_rp_http import run_cli
from typer.testing import CliRunner

from issuer import handover as wf
from issuer.api.auth import create_token
from issuer.db import Credential
from mcred.cli.main import app as cli
from mcred.handover_actions import HandoverActions
from mcred.timestamps import CLEAR_OF_STAMP_SECONDS, time_stamp_authority
from protocols import certs, tsp
from protocols.jpki.cms import verify_detached_signature

HOLDER = {"family_name": "遠藤", "given_name": "由紀", "family_name_kana": "えんどう",
          "given_name_kana": "ゆき", "birth_date": "1985-07-07", "sex": 2,
          "address": "宮城県仙台市青葉区国分町3-7-1", "prefecture": "宮城県", "municipality": "仙台市"}
PASSWORD = "LOST2026SIGN"
CONTENT = "委任状 2026-12-09".encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from test_rp_http import served_installation

    # a phone for each test (the tests revoke what they test, in either order): the lost
    # phone's is the P-384 one, the compromised key's the RSA-2048 one (another person's)
    with served_installation(tmp_path_factory, HOLDER, PASSWORD, key_types=("p384", "rsa2048")) as w:
        (w["files"] / "doc.txt").write_bytes(CONTENT)
        yield {**w, "phone": w["phones"]["p384"]}


def _sign(world, name: str) -> bytes:
    out = world["files"] / name
    run_cli("jpki", "sign", str(world["files"] / "doc.txt"), "--phone", world["phone"], "--pin-file",
            str(world["files"] / "pw"), "--out", str(out), "--timestamp")
    return out.read_bytes()


def _verify(world, signature: bytes, mode: str) -> dict:
    """``mcred jpki verify --json --revocation MODE``: the installation's roots and TSA, the
    issuer's OCSP responder or CRL asked over HTTP."""
    path = world["files"] / "sig.p7s"
    path.write_bytes(signature)
    out = CliRunner().invoke(cli, ["jpki", "verify", str(world["files"] / "doc.txt"), "--signature", str(path),
                                   "--revocation", mode, "--json"])
    return json.loads(out.output)


def _revocation(verdict: dict) -> dict:
    return next(c for c in verdict["checks"] if c["name"] == "revocation")


def _workflow(world, kind: str) -> None:
    ctx = world["ctx"]
    with ctx.sessions() as s:
        holder_id = s.scalar(select(Credential.holder_id).where(Credential.phone_id == world["phone"]).limit(1))
    hid = wf.create(ctx.sessions, kind=kind, holder_id=holder_id, old_phone_id=world["phone"])
    HandoverActions(ctx, key_type="p384", mdoc_batch=1).runner().run(hid)


def _stamped_at(world, signature: bytes) -> dt.datetime:
    cms = verify_detached_signature(signature, CONTENT)
    return tsp.verify_token(cms.timestamp_tokens[0], data=cms.signature_value,
                            roots=time_stamp_authority(world["ctx"]).roots()).gen_time


def test_a_signature_time_stamped_while_the_phone_was_lost_is_refused_once_it_is_found(world, tmp_path):
    before = _sign(world, "before.p7s")  # the holder's own, before the loss
    old_cert = verify_detached_signature(before, CONTENT).signer_certificate
    time.sleep(CLEAR_OF_STAMP_SECONDS)
    _workflow(world, "lost_hold")
    with world["ctx"].sessions() as s:
        held_at = s.scalar(select(Credential.revoked_at).where(
            Credential.serial == format(old_cert.serial_number, "x")))
    time.sleep(CLEAR_OF_STAMP_SECONDS)
    during = _sign(world, "during.p7s")  # the thief's, the phone on hold
    assert _revocation(_verify(world, during, "ocsp"))["code"] == "on_hold"
    time.sleep(CLEAR_OF_STAMP_SECONDS)
    _workflow(world, "found")
    # the old signing certificate: revoked for good at the found, invalid since the hold
    with world["ctx"].sessions() as s:
        row = s.scalars(select(Credential).where(Credential.serial == format(old_cert.serial_number, "x"))).one()
    assert (row.status, row.reason, row.invalid_since) == ("revoked", "cessationOfOperation", held_at)
    assert _stamped_at(world, before) < held_at < _stamped_at(world, during) < row.revoked_at
    hold_text = held_at.replace(microsecond=0).isoformat()
    for mode in ("ocsp", "crl"):
        refused = _verify(world, during, mode)
        check = _revocation(refused)
        assert not refused["valid"] and check["code"] == "revoked", (mode, check)
        assert (check["revoked_at"], check["invalid_since"], check["revocation_reason"]) == (
            row.revoked_at.replace(microsecond=0).isoformat(), hold_text, "cessationOfOperation"), (mode, check)
        assert f"invalid since {hold_text}" in check["reason"], check
        assert "is after the certificate became invalid" in check["reason"], check
        kept = _verify(world, before, mode)
        assert kept["valid"], (mode, kept["checks"])
        assert (_revocation(kept)["code"], _revocation(kept)["invalid_since"]) == ("revoked_after_signing", hold_text)
    # the issuer service's relying party (POST /reader/rp/jpki/verify) says the same
    token = create_token(world["ctx"].sessions, ["reader"], "lost-phone-test")[1]
    for signature, valid, code in ((during, False, "revoked"), (before, True, "revoked_after_signing")):
        got = httpx.post(f"{world['issuer_url']}/reader/rp/jpki/verify", headers={"Authorization": f"Bearer {token}"},
                         json={"content": base64.b64encode(CONTENT).decode(),
                               "signature": base64.b64encode(signature).decode(), "revocation": "crl"})
        assert got.status_code == 200, got.text
        assert (got.json()["valid"], _revocation(got.json())["code"]) == (valid, code), got.text
    # a signature made after the found, with the new certificate: valid
    assert _verify(world, _sign(world, "after.p7s"), "ocsp")["valid"]
    if shutil.which("openssl") is None:
        return
    # OpenSSL reads the served CRL and OCSP answer, invalidity date included
    root = next(r for r in world["roots"] if r.subject == old_cert.issuer)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(old_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "part.crl").write_bytes(httpx.get(certs.crl_url(old_cert)).content)
    openssl_date = held_at.strftime("%b %e %H:%M:%S %Y GMT")
    text = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "part.crl"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "Invalidity Date:" in text and openssl_date in text, text
    out = subprocess.run(["openssl", "ocsp", "-issuer", str(tmp_path / "root.pem"), "-cert", str(tmp_path / "cert.pem"),
                          "-url", certs.ocsp_url(old_cert), "-CAfile", str(tmp_path / "root.pem"), "-resp_text"],
                         capture_output=True, text=True)
    assert "Response verify OK" in out.stderr + out.stdout, out.stdout + out.stderr
    assert "Reason: cessationOfOperation" in out.stdout and "Invalidity Date:" in out.stdout, out.stdout
    assert openssl_date in out.stdout, out.stdout
    assert x509.load_der_x509_crl((tmp_path / "part.crl").read_bytes()).get_revoked_certificate_by_serial_number(
        old_cert.serial_number).extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc \
        == held_at.replace(microsecond=0)


def test_a_signature_time_stamped_after_a_given_compromise_time_is_refused(world):
    """``mcred revoke --reason keyCompromise --invalid-since T`` (the operator learns days
    later when the key was exposed): the signing certificate is revoked now, invalid since T;
    a signature time-stamped after T is refused, one before it passes as revoked after
    signing. Without --invalid-since both passed (revoked after signing)."""
    world = {**world, "phone": world["phones"]["rsa2048"]}  # not the lost phone's test's
    before = _sign(world, "kc-before.p7s")
    cert = verify_detached_signature(before, CONTENT).signer_certificate
    time.sleep(CLEAR_OF_STAMP_SECONDS)
    compromised = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    time.sleep(CLEAR_OF_STAMP_SECONDS)
    after = _sign(world, "kc-after.p7s")  # the one who took the key
    time.sleep(CLEAR_OF_STAMP_SECONDS)
    given = compromised.astimezone(dt.timezone(dt.timedelta(hours=9))).isoformat()  # JST, as an operator writes
    out = json.loads(run_cli("revoke", "--phone", world["phone"], "--reason", "keyCompromise", "--credential",
                             "sign", "--invalid-since", given, "--json"))
    assert [(c["kind"], c["after"], c["reason"]) for c in out["changes"]] == [
        ("jpki-sign", "revoked", "keyCompromise")], out
    serial = format(cert.serial_number, "x")
    with world["ctx"].sessions() as s:
        row = s.scalars(select(Credential).where(Credential.serial == serial)).one()
    assert (row.status, row.reason, row.invalid_since) == ("revoked", "keyCompromise", compromised)
    assert _stamped_at(world, before) < compromised < _stamped_at(world, after) < row.revoked_at
    for mode in ("ocsp", "crl"):
        check = _revocation(refused := _verify(world, after, mode))
        assert not refused["valid"] and check["code"] == "revoked", (mode, check)
        assert (check["invalid_since"], check["revocation_reason"]) == (compromised.isoformat(), "keyCompromise")
        assert "is after the certificate became invalid" in check["reason"], check
        kept = _verify(world, before, mode)
        assert kept["valid"], (mode, kept["checks"])
        assert _revocation(kept)["code"] == "revoked_after_signing", (mode, kept["checks"])
