"""Bounded HTTP reads (reader/fetch.py): a server that sends too much, on purpose or not,
cannot make the reader, the relying party or the wallet hold more than the limit.

A real HTTP server on 127.0.0.1 (http.server in a thread) plays the hostile end: an endless
chunked body, a lying or honest Content-Length over the limit, a small gzip body that
inflates past it. Each party's answer is a named failure that says "limit", and the server
stops being read soon after the limit (it counts what it managed to send).
"""

from __future__ import annotations

import datetime as dt
import gzip
import http.server
import ipaddress
import ssl
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reader.ds_crl import CrlFetchError, HttpCrlFetcher
from reader.fetch import FetchError, fetch, tls_context
from reader.pipeline import HttpxFetcher
from reader.relying_party import check_ocsp, check_revocation_crl

CHUNK = 64 * 1024
LIMIT = 256 * 1024


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """The clients here hang up on purpose (a body over the limit, a certificate refused
        in the TLS handshake); socketserver would print each to stderr from its thread,
        outside any test's capture."""


class _Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sent: dict[str, int] = {}

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = "/" + self.path.split("?")[0].split("/")[1]  # /endless/sessions: /endless
        sent = 0
        # counted per full path: a test that asks for its own path reads its own count (the
        # relying party's CRL limit lets an endless body run to 64 MiB on /endless)
        try:
            if path == "/endless":  # chunked, never ends on its own
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for _ in range(10_000):  # 640 MB if nobody stops reading
                    self.wfile.write(b"%x\r\n" % CHUNK + b"\0" * CHUNK + b"\r\n")
                    sent += CHUNK
                self.wfile.write(b"0\r\n\r\n")
            elif path == "/declared":  # says up front that it is too big
                self.send_response(200)
                self.send_header("Content-Length", str(100 * LIMIT))
                self.end_headers()
                for _ in range(100 * LIMIT // CHUNK):
                    self.wfile.write(b"\0" * CHUNK)
                    sent += CHUNK
            elif path == "/bomb":  # a small gzip body that inflates to 64 MiB
                body = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                sent = len(body)
            else:  # /small: within the limit
                self.send_response(200)
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"hello")
                sent = 5
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            _Hostile.sent[self.path.split("?")[0]] = sent

    do_GET = do_POST = _answer


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def test_within_the_limit_the_body_comes_back_whole(hostile, client):
    answer = fetch(client, "GET", hostile + "/small", max_bytes=5)
    assert (answer.status, answer.body, answer.headers["content-length"]) == (200, b"hello", "5")
    assert answer.text() == "hello" and answer.text(2) == "he"


def test_an_endless_body_is_cut_at_the_limit(hostile, client):
    path = f"/endless/cut-{uuid.uuid4().hex}"  # this request's own count, whatever ran before
    with pytest.raises(FetchError, match=f"body over the {LIMIT}-byte limit"):
        fetch(client, "GET", hostile + path, max_bytes=LIMIT)
    # the server got to send little more than the limit (socket buffers aside), not 640 MB
    for _ in range(50):
        if path in _Hostile.sent:
            break
        threading.Event().wait(0.1)
    assert path in _Hostile.sent
    assert _Hostile.sent[path] < 64 * 1024 * 1024


def test_a_declared_length_over_the_limit_is_refused_before_reading(hostile, client):
    with pytest.raises(FetchError, match=f"Content-Length {100 * LIMIT} is over the {LIMIT}-byte limit"):
        fetch(client, "GET", hostile + "/declared", max_bytes=LIMIT)


def test_a_compressed_body_is_counted_after_inflating(hostile, client):
    with pytest.raises(FetchError, match="limit"):
        fetch(client, "GET", hostile + "/bomb", max_bytes=LIMIT)


def test_network_errors_and_bad_urls_are_fetch_errors(client):
    with pytest.raises(FetchError, match="ConnectError"):
        fetch(client, "GET", "http://127.0.0.1:9/", max_bytes=LIMIT)
    for url in ("ftp://example.org/list", "http://[::1", "not a url"):
        with pytest.raises(FetchError):
            fetch(None, "GET", url, max_bytes=LIMIT)


