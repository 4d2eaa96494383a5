"""Reader certificates revoked: ``mcred reader crl`` issues a reader CA's CRL (RFC 5280, DER,
read by OpenSSL) and a wallet holding it (``--reader-crl``, :mod:`wallet_sim.reader_crls`)
no longer trusts a reader certificate it lists, nor any of that CA's once the list is out
of date or missing: fail closed. The holder is told why; a consent that releases to trusted
readers only releases nothing."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import shutil
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, kit_world, make_phone
from typer.testing import CliRunner

import wallet_sim
from mcred.cli.main import app
from mcred.present import present_in_process, reader_crls
from mcred.reader_pki import ReaderPkiError, update_reader_crl
from protocols import cose
from protocols import crl as ca_crl
from reader.session import ReaderSession, RequestSpec
from wallet_sim.consent import InteractiveConsent, RulesConsent
from wallet_sim.reader_crls import ReaderCrlError, ReaderCrls
from wallet_sim.wallet import Wallet

NOW = lambda: dt.datetime.now(dt.UTC)  # noqa: E731 - the CLI's certificates are made now


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory)


def cli(*args) -> tuple[int, dict]:
    result = CliRunner().invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}


def reader(tmp_path, name="r", *extra) -> dict:
    out = tmp_path / name
    out.mkdir()
    code, made = cli("reader", "certificate", "--out-dir", str(out), "--cn", f"Counter {name}", *extra)
    assert code == 0, made
    return made


def crl(tmp_path, made, *args) -> tuple[int, dict]:
    return cli("reader", "crl", "--out", str(tmp_path / "reader-ca.crl"), "--ca-cert", made["reader_ca"],
               "--ca-key", made["reader_ca_key"], *args)


def test_the_crl_lists_what_was_revoked_and_openssl_reads_it(tmp_path):
    made = reader(tmp_path)
    other = reader(tmp_path, "s", "--ca-cert", made["reader_ca"], "--ca-key", made["reader_ca_key"])
    code, first = crl(tmp_path, made)
    assert code == 0 and first["number"] == 1 and first["entries"] == [] and first["added"] == []
    code, second = crl(tmp_path, made, "--revoke", made["reader_cert"], "--reason", "keyCompromise", "--days", "2")
    assert code == 0 and second["number"] == 2
    serial = f"{x509.load_pem_x509_certificate(open(made['reader_cert'], 'rb').read()).serial_number:x}"
    assert second["added"] == [serial] and second["entries"][0]["reason"] == "keyCompromise"
    assert (dt.datetime.fromisoformat(second["next_update"]) - dt.datetime.fromisoformat(second["this_update"])
            == dt.timedelta(days=2))
    # again, with the same certificate and another: the first is kept as it was
    code, third = crl(tmp_path, made, "--revoke", made["reader_cert"], "--revoke", other["reader_cert"],
                      "--reason", "cessationOfOperation")
    assert code == 0 and third["number"] == 3 and third["already"] == [serial] and len(third["added"]) == 1
    assert {e["serial"]: e["reason"] for e in third["entries"]} == {serial: "keyCompromise",
                                                                     third["added"][0]: "cessationOfOperation"}
    listed = ca_crl.load((tmp_path / "reader-ca.crl").read_bytes())
    assert listed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    if shutil.which("openssl"):
        der = str(tmp_path / "reader-ca.crl")
        pem = str(tmp_path / "reader-ca.crl.pem")
        done = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", der, "-CAfile", made["reader_ca"],
                               "-noout", "-text", "-out", "/dev/stdout"], capture_output=True, text=True)
        assert done.returncode == 0 and "verify OK" in done.stderr + done.stdout, done.stderr
        assert "Key Compromise" in done.stdout and "CRL Number" in done.stdout
        subprocess.run(["openssl", "crl", "-inform", "DER", "-in", der, "-out", pem], check=True)
        done = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", made["reader_ca"], "-CRLfile", pem,
                               made["reader_cert"]], capture_output=True, text=True)
        assert done.returncode != 0 and "certificate revoked" in done.stdout + done.stderr


def test_refusals_are_named_and_leave_the_list_as_it_was(tmp_path):
    made = reader(tmp_path)
    stranger = reader(tmp_path, "x")  # another CA of its own
    assert crl(tmp_path, made)[0] == 0
    before = (tmp_path / "reader-ca.crl").read_bytes()
    code, out = crl(tmp_path, made, "--revoke", stranger["reader_cert"])
    assert code == 2 and "was not issued by CN=mcred reader CA" in out["error"]
    code, out = crl(tmp_path, made, "--revoke", made["reader_cert"], "--reason", "certificateHold")
    assert code == 2 and "one of unspecified, keyCompromise" in out["error"]
    code, out = crl(tmp_path, made, "--revoke", str(tmp_path / "nothing.pem"))
    assert code == 2 and "--revoke" in out["error"]
    assert (tmp_path / "reader-ca.crl").read_bytes() == before
    # a CRL of another CA at --out is not overwritten, nor anything that is not a CRL
    code, out = cli("reader", "crl", "--out", str(tmp_path / "reader-ca.crl"), "--ca-cert", stranger["reader_ca"],
                    "--ca-key", stranger["reader_ca_key"])
    assert code == 2 and "is not a CRL of" in out["error"]
    (tmp_path / "junk.crl").write_bytes(b"not a CRL")
    code, out = cli("reader", "crl", "--out", str(tmp_path / "junk.crl"), "--ca-cert", made["reader_ca"],
                    "--ca-key", made["reader_ca_key"])
    assert code == 2 and "not a CRL" in out["error"]
    assert (tmp_path / "reader-ca.crl").read_bytes() == before and (tmp_path / "junk.crl").read_bytes() == b"not a CRL"
    code, out = cli("reader", "crl", "--out", str(tmp_path / "n.crl"), "--ca-cert", made["reader_ca"],
                    "--ca-key", stranger["reader_ca_key"])
    assert code == 2 and out["error"] == "--ca-key is not the key of --ca-cert"
    assert not (tmp_path / "n.crl").exists()


def test_a_missing_ca_file_is_named_plainly_on_a_line_of_its_own(tmp_path):
    """It said `--ca-cert / --ca-key: [Errno 2] No such file or directory: 'ca.pem'`: now the
    option and the file it names, on stderr, a whole line."""
    made = reader(tmp_path)
    missing = tmp_path / "nope.pem"
    for args, said in ((["--ca-cert", str(missing), "--ca-key", made["reader_ca_key"]], f"--ca-cert {missing}"),
                       (["--ca-cert", made["reader_ca"], "--ca-key", str(missing)], f"--ca-key {missing}")):
        code, out = cli("reader", "crl", "--out", str(tmp_path / "r.crl"), *args)
        assert code == 2 and out["error"] == f"{said}: no such file"
        result = CliRunner().invoke(app, ["reader", "crl", "--out", str(tmp_path / "r.crl"), *args])
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == f"error: {said}: no such file\n"
    (tmp_path / "junk.pem").write_text("junk")
    code, out = cli("reader", "crl", "--out", str(tmp_path / "r.crl"), "--ca-cert", str(tmp_path / "junk.pem"),
                    "--ca-key", made["reader_ca_key"])
    assert code == 2 and out["error"].startswith(f"--ca-cert {tmp_path / 'junk.pem'}: not a PEM certificate")


def _present(world, made, revocation, consent=None):
    """A presentation to the reader of ``made`` (readerAuth), the wallet holding
    ``revocation``: what the holder was shown and what the reader got."""
    shown = []
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    ca = x509.load_pem_x509_certificate(open(made["reader_ca"], "rb").read())
    cert = x509.load_pem_x509_certificate(open(made["reader_cert"], "rb").read())
    key = serialization.load_pem_private_key(open(made["reader_key"], "rb").read(), None)
    wallet = Wallet(se.transmit, consent or InteractiveConsent(ask=lambda q: "y", show=shown.append), clock=NOW,
                    reader_trust_anchors=[ca], reader_revocation=revocation)
    session = ReaderSession([RequestSpec(DOCTYPE, {NS: {"family_name": False}})], kit_pipeline(world["pki"], Clock()),
                            reader_signer=cose.key_signer(key), reader_chain=[cert.public_bytes(serialization.Encoding.DER)])
    result = present_in_process(wallet, session)
    return shown, result


def test_a_wallet_holding_the_list_no_longer_trusts_a_revoked_reader(world, tmp_path):
    made = reader(tmp_path)
    path = tmp_path / "reader-ca.crl"
    crl(tmp_path, made)
    shown, _ = _present(world, made, reader_crls([path]))
    assert shown[0] == "reader: CN=Counter r,C=JP (verified)"
    crl(tmp_path, made, "--revoke", made["reader_cert"], "--reason", "keyCompromise")
    shown, _ = _present(world, made, reader_crls([path]))
    assert shown[0].startswith("reader: CN=Counter r,C=JP (signature valid, certificate NOT trusted: revoked, or its "
                               "revocation unknown) - ")
    assert "revoked (keyCompromise) at " in shown[0] and "CRL number 2" in shown[0]
    # a holder who releases to trusted readers only releases nothing to it
    cautious = RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "trusted_readers_only": True})
    _, result = _present(world, made, reader_crls([path]), cautious)
    assert not result.valid and not any(d.get("elements") for d in result.result.get("documents", []))
    assert [e.refused for e in result.wallet_events if e.kind == "response"] == [{NS: frozenset({"family_name"})}]
    (event,) = [e for e in result.wallet_events if e.kind == "response"]
    assert event.reader.signature_valid and not event.reader.trusted and event.reader.revocation_failed
    # without the list the wallet is as it was: it checks no revocation
    shown, _ = _present(world, made, None)
    assert shown[0].endswith("(verified)")


def test_a_missing_stale_or_forged_list_fails_closed(world, tmp_path):
    made = reader(tmp_path)
    crl(tmp_path, made, "--days", "1")
    path = tmp_path / "reader-ca.crl"
    other = reader(tmp_path, "o", "--ca-cn", "Other reader CA")
    theirs = tmp_path / "o" / "o.crl"
    update_reader_crl(theirs, (other["reader_ca"], other["reader_ca_key"]))
    shown, _ = _present(world, made, reader_crls([theirs]))
    assert "NOT trusted" in shown[0] and "no revocation list of reader CA CN=mcred reader CA,C=JP is held" in shown[0]
    # a day and more later, the list is out of date
    cert = x509.load_pem_x509_certificate(open(made["reader_cert"], "rb").read())
    ca = x509.load_pem_x509_certificate(open(made["reader_ca"], "rb").read())
    crls = reader_crls([path, theirs])
    assert crls([cert], ca, NOW()) is None
    why = crls([cert], ca, NOW() + dt.timedelta(days=1, minutes=1))
    assert why.startswith("CN=Counter r,C=JP (serial ") and "no current revocation list" in why
    assert "out of date: nextUpdate" in why
    # a list under the CA's name signed by another key (a CA of the same name) is not its
    twin = reader(tmp_path, "t")
    update_reader_crl(tmp_path / "t" / "t.crl", (twin["reader_ca"], twin["reader_ca_key"]))
    why = reader_crls([tmp_path / "t" / "t.crl"])([cert], ca, NOW())
    assert "no current revocation list" in why and "signature does not verify with the reader CA's key" in why


def test_the_newest_current_list_decides(tmp_path):
    made = reader(tmp_path)
    cert = x509.load_pem_x509_certificate(open(made["reader_cert"], "rb").read())
    ca = x509.load_pem_x509_certificate(open(made["reader_ca"], "rb").read())
    path = tmp_path / "reader-ca.crl"
    crl(tmp_path, made)
    old = path.read_bytes()
    crl(tmp_path, made, "--revoke", made["reader_cert"])
    crls = ReaderCrls.load([("new", path.read_bytes()), ("old", old)])
    assert "revoked (unspecified)" in crls([cert], ca, NOW()) and len(crls) == 2
    assert crls.issuers() == ["CN=mcred reader CA,C=JP"]


def test_lists_come_from_files_and_urls_and_bad_ones_are_named(tmp_path):
    made = reader(tmp_path)
    crl(tmp_path, made)
    served = {"/reader-ca.crl": (tmp_path / "reader-ca.crl").read_bytes()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/pkix-crl")
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cert = x509.load_pem_x509_certificate(open(made["reader_cert"], "rb").read())
    ca = x509.load_pem_x509_certificate(open(made["reader_ca"], "rb").read())
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        crls = reader_crls([f"{url}/reader-ca.crl", tmp_path / "reader-ca.crl"])
        assert len(crls) == 2 and crls([cert], ca, NOW()) is None
        with pytest.raises(ReaderCrlError, match="--reader-crl http://127.0.0.1:.*/gone.crl: .*HTTP 404"):
            reader_crls([f"{url}/gone.crl"])
        # the CA revokes the reader and publishes; the wallet takes its lists again
        crl(tmp_path, made, "--revoke", made["reader_cert"])
        served["/reader-ca.crl"] = (tmp_path / "reader-ca.crl").read_bytes()
        assert crls.refresh() and crls.last_error is None
        assert "revoked (unspecified)" in crls([cert], ca, NOW())
        # a list that cannot be had: the held ones stay, and the reason is kept
        del served["/reader-ca.crl"]
        assert not crls.refresh() and "HTTP 404" in crls.last_error
        assert len(crls) == 2 and "revoked" in crls([cert], ca, NOW())
    finally:
        server.shutdown()
    (tmp_path / "junk").write_bytes(b"\x30\x03\x02\x01\x01")
    with pytest.raises(ReaderCrlError, match="junk: not a CRL"):
        reader_crls([tmp_path / "junk"])
    with pytest.raises(OSError):
        reader_crls([tmp_path / "absent.crl"])
    assert reader_crls([]) is None
    assert not ReaderCrls([]).refresh()  # lists given as they are have nowhere to come from again


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_any_bytes_are_a_crl_or_a_named_error(data):
    try:
        ReaderCrls.load([("given", data)])
    except ReaderCrlError as exc:
        assert str(exc).startswith("given: ")


def test_mcred_reader_nfc_with_a_revoked_reader_gets_nothing_from_a_cautious_holder(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    phone = make_phone(world["home"], world["pki"], idx=None, now=NOW() - dt.timedelta(minutes=1))
    made = reader(tmp_path)
    (tmp_path / "iaca.pem").write_bytes(world["pki"].iaca_pem())
    (tmp_path / "cautious.json").write_text('{"documents": {"*": {"*": "*"}}, "trusted_readers_only": true}')
    base = ["reader", "nfc", "--phone", phone, "--consent", str(tmp_path / "cautious.json"), "--trust",
            str(tmp_path / "iaca.pem"), "--no-require-status", "--no-ds-crl", "--reader-cert", made["reader_cert"],
            "--reader-key", made["reader_key"], "--reader-trust", made["reader_ca"], "--reader-crl",
            str(tmp_path / "reader-ca.crl")]
    crl(tmp_path, made)
    code, out = cli(*base)
    assert code == 0 and out["valid"], out
    crl(tmp_path, made, "--revoke", made["reader_cert"], "--reason", "privilegeWithdrawn")
    code, out = cli(*base)
    assert code == 1 and not out["valid"]
    code, out = cli(*base[:-2], "--reader-crl", str(tmp_path / "absent.crl"))
    assert code == 2 and "absent.crl" in out["error"]
    code, out = cli("reader", "nfc", "--trust", str(tmp_path / "iaca.pem"), "--reader-crl", str(tmp_path / "x.crl"))
    assert code == 2 and "--reader-crl are the simulated phone's" in out["error"]


def test_update_reader_crl_refuses_a_bad_window(tmp_path):
    made = reader(tmp_path)
    with pytest.raises(ReaderPkiError, match="--days 0"):
        update_reader_crl(tmp_path / "c.crl", (made["reader_ca"], made["reader_ca_key"]), days=0)
    with pytest.raises(ca_crl.CrlError, match="listed twice"):
        ca = x509.load_pem_x509_certificate(open(made["reader_ca"], "rb").read())
        ca_crl.crl_builder(ca, number=1, this_update=NOW(), next_update=dt.timedelta(days=1),
                             revoked=[ca_crl.Revoked(5, NOW()), ca_crl.Revoked(5, NOW())])


def test_reader_auth_reports_revocation_as_its_own_check(tmp_path):
    """verify_reader_auth names the revocation verdict apart from the chain's (a chain that
    verifies, a certificate its CA revoked), and only when given a revocation source."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocols.mdoc import (
        DeviceEngagement,
        DeviceRequest,
        DocRequest,
        ItemsRequest,
        SessionTranscript,
    )
    from protocols.mdoc.verify import (
        READER_AUTHENTICATION,
        READER_CERTIFICATE_CHAIN,
        READER_CERTIFICATE_REVOCATION,
        verify_reader_auth,
    )

    made = reader(tmp_path)
    ca = x509.load_pem_x509_certificate(open(made["reader_ca"], "rb").read())
    cert = x509.load_pem_x509_certificate(open(made["reader_cert"], "rb").read())
    key = serialization.load_pem_private_key(open(made["reader_key"], "rb").read(), None)
    e_dev, e_rdr = (cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
                    for _ in range(2))
    transcript = SessionTranscript.build(DeviceEngagement.build(e_dev).encode(), e_rdr, None)
    doc = DocRequest.build(ItemsRequest.build(DOCTYPE, {NS: {"family_name": False}}), reader_signer=cose.key_signer(key),
                           reader_chain=[cert.public_bytes(serialization.Encoding.DER)], session_transcript=transcript)
    request = DeviceRequest.build([doc])
    plain = verify_reader_auth(request, session_transcript=transcript, trust_anchors=[ca], now=NOW())
    assert [c.name for c in plain.checks] == [READER_CERTIFICATE_CHAIN, READER_AUTHENTICATION]
    judged = verify_reader_auth(request, session_transcript=transcript, trust_anchors=[ca], now=NOW(),
                                revocation=lambda path, anchor, now: f"{path[0].subject.rfc4514_string()} revoked")
    assert [(c.name, c.passed) for c in judged.checks] == [
        (READER_CERTIFICATE_CHAIN, True), (READER_CERTIFICATE_REVOCATION, False), (READER_AUTHENTICATION, True)]
    assert judged.checks[1].reason.endswith("CN=Counter r,C=JP revoked")


