"""Provisioning both credentials into a real simulated phone (issue 4 item 3, issue 5 item 5):
one key pair and one certificate per slot, OpenSSL accepts the certificates against the
exported roots, the mdoc verifies with our verifier and pymdoccbor, a crash at every step
of the job then a retry never leaves two valid certificates for a slot, and the
one-phone-per-person policy revokes the previous phone's credentials in the issuance
transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from typer.testing import CliRunner

import wallet_sim
from issuer.db import Credential, Holder, Phone
from mcred.cli.main import app
from mcred.cli.state import cli_actor
from mcred.context import Context
from mcred.provision import HolderFileError, parse_holder, provision, resume
from protocols import mdoc
from protocols.cose.algorithms import ES256
from tsm.steps import script

HOLDER = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ",
          "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
          "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区"}
MDOC_AID = bytes.fromhex("F06D63726564020101")


class Crash(Exception):
    pass


@pytest.fixture
def ctx(home, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # SE images need not hit the disk here
    return Context.open(home)


def rows(ctx, phone_id=None):
    with ctx.sessions() as s:
        q = select(Credential)
        if phone_id:
            q = q.where(Credential.phone_id == phone_id)
        return list(s.scalars(q.order_by(Credential.issued_at)))


def _cli_provisioned(ctx, tmp_path, name: str = "h", **holder) -> str:
    """A new phone provisioned by ``mcred provision`` (P-384, one mdoc) for HOLDER with
    ``holder``'s changes; its id."""
    f = tmp_path / f"{name}.json"
    f.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123", **holder), ensure_ascii=False),
                 encoding="utf-8")
    pid = wallet_sim.create_phone(ctx.home)
    r = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f), "--key-type", "p384",
                                 "--mdoc-batch", "1"])
    assert r.exit_code == 0, r.output
    return pid


def jpki_details(ctx, pid):
    se = wallet_sim.describe(pid, ctx.home)["secure_element"]
    return next(a for a in se["applets"] if a["aid"] == "D392F000260100000001")["details"]


class SeSigner:
    """A COSE signer whose key is the phone's mdoc device key (SIGN in the SE)."""

    alg = ES256

    def __init__(self, transmit, slot: int) -> None:
        self.transmit, self.slot = transmit, slot
        r = transmit(bytes([0, 0xA4, 4, 0, len(MDOC_AID)]) + MDOC_AID)
        assert r[-2:] == b"\x90\x00"

    def sign(self, tbs: bytes) -> bytes:
        h = hashes.Hash(hashes.SHA256())
        h.update(tbs)
        r = self.transmit(bytes([0x80, 0x2A, self.slot, 0, 32]) + h.finalize())
        assert r[-2:] == b"\x90\x00"
        return r[:-2]


def openssl_verify(tmp_path, root_der: bytes, cert_der: bytes) -> str:
    root, cert = tmp_path / "root.pem", tmp_path / "cert.pem"
    root.write_bytes(x509.load_der_x509_certificate(root_der).public_bytes(Encoding.PEM))
    cert.write_bytes(x509.load_der_x509_certificate(cert_der).public_bytes(Encoding.PEM))
    out = subprocess.run(["openssl", "verify", "-CAfile", str(root), str(cert)],
                         capture_output=True, text=True, check=False)
    return out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_provision_rsa2048_end_to_end(ctx, tmp_path):
    pid = wallet_sim.create_phone(ctx.home)
    result = provision(ctx, pid, parse_holder(HOLDER), key_type="rsa2048", mdoc_batch=2)
    assert result.generated == ("pin", "password", "puk") and len(result.pin) == 4 and len(result.puk) == 8
    assert result.pin not in repr(result) and result.password not in repr(result)
    assert result.puk not in repr(result)
    # exactly one key pair and one certificate per slot, in the SE and in the registry
    jpki = jpki_details(ctx, pid)
    assert set(jpki["slots"]) == {"signing", "user_authentication"}
    for name, fid, der in (("signing", "0001", result.sign_certificate),
                           ("user_authentication", "000A", result.auth_certificate)):
        cert = x509.load_der_x509_certificate(der)
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        assert jpki["slots"][name]["public_key_sha256"] == hashlib.sha256(spki).hexdigest()
        assert jpki["certificates"][fid]["serial"] == f"{cert.serial_number:X}"
        assert cert.public_key().key_size == 2048
    kinds = [(r.kind, r.status) for r in rows(ctx, pid)]
    assert sorted(kinds) == [("jpki-auth", "valid"), ("jpki-sign", "valid"),
                             ("mdoc", "valid"), ("mdoc", "valid")]
    # OpenSSL accepts both certificates against the exported roots
    from mcred.provision import jpki_issuer

    for slot, der in (("sign", result.sign_certificate), ("auth", result.auth_certificate)):
        root = jpki_issuer(ctx).root(slot).public_bytes(Encoding.DER)
        assert openssl_verify(tmp_path, root, der).strip().endswith("OK")
    # the mdocs verify with our verifier, the device signature made in the SE
    from mcred.provision import mdoc_service

    iaca = mdoc_service(ctx).iaca_certificate()
    se = wallet_sim.open_secure_element(pid, ctx.home)
    now = dt.datetime.now(dt.UTC)
    for slot, body in enumerate(result.mdocs):
        issued = mdoc.IssuerSigned.from_cbor(body)
        st = _transcript()
        doc = mdoc.build_document(issued, st, signer=SeSigner(se.transmit, slot))
        data = mdoc.DeviceResponse((doc,)).encode()
        verdict = mdoc.verify_device_response(data, trust_anchors=[iaca], session_transcript=st,
                                              now=now + dt.timedelta(seconds=5))
        assert verdict.valid, verdict.to_json()
        mso = issued.mso()
        assert mso.status is not None
        pymdoccbor = pytest.importorskip("pymdoccbor.mdoc.verifier")
        theirs = pymdoccbor.MdocCbor()
        theirs.loads(data)
        assert theirs.verify(trusted_root_certs=[iaca])


def _transcript():
    from test_mdoc_issuing import transcript

    return transcript()


