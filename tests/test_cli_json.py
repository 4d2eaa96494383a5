"""``--json`` everywhere, for a script that drives the command line (specs/cli.md): every
command that prints a result has ``--json`` (or is named below, with the reason it has none);
with it, stdout is one JSON document, on success and on a refusal alike (``{"error"}``, or a
verdict command's verdict without checks), with the exit status of the refusal."""

from __future__ import annotations

import json
import sys

import pytest
import typer.main
from conftest import person
from typer.testing import CliRunner

from mcred.cli import main
from mcred.cli.main import app
from mcred.cli.text import VERDICT_COMMANDS

#: The commands without --json, each with the reason. A command added without --json fails
#: test_every_command_has_json_or_is_exempt until it gets --json or a line here.
EXEMPT = {
    # servers and bridges: they run until stopped; what they print is for the person who started them
    ("serve",): "the issuer service (uvicorn) until stopped",
    ("reader", "serve"): "the reader service (uvicorn) until stopped",
    ("phone", "pcsc"): "a bridge to pcscd's vpcd until Ctrl-C",
    # the output is a file's bytes, to be redirected into the file
    ("phone", "maker-root"): "the SE maker's certificate, PEM",
    ("tsm", "oce-ca"): "the KLOC CA's certificate, PEM",
    ("inspect",): "CBOR diagnostic notation of the file",
    # the result is the file --out names; the exit status says whether it was written
    ("export", "crl"): "writes --out",
    ("export", "iaca"): "writes --out",
    ("export", "jpki-cert"): "writes --out",
    ("export", "jpki-root"): "writes --out",
    ("export", "tsa-root"): "writes --out",
    ("export", "vical"): "writes --out (and --ca)",
    ("jpki", "consent", "document"): "writes --out, the document for the customer to sign",
    ("mdoc", "respond"): "writes --out, a DeviceResponse for another mdoc tool",
    # JSON already
    ("wallet", "respond"): "prints JSON with or without (the credential the page receives, or the verifier's answer)",
    ("holder", "example"): "prints a holder file, JSON",
    # a narration for a person; its exit status is the outcome
    ("demo",): "the walk-through, told step by step",
}


def _commands() -> list[tuple[tuple[str, ...], object]]:
    """(path, click command) of every command, nested groups walked (typer vendors its own click)."""

    def walk(command, path=()):
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, command

    return list(walk(typer.main.get_command(app)))


def _has_json(command) -> bool:
    return any("--json" in p.opts for p in command.params)


def test_every_command_has_json_or_is_exempt():
    commands = _commands()
    assert len(commands) > 80
    without = {path for path, command in commands if not _has_json(command)}
    assert without - set(EXEMPT) == set(), "give these --json, or say in EXEMPT why they need none"
    assert set(EXEMPT) - without == set(), "these have --json now (or are gone): take them out of EXEMPT"
    assert VERDICT_COMMANDS <= {path for path, _ in commands}


@pytest.mark.parametrize("path", sorted(p for p, c in _commands() if _has_json(c)), ids=" ".join)
def test_a_usage_error_with_json_is_json_on_stdout(path):
    """An option no command has, with --json: one JSON document on stdout, exit 2 (typer said
    it only on stderr, with a usage box)."""
    r = CliRunner().invoke(app, [*path, "--json", "--no-such-option"])
    assert r.exit_code == 2, r.output
    doc = json.loads(r.stdout)
    assert "--no-such-option" in doc["error"]
    if path in VERDICT_COMMANDS:  # the verdict's shape, as their own refusals
        assert doc == {"valid": False, "error": doc["error"], "checks": [], "documents": []}
    else:
        assert doc == {"error": doc["error"]}
    assert "Usage:" not in r.stderr


def test_a_usage_error_without_json_is_still_typers():
    r = CliRunner().invoke(app, ["phone", "new", "--nvm", "99G"])
    assert r.exit_code == 2 and r.stdout == ""
    assert "99G" in r.stderr


def test_a_value_an_option_refuses_is_json_with_json():
    r = CliRunner().invoke(app, ["phone", "new", "--nvm", "99G", "--json"])
    assert r.exit_code == 2
    assert "'99G' is not a size" in json.loads(r.stdout)["error"]


HOLDER = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ", "given_name_kana": "たろう",
          "birth_date": "1990-04-01", "sex": 1, "address": "東京都千代田区千代田1-1", "prefecture": "東京都",
          "municipality": "千代田区", "pin": "1234", "password": "ABC123", "puk": "12345678"}