def test_unattended_consent_says_who_asked_and_why_nothing_went():
    """`mcred present --consent rules.json` decides without the holder; NotedConsent says
    what the phone's screen would (the reader, as its authentication left it) and why the
    rules released nothing when they refused the reader whole (a README walk-through
    presented to a revoked reader: released with allow-all rules, nothing with cautious ones,
    and neither said a word of the revocation)."""
    from wallet_sim.consent import ConsentRequest, NotedConsent, ReaderIdentity

    revoked = ReaderIdentity("CN=Shop Reader", True, False, "serial 1f revoked (privilegeWithdrawn)",
                             revocation_failed=True)
    request = ConsentRequest("doc", {"ns": {"family_name": False}}, reader=revoked)
    for rules, released, refusal in (({"documents": {"*": {"*": "*"}}}, {"ns": {"family_name"}}, None),
                                     ({"documents": {"*": {"*": "*"}}, "trusted_readers_only": True}, {},
                                      "released nothing: the rules release only to a trusted reader")):
        notes: list[str] = []
        assert NotedConsent(RulesConsent.from_mapping(rules), notes.append).decide(request) == released
        assert notes[0] == ("reader: CN=Shop Reader (signature valid, certificate NOT trusted: revoked, or its "
                            "revocation unknown) - serial 1f revoked (privilegeWithdrawn)")
        assert notes[1:] == ([] if refusal is None else [f"{refusal} (trusted_readers_only)"])