def test_crash_after_every_step_then_retry_issues_once(ctx):
    """The TSM's hook fires after a step ran and before its completion is committed: the
    worst moment. Crash once at every step of the job, resume each time."""
    pid = wallet_sim.create_phone(ctx.home)
    steps = script("provision", {"mdoc_count": 2})
    crashed: list[str] = []

    def crash_at_new_step(step: str) -> None:
        if step not in crashed:
            crashed.append(step)
            raise Crash(step)

    job = None
    try:
        provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=2,
                  after_step=crash_at_new_step)
    except Crash:
        pass
    from mcred.provision import tsm_for

    job = tsm_for(ctx).jobs(pid)[0].id
    for _ in range(len(steps) + 1):
        try:
            result = resume(ctx, job, after_step=crash_at_new_step)
            break
        except Crash:
            live = [r for r in rows(ctx, pid) if r.status == "valid"]
            for kind in ("jpki-sign", "jpki-auth"):
                assert sum(r.kind == kind for r in live) <= 1, crashed
    else:  # pragma: no cover
        pytest.fail("the job never completed")
    assert crashed == steps
    valid = [r for r in rows(ctx, pid) if r.status == "valid"]
    assert sorted(r.kind for r in valid) == ["jpki-auth", "jpki-sign", "mdoc", "mdoc"]
    assert len(rows(ctx, pid)) == 4  # nothing was issued twice, not even superseded
    jpki = jpki_details(ctx, pid)
    assert jpki["certificates"]["0001"]["serial"] == f"{x509.load_der_x509_certificate(result.sign_certificate).serial_number:X}"


def test_new_phone_revokes_the_old_phone_in_the_issuance(ctx):
    old = wallet_sim.create_phone(ctx.home)
    first = provision(ctx, old, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)
    bystander = wallet_sim.create_phone(ctx.home)
    other = dict(HOLDER, given_name="花子", given_name_kana="はなこ", sex=2)
    provision(ctx, bystander, parse_holder(other), key_type="p384", mdoc_batch=1)
    new = wallet_sim.create_phone(ctx.home)
    provision(ctx, new, first.holder_id, key_type="p384", mdoc_batch=1)
    assert {(r.kind, r.status, r.reason) for r in rows(ctx, old)} == {
        ("jpki-sign", "revoked", "cessationOfOperation"),
        ("jpki-auth", "revoked", "cessationOfOperation"),
        ("mdoc", "revoked", "cessationOfOperation")}
    assert all(r.status == "valid" for r in rows(ctx, new) + rows(ctx, bystander))
    with ctx.sessions() as s:
        assert s.get(Phone, new).holder_id == first.holder_id
        assert len(s.scalars(select(Holder)).all()) == 2


@pytest.mark.parametrize("change, field", [
    ({"drop": "birth_date"}, "birth_date"),
    ({"set": ("birth_dat", "1990-04-01"), "drop": "birth_date"}, "birth_dat"),
    ({"set": ("sex", "1")}, "sex"),
    ({"set": ("password", "lowercase1")}, "password"),
    # registered the holder, then stopped the TSM job at issue-sign-cert with a traceback
    ({"set": ("birth_date", "2999-01-01")}, "birth_date"),
    ({"set": ("birth_date", "0001-01-01")}, "birth_date"),
    ({"set": ("card_expiry_date", "2001-01-01")}, "card_expiry_date"),
])
def test_bad_holder_file_refused_before_issuing(ctx, tmp_path, change, field):
    data = dict(HOLDER)
    if "set" in change:
        data[change["set"][0]] = change["set"][1]
    if "drop" in change:
        data.pop(change["drop"])
    f = tmp_path / "holder.json"
    f.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    pid = wallet_sim.create_phone(ctx.home)
    r = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f)])
    assert r.exit_code == 2, r.output
    assert f"'{field}'" in r.output
    assert rows(ctx) == []
    with ctx.sessions() as s:
        assert s.scalars(select(Holder)).all() == []
    from tsm.jobs import list_jobs

    assert list_jobs(ctx.engine, pid) == []  # no TSM job started
    with pytest.raises(HolderFileError) as info:
        from mcred.provision import load_holder_file

        load_holder_file(f)
    assert info.value.field == field


def test_an_issuer_refusal_stops_the_job_interrupted_naming_it(ctx):
    """A refusal of the issuer in the middle of a job (here a birth date the JPKI profile
    refuses, in a record no holder file could give) is a TSM step failure: the job is left
    interrupted with the refusal as its error, not running as after a crash, and the caller
    gets a TsmError, not the issuer's exception."""
    from dataclasses import replace

    from tsm.errors import IssuerPortError
    from tsm.jobs import list_jobs

    pid = wallet_sim.create_phone(ctx.home)
    unborn = replace(parse_holder(HOLDER), birth_date=dt.date(2999, 1, 1))
    with pytest.raises(IssuerPortError, match="the issuer refused the JPKI sign certificate: .*2999-01-01"):
        provision(ctx, pid, unborn, key_type="p384", mdoc_batch=1)
    [job] = list_jobs(ctx.engine, pid)
    assert job.state == "interrupted" and "IssuerPortError" in job.error
    assert job.steps[job.next_step] == "issue-sign-cert"


def test_cli_provision_json(ctx, tmp_path):
    f = tmp_path / "holder.json"
    f.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123"), ensure_ascii=False),
                 encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(f),
                                 "--key-type", "p384", "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["mdocs"] == 1 and out["key_type"] == "p384"
    assert out["secrets_shown_once"] == {"puk": out["secrets_shown_once"]["puk"]}  # only what was generated


def test_a_holder_file_may_carry_the_puk_as_the_readme_says(ctx, tmp_path):
    """``"puk"`` was refused (``holder field 'puk': unknown field``): it is taken, checked as
    the applet's PUK, set in the SE, and not shown as generated."""
    from mcred import jpki_flow

    f = tmp_path / "holder.json"
    f.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123", puk="87654321"), ensure_ascii=False),
                 encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(f), "--key-type", "p384",
                                 "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert "secrets_shown_once" not in out  # none generated
    transmit = wallet_sim.open_secure_element(out["phone"], ctx.home).transmit
    with pytest.raises(jpki_flow.SeError) as wrong:
        jpki_flow.unblock_pin(transmit, "auth", b"12345678")
    assert wrong.value.sw == 0x63C9  # a try of the PUK the file gave
    jpki_flow.unblock_pin(transmit, "auth", b"87654321")
    f.write_text(json.dumps(dict(HOLDER, puk="8765432"), ensure_ascii=False), encoding="utf-8")
    bad = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(f)])
    assert bad.exit_code == 2 and "holder field 'puk': must be 8 digits" in bad.output


