"""The command line starts without the service stack: `mcred --help`, `mcred inspect` or
`mcred mdoc verify` in a script's loop should not pay for a web framework, an ORM and a
migration tool they never use (importing them took 0.6 s of a 0.8 s start here). Commands
that need the registry import it when they run. Checked by what a fresh interpreter has
loaded, not by a time.

Nor do the commands that verify or read, run to the end on a real input: they import the
parts of a presentation they use (mcred.present_wiring, _in_process, _http, _saved), not
mcred.present, which is the reader service (FastAPI, its session store on SQLAlchemy), and
no web client where they use no network (reader.fetch imports httpx at the first fetch)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "starlette", "pydantic", "sqlalchemy", "alembic", "uvicorn", "httpx")
#: The reader service's stack. (typer, running a command, loads pydantic for its own types.)
STACK = tuple(m for m in HEAVY if m not in ("pydantic", "httpx"))
#: ... and the web client, for a command that uses no network.
OFFLINE = (*STACK, "httpx")


def _probe(watched: tuple[str, ...]) -> str:
    """A fresh interpreter's ``mcred ARGS``, as the console script runs it, that prints on
    stderr's last line ``[exit code, the modules of watched it loaded]``."""
    return ("import json, sys\n"
            "import mcred.cli.main as m\n"
            "sys.argv = ['mcred', *sys.argv[1:]]\n"
            "try:\n"
            "    m.run()\n"
            "except SystemExit as exc:\n"
            f"    print(json.dumps([exc.code, [x for x in {watched!r} if x in sys.modules]]), file=sys.stderr)\n")


