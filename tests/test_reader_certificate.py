"""``mcred reader certificate``: a reader CA and a reader authentication certificate (ISO/IEC
18013-5 Annex B.1.7) that OpenSSL verifies, that our wallet verifies for readerAuth and
readerAuthAll (and shows the holder as verified), and that signs a cross-device request as
``x509_san_dns:`` when it names the reader's host. Files are never overwritten and keys are
0600; every refusal is named."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, kit_world
from typer.testing import CliRunner

import wallet_sim
from mcred.cli.main import app
from mcred.present import present_in_process
from protocols import cose, iaca
from protocols.mdoc import verify_chain
from protocols.mdoc.chain import EKU_MDL_READER_AUTH
from reader.session import ReaderSession, RequestSpec
from wallet_sim.consent import InteractiveConsent
from wallet_sim.wallet import Wallet


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory)


def make(out_dir, *args) -> dict:
    result = CliRunner().invoke(app, ["reader", "certificate", "--out-dir", str(out_dir), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(out_dir, *args) -> str:
    result = CliRunner().invoke(app, ["reader", "certificate", "--out-dir", str(out_dir), "--json", *args])
    assert result.exit_code == 2, result.output
    return json.loads(result.stdout)["error"]


def load(made: dict):
    cert = x509.load_pem_x509_certificate(open(made["reader_cert"], "rb").read())
    key = serialization.load_pem_private_key(open(made["reader_key"], "rb").read(), None)
    ca = x509.load_pem_x509_certificate(open(made["reader_ca"], "rb").read())
    return ca, cert, key


def test_the_certificates_follow_the_profile_and_openssl_verifies_them(tmp_path):
    made = make(tmp_path, "--cn", "Shop Reader", "--dns", "shop.example", "--days", "30")
    ca, cert, key = load(made)
    assert made["subject"] == "CN=Shop Reader,C=JP"
    for path in (made["reader_key"], made["reader_ca_key"]):
        assert stat.S_IMODE(tmp_path.joinpath(path).stat().st_mode) == 0o600
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.ExtendedKeyUsage).critical
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [EKU_MDL_READER_AUTH]
    assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [
        "shop.example"]
    assert (ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
            == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30)
    chain = verify_chain([cert.public_bytes(serialization.Encoding.DER)], [ca], dt.datetime.now(dt.UTC),
                         eku=EKU_MDL_READER_AUTH)
    assert chain.leaf == cert
    from protocols.mdoc import oid4vp_redirect

    der = cert.public_bytes(serialization.Encoding.DER)
    assert oid4vp_redirect.client_id_for_uri(der, "https://shop.example/oid4vp/responses/1") == (
        "x509_san_dns:shop.example")
    if shutil.which("openssl"):
        done = subprocess.run(["openssl", "verify", "-CAfile", made["reader_ca"], made["reader_cert"]],
                              capture_output=True, text=True)
        assert done.returncode == 0 and ": OK" in done.stdout, done.stdout + done.stderr


def test_the_wallet_shows_a_reader_certified_this_way_as_verified(world, tmp_path):
    made = make(tmp_path, "--cn", "Counter 3, Shibuya ward office")
    ca, cert, key = load(made)
    shown = []
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    # the kit's wallets run on the kit's clock, months before this certificate: the wallet
    # here runs on today's
    wallet = Wallet(se.transmit, InteractiveConsent(ask=lambda q: "y", show=shown.append),
                    clock=lambda: dt.datetime.now(dt.UTC), reader_trust_anchors=[ca])
    request = RequestSpec(DOCTYPE, {NS: {"family_name": False}})
    for auth_all in (False, True):
        shown.clear()
        reader = ReaderSession([request], kit_pipeline(world["pki"], Clock()), reader_signer=cose.key_signer(key),
                               reader_chain=[cert.public_bytes(serialization.Encoding.DER)], reader_auth_all=auth_all)
        present_in_process(wallet, reader)
        assert shown[0] == "reader: CN=Counter 3\\, Shibuya ward office,C=JP (verified)"
        assert not any("breaks" in line for line in shown)  # its certificate keeps Annex B.1.7
    assert iaca.failed(iaca.check_reader_certificate(cert, ca, dt.datetime.now(dt.UTC))) == []


def test_the_holder_is_told_which_annex_b_rules_a_trusted_readers_certificate_breaks(world):
    from test_present_kit import reader_pki

    pki = reader_pki()  # the kit's: a 2-bit serial, no keyUsage, no key identifiers
    shown = []
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    wallet = Wallet(se.transmit, InteractiveConsent(ask=lambda q: "y", show=shown.append), clock=Clock(),
                    reader_trust_anchors=[pki.ca])
    present_in_process(wallet, ReaderSession([RequestSpec(DOCTYPE, {NS: {"family_name": False}})],
                                             kit_pipeline(world["pki"]), reader_signer=pki.signer,
                                             reader_chain=pki.chain))
    assert shown[0].endswith("(verified)")
    assert shown[1].startswith("  its certificate breaks ISO/IEC 18013-5 Annex B.1.7: reader.serial_number: ")
    for rule in ("reader.key_usage", "reader.authority_key_identifier", "reader.subject_key_identifier"):
        assert rule in shown[1]
    assert "reader.extended_key_usage" not in shown[1]


def test_a_second_reader_under_the_same_ca(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make(tmp_path / "a")
    second = make(tmp_path / "b", "--ca-cert", first["reader_ca"], "--ca-key", first["reader_ca_key"],
                  "--cn", "Counter 2", "--curve", "p384")
    assert second["reader_ca"] == first["reader_ca"] and second["reader_ca_key"] is None
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["reader.key", "reader.pem"]
    ca, cert, _ = load(second)
    assert cert.issuer == ca.subject
    verify_chain([cert.public_bytes(serialization.Encoding.DER)], [ca], dt.datetime.now(dt.UTC),
                 eku=EKU_MDL_READER_AUTH)


def test_refusals_are_named(tmp_path):
    made = make(tmp_path)
    assert "reader.pem exists: not overwritten" in refused(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert refused(other, "--ca-cert", made["reader_ca"]) == "--ca-cert and --ca-key go together"
    assert "is not a CA certificate" in refused(other, "--ca-cert", made["reader_cert"], "--ca-key",
                                                made["reader_key"])
    assert refused(other, "--ca-cert", made["reader_ca"], "--ca-key", made["reader_key"]) == (
        "--ca-key is not the key of --ca-cert")
    assert refused(other, "--curve", "p521") == "--curve 'p521': one of p256, p384"
    (tmp_path / "a-file").write_text("")
    assert refused(tmp_path / "a-file") == f"--out-dir {tmp_path / 'a-file'}: not a directory"
    assert not (tmp_path / "nowhere").exists() and "is not a CA certificate" in refused(
        tmp_path / "nowhere", "--ca-cert", made["reader_cert"], "--ca-key", made["reader_key"])
    assert not (tmp_path / "nowhere").exists()  # a refused certificate makes no directory
    assert "DNS name" in refused(other, "--dns", "not a host name\u00e9")
    result = CliRunner().invoke(app, ["reader", "certificate", "--out-dir", str(other), "--days", "1188"])
    assert result.exit_code == 2  # Annex B.1.7's limit, by the option's range
    assert list(other.iterdir()) == []  # nothing half-written


def test_the_out_dir_is_made_parents_too(tmp_path):
    """`--out-dir certs` where there is no certs yet (the README's walk-through): made, as
    `mkdir -p` would, rather than refused as 'not a directory'."""
    made = make(tmp_path / "certs" / "counter-1")
    assert sorted(p.name for p in (tmp_path / "certs" / "counter-1").iterdir()) == [
        "reader-ca.key", "reader-ca.pem", "reader.key", "reader.pem"]
    ca, cert, _ = load(made)
    assert cert.issuer == ca.subject


def test_the_builder_keeps_the_reader_certificate_inside_its_ca():
    from cryptography.hazmat.primitives.asymmetric import ec

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = iaca.sign(iaca.reader_ca_builder(ca_key.public_key(), common_name="R CA", not_before=now,
                                          not_after=now + dt.timedelta(days=100)), ca_key)
    with pytest.raises(iaca.IacaProfileError, match="not within the reader CA's"):
        iaca.reader_auth_builder(key.public_key(), ca, common_name="R", not_before=now,
                                 not_after=now + dt.timedelta(days=200))
    with pytest.raises(iaca.IacaProfileError, match="exceeds the Annex B limit"):
        iaca.reader_auth_builder(key.public_key(), ca, common_name="R", not_before=now,
                                 not_after=now + dt.timedelta(days=1188))