def test_cli_after_a_crash_names_the_job_and_resumes_it(ctx, tmp_path):
    """A provisioning that stopped half way (here: the process died after the signing key
    was generated) is not started again by a second `mcred provision`: that run refuses,
    names the job and `--resume`, and registers nothing; `--resume` finishes it and shows
    the secrets the first run never got to show; the phone then refuses a new holder."""
    pid = wallet_sim.create_phone(ctx.home)

    def crash(step):
        if step == "generate-sign-key":
            raise Crash("power lost")

    with pytest.raises(Crash):
        provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1, after_step=crash)
    with ctx.sessions() as s:
        holders_before = len(list(s.scalars(select(Holder))))
    f = tmp_path / "holder.json"
    f.write_text(json.dumps(HOLDER, ensure_ascii=False), encoding="utf-8")
    again = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f), "--key-type", "p384"])
    assert again.exit_code == 1, again.output
    said = " ".join(again.output.split())  # rich wraps the line
    assert "unfinished provisioning job" in said and "--resume" in said
    job_id = said.split("--resume ")[1].split("`")[0].strip()
    # an operator finds it without the error message too
    listed = json.loads(CliRunner().invoke(app, ["tsm", "jobs", "--unfinished", "--json"]).output)
    assert [(j["id"], j["phone"], j["kind"]) for j in listed] == [(job_id, pid, "provision")]
    assert listed[0]["state"] != "done" and listed[0]["next_step"] is not None
    with ctx.sessions() as s:
        assert len(list(s.scalars(select(Holder)))) == holders_before  # nothing registered
    done = CliRunner().invoke(app, ["provision", "--resume", job_id, "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    assert out["phone"] == pid and out["job"] == job_id and out["mdocs"] == 1
    assert set(out["secrets_shown_once"]) >= {"pin", "password"}
    assert len(rows(ctx, pid)) == 3  # two JPKI certificates and one mdoc, once each
    assert json.loads(CliRunner().invoke(app, ["tsm", "jobs", "--unfinished", "--json"]).output) == []
    table = CliRunner().invoke(app, ["tsm", "jobs", "--phone", pid])
    assert table.exit_code == 0 and "done" in table.output
    # the phone holds the holder's credentials now: the same holder file again is refused
    # with the reason and what to do instead (another holder's: test below)
    other = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f)])
    said = " ".join(other.output.split())
    assert other.exit_code == 2 and f"phone {pid} already holds holder" in said and "mdoc refresh" in said, said
    # and --resume refuses what it cannot use
    assert CliRunner().invoke(app, ["provision", "--resume", "nope"]).exit_code == 2
    assert CliRunner().invoke(app, ["provision", "--resume", job_id, "--phone", pid]).exit_code == 2
    assert CliRunner().invoke(app, ["provision", "--phone", pid]).exit_code == 2


def _longest_holder() -> dict:
    """Every text field at its longest (3-byte kanji), both Roman names, a card expiry."""
    k = "龍" * 150
    return {"family_name": k, "given_name": k, "family_name_kana": "ヴ" * 150, "given_name_kana": "ヴ" * 150,
            "birth_date": "1990-04-01", "sex": 2, "address": k, "prefecture": "龍" * 32, "municipality": "龍" * 19,
            "family_name_roman": "A" * 150, "given_name_roman": "B" * 150, "card_expiry_date": "2035-04-01",
            "pin": "1234", "password": "ABC123"}