def _run(args: list[str], watched: tuple[str, ...] = OFFLINE, env: dict | None = None,
         timeout: float = 120) -> tuple[int, list[str], str]:
    """``(exit code, what of watched it loaded, stdout)`` of ``mcred ARGS``."""
    done = subprocess.run([sys.executable, "-c", _probe(watched), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    code, loaded = json.loads(done.stderr.strip().splitlines()[-1])
    return code, loaded, done.stdout


def test_the_cli_imports_no_service_stack_at_start_up():
    code = ("import sys, mcred.cli.main; "
            f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_a_command_that_needs_no_database_runs_without_its_stack():
    """Not only the import: ``mcred`` itself (mcred.cli.main.run) wraps every command in
    the handler that names an unusable installation (mcred.fatal.unusable_exits), and that
    handler imported the database's modules to know their errors (0.6 s of a bare
    ``mcred --help``). A mistyped option of a reader command is said before the reader's
    stack is loaded too."""
    for args, status in ((["--help"], 0), (["reader", "ble", "--hci", "usb:0", "--json"], 2)):
        assert _run(args, OFFLINE, timeout=60)[:2] == (status, []), args


def test_a_reader_pipeline_that_fetches_nothing_imports_no_web_client():
    """The reader's status-list and DS-CRL fetchers made their httpx client (and parsed the
    CA bundle) when built; built offline, or never asked to fetch, they now make none."""
    code = ("import sys\n"
            "from reader.pipeline import ReaderPipeline, StatusListCache\n"
            "from reader.ds_crl import DsCrlCheck\n"
            "from reader.trust import TrustStore\n"
            "ds_crl = DsCrlCheck()\n"
            "ReaderPipeline(TrustStore(), status=StatusListCache(offline=True), extra_checks=[ds_crl],\n"
            "               signer_revocation=ds_crl.signer_revoked)\n"
            "print('httpx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- the commands that verify or read, on a real phone and a real transcript -----------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A phone holding an mdoc valid now (no status list: nothing to fetch), the IACA it
    chains to, consent rules, and a presentation of it saved as ``mcred present --save`` and
    ``mcred reader nfc --save`` write it."""
    from test_present_kit import make_phone, make_pki

    from mcred.present import new_reader_session, open_wallet, present_in_process, reader_pipeline
    from wallet_sim.consent import RulesConsent

    tmp = tmp_path_factory.mktemp("lean")
    home = tmp / "home"
    now = dt.datetime.now(dt.UTC)
    pki = make_pki(now=now)
    phone = make_phone(home, pki, idx=None, now=now - dt.timedelta(minutes=1))
    (tmp / "iaca.pem").write_bytes(pki.iaca_pem())
    (tmp / "rules.json").write_text('{"documents": {"*": {"*": "*"}}}')
    out = present_in_process(open_wallet(phone, home, RulesConsent.allow_all()),
                             new_reader_session(reader_pipeline(trust=pki.trust())))
    assert out.valid, out.result
    (tmp / "saved.cbor").write_bytes(out.saved())
    return {"tmp": tmp, "home": home, "pki": pki, "phone": phone, "iaca": str(tmp / "iaca.pem"),
            "rules": str(tmp / "rules.json"), "saved": str(tmp / "saved.cbor"),
            "env": dict(os.environ, MCRED_HOME=str(home))}


def test_mdoc_verify_of_a_saved_presentation_loads_no_service_stack_nor_web_client(world):
    """It read the saved file through mcred.present (read_saved): FastAPI, SQLAlchemy and
    httpx for a command that only decodes CBOR and checks signatures."""
    code, loaded, out = _run(["mdoc", "verify", world["saved"], "--trust-anchor", world["iaca"], "--json"],
                             env=world["env"])
    assert (code, loaded) == (0, []), out[-400:]
    assert json.loads(out)["valid"]


def test_verify_offline_loads_no_service_stack_nor_web_client(world):
    """``mcred verify --offline``: the reader pipeline, no fetch (its status list and CRL
    fetchers make their web client at their first fetch)."""
    code, loaded, out = _run(["verify", world["saved"], "--trust", world["iaca"], "--offline", "--json"],
                             env=world["env"])
    assert (code, loaded) == (0, []), out[-400:]
    assert json.loads(out)["valid"]


def test_reader_nfc_of_a_simulated_phone_loads_no_service_stack(world):
    """``mcred reader nfc --phone ID`` (a counter's script calls it per tap): the reader's
    settings and the tap, in-process; offline, no web client either."""
    saved = world["tmp"] / "tap.cbor"
    code, loaded, out = _run(["reader", "nfc", "--trust", world["iaca"], "--phone", world["phone"], "--consent",
                              world["rules"], "--offline", "--no-require-status", "--save", str(saved), "--json"],
                             env=world["env"])
    assert (code, loaded) == (0, []), out[-400:]
    assert json.loads(out)["valid"] and saved.stat().st_size


def test_wallet_respond_to_a_page_loads_no_service_stack_nor_web_client(world):
    """``mcred wallet respond --request FILE --origin O``: the wallet answers a page's request
    in this process, over no network."""
    from mcred.present import reader_pipeline
    from reader.online import OnlineReaderSession, credential_message
    from reader.session import DEFAULT_REQUEST

    origin = "https://rp.example"
    reader = OnlineReaderSession([DEFAULT_REQUEST], reader_pipeline(trust=world["pki"].trust()), origin)
    (world["tmp"] / "request.json").write_text(json.dumps(reader.start()))
    answer = world["tmp"] / "credential.json"
    code, loaded, out = _run(["wallet", "respond", "--phone", world["phone"], "--request",
                              str(world["tmp"] / "request.json"), "--origin", origin, "--consent", world["rules"],
                              "--out", str(answer)], env=world["env"])
    assert (code, loaded) == (0, []), out[-400:]
    assert reader.receive(credential_message(json.loads(answer.read_text()))).result.valid


def test_present_over_http_loads_a_web_client_but_no_service_stack(world):
    """``mcred present``: the phone's side of HTTP needs httpx, not the reader's FastAPI or
    its session store."""
    from test_present_http import Server, free_port

    from mcred.present import reader_app, reader_pipeline
    from reader.http import ReaderService
    from reader.session import DEFAULT_REQUEST

    with Server(reader_app(ReaderService(reader_pipeline(trust=world["pki"].trust()), [DEFAULT_REQUEST])),
                free_port()) as reader:
        code, loaded, out = _run(["present", "--phone", world["phone"], "--reader", reader.url, "--consent",
                                  world["rules"], "--json"], STACK, env=world["env"])
    assert (code, loaded) == (0, []), out[-400:]
    assert json.loads(out)["valid"]


def test_phone_pcsc_loads_no_service_stack_nor_web_client(world):
    """``mcred phone pcsc ID``, waiting for pcscd's vpcd (here, no one listens), then stopped."""
    from test_present_http import free_port

    proc = subprocess.Popen([sys.executable, "-c", _probe(OFFLINE), "phone", "pcsc", world["phone"], "--consent",
                             world["rules"], "--port", str(free_port())], env=world["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = []
        for line in proc.stdout:  # up and waiting: its Ctrl-C handler is set
            said.append(line)
            if "waiting for vpcd" in line:
                break
        assert "waiting for vpcd" in "".join(said), "".join(said) + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert json.loads(err.strip().splitlines()[-1]) == [0, []], err


def test_reader_ble_of_a_simulated_phone_loads_no_service_stack(world):
    """``mcred reader ble --phone ID``: the BLE link (bumble), not the reader service."""
    pytest.importorskip("bumble")
    code, loaded, out = _run(["reader", "ble", "--trust", world["iaca"], "--phone", world["phone"], "--consent",
                              world["rules"], "--offline", "--no-require-status", "--json"], env=world["env"])
    assert (code, loaded) == (0, []), out[-400:]
    assert json.loads(out)["valid"]


def test_jpki_verify_with_given_roots_and_crl_loads_no_service_stack_nor_web_client(tmp_path):
    """``mcred jpki verify FILE --signature SIG --roots R --crl C`` (a relying party's
    script, per document): everything it needs is in the files given, so neither the
    database stack (the relying party's challenge store imported it at the top) nor a web
    client (the OCSP and CRL fetchers make theirs when they fetch)."""
    from test_rp_jpki_cli import HOLDER
    from typer.testing import CliRunner

    import wallet_sim
    from mcred.cli.main import app as cli
    from mcred.context import Context
    from mcred.provision import provision
    from protocols.cardsub.holder import parse_holder

    home = tmp_path / "home"
    env = dict(os.environ, MCRED_HOME=str(home))
    phone = wallet_sim.create_phone(home)
    provision(Context.open(home), phone, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)
    doc, sig, pw, root, crl = (tmp_path / n for n in ("doc.txt", "doc.p7s", "pw", "root.pem", "part.crl"))
    doc.write_text("申請書\n")
    pw.write_text("ABC123\n")
    for args in (["jpki", "sign", "--phone", phone, "--pin-file", str(pw), str(doc), "--out", str(sig)],
                 ["export", "jpki-root", "--slot", "sign", "--out", str(root)],
                 ["export", "crl", "--slot", "sign", "--phone", phone, "--out", str(crl)]):
        done = CliRunner().invoke(cli, args, env={"MCRED_HOME": str(home)})
        assert done.exit_code == 0, done.output
    code, loaded, out = _run(["jpki", "verify", str(doc), "--signature", str(sig), "--roots", str(root),
                              "--revocation", "crl", "--crl", str(crl), "--json"], env=env)
    assert (code, loaded) == (0, []), out[-400:]
    assert json.loads(out)["valid"]
