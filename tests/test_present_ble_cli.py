"""Presentation over BLE between processes (issue 6): `mcred ble radio` runs a virtual radio;
`mcred phone ble` shows the phone's QR code and answers over one of its HCI transports;
`mcred reader ble --hci ... --engagement URI` reads it over another. Each process runs its
own Bluetooth host (bumble) over HCI on TCP, as it would over a USB dongle. Also the
in-process `mcred reader ble --phone`, its saved transcript, and the options it refuses."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest
from test_present_http import free_port, provisioned_files

pytest.importorskip("bumble")

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with provisioned_files(home, mdoc_batch=2) as files:
        yield {**files, "env": dict(os.environ, MCRED_HOME=str(home))}


def _mcred(*args: str) -> list[str]:
    return [sys.executable, "-m", "mcred", *args]


def _first_line(proc: subprocess.Popen, what: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    assert line, f"{what} printed nothing (exit {proc.poll()}): {proc.stderr.read() if proc.poll() is not None else ''}"
    assert time.monotonic() < deadline
    return json.loads(line)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def ble_radio(env: dict, controllers: int = 2):
    """``mcred ble radio`` with ``controllers`` controllers, in its own process: their HCI
    transports. A free port can be taken by another process between the test's look and the
    radio's bind; the radio then exits naming it, and is started again on other ports."""
    for attempt in range(5):
        port = free_port()
        while any(_busy(port + i) for i in range(1, controllers)):  # the radio takes ports in a row
            port = free_port()
        proc = subprocess.Popen(_mcred("ble", "radio", "--port", str(port), "--controllers", str(controllers),
                                       "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = proc.stdout.readline()
        # a port taken meanwhile: with --json the radio says so as {"error"} on stdout
        refused = json.loads(line).get("error") if line else proc.stderr.read()
        if not refused or attempt == 4:
            break
        proc.wait(10)
        assert "address already in use" in refused, f"mcred ble radio refused (exit {proc.returncode}): {refused}"
    try:
        assert line, f"mcred ble radio printed nothing (exit {proc.poll()})"
        assert "hci" in json.loads(line), f"mcred ble radio: {line}"
        yield json.loads(line)["hci"]
    finally:
        _stop(proc)


@pytest.fixture
def radio(world):
    with ble_radio(world["env"]) as hci:
        yield hci


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("mode", ["peripheral", "central"])
def test_a_phone_and_a_reader_in_two_processes_over_a_shared_radio(world, radio, mode):
    phone = subprocess.Popen(_mcred("phone", "ble", world["phone"], "--hci", radio[0], "--consent",
                                    str(world["consent"]), "--mode", mode, "--wait", "30", "--json"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=world["env"])
    try:
        uri = _first_line(phone, "mcred phone ble")["engagement"]
        assert uri.startswith("mdoc:")
        read = subprocess.run(_mcred("reader", "ble", "--hci", radio[1], "--engagement", uri,
                                     "--trust", str(world["iaca"]), "--wait", "30", "--json"),
                              capture_output=True, text=True, env=world["env"], timeout=120)
        assert read.returncode == 0, read.stdout + read.stderr
        result = json.loads(read.stdout)
        assert result["valid"]
        assert {c["name"] for c in result["checks"] if c["passed"]} >= {"device_authentication",
                                                                        "revocation_status"}
        out, err = phone.communicate(timeout=60)
        assert phone.returncode == 0, out + err
        said = json.loads(out.strip().splitlines()[-1])
        assert said["answered"] and said["problem"] is None
        if mode == "central":
            assert "Ident matches the engagement's EDeviceKey" in said["steps"]
    finally:
        _stop(phone)


def test_a_reader_with_no_phone_on_the_radio_fails_the_session_check(world, radio):
    from wallet_sim.ble import ble_engagement

    uri = ble_engagement("peripheral").uri  # a QR code whose phone is not on the radio
    read = subprocess.run(_mcred("reader", "ble", "--hci", radio[1], "--engagement", uri,
                                 "--trust", str(world["iaca"]), "--wait", "1", "--json"),
                          capture_output=True, text=True, env=world["env"], timeout=120)
    assert read.returncode == 1, read.stdout + read.stderr
    (check,) = json.loads(read.stdout)["checks"]
    assert check["name"] == "session" and "no device advertised service" in check["reason"]


def test_the_cli_reads_a_simulated_phone_in_process_and_the_saved_read_verifies(world, tmp_path):
    saved = tmp_path / "ble.cbor"
    done = subprocess.run(_mcred("reader", "ble", "--phone", world["phone"], "--consent", str(world["consent"]),
                                 "--mode", "central", "--trust", str(world["iaca"]), "--save", str(saved)),
                          capture_output=True, text=True, env=world["env"], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reader: mdoc central client mode" in done.stdout and "VALID" in done.stdout
    again = subprocess.run(_mcred("verify", str(saved), "--trust", str(world["iaca"]), "--json"),
                           capture_output=True, text=True, env=world["env"], timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr


def test_the_cli_taps_a_simulated_phone_and_goes_on_over_ble(world):
    done = subprocess.run(_mcred("reader", "ble", "--phone", world["phone"], "--consent", str(world["consent"]),
                                 "--tap", "--handover", "negotiated", "--mode", "central",
                                 "--trust", str(world["iaca"]), "--json"),
                          capture_output=True, text=True, env=world["env"], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["valid"]


def test_the_reader_refuses_every_hostile_phone_over_ble_and_a_phone_refuses_a_hostile_reader(world):
    done = subprocess.run(_mcred("reader", "ble", "--phone", world["phone"], "--consent", str(world["consent"]),
                                 "--trust", str(world["iaca"]), "--fault", "all", "--json"),
                          capture_output=True, text=True, env=world["env"], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    said = json.loads(done.stdout)
    assert said["conformant"] and len(said["runs"]) > 5, said
    done = subprocess.run(_mcred("reader", "ble", "--phone", world["phone"], "--consent", str(world["consent"]),
                                 "--trust", str(world["iaca"]), "--hostile", "garbage-request", "--json"),
                          capture_output=True, text=True, env=world["env"], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (check,) = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "wallet_refusal"]
    assert check["passed"] and "status 11" in check["reason"]


def test_a_counter_reads_phone_after_phone_from_the_lines_its_qr_scanner_types(world):
    """`mcred reader ble --hci T --engagement -`: two phones show their QR codes; the
    scanner types both URIs (and a blank line); a verdict a line, exit 0 as both are VALID."""
    with ble_radio(world["env"], controllers=3) as hci:
        phones = [subprocess.Popen(_mcred("phone", "ble", world["phone"], "--hci", hci[i], "--consent",
                                          str(world["consent"]), "--wait", "60", "--json"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=world["env"])
                  for i in (0, 1)]
        try:
            uris = [_first_line(p, "mcred phone ble")["engagement"] for p in phones]
            read = subprocess.run(_mcred("reader", "ble", "--hci", hci[2], "--engagement", "-",
                                         "--trust", str(world["iaca"]), "--json"),
                                  input=f"{uris[0]}\n\n{uris[1]}\n", capture_output=True, text=True,
                                  env=world["env"], timeout=180)
            assert read.returncode == 0, read.stdout + read.stderr
            lines = [json.loads(line) for line in read.stdout.splitlines()]
            assert [(r["read"], r["line"], r["valid"]) for r in lines] == [(1, 1, True), (2, 3, True)]
            for p in phones:
                assert p.wait(60) == 0
        finally:
            for p in phones:
                _stop(p)
    empty = subprocess.run(_mcred("reader", "ble", "--hci", "usb:0", "--engagement", "-", "--trust",
                                  str(world["iaca"]), "--json"), input="\n", capture_output=True, text=True,
                           env=world["env"], timeout=60)
    assert empty.returncode == 2 and "no engagement came" in json.loads(empty.stdout)["error"]


@pytest.mark.parametrize(("args", "message"), [
    ([], "give --phone"),
    (["--phone", "p", "--engagement", "mdoc:x"], "read it with --hci"),
    (["--phone", "p", "--consent", "c.json", "--trust", "i.pem", "--fault", "all", "--save", "x"], "--fault all"),
    (["--phone", "p", "--trust", "i.pem", "--hostile", "sideways"], "--hostile 'sideways'"),
    (["--hci", "usb:0", "--engagement", "mdoc:x", "--tap"], "simulated phone's"),
    (["--phone", "p", "--handover", "negotiated"], "with --tap"),
    (["--phone", "p", "--hci", "usb:0"], "give --phone"),
    (["--hci", "usb:0"], "--engagement"),
    (["--phone", "p", "--mode", "sideways"], "--mode 'sideways'"),
    (["--hci", "usb:0", "--engagement", "mdoc:x", "--consent", "c.json"], "simulated phone's"),
    (["--phone", "p", "--consent", "c.json"], "no IACA to trust"),
])
def test_mcred_reader_ble_names_unusable_options(args, message):
    # in process: each refusal is the command's own option check, and a Python process
    # started for each of the eleven cost about 1.5 s apiece
    from typer.testing import CliRunner

    from mcred.cli.main import app

    done = CliRunner().invoke(app, ["reader", "ble", *args, "--json"])
    assert done.exit_code == 2, done.output
    assert message in json.loads(done.stdout)["error"]


def test_a_bad_engagement_or_transport_is_a_failed_session_not_a_traceback(world):
    for engagement, hci, reason in (("mdoc:AAAA", "tcp-client:127.0.0.1:1", "DeviceEngagement"),
                                    (None, f"tcp-client:127.0.0.1:{free_port()}", "HCI transport")):
        if engagement is None:
            from wallet_sim.ble import ble_engagement

            engagement = ble_engagement().uri
        done = subprocess.run(_mcred("reader", "ble", "--hci", hci, "--engagement", engagement,
                                     "--trust", str(world["iaca"]), "--wait", "2", "--json"),
                              capture_output=True, text=True, env=world["env"], timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        (check,) = json.loads(done.stdout)["checks"]
        assert check["name"] == "session" and reason in check["reason"], check


def test_without_bumble_every_ble_command_says_how_to_install_it(monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    import mcred.cli.ble_cmds
    import mcred.cli.phone_cmds
    import mcred.cli.present_cmds

    monkeypatch.setitem(sys.modules, "bumble", None)  # as on an installation without the ble extra
    monkeypatch.setenv("MCRED_HOME", str(tmp_path))
    app = typer.Typer()
    for module in (mcred.cli.ble_cmds, mcred.cli.phone_cmds, mcred.cli.present_cmds):
        module.register(app)
    for args in (["ble", "radio"], ["phone", "ble", "ph-x", "--hci", "usb:0"],
                 ["reader", "ble", "--phone", "ph-x", "--json"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "pip install 'mcred[ble]'" in r.output, (args, r.output)


def test_a_phone_whose_controller_does_not_open_says_so_and_exits_1(world):
    done = subprocess.run(_mcred("phone", "ble", world["phone"], "--hci", f"tcp-client:127.0.0.1:{free_port()}",
                                 "--consent", str(world["consent"]), "--json"),
                          capture_output=True, text=True, env=world["env"], timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert not said["answered"] and "HCI transport" in said["problem"]


def test_the_reader_service_reads_a_phone_over_ble_for_a_counter_page(world, radio):
    """`mcred reader serve --ble-hci T`: a counter's page POSTs the QR code it scanned to
    /ble/reads and gets the verdict; no controller is 404, another read under way 409, a
    body that is not a QR code 422."""
    from fastapi.testclient import TestClient

    from mcred.present import ReaderServeConfig, reader_app

    service, _rp, what = ReaderServeConfig(trust=(str(world["iaca"]),), ble_hci=radio[1]).build()
    assert f"reads over Bluetooth LE on {radio[1]} (POST /ble/reads)" in what
    phone = subprocess.Popen(_mcred("phone", "ble", world["phone"], "--hci", radio[0], "--consent",
                                    str(world["consent"]), "--wait", "30", "--json"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=world["env"])
    try:
        uri = _first_line(phone, "mcred phone ble")["engagement"]
        with TestClient(reader_app(service)) as client:
            r = client.post("/ble/reads", json={"engagement": uri}, params={"wait": 20})
            assert r.status_code == 200, r.text
            assert r.json()["valid"] and r.json()["documents"]
            for body in ({"engagement": "https://not.a.qr.code"}, {"uri": uri}, {"engagement": uri, "x": 1}):
                assert client.post("/ble/reads", json=body).status_code == 422
            with service._ble_lock:
                assert client.post("/ble/reads", json={"engagement": uri}).status_code == 409
        assert phone.wait(30) == 0
    finally:
        _stop(phone)
    bare, _rp, _what = ReaderServeConfig(trust=(str(world["iaca"]),)).build()
    with TestClient(reader_app(bare)) as client:
        r = client.post("/ble/reads", json={"engagement": uri})
        assert r.status_code == 404 and "--ble-hci" in r.text