def test_the_largest_portrait_fits_the_se_beside_the_longest_elements():
    """The SE takes an IssuerSigned in one DGI (at most 65535 bytes) and the mdoc carries the
    portrait twice: PORTRAIT_MAX must fit with every other element at its longest, a P-384
    device key and a status URI as long as the registry keeps (512)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from sqlalchemy.orm import sessionmaker

    from issuer.keystore import MemoryKeyStore
    from issuer.mdoc.issuance import sign_card_substitute
    from issuer.mdoc.service import MdocService
    from mcred.db import make_engine, migrate
    from protocols.cardsub import PORTRAIT_MAX
    from protocols.cardsub import parse_holder as parse
    from protocols.gp.dgi import parse_all
    from tsm.applets import mdoc_write

    engine = make_engine("sqlite://")
    migrate(engine)
    _, ds, _ = MdocService(sessionmaker(engine), MemoryKeyStore(), "http://127.0.0.1:8470").setup()
    uri = "http://" + "h" * (512 - len("http://") - len("/status/") - 32) + "/status/" + "f" * 32
    issued = sign_card_substitute(
        parse({k: v for k, v in _longest_holder().items() if k not in ("pin", "password")}),
        b"\xff\xd8\xff" + os.urandom(PORTRAIT_MAX - 3), ec.generate_private_key(ec.SECP384R1()).public_key(),
        ds, now=dt.datetime.now(dt.UTC), record_expiry=dt.date(2035, 4, 1), document_no="JPCS0123456789AB",
        status=mdoc.MsoStatus(mdoc.StatusListRef(2**31, uri)))
    body = issued.encode()
    assert len(uri) == 512 and len(body) > 2 * PORTRAIT_MAX
    assert parse_all(mdoc_write(15, body))[0].value.endswith(body)  # one DGI holds it
    engine.dispose()


def test_a_portrait_past_the_bound_is_refused_before_anything_is_written(ctx, tmp_path):
    """A 2 MB portrait passed the holder check and stopped the job at the mdoc's write, with
    the JPKI certificates issued and a resume that could only fail again. The largest portrait
    the bound allows is provisioned beside the longest elements, and the wallet holds it."""
    from protocols.cardsub import PORTRAIT_MAX

    f = tmp_path / "holder.json"
    f.write_text(json.dumps(dict(_longest_holder(), portrait="face.jpg"), ensure_ascii=False), encoding="utf-8")
    big = b"\xff\xd8\xff" + os.urandom(PORTRAIT_MAX - 2)
    (tmp_path / "face.jpg").write_bytes(big)
    pid = wallet_sim.create_phone(ctx.home)
    r = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f), "--key-type", "p384"])
    assert r.exit_code == 2, r.output
    assert "'portrait'" in r.output and f"{PORTRAIT_MAX:,}" in r.output
    assert rows(ctx) == []
    with ctx.sessions() as s:
        assert s.scalars(select(Holder)).all() == []
    from tsm.jobs import list_jobs

    assert list_jobs(ctx.engine) == []
    (tmp_path / "face.jpg").write_bytes(big[:-1])  # at the bound
    r = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f), "--key-type", "p384",
                                 "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert [k for k, _ in sorted((c.kind, c.status) for c in rows(ctx, pid))] == ["jpki-auth", "jpki-sign", "mdoc"]
    se = wallet_sim.describe(pid, ctx.home)["secure_element"]
    slots = next(a for a in se["applets"] if a["aid"] == MDOC_AID.hex().upper())["details"]["slots"]
    assert len(slots) == 1 and next(iter(slots.values()))["credential_bytes"] > 2 * (PORTRAIT_MAX - 1)


def test_a_quarantined_phone_is_named_listed_and_cleared_from_the_cli(ctx, tmp_path):
    """An SE image restored from a few sessions back: the refresh names the quarantine and
    the command that clears it; `mcred tsm ses` lists the SE as suspect; once cleared (with a
    reason, audited) the SE as it is now is used again; clearing an active SE is refused."""
    from tsm.audit import audit_rows

    pid = _cli_provisioned(ctx, tmp_path)
    runner = CliRunner()
    image = ctx.home / "phones" / pid / "se.cbor"
    saved = image.read_bytes()
    for _ in range(2):
        assert runner.invoke(app, ["mdoc", "refresh", "--phone", pid]).exit_code == 0
    image.write_bytes(saved)
    r = runner.invoke(app, ["mdoc", "refresh", "--phone", pid])
    assert r.exit_code == 1 and "clear-quarantine" in r.output and pid in r.output, r.output
    listed = json.loads(runner.invoke(app, ["tsm", "ses", "--json"]).output)
    assert [(s["phone"], s["state"]) for s in listed] == [(pid, "suspect")]
    r = runner.invoke(app, ["tsm", "clear-quarantine", "--phone", pid, "--reason", "restored on purpose"])
    assert r.exit_code == 0, r.output
    cleared = [x for x in audit_rows(ctx.engine, pid) if x.event == "quarantine-cleared"]
    assert len(cleared) == 1 and cleared[0].what == "restored on purpose" and cleared[0].actor == cli_actor()
    assert runner.invoke(app, ["mdoc", "refresh", "--phone", pid]).exit_code == 0
    r = runner.invoke(app, ["tsm", "clear-quarantine", "--phone", pid, "--reason", "again"])
    assert r.exit_code == 2 and "not quarantined" in r.output, r.output


@pytest.mark.parametrize("bad", [["--mdoc-batch", "0"], ["--mdoc-batch", "17"], ["--key-type", "foo"]])
def test_a_handover_its_provisioning_would_refuse_is_refused_before_it_starts(ctx, tmp_path, bad):
    """It made the new phone, started the workflow and failed at its provisioning step,
    offering a resume that could only fail again."""
    from issuer.db import Handover

    pid = _cli_provisioned(ctx, tmp_path)
    runner = CliRunner()
    phones = wallet_sim.list_phones(ctx.home)
    r = runner.invoke(app, ["handover", "--phone", pid, "--to", "new", *bad])
    assert r.exit_code == 2, r.output
    assert wallet_sim.list_phones(ctx.home) == phones
    with ctx.sessions() as s:
        assert s.scalars(select(Handover)).all() == []


def test_a_handover_onto_another_holders_phone_is_refused(ctx, tmp_path):
    """`mcred handover --to` a phone carrying another holder's credentials started the
    workflow and provisioned the first holder's credentials over them."""
    from issuer.db import Handover

    runner = CliRunner()
    phones = [_cli_provisioned(ctx, tmp_path, f"h{i}", given_name=name) for i, name in enumerate(("太郎", "次郎"))]
    before = sorted((c.id, c.status) for c in rows(ctx, phones[1]))
    r = runner.invoke(app, ["handover", "--phone", phones[0], "--to", phones[1]])
    assert r.exit_code == 2 and "another holder" in r.output, r.output
    with ctx.sessions() as s:
        assert s.scalars(select(Handover)).all() == []
    assert sorted((c.id, c.status) for c in rows(ctx, phones[1])) == before


@pytest.mark.parametrize("reason", ["keyCompromise", "certificateHold"])
def test_a_phone_revoked_while_its_provisioning_runs_is_issued_nothing_more(ctx, reason):
    """`mcred revoke --phone P` while P's provisioning is under way (here: the process
    stopped after the PINs were set, the certificates issued and the mdocs not yet): the
    resumed job is refused its next issuance, so the phone does not come out of it with
    valid mdocs beside its revoked certificates (a chaos test found it did, and a reader
    said VALID); `mcred tsm abandon` then ends the job. A hold is released, and the job
    finishes."""
    from issuer import revocation
    from mcred.provision import abandon, tsm_for
    from tsm.errors import TsmError

    pid = wallet_sim.create_phone(ctx.home)

    def crash(step):
        if step == "set-pins":
            raise Crash("power lost")

    with pytest.raises(Crash):
        provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=2, after_step=crash,
                  pin="1234", password="ABC123")
    job = tsm_for(ctx).jobs(pid)[0].id
    revoked = revocation.revoke(ctx.sessions, pid, reason)
    assert sorted(c.kind for c in revoked) == ["jpki-auth", "jpki-sign"]
    with ctx.sessions() as s:
        assert s.get(Phone, pid).state == ("lost" if reason == "certificateHold" else "revoked")
    with pytest.raises(TsmError, match="nothing more is issued to it"):
        resume(ctx, job)
    assert not [r for r in rows(ctx, pid) if r.kind == "mdoc"]
    assert {r.status for r in rows(ctx, pid)} == {"hold" if reason == "certificateHold" else "revoked"}
    if reason == "certificateHold":
        revocation.release(ctx.sessions, pid)
        with ctx.sessions() as s:
            assert s.get(Phone, pid).state == "active"
        done = resume(ctx, job)
        assert len(done.mdocs) == 2 and {r.status for r in rows(ctx, pid)} == {"valid"}
        return
    ended = abandon(ctx, job, "revoked during provisioning")
    assert ended.summary()
    assert {r.status for r in rows(ctx, pid)} == {"revoked"}
    # provisioned anew, the phone is in use again
    again = provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)
    assert again.mdocs and {r.status for r in rows(ctx, pid) if r.job_ref == again.job_id} == {"valid"}


