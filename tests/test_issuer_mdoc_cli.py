"""``mcred mdoc issue`` / ``respond``, ``export iaca``, ``status-list show``, ``credential``."""

from __future__ import annotations

import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from mcred.cli.main import app
from protocols import cbor, cose
from protocols.mdoc import SessionTranscript, verify_device_response

HOLDER = {
    "family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
    "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
    "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区",
}


def test_issue_respond_export_and_inspect(home, tmp_path):
    run = CliRunner().invoke
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps(HOLDER, ensure_ascii=False))
    device = ec.generate_private_key(ec.SECP256R1())
    key = tmp_path / "device.pem"
    key.write_bytes(device.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    out = tmp_path / "issuer_signed.cbor"
    r = run(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    facts = json.loads(r.output)
    assert facts["status"]["uri"].startswith("http://127.0.0.1:8470/status/")
    again = run(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key), "--out", str(tmp_path / "b.cbor")])
    assert again.exit_code == 0 and (tmp_path / "b.cbor").read_bytes() == out.read_bytes()  # idempotent

    st = SessionTranscript.build(cbor.dumps({0: "1.0"}), cose.CoseKey.from_public_key(
        ec.generate_private_key(ec.SECP256R1()).public_key()))
    st_file = tmp_path / "st.cbor"
    st_file.write_bytes(st.tagged)
    resp = tmp_path / "resp.cbor"
    r = run(app, ["mdoc", "respond", "--issuer-signed", str(out), "--device-key", str(key),
                  "--session-transcript", str(st_file), "--elements",
                  "org.iso.18013.5.1:age_over_18,org.iso.18013.5.1:family_name_national_character",
                  "--out", str(resp)])
    assert r.exit_code == 0, r.output
    iaca = tmp_path / "iaca.pem"
    assert run(app, ["export", "iaca", "--out", str(iaca)]).exit_code == 0
    anchor = x509.load_pem_x509_certificate(iaca.read_bytes())
    import datetime as dt
    result = verify_device_response(resp.read_bytes(), trust_anchors=[anchor], session_transcript=st,
                                    now=dt.datetime.now(dt.UTC))
    assert result.valid, result.failed()
    (doc,) = result.documents
    assert set(doc.elements["org.iso.18013.5.1"]) == {"age_over_18", "family_name_national_character"}

    r = run(app, ["credential", "list", "--json"])
    (row,) = json.loads(r.output)
    assert row["kind"] == "mdoc" and row["status"] == "valid"
    r = run(app, ["credential", "show", row["id"], "--json"])
    assert json.loads(r.output)["mso"]["status"]["status_list"]["idx"] == facts["status"]["idx"]

    from issuer.mdoc.publication import StatusPublisher  # noqa: F401 - token via the service
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service

    pub = mdoc_service(Context.open()).status_token_by_uri(facts["status"]["uri"])
    tok = tmp_path / "token.cwt"
    tok.write_bytes(pub.token)
    r = run(app, ["status-list", "show", str(tok), "--trust-anchor", str(iaca), "--json",
                  "--index", str(facts["status"]["idx"])])
    assert r.exit_code == 1, r.output  # no issuer answers at the signer's CRL address: fail closed
    assert json.loads(r.output)["verified"].startswith("invalid: the signer, serial")
    r = run(app, ["status-list", "show", str(tok), "--trust-anchor", str(iaca), "--json",
                  "--index", str(facts["status"]["idx"]), "--revocation", "none"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["verified"] == "valid (the signer's revocation not checked)" and shown["bits"] == 2
    assert shown["indices"] == {str(facts["status"]["idx"]): 0}
    not_a_cert = tmp_path / "not-a-cert.pem"
    not_a_cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    r = run(app, ["status-list", "show", str(tok), "--trust-anchor", str(not_a_cert)])
    assert r.exit_code == 2 and "not-a-cert.pem" in "".join(r.output.split()), r.output  # rich wraps long paths


def test_bad_inputs_exit_2_naming_the_problem(home, tmp_path):
    run = CliRunner().invoke
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps({**HOLDER, "familyname": "x"}))
    key = tmp_path / "k.pem"
    key.write_text("not a key")
    r = run(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "familyname" in r.output
    r = run(app, ["status-list", "show", str(key)])
    assert r.exit_code == 2


def _holder_and_key(tmp_path):
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps(HOLDER, ensure_ascii=False))
    key = tmp_path / "device.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return holder, key


def test_a_phone_id_the_registry_cannot_keep_is_refused_before_anything_is_written(home, tmp_path, db_url,
                                                                                   monkeypatch):
    """``--phone`` takes the ids the HTTP API and the wallet simulator take (at most 63
    lower-case letters, digits and hyphens). A longer one was kept by SQLite; PostgreSQL
    raised a DataError out of the command after the holder had been registered."""
    from sqlalchemy import func, select

    from issuer.db import Holder, Phone
    from mcred.context import Context

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    holder, key = _holder_and_key(tmp_path)
    issue = ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key), "--out", str(tmp_path / "o")]
    for bad in ("p" * 64, "Phone-1", "-p", "ph_1", ""):  # "" is no id, not the default
        r = CliRunner().invoke(app, [*issue, "--phone", bad])
        assert r.exit_code == 2 and "phone id" in r.output, (bad, r.output)
    ctx = Context.open(home)
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Holder)) == 0  # nothing half-written
    r = CliRunner().invoke(app, [*issue, "--phone", "p" * 63])
    assert r.exit_code == 0, r.output
    with ctx.sessions() as s:
        assert s.get(Phone, "p" * 63) is not None
    ctx.engine.dispose()


