"""``mcred phone ...`` through a Typer app built here (register() on a fresh app), and the
trace wrapper."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

import wallet_sim
from mcred.cli import phone_cmds
from mcred.cli.state import OPTIONS
from tsm.trace import tracing_transmit


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _main(trace: bool = typer.Option(False, "--trace")) -> None:
        OPTIONS.trace = trace

    phone_cmds.register(app)
    return app


def test_phone_new_list_show_reset(home):
    app, run = _app(), CliRunner()
    r = run.invoke(app, ["phone", "new", "--model", "pixel-sim", "--json"])
    assert r.exit_code == 0, r.output
    pid = json.loads(r.stdout)["id"]
    assert pid in run.invoke(app, ["phone", "list"]).stdout.split()
    shown = json.loads(run.invoke(app, ["phone", "show", pid, "--json"]).stdout)
    assert shown["secure_element"]["security_domains"][0]["aid"] == "A000000151000000"
    assert "cplc" in run.invoke(app, ["phone", "show", pid]).stdout
    (wallet_sim.app_dir(pid, home) / "wallet.db").write_text("x")
    assert run.invoke(app, ["phone", "reset", pid]).exit_code == 0
    assert not (wallet_sim.app_dir(pid, home) / "wallet.db").exists()
    bad = run.invoke(app, ["phone", "show", "no-such-phone"])
    assert bad.exit_code == 2  # unusable input, as every command says an unknown phone
    assert run.invoke(app, ["phone", "reset", "no-such-phone"]).exit_code == 2


def test_tracing_transmit_prints_pairs():
    lines: list[str] = []
    t = tracing_transmit(lambda apdu: b"\x01\x02\x90\x00", lines.append)
    assert t(bytes.fromhex("80CA9F7F00")) == b"\x01\x02\x90\x00"
    assert lines[0].startswith("A>> wire") and "80CA9F7F" in lines[0]
    assert lines[1].startswith("A<< wire") and "0102 9000" in lines[1]