def test_a_holder_provisioned_on_two_phones_at_once_gets_one(ctx):
    """`mcred provision --holder-id H` on two phones at the same moment (a chaos test: both
    passed the check that the holder has no live phone, and the credentials ended split
    between the phones, the one-phone rule revoking each phone's in turn): the run whose job
    came second gives up before its first step, its phone let go; the first finishes."""
    from mcred.provision import ProvisionError, _claim_holder, tsm_for

    first = wallet_sim.create_phone(ctx.home)
    done = provision(ctx, first, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)
    holder = done.holder_id
    from issuer import revocation

    revocation.revoke(ctx.sessions, first, "cessationOfOperation")
    a, b = wallet_sim.create_phone(ctx.home), wallet_sim.create_phone(ctx.home)

    # B starts while A's job is under way (A's first step has run): B gives up
    def start_b(step):
        if step == script("provision", {"mdoc_count": 1})[0]:
            with pytest.raises(ProvisionError, match=f"being provisioned on phone {a}"):
                provision(ctx, b, holder, key_type="p384", mdoc_batch=1, alone=True)

    result = provision(ctx, a, holder, key_type="p384", mdoc_batch=1, alone=True, after_step=start_b)
    assert result.mdocs and {r.status for r in rows(ctx, a)} == {"valid"}
    assert rows(ctx, b) == []
    with ctx.sessions() as s:
        assert s.get(Phone, b).holder_id is None
    (job_b,) = tsm_for(ctx).jobs(b)
    assert job_b.state == "abandoned" and job_b.next_step == 0

    # both jobs written before either looks: the later one gives up, whichever looks first
    revocation.revoke(ctx.sessions, a, "cessationOfOperation")
    c, d = wallet_sim.create_phone(ctx.home), wallet_sim.create_phone(ctx.home)
    from mcred.provision import generate_secrets, register

    tsm = tsm_for(ctx)
    jobs = {}
    for phone in (c, d):
        register(ctx, holder, phone)
        jobs[phone] = tsm.create_job(phone, "provision", {"algorithm": "p384", "mdoc_count": 1},
                                     generate_secrets("1234", "ABC123", None)[0])
    with pytest.raises(ProvisionError, match=f"being provisioned on phone {c}"):
        _claim_holder(ctx, tsm, holder, d, jobs[d], "test")
    _claim_holder(ctx, tsm, holder, c, jobs[c], "test")  # the first stands


def test_a_phone_taken_by_another_holder_meanwhile_leaves_no_holder_registered(ctx):
    """Two provisionings of one new phone for two new holders at once (a chaos test over
    POST /provisioning left holders registered with no phone): the registration and the
    phone's attachment are one transaction, so the second fails whole."""
    from issuer.holders import HolderError
    from mcred.provision import register

    pid = wallet_sim.create_phone(ctx.home)
    register(ctx, parse_holder(HOLDER), pid)
    with ctx.sessions() as s:
        before = len(list(s.scalars(select(Holder))))
    with pytest.raises(HolderError, match="belongs to holder"):
        register(ctx, parse_holder(dict(HOLDER, given_name="次郎")), pid)
    with ctx.sessions() as s:
        assert len(list(s.scalars(select(Holder)))) == before


def test_a_handover_that_fails_after_the_new_phone_shows_its_secrets(ctx, tmp_path):
    """The new phone's generated PIN, password and PUK exist only in the run that
    provisioned it (its job erases its sealed copy when done). A handover that failed in a
    later step (here the old phone's wipe: its SE image unreadable) printed none of them, and
    its resume could not (a chaos test lost them in every such run): the failing run shows
    them with its error, and a resume that finds the new phone done says how to set new
    ones."""
    pid = _cli_provisioned(ctx, tmp_path)
    new = wallet_sim.create_phone(ctx.home)
    image = ctx.home / "phones" / pid / "se.cbor"
    kept = image.read_bytes()
    image.write_bytes(kept[:50])
    r = CliRunner().invoke(app, ["handover", "--phone", pid, "--to", new])
    said = " ".join(r.output.split())
    assert r.exit_code == 1 and "--resume" in said, r.output
    assert "user-auth PIN" in said and "signing password" in said and "PUK" in said
    hid = said.split("--resume ")[1].split(")")[0].split()[0]
    image.write_bytes(kept)
    again = CliRunner().invoke(app, ["handover", "--phone", pid, "--to", new, "--resume", hid])
    assert again.exit_code == 0, again.output
    assert f"mcred jpki pin reset --phone {new}" in " ".join(again.output.split())


