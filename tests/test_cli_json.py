"""``--json`` everywhere, for a script that drives the command line (specs/cli.md): every
command that prints a result has ``--json`` (or is named below, with the reason it has none);
with it, stdout is one JSON document, on success and on a refusal alike (``{"error"}``, or a
verdict command's verdict without checks), with the exit status of the refusal."""

from __future__ import annotations

import json
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from mcred.cli import main
from mcred.cli.main import app
from mcred.cli.text import VERDICT_COMMANDS


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
    """A phone provisioned for a new holder whose secrets are HOLDER's: its provision --json."""
    (tmp / "holder.json").write_text(json.dumps(HOLDER, ensure_ascii=False), encoding="utf-8")
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


#: (command line, exit status): refusals a script meets, each said as one JSON document on
#: stdout with --json. Before, each was an ``error:`` line on stderr (or, for the mdoc issuer's
#: commands, on stdout among the results) and nothing a script could parse.
REFUSALS = [
    (["credential", "show", "nope"], 2),  # was exit 1, and the error on stdout
    (["mdoc", "issue", "--holder", "{garbage}", "--device-key", "{garbage}", "--out", "{tmp}/x.cbor"], 2),
    (["status-list", "show", "{garbage}"], 2),
    (["mdoc", "ds", "revoke", "nope", "--reason", "keyCompromise"], 2),
    (["status-list", "signer", "revoke", "nope", "--reason", "keyCompromise"], 2),
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
