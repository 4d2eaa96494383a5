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