def test_a_handover_killed_after_the_new_phone_leaves_its_secrets_to_the_resume(ctx):
    """A handover killed (kill -9, a power cut) after it provisioned the new phone, before
    it could show the generated PIN, password and PUK: its provisioning job keeps them
    sealed (hold_secrets) and the resume shows them, then erases them; before, the job
    erased them as it ended and the holder's new phone was locked until a PIN reset."""
    from issuer import handover as wf
    from mcred.handover_actions import HandoverActions
    from tsm.db import JobRow

    pid = provision(ctx, wallet_sim.create_phone(ctx.home), parse_holder(HOLDER), key_type="p384",
                    mdoc_batch=1, pin="1234", password="ABC123").phone_id
    with ctx.sessions() as s:
        holder_id = s.get(Phone, pid).holder_id
    new = wallet_sim.create_phone(ctx.home)
    hid = wf.create(ctx.sessions, kind="model_change", holder_id=holder_id, old_phone_id=pid,
                    new_phone_id=new, actor=cli_actor())
    killed = HandoverActions(ctx, key_type="p384", hold_secrets=True)  # as the CLI runs it
    killed.runner(cli_actor()).run(hid, stop_after="provision_new")  # ... and then the process died
    made = killed.secrets[new]
    r = CliRunner().invoke(app, ["handover", "--phone", pid, "--to", new, "--resume", hid, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["state"] == "done"
    assert out["secrets_shown_once"] == {"pin": made.pin, "password": made.password, "puk": made.puk}
    with ctx.sessions() as s:  # shown: erased, even sealed
        job = s.scalars(select(JobRow).where(JobRow.se_id == new, JobRow.kind == "provision")).one()
        assert job.state == "done" and job.sealed_secrets is None
    again = CliRunner().invoke(app, ["handover", "--phone", pid, "--to", new, "--resume", hid])
    assert again.exit_code == 0 and f"mcred jpki pin reset --phone {new}" in " ".join(again.output.split())
    assert made.pin not in again.output


def _renewal_stopped_at_publish(ctx, monkeypatch):
    """A phone provisioned, then `mcred holder renew-card` run with the workflow's publish
    step failing (after the phone was provisioned anew): the phone, the holder, the failed
    command's result and the real publish action (to put back)."""
    from mcred.handover_actions import HandoverActions

    pid = provision(ctx, wallet_sim.create_phone(ctx.home), parse_holder(HOLDER), key_type="p384",
                    mdoc_batch=1, pin="1234", password="ABC123").phone_id
    with ctx.sessions() as s:
        holder_id = s.get(Phone, pid).holder_id
    publish = HandoverActions.publish

    def broken(self, c):  # noqa: ANN001, ANN202
        raise RuntimeError("the CRL could not be published")

    monkeypatch.setattr(HandoverActions, "publish", broken)
    return pid, holder_id, CliRunner().invoke(app, ["holder", "renew-card", holder_id, "--reason", "更新"]), publish


def test_a_renewal_that_stopped_after_the_phone_shows_its_secrets_when_resumed(ctx, monkeypatch, tmp_path):
    """`mcred holder renew-card` whose workflow stopped after its provisioning (here its
    publish step failed): the new PIN, password and PUK were generated and written to the
    phone, and neither the failed run nor its resume showed them. The resume shows them."""
    from mcred.handover_actions import HandoverActions

    pid, holder_id, r, publish = _renewal_stopped_at_publish(ctx, monkeypatch)
    assert r.exit_code == 1, r.output
    hid = r.output.split("of workflow ")[1].split()[0]
    monkeypatch.setattr(HandoverActions, "publish", publish)
    again = CliRunner().invoke(app, ["holder", "renew-card", holder_id, "--resume", hid, "--json"])
    assert again.exit_code == 0, again.output
    shown = json.loads(again.stdout)["secrets"]
    assert set(shown) == {"pin", "password", "puk"} and len(shown["pin"]) == 4
    (tmp_path / "pin").write_text(shown["pin"])  # the phone's PIN now: it signs
    (tmp_path / "doc.txt").write_bytes(b"login challenge")
    signed = CliRunner().invoke(app, ["jpki", "sign", "--phone", pid, "--slot", "auth", "--pin-file",
                                      str(tmp_path / "pin"), str(tmp_path / "doc.txt")])
    assert signed.exit_code == 0, signed.output
    third = CliRunner().invoke(app, ["holder", "renew-card", holder_id, "--resume", hid, "--json"])
    assert third.exit_code == 0 and json.loads(third.stdout)["secrets"] == {}


def test_workflows_left_to_finish_are_listed_with_their_resume_and_reported_by_the_doctor(ctx, monkeypatch):
    """A workflow that stopped (a step failed, or its process was killed) has done part of
    its work, and a holder waits for the rest; an operator had no way to find it but the
    audit trail. `mcred workflows --state failed` lists each with its error and the command
    that resumes it, `mcred doctor` counts them, and the failed command names the id."""
    from sqlalchemy import update

    from issuer import handover as wf
    from mcred.handover_actions import HandoverActions

    pid, holder_id, r, publish = _renewal_stopped_at_publish(ctx, monkeypatch)
    assert r.exit_code == 1
    (row,) = json.loads(CliRunner().invoke(app, ["workflows", "--state", "failed", "--json"]).stdout)
    assert row["kind"] == "renewal" and row["step"] == "reissue_all" and row["holder_id"] == holder_id
    assert "the CRL could not be published" in row["error"]
    assert row["resume"] == f"mcred holder renew-card {holder_id} --resume {row['id']}"
    assert row["resume"] in " ".join(r.output.split())  # the failed command names it too, id and all
    doctor = {f["name"]: f for f in json.loads(CliRunner().invoke(app, ["doctor", "--json"]).stdout)["findings"]}
    assert not doctor["workflows"]["ok"] and doctor["workflows"]["detail"] == "1 failed"
    assert "mcred workflows --state failed" in doctor["workflows"]["fix"]
    text = CliRunner().invoke(app, ["workflows"]).stdout
    assert f"{row['id']}  renewal failed after reissue_all" in text and f"resume: {row['resume']}" in text
    monkeypatch.setattr(HandoverActions, "publish", publish)
    done = CliRunner().invoke(app, row["resume"].split()[1:])  # as listed
    assert done.exit_code == 0, done.output
    assert json.loads(CliRunner().invoke(app, ["workflows", "--state", "failed", "--json"]).stdout) == []
    (row,) = json.loads(CliRunner().invoke(app, ["workflows", "--holder", holder_id, "--json"]).stdout)
    assert row["state"] == "done" and row["resume"] is None and row["error"] is None
    # a run killed between steps stays "running": reported once nothing has moved for an hour
    new = wallet_sim.create_phone(ctx.home)
    hid = wf.create(ctx.sessions, kind="model_change", holder_id=holder_id, old_phone_id=pid, new_phone_id=new)
    HandoverActions(ctx, key_type="p384").runner().run(hid, stop_after="prepare")
    doctor = {f["name"]: f for f in json.loads(CliRunner().invoke(app, ["doctor", "--json"]).stdout)["findings"]}
    assert doctor["workflows"]["ok"]  # running, a minute ago: perhaps still running
    with ctx.sessions.begin() as s:
        s.execute(update(wf.Handover).where(wf.Handover.id == hid)
                  .values(updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)))
    doctor = {f["name"]: f for f in json.loads(CliRunner().invoke(app, ["doctor", "--json"]).stdout)["findings"]}
    assert doctor["workflows"]["detail"] == "1 running but unchanged for an hour or more"
    with ctx.sessions.begin() as s:  # ... unless a live run holds it (a long over-the-air wait)
        s.execute(update(wf.Handover).where(wf.Handover.id == hid)
                  .values(runner="cli:op@host/1/x", lease_until=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)))
    doctor = {f["name"]: f for f in json.loads(CliRunner().invoke(app, ["doctor", "--json"]).stdout)["findings"]}
    assert doctor["workflows"]["ok"], doctor["workflows"]
    with ctx.sessions.begin() as s:
        s.execute(update(wf.Handover).where(wf.Handover.id == hid).values(runner=None, lease_until=None))
    (row,) = json.loads(CliRunner().invoke(app, ["workflows", "--state", "running", "--json"]).stdout)
    assert row["resume"] == f"mcred handover --phone {pid} --to {new} --resume {hid}"
    bad = CliRunner().invoke(app, ["workflows", "--state", "stuck"])
    assert bad.exit_code == 2 and "one of running, failed, done" in " ".join(bad.output.split())


