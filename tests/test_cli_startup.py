"""The command line starts without the service stack: `mcred --help`, `mcred inspect` or
`mcred mdoc verify` in a script's loop should not pay for a web framework, an ORM and a
migration tool they never use (importing them took 0.6 s of a 0.8 s start here). Commands
that need the registry import it when they run. Checked by what a fresh interpreter has
loaded, not by a time."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("fastapi", "starlette", "pydantic", "sqlalchemy", "alembic", "uvicorn", "httpx")


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
    stack is loaded too. (typer, running a command, loads pydantic for its own types.)"""
    stack = tuple(m for m in HEAVY if m != "pydantic")
    code = ("import json, sys\n"
            "import mcred.cli.main as m\n"
            "sys.argv = ['mcred', *sys.argv[1:]]\n"
            "try:\n"
            "    m.run()\n"
            "except SystemExit as exc:\n"
            f"    print(json.dumps([exc.code, [x for x in {stack!r} if x in sys.modules]]), file=sys.stderr)\n")
    for args, status in ((["--help"], 0), (["reader", "ble", "--hci", "usb:0", "--json"], 2)):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert json.loads(done.stderr.strip().splitlines()[-1]) == [status, []], (args, done.stderr)


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
