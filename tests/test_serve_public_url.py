"""``mcred serve`` says so when the URLs it writes into credentials cannot reach it: started
with ``--port 8570`` while ``MCRED_PUBLIC_URL`` is the default ``http://127.0.0.1:8470``,
every status list, CRL and OCSP URL in what it issues points where nothing listens, and a
reader then fails four checks with "connection refused" and no word of why."""

from __future__ import annotations

import pytest
import uvicorn
from test_present_http import free_port
from typer.testing import CliRunner

from mcred.cli.main import app
from mcred.cli.state import public_url_mismatch


@pytest.mark.parametrize(("public", "port", "tls"), [
    ("http://127.0.0.1:8470", 8470, False),
    ("http://localhost:8470", 8470, False),
    ("https://127.0.0.1:8443", 8443, True),
    ("http://127.0.0.1", 80, False),
    ("https://issuer.example", 8470, False),  # a proxy's business
    ("https://issuer.example:8443/mcred", 9000, True),
])
def test_a_public_url_that_reaches_the_server_or_names_another_host_is_not_warned_of(public, port, tls):
    assert public_url_mismatch(public, "127.0.0.1", port, tls) is None


@pytest.mark.parametrize(("public", "port", "tls", "said"), [
    ("http://127.0.0.1:8470", 8570, False, "MCRED_PUBLIC_URL=http://127.0.0.1:8570"),
    ("http://localhost:8470", 8570, False, "listens on http://127.0.0.1:8570"),
    ("http://127.0.0.1:8470", 8470, True, "MCRED_PUBLIC_URL=https://127.0.0.1:8470"),
    ("https://127.0.0.1:8470", 8470, False, "serve on 8470 with TLS"),
    ("http://[::1]:8470", 8471, False, "listens on http://127.0.0.1:8471"),
])
def test_a_loopback_public_url_with_another_port_or_scheme_is_warned_of(public, port, tls, said):
    warning = public_url_mismatch(public, "127.0.0.1", port, tls)
    assert warning is not None and warning.startswith("warning: ") and said in warning
    assert public in warning


def test_mcred_serve_on_another_port_than_its_public_url_says_so_on_stderr(tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MCRED_PUBLIC_URL", "http://127.0.0.1:8470")
    ran = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: ran.append(k["port"]))  # the edge: no server
    port = free_port()
    result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 0, result.output
    assert ran == [port]
    assert "warning: the credentials this service issues point at http://127.0.0.1:8470" in result.stderr
    assert "warning" not in result.stdout
    monkeypatch.setenv("MCRED_PUBLIC_URL", f"http://127.0.0.1:{port}")
    result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 0 and "warning" not in result.stderr