def test_ctrl_c_leaves_the_job_interrupted_and_the_cli_names_it(ctx, tmp_path, monkeypatch):
    """Ctrl-C during `mcred provision` (a README walk-through over the air): it exited 130
    saying nothing, and the job stayed `running`, as after a crash, until its lock's lease
    passed. Now the job is interrupted, the reason recorded, and the command names it and
    how to go on; the resume finishes it."""
    import mcred.provision as flow

    real = flow.provision

    def interrupted(*args, **kwargs):
        def ctrl_c(step):
            if step == "generate-sign-key":
                raise KeyboardInterrupt

        return real(*args, **{**kwargs, "after_step": ctrl_c})

    monkeypatch.setattr(flow, "provision", interrupted)
    pid = wallet_sim.create_phone(ctx.home)
    f = tmp_path / "holder.json"
    f.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123"), ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f), "--key-type", "p384",
                                 "--mdoc-batch", "1"])
    said = " ".join(r.output.split())
    assert r.exit_code == 130 and "interrupted: job" in said, r.output
    job = said.split("interrupted: job ")[1].split()[0]
    view = flow.tsm_for(ctx).job(job)
    assert view.state == "interrupted" and "stopped by the operator" in view.error
    monkeypatch.setattr(flow, "provision", real)
    assert resume(ctx, job).mdocs


def test_handover_names_the_secrets_as_provision_does(ctx, tmp_path):
    """provision said 'user-auth PIN / signing password / PUK', handover 'new phone pin /
    password / puk': one set of labels, as the holder reads them on the letter."""
    f = tmp_path / "holder.json"
    f.write_text(json.dumps(HOLDER, ensure_ascii=False), encoding="utf-8")  # every secret generated
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(f), "--key-type", "p384",
                                 "--mdoc-batch", "1"])
    assert r.exit_code == 0, r.output

    def secrets(output):
        return [line.strip().rsplit(" ", 1)[0].strip() for line in output.splitlines()
                if line.startswith("  ") and any(k in line for k in ("PIN", "password", "PUK", "pin", "puk"))]

    provisioned = secrets(r.output)
    assert provisioned == ["user-auth PIN", "signing password", "PUK"], r.output
    pid = wallet_sim.list_phones(ctx.home)[-1]
    r = CliRunner().invoke(app, ["handover", "--phone", pid, "--to", "new", "--key-type", "p384", "--mdoc-batch", "1"])
    assert r.exit_code == 0, r.output
    handed = secrets(r.output)
    assert handed and set(handed) <= set(provisioned), r.output


def test_provisioning_another_holders_phone_is_refused_before_anything_as_unusable_input(ctx, tmp_path):
    """`mcred provision --phone P --holder FILE` for a P that carries another holder's
    credentials exited 1 (specs/cli.md: "tried and failed"), though nothing was tried, and
    named the owner's holder id; it is refused before anything is done, exit 2, as `mcred
    handover --to` another holder's phone is, and says only that the phone is another
    holder's."""
    pid = _cli_provisioned(ctx, tmp_path)
    with ctx.sessions() as s:
        owner = s.get(Phone, pid).holder_id
        holders = len(list(s.scalars(select(Holder))))
    before = sorted((c.id, c.status) for c in rows(ctx, pid))
    f = tmp_path / "other.json"
    f.write_text(json.dumps(dict(HOLDER, family_name="佐藤", given_name="花子", family_name_kana="さとう",
                                 given_name_kana="はなこ", sex=2), ensure_ascii=False), encoding="utf-8")
    for extra in ([], ["--json"]):
        r = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f), *extra])
        said = " ".join(r.output.split())
        assert r.exit_code == 2, r.output
        assert f"phone {pid} belongs to another holder" in said, said
        assert owner not in said and "山田" not in said and "佐藤" not in said
        if extra:
            assert set(json.loads(r.output)) == {"error"}
    with ctx.sessions() as s:
        assert len(list(s.scalars(select(Holder)))) == holders
    assert sorted((c.id, c.status) for c in rows(ctx, pid)) == before


def test_a_phone_taken_by_another_holder_after_the_check_is_refused_the_same_way(ctx, tmp_path, monkeypatch):
    """The phone registered to another holder between the check and this run's
    registration: the same refusal, exit 2, not the registry's error naming the owner."""
    import mcred.provision as prov
    from mcred.provision import register

    pid = wallet_sim.create_phone(ctx.home)
    checked = prov.check_issuance  # the mdocs' and the certificates' check, before registration

    def meanwhile(c, holder_id, *more):  # noqa: ANN001, ANN002, ANN202
        checked(c, holder_id, *more)
        register(ctx, parse_holder(dict(HOLDER, given_name="次郎", given_name_kana="じろう")), pid)

    monkeypatch.setattr(prov, "check_issuance", meanwhile)
    f = tmp_path / "h.json"
    f.write_text(json.dumps(HOLDER, ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(f), "--json"])
    assert r.exit_code == 2, r.output
    assert json.loads(r.output)["error"].endswith(prov.another_holders_phone(pid)), r.output


def _holders(ctx) -> list[str]:
    with ctx.sessions() as s:
        return list(s.scalars(select(Holder.id)))


def _second_phone_refused(ctx, tmp_path, name: str, record: dict, holder: str, first: str):  # noqa: ANN001, ANN202
    """``record`` (the registered holder's person, typed otherwise), provisioned onto a new
    phone from a holder file: refused before anything is done (exit 2), naming the phone
    that holds the person's credentials and `mcred handover`; no holder added, nothing on
    the new phone. The new phone and the file."""
    second = wallet_sim.create_phone(ctx.home)
    f = tmp_path / f"{name}.json"
    f.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", second, "--holder", str(f), "--json"])
    assert r.exit_code == 2, r.output
    said = json.loads(r.output)["error"]
    assert f"holder {holder} has live credentials on phone {first}" in said
    assert f"mcred handover --phone {first} --to ID" in said
    assert _holders(ctx) == [holder] and rows(ctx, second) == []
    return second, f


