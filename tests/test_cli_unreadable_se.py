"""A phone whose SE image (``se.cbor``) cannot be read: every command that opens that SE
says so on one ``error:`` line (the image's path and what is wrong with it) with the exit
code of its other refusals, never a traceback, and changes nothing."""

from __future__ import annotations

import json
import sys

import pytest
from test_provision_e2e import HOLDER
from typer.testing import CliRunner

import wallet_sim
from mcred.cli import main

#: (command, exit code): each opens the phone's SE ({phone}), whose image is cut short
COMMANDS = [
    (["phone", "show", "{phone}"], 2),
    (["jpki", "pin", "status", "--phone", "{phone}"], 2),
    (["jpki", "pin", "reset", "--phone", "{phone}", "--slot", "auth"], 2),
    (["jpki", "sign", "--phone", "{phone}", "--pin-file", "{pw}", "{doc}"], 2),
    (["jpki", "sign", "--phone", "{phone}", "--pin-file", "{pw}", "{doc}", "--xml"], 2),
    (["jpki", "auth", "--phone", "{phone}", "--pin-file", "{pin}", "--rp", "http://127.0.0.1:9"], 2),
    (["mdoc", "refresh", "--phone", "{phone}"], 2),
    (["tsm", "rotate-kloc", "--phone", "{phone}"], 2),  # refused before any phone is moved
    (["tsm", "rotate-kloc", "--all"], 1),  # the others are moved; this one is named as failed
    (["present", "--phone", "{phone}", "--reader", "http://127.0.0.1:9", "--consent", "{rules}"], 2),
    (["present", "--phone", "{phone}", "--reader", "http://127.0.0.1:9", "--online", "--consent", "{rules}"], 2),
    (["wallet", "respond", "--phone", "{phone}", "--request", "openid4vp://?client_id=x", "--consent",
      "{rules}"], 2),
    (["reader", "nfc", "--trust", "{iaca}", "--phone", "{phone}", "--consent", "{rules}"], 2),
    (["provision", "--resume", "{job}"], 2),
]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A provisioned phone whose se.cbor was then cut short (its NVM banks left as they were)."""
    tmp = tmp_path_factory.mktemp("unreadable-se")
    mp = pytest.MonkeyPatch()
    mp.setenv("MCRED_HOME", str(tmp / "home"))
    mp.delenv("MCRED_DATABASE_URL", raising=False)
    holder = tmp / "holder.json"
    holder.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123"), ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(main.app, ["provision", "--phone", "new", "--holder", str(holder), "--key-type", "p384",
                                      "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    done = json.loads(r.output)
    assert CliRunner().invoke(main.app, ["export", "iaca", "--out", str(tmp / "iaca.pem")]).exit_code == 0
    (tmp / "pw").write_text("ABC123")
    (tmp / "pin").write_text("1234")
    (tmp / "doc.txt").write_text("a contract")
    (tmp / "rules.json").write_text('{"documents": {"*": {"*": "*"}}}')
    image = tmp / "home" / "phones" / done["phone"] / "se.cbor"
    cut = image.with_name("cut")
    cut.write_bytes(image.read_bytes()[:100])
    cut.replace(image)  # a new file: the NVM bank it was linked to keeps the whole image
    yield {"phone": done["phone"], "job": done["job"], "pw": str(tmp / "pw"), "pin": str(tmp / "pin"),
           "doc": str(tmp / "doc.txt"), "rules": str(tmp / "rules.json"), "iaca": str(tmp / "iaca.pem"),
           "image": image, "tmp": tmp}
    mp.undo()


@pytest.mark.parametrize("argv, code", COMMANDS, ids=[" ".join(x for x in a if "{" not in x and "/" not in x) for a, _ in COMMANDS])
def test_a_command_on_a_phone_whose_se_image_is_unreadable_says_so(broken, argv, code, monkeypatch, capsys):
    before = broken["image"].read_bytes()
    monkeypatch.setattr(sys, "argv", ["mcred", *(a.format(**broken) for a in argv)])
    with pytest.raises(SystemExit) as info:
        main.run()  # as the console script runs it: any other exception is a traceback
    out = capsys.readouterr()
    text = out.out + out.err
    assert info.value.code == code, text
    squeezed = "".join(text.split())  # rich wraps long lines, anywhere
    assert "".join(f"cannot read SE image {broken['image']}: premature end of stream".split()) in squeezed
    assert "Traceback" not in text
    assert broken["image"].read_bytes() == before  # nothing written
    assert not (broken["tmp"] / "doc.txt.p7s").exists()


def test_the_console_script_names_any_phone_error_no_command_foresaw(monkeypatch, capsys):
    """The last resort in ``mcred.cli.main.run``: a phone error (here an unreadable SE image)
    that no command's own handling caught is an ``error:`` line with exit 2, as for an
    unknown phone."""
    def app():
        raise wallet_sim.SeStateError("cannot read SE image /x/se.cbor: bad")

    monkeypatch.setattr(main, "app", app)
    with pytest.raises(SystemExit) as info:
        main.run()
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: cannot read SE image /x/se.cbor: bad"
