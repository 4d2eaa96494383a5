"""Bad input on the command line: a non-zero exit and a message, never a traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from issuer import revocation
from mcred.cli.main import app
from mcred.context import Context

BAD = [
    ["phone", "show", "nope"],
    ["phone", "reset", "nope"],
    ["phone", "pcsc", "nope", "--once"],
    ["phone", "pcsc", "{phone}", "--atr", "zz", "--once"],
    ["phone", "pcsc", "{phone}", "--atr", "9000", "--once"],
    ["phone", "pcsc", "{phone}", "--port", "0", "--once"],
    ["provision", "--phone", "{phone}", "--holder", "{garbage}"],
    ["provision", "--phone", "{phone}", "--holder", "{empty}"],
    ["provision", "--phone", "{phone}", "--holder", "missing.json"],
    ["revoke", "--phone", "{phone}", "--reason", "bogus"],
    ["revoke", "--phone", "nope", "--reason", "superseded"],
    ["release", "--phone", "nope"],
    ["jpki", "sign", "--phone", "{phone}", "--slot", "sign", "--pin-file", "{garbage}", "{garbage}"],
    ["jpki", "sign", "--phone", "nope", "--slot", "sign", "--pin-file", "{garbage}", "{garbage}"],
    ["jpki", "verify", "{garbage}", "--signature", "{garbage}"],
    ["export", "crl", "--slot", "nope", "--out", "x.crl"],
    ["export", "jpki-cert", "--phone", "nope", "--slot", "sign", "--out", "{tmp}/x.pem"],
    ["inspect", "{garbage}"],
    ["mdoc", "verify", "{garbage}", "--trust-anchor", "{garbage}"],
    ["status-list", "show", "{garbage}"],
    ["credential", "show", "nope"],
    ["verify", "{garbage}", "--trust", "{garbage}"],
    ["handover", "--phone", "nope", "--to", "nope2"],
    ["handover", "--phone", "nope", "--to", "nope2", "--resume", ""],
    ["handover", "--phone", "nope", "--to", "nope2", "--resume", "no-such-handover"],
    ["drill", "bogus", "--phones", "1"],
    # a drill of no phone "PASSED"; a ttl of 0 was a ValueError traceback; a bad key type
    # failed every phone's drill instead of the command
    ["drill", "model_change", "--phones", "0"],
    ["drill", "model_change", "--workers", "0"],
    ["drill", "model_change", "--ttl", "0"],
    ["drill", "model_change", "--ttl", "86401"],
    ["drill", "pin_lock", "--key-type", "foo"],
    # a handover with a batch or key type its provisioning step refuses made the new phone,
    # started the workflow and failed at that step, offering a resume that could only fail
    ["handover", "--phone", "{phone}", "--to", "new", "--mdoc-batch", "0"],
    ["handover", "--phone", "{phone}", "--to", "new", "--mdoc-batch", "17"],
    ["handover", "--phone", "{phone}", "--to", "new", "--key-type", "foo"],
    ["mdoc", "refresh", "--phone", "{phone}", "--batch", "0"],
    # a file to write in no directory, or a directory: named before the work (it was a
    # FileNotFoundError traceback after the issuance, the drill or the SE's signature)
    ["export", "iaca", "--out", "{tmp}/missing/iaca.pem"],
    ["export", "jpki-root", "--slot", "sign", "--out", "{tmp}"],
    ["export", "crl", "--slot", "sign", "--out", "{garbage}/x.crl"],
    # a phone without the certificate, a partition that is not there: an UnknownCredential traceback
    ["export", "crl", "--phone", "nope", "--out", "{tmp}/x.crl"],
    ["export", "crl", "--partition", "zz", "--out", "{tmp}/x.crl"],
    ["drill", "pin_lock", "--report", "{tmp}/missing/r.md"],
    ["jpki", "verify", "{garbage}", "--signature", "{garbage}", "--roots", "{garbage}"],  # a traceback
    ["token", "revoke", "nope"],
]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("badinput")
    home = tmp / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("MCRED_HOME", str(home))
    mp.delenv("MCRED_DATABASE_URL", raising=False)
    (tmp / "garbage").write_bytes(b"garbage")
    (tmp / "empty.json").write_text("{}")
    out = CliRunner().invoke(app, ["phone", "new", "--json"])
    phone = json.loads(out.output)["id"]
    yield {"phone": phone, "garbage": str(tmp / "garbage"), "empty": str(tmp / "empty.json"),
           "tmp": str(tmp)}
    mp.undo()


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a[:3]) for a in BAD])
def test_bad_input_exits_non_zero_with_a_message(setting, argv):
    args = [a.format(**setting) for a in argv]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: {type(result.exception).__name__}: {result.exception}")
    assert result.output.strip(), "no message"


def test_revoking_an_unknown_phone_is_an_error_not_a_no_op(home):
    with pytest.raises(revocation.UnknownPhone):
        revocation.revoke(Context.open(home).sessions, "nope", "superseded")


@pytest.mark.parametrize("resume", ["", "no-such-handover"])
def test_resuming_a_handover_that_does_not_exist_says_so(setting, resume):
    """``--resume ''`` started a new handover (the empty id read as none given); an unknown
    id failed as a workflow error telling the user to resume with that same id."""
    import wallet_sim

    phones = wallet_sim.list_phones(Context.open().home)
    r = CliRunner().invoke(app, ["handover", "--phone", setting["phone"], "--to", "new", "--resume", resume])
    assert r.exit_code == 2, r.output
    assert "no such handover" in r.output
    assert wallet_sim.list_phones(Context.open().home) == phones  # no new phone made for nothing


def test_a_file_error_no_option_foresaw_is_a_message_not_a_traceback(monkeypatch, capsys):
    """The last resort in ``mcred.cli.main.run``: an OSError (a file that could not be read
    or written) is named with exit 2."""
    import mcred.cli.main as main

    def app():
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/x.pem")

    monkeypatch.setattr(main, "app", app)
    with pytest.raises(SystemExit) as info:
        main.run()
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: /nowhere/x.pem: No such file or directory"


@pytest.mark.parametrize("option", [["--phone", "nope"], ["--partition", "zz"]])
def test_export_crl_of_nothing_there_names_it_with_exit_2(setting, option):
    """``mcred export crl --phone`` of a phone without the certificate, or ``--partition`` of
    a code that is none, ended in an UnknownCredential traceback (exit 1); it is the input,
    refused as ``export jpki-cert`` refuses it, with the partitions there are."""
    r = CliRunner().invoke(app, ["export", "crl", *option, "--out", f"{setting['tmp']}/x.crl"])
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.output.startswith("error: "), r.output
    assert ("'nope'" if option[0] == "--phone" else "no CRL partition 'zz' (partitions:") in r.output


@pytest.mark.parametrize("command", ["revoke", "release"])
def test_the_credential_selectors_named_are_the_ones_taken(setting, command):
    """``--credential jpki`` (both certificates) is taken by revoke and release, as by POST
    /revocations, but their help and the refusal of an unknown selector named only sign,
    auth, mdoc and all: a user told the choices never learnt of it."""
    reason = ["--reason", "superseded"] if command == "revoke" else []
    r = CliRunner().invoke(app, [command, "--phone", setting["phone"], *reason, "--credential", "both"])
    assert r.exit_code == 2, r.output
    assert "'both' is not one of sign, auth, jpki (both certificates), mdoc or all" in " ".join(
        r.output.replace("│", " ").split()), r.output
    shown = CliRunner().invoke(app, [command, "--help"])
    assert "sign, auth, jpki (both certificates), mdoc or all" in " ".join(
        shown.output.replace("│", " ").split()), shown.output


@pytest.mark.parametrize("url, said", [
    ("postgresql+psycopg://clerk:s3cret@127.0.0.1:{port}/mcred",
     "error: the database at MCRED_DATABASE_URL=postgresql+psycopg://clerk:***@127.0.0.1:{port}/mcred cannot be "
     "opened: connection failed"),
    ("bogus://x", "error: MCRED_DATABASE_URL=bogus://x: not a database URL this installation can open"),
    ("sqlite:////{tmp}/no/such/dir/x.db", "error: the database at MCRED_DATABASE_URL=sqlite:////{tmp}/no/such/dir/x.db "
                                          "cannot be opened: unable to open database file"),
])
def test_a_database_that_cannot_be_opened_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys, url, said):
    """MCRED_DATABASE_URL naming a server that does not answer, a dialect SQLAlchemy does not
    know, or a SQLite file in no directory ended every command that opens the database in
    SQLAlchemy's traceback (exit 1), the password printed in the URL. It is one line naming
    the URL with its password hidden, exit 2 (mcred.fatal), --json as the JSON document."""
    import sys

    from test_present_http import free_port

    import mcred.cli.main as main

    port = free_port()
    url, said = url.format(port=port, tmp=tmp_path), said.format(port=port, tmp=tmp_path)
    monkeypatch.setenv("MCRED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MCRED_DATABASE_URL", url)
    for json_flag in ([], ["--json"]):
        monkeypatch.setattr(sys, "argv", ["mcred", "holder", "list", *json_flag])
        with pytest.raises(SystemExit) as info:
            main.run()
        assert info.value.code == 2
        out, err = capsys.readouterr()
        if json_flag:
            assert ("error: " + json.loads(out)["error"]).startswith(said), out
        else:
            assert err.startswith(said) and len(err.strip().splitlines()) == 1, err
        assert "s3cret" not in out + err


def test_doctor_names_a_database_that_cannot_be_opened_by_its_url(tmp_path, monkeypatch):
    from mcred.context import Context
    from mcred.doctor import _database

    monkeypatch.setenv("MCRED_DATABASE_URL", "bogus://x")
    found = _database(Context.open(tmp_path / "home"))
    assert not found.ok and found.detail.startswith("MCRED_DATABASE_URL=bogus://x: not a database URL"), found