def test_a_public_url_that_cannot_work_is_named_before_anything_is_issued(home, tmp_path, monkeypatch, capsys):
    """``MCRED_PUBLIC_URL`` starts every status list's URI (``<url>/status/<id>``, stored in a
    512-wide column: 473 characters and more were a DataError on PostgreSQL), every CRL
    distribution point and OCSP address: one that cannot work is named, exit 2."""
    import sys

    import pytest

    from issuer.mdoc.status_lists import PUBLIC_URL_MAX
    from mcred.cli.main import run

    holder, key = _holder_and_key(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mcred", "mdoc", "issue", "--holder", str(holder), "--device-key", str(key),
                                      "--out", str(tmp_path / "o")])
    longest = "https://issuer.example/" + "x" * (PUBLIC_URL_MAX - len("https://issuer.example/"))
    for bad, says in (("ftp://issuer.example", "http or https"), ("issuer.example", "http or https"),
                      ("http://:8470", "with a host"), ("https://issuer.example/?a=1", "no query"),
                      (longest + "x", f"at most {PUBLIC_URL_MAX}")):
        monkeypatch.setenv("MCRED_PUBLIC_URL", bad)
        with pytest.raises(SystemExit) as e:
            run()
        assert e.value.code == 2 and says in capsys.readouterr().err, bad
        assert not (tmp_path / "o").exists()
    monkeypatch.setenv("MCRED_PUBLIC_URL", longest)
    with pytest.raises(SystemExit) as e:
        run()
    assert e.value.code == 0 and (tmp_path / "o").exists()


def test_a_portrait_past_the_bound_is_refused_before_the_holder_is_registered(home, tmp_path, monkeypatch):
    import os

    from sqlalchemy import func, select

    from issuer.db import Holder
    from mcred.context import Context
    from protocols.cardsub import PORTRAIT_MAX

    holder, key = _holder_and_key(tmp_path)
    holder.write_text(json.dumps(dict(HOLDER, portrait="face.jpg"), ensure_ascii=False))
    (tmp_path / "face.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(PORTRAIT_MAX - 2))
    r = CliRunner().invoke(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key),
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and f"{PORTRAIT_MAX:,}" in r.output, r.output
    ctx = Context.open(home)
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Holder)) == 0
    ctx.engine.dispose()


def test_an_out_file_in_no_directory_is_refused_before_anything_is_issued(home, tmp_path):
    """It was a FileNotFoundError after the holder was registered and the mdoc issued."""
    from sqlalchemy import func, select

    from issuer.db import Credential, Holder
    from mcred.context import Context

    holder, key = _holder_and_key(tmp_path)
    r = CliRunner().invoke(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key),
                                 "--out", str(tmp_path / "missing" / "o.cbor")])
    assert r.exit_code == 2 and "no directory" in r.output, r.output
    ctx = Context.open(home)
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Holder)) == 0
        assert s.scalar(select(func.count()).select_from(Credential)) == 0
    ctx.engine.dispose()


def test_status_list_show_refuses_a_list_signed_by_a_revoked_signer(tmp_path):
    """`mcred status-list show --trust-anchor` looks the list's signer up on the IACA CRL,
    as a reader does (reader.ds_crl): after `mcred status-list signer revoke ...
    keyCompromise` a token that signer made is invalid, exit 1 (a README walk-through found
    it still called valid); the issuer's next token, by the new signer, is valid."""
    from test_present_http import Server, free_port, installation_env

    from mcred.context import Context
    from mcred.service import create_app

    home, port = tmp_path / "home", free_port()
    home.mkdir()
    holder, key = _holder_and_key(tmp_path)
    iaca, old = tmp_path / "iaca.pem", tmp_path / "old.cwt"
    with installation_env(home, port):
        r = CliRunner().invoke(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key),
                                     "--out", str(tmp_path / "o.cbor"), "--json"])
        assert r.exit_code == 0, r.output
        uri = json.loads(r.output)["status"]["uri"]
        assert CliRunner().invoke(app, ["export", "iaca", "--out", str(iaca)]).exit_code == 0
        service = create_app(Context.open(home), job_workers=1)
        try:
            with Server(service, port):
                import httpx

                old.write_bytes(httpx.get(uri).content)
                shown = CliRunner().invoke(app, ["status-list", "show", uri, "--trust-anchor", str(iaca), "--json"])
                assert shown.exit_code == 0 and json.loads(shown.output)["verified"] == "valid", shown.output
                assert CliRunner().invoke(app, ["status-list", "signer", "revoke", "mdoc-status-1", "--reason",
                                                "keyCompromise"]).exit_code == 0
                shown = CliRunner().invoke(app, ["status-list", "show", str(old), "--trust-anchor", str(iaca),
                                                 "--json"])
                verdict = json.loads(shown.output)["verified"]
                assert shown.exit_code == 1 and "revoked (keyCompromise)" in verdict, shown.output
                shown = CliRunner().invoke(app, ["status-list", "show", uri, "--trust-anchor", str(iaca), "--json"])
                assert shown.exit_code == 0 and json.loads(shown.output)["verified"] == "valid", shown.output
        finally:
            service.state.jobs.shutdown()


