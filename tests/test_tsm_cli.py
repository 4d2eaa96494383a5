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


def test_trace_shows_a_provisioning_as_gp_d_does(home, tmp_path, monkeypatch):
    """`mcred --trace provision`: every APDU pair on the wire and, from the TSM, in plain,
    to stderr; the PUT KEY and the PIN records shown only as lengths."""
    import os

    from test_provision_e2e import HOLDER

    from mcred.cli.main import app

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    holder = tmp_path / "holder.json"
    # a PIN whose hex no certificate's validity date can hold (a UTCTime of 2026-12-01 23:42
    # is "261201234200Z", which holds "1234"; no date field is 79)
    holder.write_text(json.dumps(dict(HOLDER, pin="5790", password="ABC123")), encoding="utf-8")
    r = CliRunner().invoke(app, ["--trace", "provision", "--phone", "new", "--holder", str(holder),
                                 "--key-type", "p384", "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    wire = [x for x in lines if x.startswith("A>> wire")]
    plain = [x for x in lines if x.startswith("A>> plain")]
    assert len(wire) == len(plain) > 30
    assert any(" 80820111 " in x for x in plain)  # SCP11a's MUTUAL AUTHENTICATE
    assert any(x.startswith("A>> plain (") and "80D83081 <" in x and "hidden>" in x for x in plain)  # PUT KEY
    # the PIN "5790" and the password "ABC123" are never shown as the PIN records carry them:
    # the bare digits' hex can turn up by chance (a JPKI certificate's CN is the date and 16
    # random hex digits, so "35373930" in one failed a CI run), the value TLV cannot
    from protocols.gp.tlv import encode as tlv
    from protocols.perso import T_VALUE

    for secret in (b"5790", b"ABC123"):
        assert not any(tlv(T_VALUE, secret).hex().upper() in x.replace(" ", "") for x in lines), secret
    # a handover traces both phones' jobs: the new one's provisioning, the old one's wipe
    old = json.loads(r.stdout)["phone"]
    r = CliRunner().invoke(app, ["--trace", "handover", "--phone", old, "--to", "new", "--json"])
    assert r.exit_code == 0, r.output
    plain = [x for x in r.stderr.splitlines() if x.startswith("A>> plain")]
    assert any(" 80E40000 " in x for x in plain)  # DELETE on the old phone
    assert any(" 80820111 " in x for x in plain)  # SCP11a on the new one


def test_a_traced_transport_that_pipelines_still_pipelines():
    class Pipe:
        def __call__(self, apdu):
            return b"\x90\x00"

        def transmit_many(self, apdus):
            return [b"\x01\x90\x00" for _ in apdus]

    lines: list[str] = []
    t = tracing_transmit(Pipe(), lines.append)
    assert t.transmit_many([bytes.fromhex("80CA9F7F00"), bytes.fromhex("80CA006600")]) == [b"\x01\x90\x00"] * 2
    assert [x[:8] for x in lines] == ["A>> wire", "A<< wire"] * 2 and "for 2" in lines[1]
    assert not hasattr(tracing_transmit(lambda a: b"\x90\x00", lines.append), "transmit_many")


def test_trace_shows_an_abandoned_provisionings_wipe(home):
    """`mcred --trace tsm abandon JOB`: the wipe's APDU pairs, plain and on the wire."""
    from test_tsm_jobs import SECRETS

    from mcred.cli.main import app
    from mcred.context import Context
    from tsm.jobs import Tsm

    ctx = Context.open(home)
    pid = ctx.new_phone()
    job = Tsm(ctx.engine, ctx.master_key, **ctx.tsm_trust()).create_job(
        pid, "provision", {"algorithm": "p384", "mdoc_count": 0}, SECRETS)
    r = CliRunner().invoke(app, ["--trace", "tsm", "abandon", job, "--reason", "holder withdrew"])
    assert r.exit_code == 0, r.output
    plain = [x for x in r.stderr.splitlines() if x.startswith("A>> plain")]
    wire = [x for x in r.stderr.splitlines() if x.startswith("A>> wire")]
    assert len(plain) == len(wire) > 3
    assert any(" 80F24002 " in x for x in plain)  # the wipe's GET STATUS, in plain
    assert "SE wiped" in r.stdout


def test_a_trace_whose_reader_goes_away_does_not_stop_the_job(tmp_path):
    """`mcred --trace provision ... 2>&1 | head`: once head has its lines it closes the pipe,
    and the next trace line raised BrokenPipeError inside the transport, so the TSM reported
    the SE as giving no answer and left the job interrupted. The trace stops; the job
    finishes."""
    import os
    import subprocess
    import sys

    from test_provision_e2e import HOLDER

    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123")), encoding="utf-8")
    env = {**os.environ, "MCRED_HOME": str(tmp_path / "home")}
    env.pop("MCRED_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "mcred", "--trace", "provision", "--phone", "new", "--holder",
                             str(holder), "--key-type", "p384", "--mdoc-batch", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = proc.stderr.readline()
    proc.stderr.close()  # head has its line
    out, _ = proc.communicate(timeout=180)
    assert first.startswith(b"A>> "), first
    assert proc.returncode == 0, out
    assert json.loads(out)["phone"]