def test_status_list_fetcher_and_crl_fetcher_keep_the_bound(hostile, client):
    with pytest.raises(FetchError, match="limit"):
        HttpxFetcher(client, max_bytes=LIMIT)(hostile + "/endless", None)
    with pytest.raises(CrlFetchError, match="limit"):
        HttpCrlFetcher(client, max_bytes=LIMIT)(hostile + "/declared")


def _pair(crl_url: str) -> tuple[x509.Certificate, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")])
    now = dt.datetime.now(dt.UTC)
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
            .issuer_name(name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
            .sign(key, hashes.SHA256()))
    return leaf, root


def test_relying_party_ocsp_and_crl_answers_are_bounded(hostile):
    """The JPKI relying party's OCSP answer (1 MiB) and CRL (64 MiB) are bounded: an endless
    body fails the ``revocation`` check with the limit named, nothing raises."""
    leaf, root = _pair(hostile + "/endless")
    now = dt.datetime.now(dt.UTC)
    ocsp = check_ocsp(leaf, root, now, url=hostile + "/endless")
    assert not ocsp.passed and ocsp.name == "revocation" and "1048576-byte limit" in ocsp.reason
    crl = check_revocation_crl(leaf, root, now)
    assert not crl.passed and "67108864-byte limit" in crl.reason


def test_the_wallet_does_not_swallow_an_endless_reader_reply(hostile, tmp_path):
    """The phone side of ``mcred present``: a "reader" that answers the engagement with an
    endless body is a PresentError naming the limit."""
    import wallet_sim
    from mcred.present import PresentError, present_over_http
    from wallet_sim.consent import RulesConsent
    from wallet_sim.wallet import Wallet

    phone = wallet_sim.create_phone(tmp_path)
    wallet = Wallet(wallet_sim.open_secure_element(phone, tmp_path).transmit, RulesConsent.allow_all())
    with pytest.raises(PresentError, match="1048576-byte limit"):
        present_over_http(wallet, hostile + "/endless")



@settings(max_examples=60, deadline=None)
@given(url=st.one_of(
    st.text(max_size=40),  # anything a credential could carry as a "URI"
    st.builds(lambda p, q: f"http://127.0.0.1:9/{p}?{q}", st.text(max_size=20), st.text(max_size=20)),
    st.builds(lambda s, h: f"{s}://{h}", st.sampled_from(["ftp", "file", "ws", "mdoc", "h ttp"]),
              st.text(max_size=15)),
))
@example(url="ws://.")  # an empty host label: IDNA's UnicodeError escaped the fetch (a hypothesis find)
@example(url="http://127.0.0.1:9@./")
def test_any_url_a_credential_carries_is_a_fetch_error_or_an_answer(url):
    """Whatever stands where a status list URI or a distribution point should, fetching it
    answers or raises FetchError, nothing else (port 9 on loopback refuses at once; no host
    name is looked up)."""
    if "://" in url and url.split("://", 1)[0].lower() in ("http", "https") and not url.startswith("http://127.0.0.1"):
        return  # a real host name would be looked up in DNS: not in a unit test
    try:
        fetch(None, "GET", url, max_bytes=LIMIT, timeout=0.5)
    except FetchError:
        pass


def test_clients_made_here_share_one_tls_context_and_still_verify(tmp_path):
    """The fetchers' own clients share one TLS context (the CA bundle loaded once per
    process); it still verifies: a server whose certificate no CA in the bundle signed is a
    FetchError, from fetch's own client as from the status list and CRL fetchers'."""
    ctx = tls_context()
    assert ctx is tls_context() and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server = _QuietServer(("127.0.0.1", 0), _Hostile)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/small"
    try:
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(None, "GET", url, max_bytes=LIMIT)
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            HttpxFetcher(timeout=5)(url, None)
        with pytest.raises(CrlFetchError, match="CERTIFICATE_VERIFY_FAILED"):
            HttpCrlFetcher(timeout=5)(url)
        # the same server answers a client that trusts its certificate
        trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with httpx.Client(verify=trusting, timeout=5) as c:
            assert fetch(c, "GET", url, max_bytes=LIMIT).body == b"hello"
    finally:
        server.shutdown()
        server.server_close()