def test_credential_list_refuses_a_filter_value_no_credential_can_have(home, tmp_path):
    """``credential list --status revoke`` (for revoked), ``--kind sign``, ``--key-type p256``
    printed "no credential ..." with exit 0: a typo read as an empty registry. Each is a
    usage error naming the choices, exit 2, as ``workflows --state`` and GET /credentials
    (422) refuse them; the values that exist still filter."""
    run = CliRunner().invoke
    holder, key = _holder_and_key(tmp_path)
    assert run(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key),
                     "--out", str(tmp_path / "o.cbor")]).exit_code == 0
    for option, value, choices in (("--status", "revoke", "valid, hold, revoked"),
                                   ("--kind", "sign", "mdoc, jpki-sign, jpki-auth"),
                                   ("--key-type", "p256", "rsa2048, p384")):
        r = run(app, ["credential", "list", option, value])
        assert r.exit_code == 2, r.output
        assert f"'{value}': one of {choices}" in " ".join(r.output.split()), r.output
        r = run(app, ["credential", "list", option, value, "--json"])
        assert r.exit_code == 2 and "one of" in json.loads(r.output)["error"], r.output
    (row,) = json.loads(run(app, ["credential", "list", "--kind", "mdoc", "--status", "valid", "--json"]).output)
    assert row["kind"] == "mdoc"
    r = run(app, ["credential", "list", "--status", "revoked"])
    assert r.exit_code == 0 and r.output.startswith("no credential"), r.output


def test_status_list_show_refuses_an_index_outside_the_list(home, tmp_path):
    """``status-list show --index N`` with N past the list's end (or negative) left N out of
    ``indices`` and exited 0, as if the list answered for it; it is refused naming the
    list's range, exit 2. An index inside is answered as before."""
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service

    run = CliRunner().invoke
    holder, key = _holder_and_key(tmp_path)
    r = run(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key),
                  "--out", str(tmp_path / "o.cbor"), "--json"])
    status = json.loads(r.output)["status"]
    tok = tmp_path / "token.cwt"
    tok.write_bytes(mdoc_service(Context.open()).status_token_by_uri(status["uri"]).token)
    shown = json.loads(run(app, ["status-list", "show", str(tok), "--json"]).output)
    size = shown["size"]
    for bad in (size, -1):
        r = run(app, ["status-list", "show", str(tok), "--index", str(status["idx"]), "--index", str(bad)])
        assert r.exit_code == 2, r.output
        assert f"--index {bad}: outside the list, whose indices are 0 to {size - 1}" in " ".join(r.output.split())
        r = run(app, ["status-list", "show", str(tok), "--index", str(bad), "--json"])
        assert r.exit_code == 2 and "outside the list" in json.loads(r.output)["error"], r.output
    r = run(app, ["status-list", "show", str(tok), "--index", str(size - 1), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["indices"] == {str(size - 1): 0}, r.output


def test_status_list_show_names_an_index_status_in_its_text(home, tmp_path):
    """Without --json, ``status-list show --index N`` printed ``indices: {'N': 1}`` (a Python
    dict of raw numbers, where the counts beside it are by name) and ``verified: None``
    without a trust anchor: the text now says ``index N: INVALID (1)`` and that nothing was
    checked. The JSON keeps its numbers."""
    from issuer import revocation
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service

    run = CliRunner().invoke
    holder, key = _holder_and_key(tmp_path)
    facts = json.loads(run(app, ["mdoc", "issue", "--holder", str(holder), "--device-key", str(key),
                                 "--out", str(tmp_path / "o.cbor"), "--json"]).output)
    revocation.revoke(Context.open().sessions, facts["phone"], "keyCompromise", "mdoc")
    tok = tmp_path / "token.cwt"
    tok.write_bytes(mdoc_service(Context.open()).status_token_by_uri(facts["status"]["uri"]).token)
    idx = facts["status"]["idx"]
    other = 0 if idx else 1
    r = run(app, ["status-list", "show", str(tok), "--index", str(idx), "--index", str(other)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert f"index {idx}: INVALID (1)" in lines and f"index {other}: VALID (0)" in lines, r.output
    assert "verified: not checked (--trust-anchor IACA.pem checks it)" in lines, r.output
    assert any(line.startswith("counts: VALID ") and ", INVALID 1, SUSPENDED 0" in line for line in lines), r.output
    shown = json.loads(run(app, ["status-list", "show", str(tok), "--index", str(idx), "--json"]).output)
    assert shown["indices"] == {str(idx): 1} and shown["verified"] is None
