"""The TSM over the air to an SE in a PC/SC reader: `mcred provision --over-the-air` (the
Remote Agent), `mcred phone agent --pcsc-reader` (a Local Agent that forwards the C-APDUs
through pcscd), and the SE behind vsmartcard's vpcd (`mcred phone pcsc`, the simulated
phone in its own data directory): four processes and the real PC/SC stack between the
agent and the SE, as with a development SE on a desk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from test_pcsc_nfc import _card_in_vpcd
from test_pcsc_opensc import BridgeProcess, _stop, pcscd  # noqa: F401 - the pcscd fixture
from test_provision_e2e import HOLDER, jpki_details

import wallet_sim
from benchmarks.scratch import free_port
from wallet_sim.se.maker import root_path

pytest.importorskip("smartcard", reason="pyscard (pip install 'mcred[nfc]'; needs libpcsclite-dev and swig) "
                    "is not installed")


def test_a_card_in_a_pcsc_reader_is_provisioned_over_the_air(pcscd, tmp_path):  # noqa: F811
    operator, phone_home = tmp_path / "operator", tmp_path / "phone"
    operator.mkdir()
    phone_home.mkdir()
    pid = wallet_sim.create_phone(phone_home)
    bridge = BridgeProcess(phone_home, pid, pcscd["port"], tmp_path / "bridge.log")
    tsm = None
    try:
        deadline = time.monotonic() + 20
        while not _card_in_vpcd():
            assert bridge.proc.poll() is None, bridge.log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the phone did not appear in vpcd's reader"
            time.sleep(0.2)
        holder = tmp_path / "holder.json"
        holder.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123"), ensure_ascii=False),
                          encoding="utf-8")
        env = dict(os.environ, MCRED_HOME=str(operator), MCRED_SE_MAKER_ROOTS=str(root_path(phone_home)))
        env.pop("MCRED_DATABASE_URL", None)
        tsm = subprocess.Popen([sys.executable, "-m", "mcred", "provision", "--phone", pid, "--holder", str(holder),
                                "--key-type", "p384", "--mdoc-batch", "1", "--over-the-air",
                                "--listen", f"127.0.0.1:{free_port()}", "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seram = json.loads(tsm.stdout.readline())["seram"]
        agent = subprocess.run([sys.executable, "-m", "mcred", "phone", "agent", "--pcsc-reader", "Virtual PCD",
                                "--remote", seram["endpoint"], "--session", seram["session"], "--json"],
                               env=dict(os.environ, MCRED_HOME=str(tmp_path / "nobody")), capture_output=True,
                               text=True, timeout=120)
        out, errors = tsm.communicate(timeout=120)
    finally:
        if tsm is not None:
            tsm.kill()
        _stop(bridge.proc)
    assert agent.returncode == 0, agent.stderr + bridge.log.read_text(errors="replace")[-2000:]
    summary = json.loads(agent.stdout)
    assert summary["notifications"] == ["provision/done/OK"] and summary["apdus"] > 60
    assert summary["orders"] < summary["apdus"]  # STORE DATA sequences rode one order each
    assert summary["se"]["seId"].startswith("4D435345")  # read through PC/SC: GET DATA 9F7F
    assert tsm.returncode == 0, errors
    assert json.loads(out)["phone"] == pid
    # the phone's own SE image holds what the TSM wrote through pcscd
    jpki = jpki_details(type("C", (), {"home": phone_home})(), pid)
    assert set(jpki["slots"]) == {"signing", "user_authentication"}
