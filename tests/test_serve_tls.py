"""HTTPS for the services: ``mcred reader serve --ssl-certfile C --ssl-keyfile K`` (and
``mcred serve``, the same options) serves TLS with the given chain; a client that trusts
that certificate runs a session over it. Bad pairs are refused before anything starts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_present_http import answer_when_up, free_port
from test_reader_serve_workers import iaca_pem  # noqa: F401 - fixture
from test_reader_sessions_shared import _wallet_reply
from typer.testing import CliRunner

from mcred.cli.main import app
from mcred.service import tls_options
from protocols.mdoc import SessionData
from wallet_sim.engagement import Engagement


def _self_signed(tmp_path: Path, name: str = "tls") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_a_session_over_https(tmp_path, iaca_pem):  # noqa: F811
    cert, key = _self_signed(tmp_path)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mcred", "reader", "serve", "--trust", str(iaca_pem),
                             "--offline", "--port", str(port), "--ssl-certfile", str(cert),
                             "--ssl-keyfile", str(key)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        with httpx.Client(base_url=url, verify=trusting, timeout=10) as client:
            answer_when_up(proc, lambda: client.get("/healthz"), "the reader")
            engagement = Engagement.new()
            r = client.post("/sessions", content=engagement.uri.encode())
            assert r.status_code == 201
            sid = r.headers["x-session-id"]
            r = client.post(f"/sessions/{sid}", content=_wallet_reply(engagement, r.content, b"\xa0"))
            assert r.status_code == 200 and SessionData.decode(r.content).status == 20
            assert client.get(f"/sessions/{sid}/result").json()["checks"][0]["passed"]
        with pytest.raises(httpx.ConnectError):  # a client that does not trust it: refused
            httpx.get(f"{url}/healthz", verify=ssl.create_default_context(), timeout=10)
        with pytest.raises(httpx.HTTPError):  # and no plain HTTP on that port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).raise_for_status()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"reader on https://127.0.0.1:{port}" in out.decode()


def test_the_issuer_service_says_where_it_listens_with_one_worker_too(home, tmp_path):
    """`mcred serve` printed nothing at start with one worker (its default), while --workers N
    and `mcred reader serve` say where they listen: now it does too, https with TLS."""
    cert, key = _self_signed(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mcred", "serve", "--port", str(port), "--ssl-certfile",
                             str(cert), "--ssl-keyfile", str(key)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=str(cert)),
                          timeout=10) as client:
            answer_when_up(proc, lambda: client.get("/healthz"), "mcred serve")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert out.decode().startswith(f"issuer service on https://127.0.0.1:{port}, database sqlite"), out


def test_bad_certificate_and_key_pairs_are_refused_before_serving(tmp_path, iaca_pem):  # noqa: F811
    cert, key = _self_signed(tmp_path, "a")
    _, other_key = _self_signed(tmp_path, "b")
    assert tls_options(None, None) == {}
    assert tls_options(cert, key) == {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    with pytest.raises(ValueError, match="go together"):
        tls_options(cert, None)
    with pytest.raises(ValueError, match="--ssl-certfile"):
        tls_options(cert, other_key)  # not this certificate's key
    with pytest.raises(ValueError, match="--ssl-certfile"):
        tls_options(tmp_path / "missing.pem", key)
    runner = CliRunner()
    r = runner.invoke(app, ["reader", "serve", "--trust", str(iaca_pem), "--ssl-certfile", str(cert),
                            "--ssl-keyfile", str(other_key)])
    assert r.exit_code == 2 and "--ssl-certfile" in r.output
    r = runner.invoke(app, ["serve", "--ssl-keyfile", str(key)])
    assert r.exit_code == 2 and "go together" in r.output


def test_a_port_that_cannot_be_listened_on_is_named_before_serving(home, iaca_pem):  # noqa: F811
    """uvicorn's own report of a taken port is a log line and exit 3; both services now name
    the port (exit 2) before anything starts, and a port out of range or an unknown host too."""
    import socket

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    runner = CliRunner()
    try:
        for argv in (["serve", "--port", str(port)],
                     ["reader", "serve", "--trust", str(iaca_pem), "--offline", "--port", str(port)]):
            r = runner.invoke(app, argv)
            assert r.exit_code == 2, (argv, r.output)
            assert f"127.0.0.1:{port}" in r.output and "--port" in r.output, r.output
    finally:
        held.close()
    r = runner.invoke(app, ["serve", "--port", "70000"])
    assert r.exit_code == 2 and "not a TCP port" in r.output, r.output
    r = runner.invoke(app, ["serve", "--host", "no-such-host.invalid"])
    assert r.exit_code == 2 and "--host" in r.output, r.output


@pytest.mark.parametrize(("argv", "named"), [
    (["--skew", "-5"], "--skew"),  # stricter than the clock: every credential "not yet valid"
    (["--skew", "99999999999"], "--skew"),  # an OverflowError at the first verification
    (["--max-offline-age", "-1"], "--max-offline-age"),
    (["--ds-crl-max-age", "99999999999"], "--ds-crl-max-age"),
    (["--doctype", ""], "--doctype"),
    (["--doctype", "org.iso.18013.5.1.mDL"], "--request"),  # was ignored: the default request was asked
])
def test_reader_settings_that_cannot_work_are_named_before_serving(iaca_pem, argv, named):  # noqa: F811
    from mcred.present import ReaderServeConfig, ReaderServeError

    r = CliRunner().invoke(app, ["reader", "serve", "--trust", str(iaca_pem), "--offline", *argv])
    assert r.exit_code == 2 and named in r.output, r.output
    option = argv[0].lstrip("-").replace("-", "_")
    value = argv[1] if option == "doctype" else int(argv[1])
    with pytest.raises(ReaderServeError, match=named):
        ReaderServeConfig(trust=(str(iaca_pem),), offline=True, **{option: value}).build()