def test_the_same_holder_file_again_is_the_same_holder_and_a_second_phone_a_handover(ctx, tmp_path):
    """A holder file names no holder id: each `mcred provision --holder FILE` registered a new
    holder, so the same person provisioned onto a second phone became a second holder with
    live credentials on both phones, and the one-phone rule never saw it. The registry
    recognises the person by the identity fields (names, kana, birth date, sex, address):
    a second phone is refused before anything is done (exit 2), pointing to `mcred handover`,
    and the same phone again as for a holder named by id. Other secrets, or white space
    around a name, are the same person."""
    first = _cli_provisioned(ctx, tmp_path)
    (holder,) = _holders(ctx)
    second, f = _second_phone_refused(ctx, tmp_path, "again", dict(HOLDER, given_name=" 太郎 ", pin="9999"),
                                      holder, first)
    with ctx.sessions() as s:
        assert s.get(Phone, second) is None  # not attached to anybody
    # --holder-id says the same
    r = CliRunner().invoke(app, ["provision", "--phone", second, "--holder-id", holder])
    assert r.exit_code == 2 and "mcred handover" in " ".join(r.output.split()), r.output
    # the handover moves them; the same file on the old phone is refused, as another holder's would be
    r = CliRunner().invoke(app, ["handover", "--phone", first, "--to", second, "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["provision", "--phone", second, "--holder", str(f), "--json"])
    assert r.exit_code == 2 and f"phone {second} already holds holder {holder}" in json.loads(r.output)["error"]
    assert _holders(ctx) == [holder]


def test_the_same_person_typed_in_full_width_is_the_same_holder_and_a_second_phone_a_handover(ctx, tmp_path):
    """Japanese text is typed with full-width or half-width digits, hyphens and spaces: the
    identity compared the text as given, so the same person with the address in full-width
    digits and hyphen (and ー for a dash) and a full-width space in a name was another person,
    and their second phone escaped the one-phone rule. The identity compares a normalised
    form (NFKC, dashes folded, white space collapsed): refused, naming `mcred handover`; the
    registered record keeps its text as it was given."""
    first = _cli_provisioned(ctx, tmp_path, given_name="太郎 一", address="東京都千代田区千代田1-1 コーポ101")
    (holder,) = _holders(ctx)
    _second_phone_refused(ctx, tmp_path, "wide", dict(
        HOLDER, given_name="太郎\u3000\u3000一",
        address="東京都千代田区千代田\uff11\u30fc\uff11\u3000コーポ\uff11\uff10\uff11"), holder, first)
    with ctx.sessions() as s:
        data = s.get(Holder, holder).data
    assert (data["given_name"], data["address"]) == ("太郎 一", "東京都千代田区千代田1-1 コーポ101")
    # another person is not: a long vowel mark in a name's kana is a letter of it
    other = _cli_provisioned(ctx, tmp_path, "o", given_name="太郎 一", given_name_kana="たーろう",
                             address="東京都千代田区千代田1-1 コーポ101")
    assert other and len(_holders(ctx)) == 2


def test_the_same_address_in_other_block_notation_is_the_same_holder_and_a_second_phone_a_handover(ctx, tmp_path):
    """An address is written with kanji or ASCII block numbers, 丁目/番/号 or hyphens, a space
    or none: the same person with 梅田二丁目1番2号 once and 梅田 2-1-2 again was two holders,
    and their second phone escaped the one-phone rule. Refused, naming `mcred handover`; the
    registered record keeps its text as it was given."""
    osaka = {"address": "大阪府大阪市北区梅田二丁目1番2号", "prefecture": "大阪府", "municipality": "大阪市北区"}
    first = _cli_provisioned(ctx, tmp_path, **osaka)
    (holder,) = _holders(ctx)
    _second_phone_refused(ctx, tmp_path, "hyphens", dict(HOLDER, **dict(osaka, address="大阪府大阪市北区梅田 2-1-2")),
                          holder, first)
    with ctx.sessions() as s:
        assert s.get(Holder, holder).data["address"] == osaka["address"]


def test_a_registered_holder_without_live_credentials_is_provisioned_again_as_themselves(ctx, tmp_path):
    """The same person provisioned again once nothing of theirs is live (the phone revoked,
    lost for good) is the registered holder, not a new one; another person is a new one;
    a Roman-letter name the registry holds otherwise is refused, naming the command."""
    from issuer import revocation

    first = _cli_provisioned(ctx, tmp_path)
    (holder,) = _holders(ctx)
    revocation.revoke(ctx.sessions, first, "cessationOfOperation")
    f = tmp_path / "again.json"
    f.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123"), ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(f), "--key-type", "p384",
                                 "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["holder"] == holder and _holders(ctx) == [holder]
    roman = tmp_path / "roman.json"
    roman.write_text(json.dumps(dict(HOLDER, family_name_roman="YAMADA", given_name_roman="TARO"),
                                ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(roman), "--json"])
    assert r.exit_code == 2 and f"mcred holder update {holder}" in json.loads(r.output)["error"], r.output
    other = _cli_provisioned(ctx, tmp_path, "o", address="東京都千代田区千代田1-2")
    assert len(_holders(ctx)) == 2 and other


def test_two_registrations_of_one_person_at_once_make_one_holder(ctx, monkeypatch):
    """Two provisionings of the same new person at once: each looked for the person before
    either had registered them. The identity's unique index makes the later insert fail,
    and that registration returns the holder the earlier one made (whose run then gives one
    of the two phones up, :func:`mcred.provision._claim_holder`)."""
    from issuer import holders

    a, b = wallet_sim.create_phone(ctx.home), wallet_sim.create_phone(ctx.home)
    first = holders.register(ctx.sessions, parse_holder(HOLDER), phone_id=a)
    looked = holders._registered  # the look-up, in the transaction that would register them
    calls = []

    def not_yet(s, data):  # noqa: ANN001, ANN202 - the look-up before the rival committed
        calls.append(1)
        return None if len(calls) == 1 else looked(s, data)

    monkeypatch.setattr(holders, "_registered", not_yet)
    assert holders.register(ctx.sessions, parse_holder(HOLDER), phone_id=b) == first
    assert _holders(ctx) == [first] and len(calls) == 2
    with ctx.sessions() as s:
        assert s.get(Phone, b).holder_id == first