def _provisioned(tmp) -> dict:  # noqa: ANN001 - the data directory's parent
    """A phone provisioned for a new holder (a person of their own) whose secrets are HOLDER's:
    its provision --json."""
    (tmp / "holder.json").write_text(json.dumps(person(HOLDER), ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(tmp / "holder.json"),
                                 "--key-type", "p384", "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A data directory with a provisioned phone (its secrets known) and a bare one. The
    tests run in any order: one that changes a phone (its secrets, its credentials) makes its
    own (``fresh``)."""
    tmp = tmp_path_factory.mktemp("cli-json")
    mp = pytest.MonkeyPatch()
    mp.setenv("MCRED_HOME", str(tmp / "home"))
    mp.delenv("MCRED_DATABASE_URL", raising=False)
    done = _provisioned(tmp)
    bare = json.loads(CliRunner().invoke(app, ["phone", "new", "--json"]).stdout)["id"]
    for name, text in (("garbage", "garbage"), ("pin", "1234"), ("pw", "ABC123"), ("pw2", "XYZ789"),
                       ("puk", "12345678"), ("doc.txt", "a contract")):
        (tmp / name).write_text(text)
    yield {"phone": done["phone"], "holder": done["holder"], "bare": bare, "tmp": str(tmp),
           "garbage": str(tmp / "garbage"), "pin": str(tmp / "pin"), "pw": str(tmp / "pw"), "pw2": str(tmp / "pw2"),
           "puk": str(tmp / "puk"), "doc": str(tmp / "doc.txt")}
    mp.undo()


def _run(setting, argv):
    return CliRunner().invoke(app, [a.format(**setting) for a in argv])


@pytest.fixture
def fresh(setting):
    """``setting`` with a phone and holder of this test's own."""
    from pathlib import Path

    done = _provisioned(Path(setting["tmp"]))
    return {**setting, "phone": done["phone"], "holder": done["holder"]}


#: (command line, exit status): refusals a script meets, each said as one JSON document on
#: stdout with --json. Before, each was an ``error:`` line on stderr (or, for the mdoc issuer's
#: commands, on stdout among the results) and nothing a script could parse.
REFUSALS = [
    (["phone", "show", "nope"], 2),
    (["phone", "reset", "nope"], 2),
    (["phone", "new", "--kloc", "{garbage}"], 2),
    (["phone", "agent", "nope", "--remote", "ftp://x", "--session", "s"], 2),
    (["holder", "show", "nope"], 2),
    (["holder", "forget", "nope", "--reason", "retention ended"], 2),
    (["holder", "update", "nope", "--address", "x", "--reason", "転居届"], 2),
    (["holder", "renew-card", "nope", "--reason", "更新"], 2),
    (["credential", "show", "nope"], 2),  # was exit 1, and the error on stdout
    (["mdoc", "issue", "--holder", "{garbage}", "--device-key", "{garbage}", "--out", "{tmp}/x.cbor"], 2),
    (["status-list", "show", "{garbage}"], 2),
    (["mdoc", "ds", "revoke", "nope", "--reason", "keyCompromise"], 2),
    (["status-list", "signer", "revoke", "nope", "--reason", "keyCompromise"], 2),
    (["jpki", "pin", "status", "--phone", "nope"], 2),
    (["jpki", "pin", "change", "--phone", "nope", "--pin-file", "{pin}", "--new-pin-file", "{pin}"], 2),
    (["jpki", "pin", "change", "--phone", "{phone}", "--slot", "auth", "--pin-file", "{garbage}",
      "--new-pin-file", "{pin}"], 2),  # not a PIN: refused before the SE
    (["jpki", "pin", "unblock", "--phone", "nope", "--puk-file", "{puk}"], 2),
    (["jpki", "pin", "reset", "--phone", "nope"], 2),
    (["jpki", "sign", "--phone", "nope", "--pin-file", "{pw}", "{doc}"], 2),
    (["jpki", "sign", "--phone", "{phone}", "--pin-file", "{garbage}", "{doc}"], 2),
    (["jpki", "auth", "--phone", "nope", "--pin-file", "{pin}"], 2),
    (["provision", "--phone", "{bare}", "--holder", "{garbage}"], 2),
    (["provision", "--resume", "nope"], 2),
    (["provision", "--phone", "{bare}", "--holder", "{garbage}", "--session-id", "s"], 2),  # an OTA option alone
    (["handover", "--phone", "nope", "--to", "new"], 2),
    (["mdoc", "refresh", "--phone", "nope"], 2),
    (["drill", "bogus"], 2),
    (["tsm", "rotate-kloc", "--phone", "nope"], 2),
    (["tsm", "abandon", "nope", "--reason", "gone"], 2),
    (["tsm", "clear-quarantine", "--phone", "{bare}", "--reason", "checked"], 2),
    (["token", "revoke", "nope"], 2),  # was exit 1: an id that is no token's is the input
    (["revoke", "--phone", "nope", "--reason", "superseded"], 2),
    (["tsa", "stamp", "{doc}", "--url", "http://127.0.0.1:9/tsa"], 2),
    (["ble", "radio", "--port", "65535", "--controllers", "2"], 2),
]


@pytest.mark.parametrize("argv, code", REFUSALS, ids=[" ".join(a[:3]) for a, _ in REFUSALS])
def test_a_refusal_with_json_is_one_json_document_on_stdout(setting, argv, code):
    r = _run(setting, [*argv, "--json"])
    assert r.exit_code == code, r.output
    doc = json.loads(r.stdout)  # the whole of stdout: one document, nothing else
    assert isinstance(doc, dict) and doc["error"], doc
    if tuple(argv[:2]) in VERDICT_COMMANDS:
        assert doc["valid"] is False and doc["checks"] == []
    assert "error:" not in r.stderr  # said once, where the script reads


@pytest.mark.parametrize("argv", [["credential", "show", "nope"], ["status-list", "show", "{garbage}"],
                                  ["mdoc", "ds", "revoke", "nope", "--reason", "keyCompromise"]],
                         ids=" ".join)
def test_the_mdoc_issuers_errors_go_to_stderr(setting, argv):
    """They were printed on stdout, where the results go."""
    r = _run(setting, argv)
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.startswith("error: ")


def test_a_wrong_secret_is_exit_1_with_json(fresh):
    """The SE's refusal is the operation failing (exit 1, the tries left said), as JSON."""
    setting = fresh
    r = _run(setting, ["jpki", "pin", "change", "--phone", "{phone}", "--slot", "sign", "--pin-file", "{pw2}",
                       "--new-pin-file", "{pw2}", "--json"])
    assert r.exit_code == 1, r.output
    assert "tries left" in json.loads(r.stdout)["error"]
    r = _run(setting, ["jpki", "pin", "unblock", "--phone", "{phone}", "--slot", "sign", "--puk-file", "{puk}",
                       "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"phone": setting["phone"], "slot": "sign", "unblocked": True,
                                    "new_secret": False}


def test_what_a_script_needs_back_is_json(fresh, tmp_path):
    """The commands that gained --json: each prints one JSON document a script can use."""
    setting = fresh
    def ok(*argv):
        r = _run(setting, [*argv, "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    phone = setting["phone"]
    assert ok("jpki", "pin", "change", "--phone", phone, "--slot", "sign", "--pin-file", "{pw}",
              "--new-pin-file", "{pw2}") == {"phone": phone, "slot": "sign", "changed": True}
    signed = ok("jpki", "sign", "--phone", phone, "--pin-file", "{pw2}", "{doc}", "--out", str(tmp_path / "d.p7s"))
    assert signed == {"out": str(tmp_path / "d.p7s"), "bytes": (tmp_path / "d.p7s").stat().st_size,
                      "phone": phone, "slot": "sign", "form": "cms"}
    held = ok("revoke", "--phone", phone, "--reason", "certificateHold")
    assert held["phone"] == phone
    assert {(c["kind"], c["before"], c["after"]) for c in held["changes"]} == {
        ("jpki-sign", "valid", "hold"), ("jpki-auth", "valid", "hold"), ("mdoc", "valid", "hold")}
    released = ok("release", "--phone", phone)
    assert {c["credential"] for c in released["changes"]} == {c["credential"] for c in held["changes"]}
    assert ok("release", "--phone", phone) == {"phone": phone, "changes": []}
    assert ok("phone", "reset", "{bare}") == {"phone": setting["bare"], "reset": True}
    made = ok("token", "create", "--scope", "reader", "--name", "rp", "--expires", "1d")
    assert made["token"].startswith("mcred_") and made["scopes"] == ["reader"]
    [listed] = [t for t in ok("token", "list") if t["id"] == made["id"]]
    assert listed["state"] == "active" and listed["expires_at"] == made["expires_at"] and "token" not in listed
    assert ok("token", "revoke", made["id"]) == {"id": made["id"], "changed": True}
    assert ok("token", "revoke", made["id"]) == {"id": made["id"], "changed": False}
    roots = ok("jpki", "setup")
    assert set(roots) == {"sign", "auth"} and roots["sign"]["label"]
    assert ok("jpki", "rollover", "--slot", "auth", "--key-type", "p384")["slot"] == "auth"
    stamped = ok("tsa", "stamp", "{doc}", "--out", str(tmp_path / "d.tsr"))
    assert stamped["out"] == str(tmp_path / "d.tsr") and stamped["gen_time"].endswith("+00:00")
    unit = ok("tsa", "revoke", "tsa-unit-1", "--reason", "superseded")
    assert unit["unit"] == "tsa-unit-1" and unit["changed"] is True


def test_jpki_setup_refuses_an_unknown_key_type_without_a_traceback(setting):
    r = _run(setting, ["jpki", "setup", "--key-type", "foo"])
    assert r.exit_code == 2, r.exception  # was a ValueError traceback
    assert "rsa2048 or p384" in r.stderr


def test_holder_forget_says_what_it_erased_as_json(fresh):
    setting = fresh
    phone, holder = setting["phone"], setting["holder"]
    r = _run(setting, ["holder", "forget", holder, "--reason", "retention ended", "--json"])
    assert r.exit_code == 2 and "live" in json.loads(r.stdout)["error"]  # refused while credentials are live
    assert _run(setting, ["revoke", "--phone", phone, "--reason", "cessationOfOperation"]).exit_code == 0
    r = _run(setting, ["holder", "forget", holder, "--reason", "retention ended", "--json"])
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    assert done["holder"] == holder and done["erased"] is True and done["mdoc_bodies_erased"] == 1
    again = json.loads(_run(setting, ["holder", "forget", holder, "--reason", "again", "--json"]).stdout)
    assert again == {"holder": holder, "erased": False}


def test_drill_json_is_its_report(tmp_path):
    r = CliRunner().invoke(app, ["drill", "model_change", "--phones", "1", "--json"],
                           env={"MCRED_HOME": str(tmp_path / "home")})
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # the progress lines are on stderr
    assert doc["home"] == str(tmp_path / "home")
    assert [x["scenario"] for x in doc["reports"]] == ["model_change"]


@pytest.mark.parametrize("argv, verdict", [(["credential", "list", "--json"], False),
                                           (["jpki", "auth", "--phone", "p", "--pin-file", "{pin}", "--json"], True)],
                         ids=["credential list", "jpki auth"])
def test_an_unusable_setting_is_json_on_stdout_with_json(setting, argv, verdict, monkeypatch, capsys):
    """What mcred.cli.main.run says for the whole installation (a setting, the database, the
    keys): with --json, the same error as one JSON document on stdout, exit 2."""
    monkeypatch.setenv("MCRED_PUBLIC_URL", "ftp://x")
    monkeypatch.setattr(sys, "argv", ["mcred", *(a.format(**setting) for a in argv)])
    with pytest.raises(SystemExit) as info:
        main.run()
    out = capsys.readouterr()
    assert info.value.code == 2
    doc = json.loads(out.out)
    assert "MCRED_PUBLIC_URL" in doc["error"] and out.err == ""
    assert ("checks" in doc) is verdict
    monkeypatch.setattr(sys, "argv", ["mcred", *(a.format(**setting) for a in argv if a != "--json")])
    with pytest.raises(SystemExit):
        main.run()
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error: MCRED_PUBLIC_URL")


@pytest.mark.parametrize("argv", [["export", "jpki-cert", "--phone", "nope", "--slot", "sign", "--out", "{tmp}/x.pem"],
                                  ["token", "revoke", "nope"], ["credential", "show", "nope"]], ids=" ".join)
def test_an_id_that_names_nothing_is_exit_2(setting, argv):
    """Each exited 1, the status of an operation that failed; an id that names nothing is the
    input refused, exit 2, as `phone show` and `holder show` say it (specs/cli.md)."""
    r = _run(setting, argv)
    assert r.exit_code == 2, r.output
    assert r.stdout == "" and r.stderr.startswith("error: ")


def test_the_specs_table_of_commands_without_json_is_the_exempt_list():
    """specs/cli.md names the commands without --json, "tests/test_cli_json.py EXEMPT": the
    table left out ``holder example`` (a holder file, JSON already), so a script writer reading
    it took that command for one with --json."""
    import re
    from pathlib import Path

    spec = (Path(__file__).parent.parent / "specs" / "cli.md").read_text()
    table = spec.split("| command | why |", 1)[1].split("\n\n", 1)[0]
    named = set()
    for row in table.splitlines()[2:]:
        for name in re.findall(r"`([^`]+)`", row.split("|")[1]):
            named.add(tuple(name.split()))
    exports = {p for p in EXEMPT if p[0] == "export"}
    assert ("export", "...") in named  # the table says `export ...` for the whole group
    assert named - {("export", "...")} == set(EXEMPT) - exports


def test_show_text_reads_as_text_not_python_reprs():
    """`credential show` and `phone show` printed Python's reprs in text mode (`reason: None`,
    `renewal_needed: False`, a meta dict in braces, `app_data_files: []`): the text tree says
    `-`, `yes` / `no`, and nests a map beneath its key, as `phone show` nested the SE."""
    from mcred.cli.text import print_tree

    lines: list[str] = []
    print_tree({"reason": None, "renewal_needed": False, "ok": True, "files": [], "meta": {"slot": 0, "proof": "pop"},
                "list": ["a", {"b": None}], "peer": "x\x1b[31my"}, echo=lines.append)
    assert lines == ["reason: -", "renewal_needed: no", "ok: yes", "files: -", "meta:", "  slot: 0", "  proof: pop",
                     "list:", "  - a", "  -", "    b: -", "peer: x\\x1b[31my"]
