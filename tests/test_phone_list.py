"""``mcred phone list --long``: what each phone of the data directory holds and whose it is,
from the wallet simulator (model, SE life cycle, applets, blocked PINs) and the issuer's
registry (state, holder, live credentials); plain ``phone list`` stays one id a line."""

from __future__ import annotations

import json

from test_rp_jpki_cli import HOLDER
from typer.testing import CliRunner

import wallet_sim
from issuer.holders import forget, phone_summaries
from mcred.cli.main import app as cli
from mcred.context import Context
from protocols.cardsub.holder import parse_holder


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


def test_long_listing_joins_the_phone_and_the_issuers_view(home, tmp_path):
    from mcred.provision import provision

    ctx = Context.open(home)
    provisioned = wallet_sim.create_phone(home, model="pixel-sim")
    provision(ctx, provisioned, parse_holder(HOLDER), mdoc_batch=1)
    blank = wallet_sim.create_phone(home)
    doc, pw = tmp_path / "doc.txt", tmp_path / "pw"
    doc.write_text("x")
    pw.write_text("WRONG1")
    for _ in range(5):  # the signing password's 5 tries spent: blocked
        _run("jpki", "sign", "--phone", provisioned, "--pin-file", str(pw), str(doc), code=1)

    assert _run("phone", "list").split() == sorted([provisioned, blank])  # unchanged: ids only
    assert json.loads(_run("phone", "list", "--json")) == sorted([provisioned, blank])

    rows = {r["id"]: r for r in json.loads(_run("phone", "list", "--long", "--json"))}
    mine = rows[provisioned]
    assert mine["model"] == "pixel-sim"
    assert mine["secure_element"]["applets"] == ["jpki", "mdoc"]
    assert mine["secure_element"]["blocked"] == {"jpki": ["signing_password"]}
    assert mine["issuer"]["state"] == "active"
    assert mine["issuer"]["holder_name"] == "山田 花子"
    assert mine["issuer"]["live"] == 3  # signing + user-auth certificates, one mdoc
    assert mine["issuer"]["credentials"] == {"jpki-auth:valid": 1, "jpki-sign:valid": 1, "mdoc:valid": 1}
    assert rows[blank]["issuer"] is None and rows[blank]["secure_element"]["applets"] == []

    text = {line.split()[0]: line for line in _run("phone", "list", "-l").splitlines()}
    assert "BLOCKED jpki:signing_password" in text[provisioned] and "山田 花子" in text[provisioned]
    assert "3 live credential(s)" in text[provisioned]
    assert "not provisioned by this issuer" in text[blank]


def test_an_unreadable_phone_is_a_row_not_a_failure(home):
    good, bad = wallet_sim.create_phone(home), wallet_sim.create_phone(home)
    (home / "phones" / bad / "phone.cbor").write_bytes(b"\xff")  # not CBOR
    rows = {r["id"]: r for r in json.loads(_run("phone", "list", "--long", "--json"))}
    assert "phone.cbor" in rows[bad]["error"] and "model" in rows[good]
    assert f"{bad}  unreadable: " in _run("phone", "list", "--long")


def test_an_empty_data_directory_says_so(home):
    assert _run("phone", "list", "--long").startswith("no phone in ")
    assert json.loads(_run("phone", "list", "--long", "--json")) == []


def test_phone_summaries_names_an_erased_holder_and_skips_unknown_phones(home):
    from mcred.provision import provision

    ctx = Context.open(home)
    pid = wallet_sim.create_phone(home)
    result = provision(ctx, pid, parse_holder(HOLDER), mdoc_batch=1)
    assert set(phone_summaries(ctx.sessions, [pid, "ph-unknown", pid])) == {pid}
    _run("revoke", "--phone", pid, "--reason", "cessationOfOperation")
    forget(ctx.sessions, result.holder_id, actor="test", reason="test")
    row = phone_summaries(ctx.sessions, [pid])[pid]
    assert row["holder_name"] == "(erased)" and row["live"] == 0
