"""A key the registry records destroyed that turns up in the key store again (a backup of the
key files restored, a token's objects re-imported): nothing signs with it (each PKI refuses
on the record), ``mcred doctor`` names it ("destroyed keys") with the command, and that
command destroys it again (``restored`` in the answer and in the audit event, the first
``key_destroyed_at`` kept). The mdoc PKI, the JPKI and the TSA; both database backends."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from issuer.db import AuditEvent
from issuer.tsa import TimeStampAuthority
from mcred.context import Context
from mcred.doctor import _destroyed_keys_back

URL = "http://tsa.test/tsa/root.crl"


def _cli(*args: str) -> tuple[int, str]:
    from mcred.cli.main import app

    r = CliRunner().invoke(app, list(args))
    return r.exit_code, " ".join(r.output.split())


def _key_file(ctx: Context, label: str):  # noqa: ANN202 - a Path
    path = ctx.keystore.directory / f"{label}.pem"
    assert path.exists(), path
    return path


def _events(ctx: Context, action: str) -> list[AuditEvent]:
    with ctx.sessions() as s:
        return s.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id).all()


def test_a_tsa_units_key_restored_from_a_backup_is_found_and_destroyed_again(home, db_url, tmp_path):
    ctx = Context.open(home, db_url)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=URL)
    tsa.unit()  # the root and its first unit, made on first use
    assert _destroyed_keys_back(ctx).ok
    backup = tmp_path / "tsa-unit-1.pem"
    shutil.copy2(_key_file(ctx, "tsa-unit-1"), backup)  # the nightly backup of the key files
    first = tsa.revoke_unit_detail("tsa-unit-1", "keyCompromise", actor="test", destroy_key=True).key_destruction
    assert first.changed and not ctx.keystore.has("tsa-unit-1")
    found = _destroyed_keys_back(ctx)
    assert found.ok and "1 destroyed, none back" in found.detail

    shutil.copy2(backup, ctx.keystore.directory / "tsa-unit-1.pem")  # ... restored over the store
    assert ctx.keystore.has("tsa-unit-1")
    found = _destroyed_keys_back(ctx)
    assert not found.ok and "tsa-unit-1" in found.detail and "again" in found.detail
    assert found.fix == "mcred tsa key destroy tsa-unit-1"
    # the unit stamping now is a new one: the restored key signs nothing
    assert tsa.unit().certificate.subject.rfc4514_string().startswith("CN=mcred TSA unit 2,")

    again = tsa.destroy_key("tsa-unit-1", actor="test")
    assert (again.changed, again.restored, again.key_destroyed_at) == (False, True, first.key_destroyed_at)
    assert again.to_json()["restored"] is True and again.to_json()["already"] is True
    assert not ctx.keystore.has("tsa-unit-1") and _destroyed_keys_back(ctx).ok
    events = _events(ctx, "tsa.key.destroy")
    assert [e.detail.get("restored", False) for e in events] == [False, True]
    # once more: nothing there, nothing done, nothing audited
    third = tsa.destroy_key("tsa-unit-1", actor="test")
    assert (third.changed, third.restored) == (False, False) and len(_events(ctx, "tsa.key.destroy")) == 2


def test_the_commands_destroy_a_restored_key_again(home, tmp_path):
    code, out = _cli("jpki", "setup")
    assert code == 0, out
    code, out = _cli("jpki", "rollover", "--slot", "sign", "--key-type", "p384")
    assert code == 0, out
    ctx = Context.open(home)
    backup = tmp_path / "root.pem"
    shutil.copy2(_key_file(ctx, "jpki-sign-root-g1"), backup)
    code, out = _cli("jpki", "key", "destroy", "jpki-sign-root-g1")
    assert code == 0 and "destroyed at" in out, out
    shutil.copy2(backup, ctx.keystore.directory / "jpki-sign-root-g1.pem")

    code, out = _cli("doctor", "--json")
    (finding,) = [f for f in json.loads(out)["findings"] if f["name"] == "destroyed keys"]
    assert not finding["ok"] and finding["fix"] == "mcred jpki key destroy jpki-sign-root-g1", finding

    code, out = _cli("jpki", "key", "destroy", "jpki-sign-root-g1")
    assert code == 0 and "was in the key store again" in out and "destroyed again now" in out, out
    code, out = _cli("jpki", "key", "destroy", "jpki-sign-root-g1", "--json")
    doc = json.loads(out)
    assert code == 0 and (doc["changed"], doc["already"], doc["restored"]) == (False, True, False), out
    assert not Context.open(home).keystore.has("jpki-sign-root-g1")


def test_an_mdoc_signers_restored_key_is_destroyed_again(home, tmp_path):
    from mcred.mdoc_flow import mdoc_service

    ctx = Context.open(home)
    label = mdoc_service(ctx).document_signer().label  # the IACA and its first document signer
    backup = tmp_path / "ds.pem"
    shutil.copy2(_key_file(ctx, label), backup)
    code, out = _cli("mdoc", "ds", "revoke", label, "--reason", "keyCompromise", "--destroy-key")
    assert code == 0, out
    shutil.copy2(backup, ctx.keystore.directory / f"{label}.pem")
    code, out = _cli("mdoc", "key", "destroy", label, "--json")
    doc = json.loads(out)
    assert code == 0 and (doc["changed"], doc["restored"]) == (False, True), out
    assert not ctx.keystore.has(label)
    (_, second) = _events(ctx, "mdoc.key.destroy")
    assert second.detail["restored"] is True and second.subject == label
