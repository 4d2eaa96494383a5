"""Over the air: the TSM reaches a phone's SE through GP SERAM (HTTP REST binding 2.0.0).

The messages and both sans-I/O sides (protocols/gp/seram.py), the Remote Agent's hub and
routes (tsm/seram.py, tsm/seram_http.py) on a real uvicorn server, the phone's Local Agent
(wallet_sim/seram_agent.py) over real httpx: a provisioning whose phone lives in another
data directory, lost requests and lost answers that deliver no APDU twice, a phone that
goes away and a job resumed in a new session, an SE that fails, every refusal by its HTTP
status, and the two commands as two processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import sqlalchemy as sa
from conftest import person
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from test_provision_e2e import HOLDER, SeSigner, _transcript, jpki_details

import wallet_sim
from issuer.db import Credential
from mcred.context import Context
from mcred.ota import PhoneAgentThread, agent_command, over_the_air, seram_endpoint
from mcred.provision import parse_holder, provision, resume
from protocols import mdoc
from protocols.gp import seram
from protocols.gp.seram import (
    Accepted,
    HandshakeCommand,
    LocalAgent,
    NotificationCommand,
    Notify,
    Order,
    RemoteAgentSession,
    Report,
    Resend,
    SecureElementRef,
    SeRamCommand,
    SeramError,
    SeramNegotiationError,
    SeRamResponse,
    SeramStateError,
    StartCommand,
    Started,
    StopCommand,
    Stopped,
    Transmit,
)
from tsm.errors import SeAuthenticityError, TransportError
from tsm.seram import SeramHub, SeramLinkError
from wallet_sim.se.maker import root_path
from wallet_sim.seram_agent import LocalAgentError, run_local_agent, secure_element_of

SE = SecureElementRef("eSE", "89001012012341234012345678901224", "SAM")


# --- the messages ----------------------------------------------------------------------------

# The texts of GlobalPlatform's examples (spec/examples in github.com/GlobalPlatform/SERAM).
HANDSHAKE_EXAMPLE = """{"secureElements": [{"seType": "eSE", "seId": "89001012012341234012345678901224",
 "seExtraInfo": "SAM"}], "supportedTransportProtocols": ["HTTPS"], "supportedDataFormats":
 ["application/json"], "supportedVersion": ["2.0.0"]}"""
REPORT_EXAMPLE = """{"localAgentStatus": {"localAgentStatusEnum": "PROCESSED", "executedSeRamCommands": 2},
 "ramResponses": [{"ramResponseType": "seRamResponse", "listOfRAPDU": ["9000", "9000"]},
 {"ramResponseType": "seRamResponse", "listOfRAPDU": ["9000"]}]}"""
ALL_COMMANDS_EXAMPLE = """{"delay": 0, "chosenSecureElement": {"seType": "eSE",
 "seId": "89001012012341234012345678901224", "seExtraInfo": "SAM"}, "ramCommands": [
 {"ramCommandType": "startCommand"}, {"ramCommandType": "seRamCommand", "listOfCAPDU":
 ["00A40400OA0001020304050607080900A"]}, {"ramCommandType": "notificationCommand",
 "deviceAppNotification": "step1/action2/OK"}, {"ramCommandType": "stopCommand"}]}"""


def test_the_standards_examples_read_as_they_mean():
    hs = seram.parse_handshake_command(HANDSHAKE_EXAMPLE)
    assert hs.secure_elements == (SE,) and hs.versions == ("2.0.0",)
    report = seram.parse_report(REPORT_EXAMPLE)
    assert report.status == "PROCESSED" and report.executed == 2
    assert [r.rapdus for r in report.responses] == [(b"\x90\x00", b"\x90\x00"), (b"\x90\x00",)]
    # the example's C-APDU has a letter O for a zero and an odd length: refused by name
    with pytest.raises(SeramError, match=r"ramCommands\[1\]\.listOfCAPDU\[0\]: an odd number of hex digits"):
        seram.parse_order(ALL_COMMANDS_EXAMPLE)
    fixed = ALL_COMMANDS_EXAMPLE.replace("00A40400OA0001020304050607080900A", "00A404000A0001020304050607080900")
    order = seram.parse_order(fixed)
    assert order.delay_ms == 0 and order.chosen_se == SE
    assert order.commands == (StartCommand(), SeRamCommand((bytes.fromhex("00A404000A0001020304050607080900"),)),
                              NotificationCommand("step1/action2/OK"), StopCommand())
    # the schema's other names for the same things
    assert seram.parse_order('{"ramCommands": [{"ramCommandType": "ramStartCommand"}, '
                             '{"ramCommandType": "ramStopCommand"}]}').commands == (StartCommand(), StopCommand())
    assert seram.parse_report('{"localAgentStatus": {"localAgentStatusEnum": "POLLING", '
                              '"executedRamCommands": 0}}') == Report()


def test_what_we_write_carries_both_names_where_the_texts_differ():
    status = Report("PROCESSED", 1, (SeRamResponse((b"\x90\x00",)),)).to_json()["localAgentStatus"]
    assert status["executedSeRamCommands"] == status["executedRamCommands"] == 1
    answer = seram.HandshakeResponse().to_json()
    assert answer["chosenDataFormat"] == answer["chosenDataProtocol"] == "application/json"
    assert SeRamCommand((b"\x00\xa4\x04\x00",)).to_json()["listOfCAPDU"] == ["00A40400"]
    hs = HandshakeCommand((SE,)).to_json()
    assert hs["supportedVersions"] == ["2.0.0"] and hs["secureElements"][0]["seType"] == "eSE"


@pytest.mark.parametrize("text, where", [
    ("[]", "a JSON object is expected"),
    ("{", "not JSON"),
    ('{"localAgentStatus": {}}', "localAgentStatusEnum: missing"),
    ('{"localAgentStatus": {"localAgentStatusEnum": "DONE"}}', "'DONE' is not one of"),
    ('{"localAgentStatus": {"localAgentStatusEnum": "POLLING", "executedSeRamCommands": 1}}', "POLLING report"),
    ('{"localAgentStatus": {"localAgentStatusEnum": "PROCESSED", "executedSeRamCommands": true}}',
     "an integer is expected"),
    ('{"localAgentStatus": {"localAgentStatusEnum": "PROCESSED", "executedSeRamCommands": 1, '
     '"executedRamCommands": 2}}', "disagree"),
    ('{"localAgentStatus": {"localAgentStatusEnum": "PROCESSED", "executedSeRamCommands": 1}, '
     '"ramResponses": [{"ramResponseType": "x", "listOfRAPDU": []}]}', "is not seRamResponse"),
    ('{"localAgentStatus": {"localAgentStatusEnum": "PROCESSED", "executedSeRamCommands": 1}, '
     '"ramResponses": [{"ramResponseType": "seRamResponse", "listOfRAPDU": ["90 0"]}]}', "not hexadecimal"),
    ('{"localAgentStatus": {"localAgentStatusEnum": "POLLING"}, "localAgentStatus": {}}', "appears twice"),
])
def test_a_malformed_report_is_refused_by_name(text, where):
    with pytest.raises(SeramError, match=where):
        seram.parse_report(text)


@pytest.mark.parametrize("text, where", [
    ('{"secureElements": []}', "secureElements: empty"),
    ('{"secureElements": [{"seType": "SIM", "seId": "1"}]}', "'SIM' is not one of"),
    ('{"secureElements": [{"seType": "eSE"}]}', r"secureElements\[0\]\.seId: missing"),
    ('{}', "secureElements: missing"),
    ('{"secureElements": [{"seType": "eSE", "seId": "1"}], "supportedVersions": []}', "supportedVersions: empty"),
])
def test_a_malformed_handshake_is_refused_by_name(text, where):
    with pytest.raises(SeramError, match=where):
        seram.parse_handshake_command(text)


@pytest.mark.parametrize("text, where", [
    ('{"delay": -1}', r"delay: -1 is not in"),
    ('{"ramCommands": [{"ramCommandType": "seRamCommand", "listOfCAPDU": []}]}', "listOfCAPDU: empty"),
    ('{"ramCommands": [{"ramCommandType": "seRamCommand", "listOfCAPDU": ["00A4"]}]}', "at least 4 bytes"),
    ('{"ramCommands": [{"ramCommandType": "format"}]}', "'format' is not startCommand"),
    ('{"ramCommands": [{"ramCommandType": "notificationCommand"}]}', "deviceAppNotification: missing"),
    ('{"ramCommands": {}}', "an array is expected"),
])
def test_a_malformed_order_is_refused_by_name(text, where):
    with pytest.raises(SeramError, match=where):
        seram.parse_order(text)


apdus = st.binary(min_size=4, max_size=300)
commands = st.one_of(st.builds(SeRamCommand, st.lists(apdus, min_size=1, max_size=5).map(tuple)),
                     st.builds(NotificationCommand, st.text(max_size=40)),
                     st.just(StartCommand()), st.just(StopCommand()))


@settings(max_examples=60, deadline=None)
@given(st.lists(commands, max_size=6).map(tuple), st.none() | st.integers(0, 5000), st.none() | st.just(SE))
def test_every_order_reads_back_as_written(cmds, delay, chosen):
    order = Order(cmds, delay, chosen)
    assert seram.parse_order(seram.encode(order)) == order


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.binary(min_size=2, max_size=64), max_size=4).map(tuple), min_size=1, max_size=4),
       st.sampled_from(seram.ERROR_STATUSES), st.text(max_size=30))
def test_every_report_reads_back_as_written(rapdus, status, error):
    for report in (Report("PROCESSED", len(rapdus), tuple(SeRamResponse(r) for r in rapdus)),
                   Report(status, len(rapdus) - 1, tuple(SeRamResponse(r) for r in rapdus[:-1]), error)):
        assert seram.parse_report(seram.encode(report)) == report


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["localAgentStatus", "localAgentStatusEnum", "executedSeRamCommands", "ramResponses",
                         "ramResponseType", "listOfRAPDU", "ramCommands", "ramCommandType", "listOfCAPDU",
                         "secureElements", "seType", "seId", "delay", "chosenSecureElement", "x"]),
        inner, max_size=5), max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)))
def test_any_bytes_are_a_message_or_a_seram_error(raw):
    for parse in (seram.parse_report, seram.parse_order, seram.parse_handshake_command,
                  seram.parse_handshake_response):
        try:
            parse(raw)
        except SeramError:
            pass


# --- the two sides, without I/O ---------------------------------------------------------------


def _agreed() -> tuple[LocalAgent, RemoteAgentSession]:
    la, ra = LocalAgent((SE,)), RemoteAgentSession("s-1")
    la.accept_handshake(ra.receive_handshake(la.handshake()))
    return la, ra


def test_a_session_from_handshake_to_stop():
    la, ra = _agreed()
    assert isinstance(ra.receive_report(la.poll(), None), Accepted)
    order = ra.next_order((SeRamCommand((b"\x00\xa4\x04\x00",)),))
    assert order.commands[0] == StartCommand() and order.chosen_se == SE
    assert la.receive_order(order) == (Started(), Transmit((b"\x00\xa4\x04\x00",)))
    outcome = ra.receive_report(la.report([(b"\x90\x00",)]), 1)
    assert outcome == Accepted(((b"\x90\x00",),))
    last = ra.next_order((NotificationCommand("done"), StopCommand()))
    assert la.receive_order(last) == (Notify("done"), Stopped())
    with pytest.raises(SeramStateError, match="no report after the Stop"):
        la.report()
    # the Stop order lost: the report before it comes again and gets it again
    assert ra.receive_report(Report("PROCESSED", 1, (SeRamResponse((b"\x90\x00",)),)), 1) == Resend(last)
    with pytest.raises(SeramStateError, match="after the Stop"):
        ra.receive_report(Report(), 2)


def test_a_lost_order_is_sent_again_and_a_repeated_report_delivers_nothing():
    la, ra = _agreed()
    ra.receive_report(la.poll(), None)
    first = ra.next_order((SeRamCommand((b"\x80\xca\x9f\x7f",)),))
    # the phone never got order 1 and polls again with what it last got (nothing: 0)
    assert ra.receive_report(Report(), 0) == Resend(first)
    la.receive_order(first)
    report = la.report([(b"\x01\x90\x00",)])
    assert ra.receive_report(report, 1) == Accepted(((b"\x01\x90\x00",),))
    # the answer to it lost before order 2 was made: the same report again is no new answer
    assert ra.receive_report(report, 1) == Resend(None)
    second = ra.next_order((SeRamCommand((b"\x80\xca\x00\x66",)),))
    assert ra.receive_report(report, 1) == Resend(second)
    with pytest.raises(SeramStateError, match="a report for order 5"):
        ra.receive_report(report, 5)
    with pytest.raises(SeramStateError, match="still awaits its report"):
        ra.next_order()


def test_the_local_agent_keeps_the_session_in_order():
    la = LocalAgent((SE,))
    with pytest.raises(SeramStateError):
        la.poll()
    la.handshake()
    la.accept_handshake(seram.HandshakeResponse())
    with pytest.raises(SeramStateError, match="before the Start"):
        la.receive_order(Order((SeRamCommand((b"\x00\x00\x00\x00",)),)))
    la.receive_order(Order((StartCommand(),)))
    with pytest.raises(SeramStateError, match="a second Start"):
        la.receive_order(Order((StartCommand(),)))
    with pytest.raises(SeramError, match="is not an SE this Local Agent offered"):
        la.receive_order(Order((), chosen_se=SecureElementRef("uicc", "1")))
    with pytest.raises(SeramStateError, match="after the Stop"):
        la.receive_order(Order((StopCommand(), NotificationCommand("late"))))
    other = LocalAgent((SE,), versions=("2.0.0",))
    other.handshake()
    with pytest.raises(SeramNegotiationError, match="version '3.0.0'"):
        other.accept_handshake(seram.HandshakeResponse(version="3.0.0"))


def test_the_remote_agent_refuses_what_it_cannot_serve_and_counts_what_comes_back():
    ra = RemoteAgentSession("s-2")
    with pytest.raises(SeramStateError, match="before the handshake"):
        ra.receive_report(Report(), None)
    with pytest.raises(SeramNegotiationError, match="speaks 1.0.0"):
        ra.receive_handshake(HandshakeCommand((SE,), versions=("1.0.0",)))
    with pytest.raises(SeramNegotiationError, match="of a type this platform manages"):
        ra.receive_handshake(HandshakeCommand((SecureElementRef("uicc", "1"),)))
    la, ra = _agreed()
    ra.receive_report(la.poll(), None)
    ra.next_order((SeRamCommand((b"\x00\x00\x00\x00", b"\x00\x00\x00\x01")),))
    with pytest.raises(SeramError, match="3 R-APDUs for 2 C-APDUs"):
        ra.receive_report(Report("PROCESSED", 1, (SeRamResponse((b"\x90\x00",) * 3),)), 1)
    with pytest.raises(SeramError, match="executedSeRamCommands is 2"):
        ra.receive_report(Report("PROCESSED", 2, (SeRamResponse((b"\x90\x00",)),)), 1)
    short = ra.receive_report(Report("PROCESSED", 1, (SeRamResponse((b"\x90\x00",)),)), 1)
    assert short.failure[0] == "UNKNOWN_FAILURE" and "without every response" in short.failure[1]


# --- over HTTP: the hub, the routes and the phone's agent --------------------------------------


def _free_listen() -> str:
    from benchmarks.scratch import free_port

    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def ctx(home, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    return Context.open(home)


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """A phone in a data directory of its own: not the operator's, whose TSM is told to trust
    that directory's SE maker (as an operator is, for a maker of its own)."""
    phone_home = tmp_path / "phone-home"
    phone_home.mkdir()
    pid = wallet_sim.create_phone(phone_home)
    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", str(root_path(phone_home)))
    return pid, phone_home


class PhoneThread(PhoneAgentThread):
    """The phone's Local Agent in a thread (its own process in the CLI test), counting the
    C-APDUs that reach its SE."""

    def __init__(self, endpoint: str, pid: str, phone_home, *, client: httpx.Client | None = None,
                 transmit=None) -> None:
        self.sent: list[bytes] = []
        inner = transmit or wallet_sim.open_secure_element(pid, phone_home).transmit

        def counted(capdu: bytes) -> bytes:
            self.sent.append(capdu)
            return inner(capdu)

        super().__init__(endpoint, pid, phone_home, transmit=counted, client=client, retry_for_s=10)


def _provision_over_the_air(ctx, endpoint, pid, phone_home, holder=HOLDER, **phone_kw):
    """Provision ``pid`` over the air for ``holder`` (HOLDER: one person, one phone; another
    phone of the installation's is for ``person(HOLDER)``)."""
    agent = PhoneThread(endpoint.url, pid, phone_home, **phone_kw)
    result = over_the_air(endpoint.hub, pid, lambda transmit: provision(
        ctx, pid, parse_holder(dict(holder, pin="1234", password="ABC123")), key_type="p384",
        mdoc_batch=1, transmit=transmit), on_session=agent.start)
    agent.join()
    return result, agent


def _assert_provisioned(ctx, result, pid, phone_home):
    with ctx.sessions() as s:
        kinds = sorted((c.kind, c.status) for c in s.scalars(select(Credential).where(Credential.phone_id == pid)))
    assert kinds == [("jpki-auth", "valid"), ("jpki-sign", "valid"), ("mdoc", "valid")]
    jpki = jpki_details(type("C", (), {"home": phone_home})(), pid)
    assert set(jpki["slots"]) == {"signing", "user_authentication"}
    from mcred.provision import mdoc_service

    se = wallet_sim.open_secure_element(pid, phone_home)
    st_ = _transcript()
    doc = mdoc.build_document(mdoc.IssuerSigned.from_cbor(result.mdocs[0]), st_, signer=SeSigner(se.transmit, 0))
    verdict = mdoc.verify_device_response(mdoc.DeviceResponse((doc,)).encode(),
                                          trust_anchors=[mdoc_service(ctx).iaca_certificate()],
                                          session_transcript=st_, now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
    assert verdict.valid, verdict.to_json()


def test_a_phone_in_another_data_directory_is_provisioned_over_the_air(ctx, phone):
    pid, phone_home = phone
    assert pid not in wallet_sim.list_phones(ctx.home)
    with seram_endpoint(_free_listen()) as endpoint:
        result, agent = _provision_over_the_air(ctx, endpoint, pid, phone_home)
    assert agent.result.stopped
    assert agent.result.notifications == ["provision/done/OK"]
    assert agent.result.apdus == len(agent.sent) > 40
    assert agent.result.se.se_id.startswith("4D435345")  # the CPLC's "MC" "SE"
    _assert_provisioned(ctx, result, pid, phone_home)


def test_a_phone_whose_factory_names_this_tsm_meets_it_under_scp11a_over_the_air(ctx, tmp_path, monkeypatch):
    """The operator hands its KLOC CA (`mcred tsm oce-ca`) to a phone factory elsewhere
    (`mcred phone new --kloc`): the phone's SE then takes keys from this TSM only, under
    SCP11a, carried by the agent like any session; a phone named for another operator's TSM
    refuses this one's certificate and is sent nothing secret."""
    from typer.testing import CliRunner

    from mcred.cli.main import app
    from tsm.errors import SecureChannelError

    run = CliRunner()
    ca = run.invoke(app, ["tsm", "oce-ca"], env={"MCRED_HOME": str(ctx.home)})
    assert ca.exit_code == 0 and ca.stdout.startswith("-----BEGIN CERTIFICATE-----"), ca.output
    (tmp_path / "operator-ca.pem").write_text(ca.stdout)
    phone_home = tmp_path / "factory"
    made = run.invoke(app, ["phone", "new", "--kloc", str(tmp_path / "operator-ca.pem"), "--json"],
                      env={"MCRED_HOME": str(phone_home)})
    assert made.exit_code == 0, made.output
    pid = json.loads(made.stdout)["id"]
    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", str(root_path(phone_home)))
    with seram_endpoint(_free_listen()) as endpoint:
        result, agent = _provision_over_the_air(ctx, endpoint, pid, phone_home)
    assert agent.result.notifications == ["provision/done/OK"]
    assert any(c[1] == 0x2A for c in agent.sent) and any(c[1:4] == b"\x82\x01\x11" for c in agent.sent)
    _assert_provisioned(ctx, result, pid, phone_home)
    # the factory's own TSM (another operator's CA) is what the next phone names
    pid = json.loads(run.invoke(app, ["phone", "new", "--json"], env={"MCRED_HOME": str(phone_home)}).stdout)["id"]
    before = wallet_sim.open_secure_element(pid, phone_home).path.read_bytes()
    with seram_endpoint(_free_listen()) as endpoint:
        with pytest.raises(SecureChannelError, match="refused the TSM's certificate"):
            _provision_over_the_air(ctx, endpoint, pid, phone_home, holder=person(HOLDER))
    assert wallet_sim.open_secure_element(pid, phone_home).path.read_bytes() == before


def test_a_phone_whose_maker_the_tsm_does_not_trust_is_sent_nothing(ctx, phone, monkeypatch):
    pid, phone_home = phone
    monkeypatch.delenv("MCRED_SE_MAKER_ROOTS")
    before = wallet_sim.open_secure_element(pid, phone_home).path.read_bytes()
    wallet_sim.create_phone(ctx.home)  # the operator's own maker is trusted, the phone's is not
    with seram_endpoint(_free_listen()) as endpoint:
        with pytest.raises(SeAuthenticityError, match="does not verify against the trusted SE maker roots"):
            _provision_over_the_air(ctx, endpoint, pid, phone_home)
    # the agent carried SELECT, GET DATA BF21, and was told why it stopped
    assert wallet_sim.open_secure_element(pid, phone_home).path.read_bytes() == before


def _failing_at(se, n: int, why: str):  # noqa: ANN001, ANN202
    """The SE's transmit, whose ``n``-th C-APDU fails as the SE access API would (OSError)."""
    count = []

    def failing(capdu: bytes) -> bytes:
        count.append(1)
        if len(count) == n:
            raise OSError(why)
        return se.transmit(capdu)

    return failing


class Lossy(httpx.HTTPTransport):
    """Loses some requests on the way (never sent) and the answers of others (sent, done,
    the answer gone), by their number among the remoteManagement requests."""

    def __init__(self, drop_request: set[int], drop_answer: set[int]) -> None:
        super().__init__()
        self.n, self.drop_request, self.drop_answer = 0, drop_request, drop_answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/remoteManagement"):
            self.n += 1
            if self.n in self.drop_request:
                raise httpx.ConnectError("lost on the way", request=request)
            if self.n in self.drop_answer:
                super().handle_request(request).read()
                raise httpx.ReadError("answer lost", request=request)
        return super().handle_request(request)


def test_lost_requests_and_lost_answers_deliver_no_apdu_twice(ctx, phone):
    pid, phone_home = phone
    lossy = Lossy(drop_request={3, 10, 11}, drop_answer={2, 5, 20, 21, 40})
    with seram_endpoint(_free_listen()) as endpoint, httpx.Client(transport=lossy, timeout=40) as client:
        result, agent = _provision_over_the_air(ctx, endpoint, pid, phone_home, client=client)
    assert agent.result.notifications == ["provision/done/OK"]
    # every C-APDU went to the SE once (a second delivery would also break SCP03's MAC
    # chain): what the TSM had answered equals what the SE was sent
    assert lossy.n > agent.result.orders  # the losses happened
    assert agent.link.apdus == agent.result.apdus == len(agent.sent)
    _assert_provisioned(ctx, result, pid, phone_home)


def test_a_local_agent_without_cookies_still_works(ctx, phone):
    pid, phone_home = phone

    class NoCookies(httpx.Cookies):
        def set_cookie_header(self, request):  # noqa: ANN001
            return None

    with seram_endpoint(_free_listen()) as endpoint, httpx.Client(timeout=40) as client:
        client._cookies = NoCookies()
        result, agent = _provision_over_the_air(ctx, endpoint, pid, phone_home, client=client)
    _assert_provisioned(ctx, result, pid, phone_home)


def test_a_phone_that_goes_away_stops_the_job_and_a_new_session_finishes_it(ctx, phone):
    pid, phone_home = phone
    hub = SeramHub(answer_timeout_s=1.0, connect_timeout_s=5.0, poll_wait_s=0.5)
    se = wallet_sim.open_secure_element(pid, phone_home)
    calls = []

    def vanishing(capdu: bytes) -> bytes:
        calls.append(capdu)
        if len(calls) == 30:
            # the phone is gone (the TSM gives up after 1 s), and comes back late: once the
            # TSM has given up and closed the session (rather than a fixed pause past it)
            deadline = time.monotonic() + 30
            while not all(link._closing for link in hub._links.values()):
                assert time.monotonic() < deadline, "the TSM never gave up on the phone"
                time.sleep(0.02)
        return se.transmit(capdu)

    with seram_endpoint(_free_listen(), hub=hub) as endpoint:
        with pytest.raises(TransportError):
            _provision_over_the_air(ctx, endpoint, pid, phone_home, transmit=vanishing)
        from mcred.provision import unfinished_job

        job = unfinished_job(ctx, pid)
        assert job is not None and job.state == "interrupted"
        agent = PhoneThread(endpoint.url, pid, phone_home)
        result = over_the_air(hub, pid, lambda transmit: resume(ctx, job.id, transmit=transmit),
                              on_session=agent.start)
        agent.join()
    assert agent.result.notifications == ["provision/done/OK"]
    _assert_provisioned(ctx, result, pid, phone_home)


def test_an_se_that_fails_is_reported_and_the_job_stops_resumable(ctx, phone):
    pid, phone_home = phone
    failing = _failing_at(wallet_sim.open_secure_element(pid, phone_home), 12, "OMAPI: channel not available")

    with seram_endpoint(_free_listen()) as endpoint:
        with pytest.raises(TransportError, match="UNKNOWN_FAILURE: the SE did not take a C-APDU .*OMAPI"):
            _provision_over_the_air(ctx, endpoint, pid, phone_home, transmit=failing)
        job_id = __import__("mcred.provision", fromlist=["x"]).unfinished_job(ctx, pid).id
        agent = PhoneThread(endpoint.url, pid, phone_home)
        result = over_the_air(endpoint.hub, pid, lambda transmit: resume(ctx, job_id, transmit=transmit),
                              on_session=agent.start)
        agent.join()
    _assert_provisioned(ctx, result, pid, phone_home)


def test_a_stopped_provisioning_is_abandoned_and_its_phone_wiped_over_the_air(ctx, phone):
    """`mcred tsm abandon JOB --over-the-air`: the phone is not in the operator's data
    directory, so its wipe goes through its Local Agent; the phone is then let go."""
    from typer.testing import CliRunner

    from mcred.cli.main import app
    from mcred.provision import unfinished_job

    pid, phone_home = phone
    failing = _failing_at(wallet_sim.open_secure_element(pid, phone_home), 40, "the phone went into a tunnel")
    with seram_endpoint(_free_listen()) as endpoint:
        with pytest.raises(TransportError):
            _provision_over_the_air(ctx, endpoint, pid, phone_home, transmit=failing)
    job = unfinished_job(ctx, pid)
    assert wallet_sim.describe(pid, phone_home)["secure_element"]["applets"]  # half provisioned
    listen = _free_listen()
    agent = PhoneThread(f"http://{listen}/gp/seram", pid, phone_home)
    agent.start_session("abandon-1")
    r = CliRunner().invoke(app, ["tsm", "abandon", job.id, "--reason", "the holder withdrew", "--over-the-air",
                                 "--listen", listen, "--session-id", "abandon-1", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output[r.output.index("\n") + 1:])
    assert result["wiped"] and result["released_holder"], result
    assert agent.join().notifications == ["abandon/done/OK"]
    assert wallet_sim.describe(pid, phone_home)["secure_element"]["applets"] == []
    r = CliRunner().invoke(app, ["tsm", "abandon", result["wipe_job"], "--reason", "x", "--over-the-air"])
    assert r.exit_code == 2 and "wipes nothing" in " ".join(r.output.split()), r.output


def test_every_refusal_has_its_status(tmp_path):
    hub = SeramHub(poll_wait_s=0.2)
    link = hub.open("ph-1", session_id="known-session")
    hs = seram.encode(HandshakeCommand((SE,)))
    with seram_endpoint(_free_listen(), hub=hub) as endpoint, httpx.Client(timeout=10) as c:
        url = endpoint.url

        def post(path, body, sid="known-session", **kw):
            return c.post(f"{url}/{path}", params={"sessionId": sid}, content=body, **kw)

        r = post("remoteManagement", seram.encode(Report()))
        assert r.status_code == 409 and "before the handshake" in r.json()["detail"]
        assert post("handshake", hs, sid="nobody").status_code == 404
        r = post("handshake", seram.encode(HandshakeCommand((SecureElementRef("uicc", "1"),))))
        assert r.status_code == 406 and r.headers["content-type"] == "application/problem+json"
        r = post("handshake", b"{not json")
        assert r.status_code == 400 and "not JSON" in r.json()["detail"]
        r = post("handshake", hs, headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = post("handshake", b" " * (seram.MAX_MESSAGE_BYTES + 1))
        assert r.status_code == 413
        assert c.post(f"{url}/handshake", content=hs).status_code == 422  # no sessionId
        r = post("handshake", hs)
        assert r.status_code == 200 and r.json()["chosenVersion"] == "2.0.0"
        r = post("remoteManagement", seram.encode(Report()))
        assert r.status_code == 200 and r.json() == {"delay": 0}  # void: nothing to order yet
        assert r.cookies.get("seram-order-known-session") == "1"
        c.cookies.set("seram-order-known-session", "77")
        r = post("remoteManagement", seram.encode(Report()))
        assert r.status_code == 409 and "order 77" in r.json()["detail"]
    assert link.session.se == SE


def test_the_two_commands_as_two_processes_over_https(ctx, phone, tmp_path):
    """The binding's transport: the operator's command serves the Remote Agent over HTTPS,
    the phone's command trusts its certificate (SSL_CERT_FILE) and reaches it."""
    from test_serve_tls import _self_signed

    pid, phone_home = phone
    cert, key = _self_signed(tmp_path)
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123"), ensure_ascii=False), encoding="utf-8")
    listen = _free_listen()
    env = dict(os.environ, MCRED_HOME=str(ctx.home))
    tsm = subprocess.Popen([sys.executable, "-m", "mcred", "provision", "--phone", pid, "--holder", str(holder),
                            "--key-type", "p384", "--mdoc-batch", "1", "--over-the-air", "--listen", listen,
                            "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--json"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(tsm.stdout.readline())["seram"]
        assert first["agent"] == agent_command(pid, f"https://{listen}/gp/seram", first["session"])
        phone_run = subprocess.run([sys.executable, "-m", "mcred", "phone", "agent", pid, "--remote",
                                    first["endpoint"], "--session", first["session"], "--json"],
                                   env=dict(os.environ, MCRED_HOME=str(phone_home), SSL_CERT_FILE=str(cert)),
                                   capture_output=True, text=True, timeout=120)
        out, errors = tsm.communicate(timeout=120)
    finally:
        tsm.kill()
    assert phone_run.returncode == 0, phone_run.stderr
    summary = json.loads(phone_run.stdout)
    assert summary["stopped"] and summary["notifications"] == ["provision/done/OK"] and summary["apdus"] > 40
    assert tsm.returncode == 0, errors
    assert json.loads(out)["phone"] == pid


def test_over_the_air_refusals_on_the_command_line(ctx, tmp_path):
    from typer.testing import CliRunner

    from mcred.cli.main import app

    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps(HOLDER, ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(holder), "--over-the-air"])
    assert r.exit_code == 2 and "made where it runs" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["provision", "--phone", "p", "--holder", str(holder), "--over-the-air",
                                 "--listen", "nowhere"])
    assert r.exit_code == 2 and "is not HOST:PORT" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["provision", "--phone", "p", "--holder", str(holder), "--session-id", "abcdefgh"])
    assert r.exit_code == 2 and "go with --over-the-air" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["phone", "agent", "nope", "--remote", "ftp://x", "--session", "s"])
    assert r.exit_code == 2 and "not an http(s) URL" in r.output


def test_the_agent_names_a_session_the_tsm_does_not_know(phone):
    pid, phone_home = phone
    se = wallet_sim.open_secure_element(pid, phone_home)
    with seram_endpoint(_free_listen()) as endpoint:
        with pytest.raises(LocalAgentError, match="handshake refused: HTTP 404: no management session 'ghost-session'"):
            run_local_agent(endpoint.url, "ghost-session", se.transmit, secure_element_of(se))


def _answered_over_the_air(c: httpx.Client, headers: dict, accepted: httpx.Response, pid: str, phone_home,
                           **phone_kw) -> tuple[dict, PhoneThread]:
    """The phone joins the session a 202 answer names; the API job once it has ended, and
    the phone (its ``result``, what it ``sent``)."""
    from test_api_flows import _wait

    assert accepted.status_code == 202, accepted.text
    agent = PhoneThread(accepted.json()["seram"]["endpoint"], pid, phone_home, **phone_kw)
    agent.start_session(accepted.json()["seram"]["session"])
    agent.join()
    return _wait(c, headers, accepted.json()["id"]), agent


def test_the_issuer_service_provisions_over_the_air(home, phone, monkeypatch):
    """`POST /provisioning` with `over_the_air`: the answer names the session and the
    endpoint under `mcred serve` (`/gp/seram`, public: the session id is the capability);
    the phone in its own data directory polls it; the job succeeds. Every answer the
    service gives is held to its OpenAPI document: the 202s with their ``seram`` and
    ``seram_old``, each job as its kind's schema (tests/documented.py)."""
    from documented import check_every_served_answer
    from test_present_http import Server

    from benchmarks.scratch import free_port
    from issuer.api.auth import create_token
    from mcred.service import create_app

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    pid, phone_home = phone
    port = free_port()
    monkeypatch.setenv("MCRED_PUBLIC_URL", f"http://127.0.0.1:{port}")
    ctx = Context.open(home)
    issuer = {"Authorization": f"Bearer {create_token(ctx.sessions, ['issuer'])[1]}"}
    body = {"phone_id": pid, "holder": HOLDER, "key_type": "p384", "mdoc_batch": 1, "pin": "1234",
            "password": "ABC123", "puk": "12345678", "over_the_air": True}
    app = create_app(ctx, job_workers=2)
    with Server(app, port) as server, httpx.Client(base_url=server.url) as c:
        checked = check_every_served_answer(monkeypatch, {server.url: app})
        assert c.post("/provisioning", json={**body, "over_the_air": False}, headers=issuer).status_code == 404
        r = c.post("/provisioning", json=body, headers=issuer)
        assert r.status_code == 202 and r.json()["seram"]["endpoint"] == f"{server.url}/gp/seram", r.text
        job, agent = _answered_over_the_air(c, issuer, r, pid, phone_home)
        assert job["state"] == "succeeded", job
        assert agent.result.notifications == ["provision/done/OK"] and agent.result.apdus == len(agent.sent)
        assert job["result"]["mdocs"] == 1
        holder_id = job["result"]["holder_id"]
        # the TSM's other jobs over the API, over the air too: fresh MSOs, the secrets reset
        for route, req, word in (("/mdoc-refreshes", {"phone_id": pid, "over_the_air": True}, "refresh/done/OK"),
                                 ("/pin-resets", {"phone_id": pid, "slots": ["auth"], "pin": "9876",
                                                  "over_the_air": True}, "reset/done/OK")):
            job, agent = _answered_over_the_air(c, issuer, c.post(route, json=req, headers=issuer), pid,
                                                phone_home)
            assert agent.result.notifications == [word]
            assert job["state"] == "succeeded", job
        # 機種変更 over the API: the new phone reached over the air when the workflow runs
        operator = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
        new = wallet_sim.create_phone(phone_home)
        r = c.post("/handovers", json={"kind": "model_change", "holder_id": holder_id, "old_phone_id": pid,
                                       "new_phone_id": new, "over_the_air": True}, headers=operator)
        assert r.status_code == 201, r.text
        hid = r.json()["id"]
        r = c.post(f"/handovers/{hid}/run", json={"wipe_over_the_air": True}, headers=operator)
        assert r.status_code == 422 and "goes with over_the_air" in r.json()["detail"]
        # both phones at the shop: the old one is wiped through its own agent, in a second session
        r = c.post(f"/handovers/{hid}/run", json={"over_the_air": True, "wipe_over_the_air": True},
                   headers=operator)
        assert r.status_code == 202 and r.json()["seram_old"]["session"] != r.json()["seram"]["session"], r.text
        old_agent = PhoneThread(r.json()["seram_old"]["endpoint"], pid, phone_home)
        old_agent.start_session(r.json()["seram_old"]["session"])
        job, agent = _answered_over_the_air(c, operator, r, new, phone_home)
        assert agent.result.notifications == ["handover/done/OK"]
        assert old_agent.join().notifications == ["handover/done/OK"]
        assert job["state"] == "succeeded" and job["result"]["state"] == "done", job
        assert wallet_sim.describe(pid, phone_home)["secure_element"]["applets"] == []  # wiped over the air
        states = {(c_["phone_id"], c_["status"]) for c_ in c.get("/credentials", headers=issuer).json()["credentials"]
                  if c_["phone_id"] in (pid, new)}
        assert states == {(pid, "revoked"), (new, "valid")}
        # a provisioning whose phone failed half way, resumed over the API in a new session
        other = wallet_sim.create_phone(phone_home)
        failing = _failing_at(wallet_sim.open_secure_element(other, phone_home), 20, "the phone went into a tunnel")

        r = c.post("/provisioning", json={**body, "phone_id": other,
                                          "holder": dict(HOLDER, family_name="別人")}, headers=issuer)
        job, agent = _answered_over_the_air(c, issuer, r, other, phone_home, transmit=failing)
        assert agent.result.notifications == ["provision/stopped/TransportError"]
        assert job["state"] == "failed"
        (stopped,) = c.get("/tsm-jobs", params={"phone_id": other, "unfinished": True}, headers=issuer).json()["jobs"]
        r = c.post(f"/tsm-jobs/{stopped['id']}/resume", json={"over_the_air": True}, headers=issuer)
        job, agent = _answered_over_the_air(c, issuer, r, other, phone_home)
        assert agent.result.notifications == ["resume/done/OK"]
        assert job["state"] == "succeeded", job
        # one that is given up instead: abandoned over the API, its SE wiped through its agent
        third = wallet_sim.create_phone(phone_home)
        failing = _failing_at(wallet_sim.open_secure_element(third, phone_home), 30, "the phone went into a tunnel")
        r = c.post("/provisioning", json={**body, "phone_id": third,
                                          "holder": dict(HOLDER, family_name="三人目")}, headers=issuer)
        job, agent = _answered_over_the_air(c, issuer, r, third, phone_home, transmit=failing)
        (stopped,) = c.get("/tsm-jobs", params={"phone_id": third, "unfinished": True}, headers=issuer).json()["jobs"]
        r = c.post(f"/tsm-jobs/{stopped['id']}/abandon", json={"reason": "the holder withdrew", "over_the_air": True},
                   headers=issuer)
        job, agent = _answered_over_the_air(c, issuer, r, third, phone_home)
        assert agent.result.notifications == ["abandon/done/OK"]
        assert job["state"] == "succeeded" and job["result"]["wiped"], job
        assert wallet_sim.describe(third, phone_home)["secure_element"]["applets"] == []
        document = c.get("/openapi.json").json()
        spec = document["paths"]
        assert spec["/gp/seram/remoteManagement"]["post"].get("x-mcred-scope") is None  # public
        assert spec["/gp/seram/remoteManagement"]["post"]["responses"]["500"] == {
            "$ref": "#/components/responses/InternalError"}  # which names the relay's own 500 type
        assert "seram-relay-failed" in document["components"]["responses"]["InternalError"]["description"]
        # what the relay between worker processes answers when the holder is silent is declared
        assert "seram-holder-silent" in spec["/gp/seram/remoteManagement"]["post"]["responses"]["504"]["description"]
    assert {f"POST {route} 202" for route in ("/provisioning", "/mdoc-refreshes", "/pin-resets",
                                              "/handovers/{handover_id}/run", "/tsm-jobs/{job_id}/resume",
                                              "/tsm-jobs/{job_id}/abandon")} | {"GET /jobs/{job_id} 200"} <= set(checked)


def test_a_phone_that_polls_another_process_of_the_service_reaches_its_session(home, phone, db_url, monkeypatch):
    """Under `mcred serve --workers N` the job and its session live in the process that
    accepted the request, and the phone's polls land on any process: a process that does
    not hold the session relays each poll through the database to the one that does
    (tsm.seram_relay). Two services on one database stand for two worker processes here;
    the phone polls only the other one."""
    from test_api_flows import _wait
    from test_present_http import Server

    from benchmarks.scratch import free_port
    from issuer.api.auth import create_token
    from mcred.service import create_app
    from tsm.db import SeramMessageRow, SeramSessionRow

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    pid, phone_home = phone
    port_a, port_b = free_port(), free_port()
    monkeypatch.setenv("MCRED_PUBLIC_URL", f"http://127.0.0.1:{port_a}")
    ctx_a, ctx_b = Context.open(home, db_url), Context.open(home, db_url)
    issuer = {"Authorization": f"Bearer {create_token(ctx_a.sessions, ['issuer'])[1]}"}
    body = {"phone_id": pid, "holder": HOLDER, "key_type": "p384", "mdoc_batch": 1, "pin": "1234",
            "password": "ABC123", "puk": "12345678", "over_the_air": True}
    app_a, app_b = (create_app(x, job_workers=2, seram_relay=True) for x in (ctx_a, ctx_b))
    with Server(app_a, port_a) as a, Server(app_b, port_b) as b, httpx.Client(base_url=a.url) as c:
        r = c.post("/provisioning", json=body, headers=issuer)
        assert r.status_code == 202, r.text
        agent = PhoneThread(f"{b.url}/gp/seram", pid, phone_home)
        agent.start_session(r.json()["seram"]["session"])
        agent.join()
        job = _wait(c, issuer, r.json()["id"])
        assert job["state"] == "succeeded", job
        assert agent.result.notifications == ["provision/done/OK"] and agent.result.apdus == len(agent.sent)
        relay_a, relay_b = app_a.state.seram_relay, app_b.state.seram_relay
        assert relay_b.forwarded == relay_a.answered > agent.result.orders  # every poll, and the handshake
        assert relay_a.forwarded == relay_b.answered == 0
        # a session no process holds is unknown through either, as it is through one
        for url in (a.url, b.url):
            r = httpx.post(f"{url}/gp/seram/handshake", params={"sessionId": "nobody-holds-this"},
                           json={"secureElements": [{"seType": "eSE", "seId": "00"}]})
            assert r.status_code == 404 and r.json()["type"] == "/problems/seram-unknown-session", r.text
        # three phones at once, all polling the other process: its relay and the holder's
        # pump carry their long polls side by side
        more = [wallet_sim.create_phone(phone_home) for _ in range(3)]
        accepted = [c.post("/provisioning", json={**body, "phone_id": p, "holder": dict(HOLDER, given_name=p[-5:])},
                           headers=issuer) for p in more]
        agents = []
        for p, r in zip(more, accepted, strict=True):
            assert r.status_code == 202, r.text
            agents.append(PhoneThread(f"{b.url}/gp/seram", p, phone_home))
            agents[-1].start_session(r.json()["seram"]["session"])
        for agent_, r in zip(agents, accepted, strict=True):
            agent_.join()
            assert agent_.result.notifications == ["provision/done/OK"], agent_.result
            assert _wait(c, issuer, r.json()["id"])["state"] == "succeeded"
        assert relay_b.forwarded == relay_a.answered
    with ctx_a.engine.connect() as conn:  # nothing left behind: no message, no session
        assert conn.execute(sa.select(sa.func.count()).select_from(SeramMessageRow)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(SeramSessionRow)).scalar_one() == 0


def test_store_data_blocks_ride_one_order_and_a_block_the_se_refuses_tears_nothing(ctx, tmp_path, monkeypatch):
    """Over the air a STORE DATA sequence is pipelined: its blocks go in one order (SCP03
    chains C-MACs only), so a provisioning takes well under one poll a command. When the SE
    runs out of memory at the mdoc's last block, the job stops on the 6A84, nothing is torn
    on the card, and the TSM's audit holds every command once."""
    from mcred.provision import unfinished_job
    from tsm.audit import audit_rows
    from tsm.errors import SeMemoryError

    phone_home = tmp_path / "small-phone"
    phone_home.mkdir()
    (tmp_path / "face.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(12_000))
    pid = wallet_sim.create_phone(phone_home, nvm_bytes=20_000)
    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", str(root_path(phone_home)))
    holder = parse_holder(dict(HOLDER, pin="1234", password="ABC123", portrait="face.jpg"), base=tmp_path)
    with seram_endpoint(_free_listen()) as endpoint:
        agent = PhoneThread(endpoint.url, pid, phone_home)
        with pytest.raises(SeMemoryError, match="out of memory"):
            over_the_air(endpoint.hub, pid, lambda transmit: provision(
                ctx, pid, holder, key_type="p384", mdoc_batch=1, transmit=transmit), on_session=agent.start)
        agent.join()
    assert agent.result.notifications == ["provision/stopped/SeMemoryError"]
    assert agent.result.orders < agent.result.apdus  # several C-APDUs an order
    job = unfinished_job(ctx, pid)
    assert job.current_step == "write-mdoc"
    slots = [a for a in wallet_sim.describe(pid, phone_home)["secure_element"]["applets"]
             if a["aid"].startswith("F06D6372")][0]["details"]["slots"]
    assert slots and all(v["credential_bytes"] == 0 for v in slots.values())  # nothing torn
    rows = [r for r in audit_rows(ctx.engine, pid) if r.event == "apdu"]
    assert len(rows) == agent.result.apdus  # every command the SE saw, audited once
    # the SE checks its memory when the last block completes the credential
    assert [(r.ins, r.p1, r.sw) for r in rows[-1:]] == [(0xE2, 0x88, 0x6A84)]


class Pipe:
    """A transport that pipelines (``transmit_many``) straight into a phone's SE, and can
    spoil the R-MAC of the second answer of its first batch of three or more secured
    commands (a personalisation's blocks)."""

    def __init__(self, se, spoil: bool = False) -> None:
        self.se, self.batches, self.spoil = se, [], spoil

    def __call__(self, apdu: bytes) -> bytes:
        return self.se.transmit(apdu)

    def transmit_many(self, apdus: list[bytes]) -> list[bytes]:
        self.batches.append(len(apdus))
        out = [self.se.transmit(a) for a in apdus]
        if self.spoil and len(apdus) >= 3 and all(a[0] & 0x04 for a in apdus):
            self.spoil = False
            r = out[1]
            out[1] = r[:-3] + bytes([r[-3] ^ 1]) + r[-2:]  # the R-MAC's last byte
        return out


class Batches(Pipe):
    """A :class:`Pipe` that keeps each batch's commands (their INS bytes), and can lose the
    answers to one batch (the SE took the commands)."""

    def __init__(self, se, lose: int | None = None) -> None:
        super().__init__(se)
        self.ins: list[list[int]] = []
        self.lose = lose

    def __call__(self, apdu: bytes) -> bytes:
        self.ins.append([apdu[1]])
        return self._maybe_lost(super().__call__(apdu))

    def transmit_many(self, apdus: list[bytes]) -> list[bytes]:
        self.ins.append([a[1] for a in apdus])
        return self._maybe_lost(super().transmit_many(apdus))

    def _maybe_lost(self, out):  # noqa: ANN001, ANN202
        if self.lose is not None and len(self.ins) - 1 == self.lose:
            raise OSError("answers lost")
        return out


def test_a_session_opens_in_one_exchange_less_and_the_survey_reads_in_one(ctx):
    """Over a pipelining transport SELECT rides with the session's first command (GET DATA
    BF21 at the SCP11 first contact, INITIALIZE UPDATE after it), SCP11a's certificate rides
    with MUTUAL AUTHENTICATE, the PUT KEY that replaces the factory keys with the next
    session's SELECT and INITIALIZE UPDATE, and the survey's two reads go together; a lost
    answer to such a batch is resumed like any other."""
    pid = ctx.new_phone()
    se = wallet_sim.open_secure_element(pid, ctx.home)
    link = Batches(se)
    provision(ctx, pid, parse_holder(dict(HOLDER, pin="1234", password="ABC123")), key_type="p384",
              mdoc_batch=1, transmit=link)
    assert link.ins[0] == [0xA4, 0xCA]  # SELECT + GET DATA BF21
    assert link.ins[1] == [0x2A, 0x82]  # the TSM's certificate + MUTUAL AUTHENTICATE: after the SE's
    assert [0xD8, 0xA4, 0x50] in link.ins  # PUT KEY, and the next session's SELECT + INITIALIZE UPDATE
    assert [0xCA, 0xF2] in link.ins  # GET DATA FF21 + GET STATUS
    for k in range(8):  # a lost answer to each of the first exchanges, pairs among them: a phone
        pid = ctx.new_phone()  # and a person of their own each
        se = wallet_sim.open_secure_element(pid, ctx.home)
        with pytest.raises(TransportError):
            provision(ctx, pid, parse_holder(person(HOLDER, pin="1234", password="ABC123")), key_type="p384",
                      mdoc_batch=1, transmit=Batches(se, lose=k))
        from mcred.provision import unfinished_job

        assert resume(ctx, unfinished_job(ctx, pid).id, transmit=Batches(se)).mdocs, k


def test_a_spoilt_answer_in_a_pipelined_batch_stops_the_step_and_the_rest_is_audited_unjudged(ctx):
    """A batch whose second answer fails its R-MAC: the step stops with SecureChannelError,
    the answers after it are audited as unjudged, and the job, resumed, completes."""
    from mcred.provision import unfinished_job
    from tsm.audit import audit_rows
    from tsm.errors import SecureChannelError

    pid = wallet_sim.create_phone(ctx.home)
    se = wallet_sim.open_secure_element(pid, ctx.home)
    pipe = Pipe(se, spoil=True)
    with pytest.raises(SecureChannelError, match="failed R-MAC"):
        provision(ctx, pid, parse_holder(dict(HOLDER, pin="1234", password="ABC123")), key_type="p384",
                  mdoc_batch=1, transmit=pipe)
    assert pipe.batches[-1] > 2 and not pipe.spoil
    rows = [r for r in audit_rows(ctx.engine, pid) if r.event == "apdu"]
    batch = rows[-pipe.batches[-1]:]
    assert (batch[1].detail or {}).get("rmac") == "failed"
    assert all((r.detail or {}).get("unjudged") for r in batch[2:])
    job = unfinished_job(ctx, pid)
    done = resume(ctx, job.id, transmit=Pipe(se))
    assert done.mdocs


def test_a_stopped_job_is_resumed_over_the_air_from_the_command_line(ctx, phone, tmp_path):
    """`mcred provision --resume JOB --over-the-air --session-id S`: the phone, started
    first with that session id, finds the session open as soon as the endpoint answers."""
    from typer.testing import CliRunner

    from mcred.cli.main import app
    from mcred.provision import unfinished_job

    pid, phone_home = phone
    failing = _failing_at(wallet_sim.open_secure_element(pid, phone_home), 20, "the phone went into a tunnel")

    with seram_endpoint(_free_listen()) as endpoint, pytest.raises(TransportError):
        _provision_over_the_air(ctx, endpoint, pid, phone_home, transmit=failing)
    job = unfinished_job(ctx, pid)
    # without --over-the-air: the phone is not in this data directory, and the error says how
    r = CliRunner().invoke(app, ["provision", "--resume", job.id])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "not in this data directory" in said, r.output
    assert f"mcred provision --resume {job.id} --over-the-air" in said
    listen = _free_listen()
    agent = PhoneThread(f"http://{listen}/gp/seram", pid, phone_home)
    agent.start_session("resume-session-1")
    r = CliRunner().invoke(app, ["provision", "--resume", job.id, "--over-the-air", "--listen", listen,
                                 "--session-id", "resume-session-1", "--json"])
    assert r.exit_code == 0, r.output
    assert agent.join().notifications == ["provision/done/OK"]
    assert json.loads(r.output.split("\n", 1)[1])["phone"] == pid
    r = CliRunner().invoke(app, ["provision", "--resume", "f" * 32, "--over-the-air"])
    assert r.exit_code == 2 and "f" * 32 in r.output


order_values = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "delay": st.one_of(st.integers(-5, 10), st.text(max_size=3)),
        "chosenSecureElement": st.one_of(st.just(SE.to_json()), json_values),
        "ramCommands": st.lists(st.one_of(
            st.sampled_from([{"ramCommandType": "startCommand"}, {"ramCommandType": "stopCommand"},
                             {"ramCommandType": "notificationCommand", "deviceAppNotification": "x"},
                             {"ramCommandType": "seRamCommand", "listOfCAPDU": ["80CA9F7F00"]},
                             {"ramCommandType": "seRamCommand", "listOfCAPDU": ["zz"]}]),
            json_values), max_size=4)}))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(order_values.map(lambda v: (200, json.dumps(v).encode())),
                          st.tuples(st.sampled_from([200, 404, 409, 500]), st.binary(max_size=40))),
                min_size=1, max_size=6))
def test_a_hostile_remote_agent_gets_a_local_agent_error_never_a_crash(answers):
    """Whatever a Remote Agent answers (random orders, garbage, errors), the phone's agent
    ends with a LocalAgentError or a Stop, and its SE sees only the C-APDUs of orders that
    were well formed and in order."""
    queue = list(answers)
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/handshake"):
            return httpx.Response(200, content=seram.encode(seram.HandshakeResponse()))
        status, body = queue.pop(0) if queue else (200, b'{"ramCommands": [{"ramCommandType": "stopCommand"}]}')
        return httpx.Response(status, content=body)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        try:
            result = run_local_agent("http://ra.test/gp/seram", "s-1", lambda c: seen.append(c) or b"\x90\x00",
                                     SE, client=client, sleep=lambda s: None, retry_for_s=0)
        except LocalAgentError:
            return
    assert result.stopped and len(seen) == result.apdus


def test_mdocs_refreshed_and_secrets_reset_over_the_air_from_the_command_line(ctx, phone):
    """The TSM's other jobs on a phone in the field: fresh MSOs (`mcred mdoc refresh`) and
    the holder's secrets set anew (`mcred jpki pin reset`), each over the air."""
    from typer.testing import CliRunner

    from mcred.cli.main import app

    pid, phone_home = phone
    with seram_endpoint(_free_listen()) as endpoint:
        _provision_over_the_air(ctx, endpoint, pid, phone_home)
    for n, (args, word) in enumerate(((["mdoc", "refresh", "--phone", pid], "refresh/done/OK"),
                                      (["jpki", "pin", "reset", "--phone", pid, "--slot", "auth"], "reset/done/OK"))):
        listen, sid = _free_listen(), f"other-job-{n}"
        agent = PhoneThread(f"http://{listen}/gp/seram", pid, phone_home)
        agent.start_session(sid)
        r = CliRunner().invoke(app, [*args, "--over-the-air", "--listen", listen, "--session-id", sid, "--json"])
        assert r.exit_code == 0, r.output
        assert agent.join().notifications == [word]
        first, rest = r.output.split("\n", 1)
        assert json.loads(first)["seram"]["session"] == sid
        out = json.loads(rest)
        if n == 0:
            assert len(out["issued"]) == 1 and len(out["superseded"]) == 1
        else:
            assert out["reset"] == ["auth"] and len(out["secrets_shown_once"]["pin"]) == 4


def test_a_model_change_over_the_air_provisions_the_new_phone_where_the_holder_has_it(ctx, phone):
    """機種変更 with both phones away from the operator: `mcred handover --over-the-air` revokes
    the old phone's credentials, provisions the new one through its Local Agent, and names
    the old phone unreachable for its wipe (it is not in the operator's data directory)."""
    from typer.testing import CliRunner

    from mcred.cli.main import app

    old, phone_home = phone
    with seram_endpoint(_free_listen()) as endpoint:
        _provision_over_the_air(ctx, endpoint, old, phone_home)
    new = wallet_sim.create_phone(phone_home)
    listen = _free_listen()
    agent = PhoneThread(f"http://{listen}/gp/seram", new, phone_home)
    agent.start_session("model-change-1")
    r = CliRunner().invoke(app, ["handover", "--phone", old, "--to", new, "--key-type", "p384", "--over-the-air",
                                 "--listen", listen, "--session-id", "model-change-1", "--json"])
    assert r.exit_code == 0, r.output
    assert agent.join().notifications == ["handover/done/OK"]
    out = json.loads(r.output.split("\n", 1)[1])
    assert out["state"] == "done" and out["new"] == new
    with ctx.sessions() as s:
        states = {(c.phone_id, c.kind): c.status for c in s.scalars(select(Credential))}
    assert {k: v for k, v in states.items() if k[0] == old} == {
        (old, "jpki-auth"): "revoked", (old, "jpki-sign"): "revoked", (old, "mdoc"): "revoked"}
    assert {v for k, v in states.items() if k[0] == new} == {"valid"}
    r = CliRunner().invoke(app, ["handover", "--phone", new, "--to", "new", "--over-the-air"])
    assert r.exit_code == 2 and "made where it runs" in " ".join(r.output.split())


def test_sixty_phones_wait_at_once_and_each_gets_its_stop(tmp_path):
    """A waiting poll holds no thread: sixty phones' polls wait on the event loop at the same
    time (a worker thread each would stop at anyio's 40), and each gets its session's Stop
    as soon as the TSM ends it."""
    hub = SeramHub(poll_wait_s=20)
    links = [hub.open(f"ph-{i}") for i in range(60)]
    answers: list[dict] = []

    def phone(link) -> None:  # noqa: ANN001
        with httpx.Client(base_url=endpoint.url, timeout=30) as c:
            c.post("/handshake", params={"sessionId": link.session_id}, content=seram.encode(HandshakeCommand((SE,))))
            answers.append(c.post("/remoteManagement", params={"sessionId": link.session_id},
                                  content=seram.encode(Report())).json())

    with seram_endpoint(_free_listen(), hub=hub) as endpoint:
        threads = [threading.Thread(target=phone, args=(link,), daemon=True) for link in links]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(hub._waiters) < 60:
            assert time.monotonic() < deadline, f"{len(hub._waiters)} polls waiting"
            time.sleep(0.05)
        for link in links:
            link.close("drill/done/OK")
        for t in threads:
            t.join(20)
    assert len(answers) == 60
    assert all([c["ramCommandType"] for c in a["ramCommands"]] ==
               ["startCommand", "notificationCommand", "stopCommand"] for a in answers)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@example(garbage=[seram.encode(HandshakeCommand((SE,))), seram.encode(Report())], cookie=None)  # taken over
@example(garbage=[b"{", seram.encode(Report())], cookie="1")
@given(garbage=st.lists(st.one_of(st.binary(max_size=80), json_values.map(lambda v: json.dumps(v).encode()),
                                  order_values.map(lambda v: json.dumps(v).encode()),
                                  st.just(seram.encode(HandshakeCommand((SE,)))), st.just(seram.encode(Report()))),
                        min_size=1, max_size=6),
       cookie=st.none() | st.text(alphabet="0123456789-x", max_size=4))
def test_garbage_on_a_session_is_refused_and_the_phone_then_goes_on(served_hub, garbage, cookie):
    """Whatever a stranger posts to a session's routes (its id leaked), each answer is a 4xx
    problem or a well-formed GP SERAM answer, never a 5xx. Then the real phone joins: the
    TSM's C-APDU reaches it and comes back, unless the stranger took the session over (a
    handshake and a poll answered with an order): then the phone's handshake is refused
    (409) and the TSM's transmit fails as a lost answer, the job resumable; no C-APDU ever
    reaches the stranger, who polled before there was one."""
    hub, url = served_hub
    link = hub.open("ph-garbage")
    with httpx.Client(base_url=url, timeout=10) as c:
        for body in garbage:
            for route in ("/handshake", "/remoteManagement"):
                if cookie is not None:
                    c.cookies.set(f"seram-order-{link.session_id}", cookie)
                r = c.post(route, params={"sessionId": link.session_id}, content=body)
                assert r.status_code == 200 or (400 <= r.status_code < 500 and
                                                r.headers["content-type"] == "application/problem+json"), r.text
                c.cookies.clear()
    taken = link.session.sent > 0
    outcome: dict[str, object] = {}

    def tsm_side() -> None:
        try:
            outcome["answer"] = link.transmit(b"\x80\xca\x9f\x7f\x00")
        except SeramLinkError as exc:
            outcome["answer"] = exc

    def phone() -> None:
        try:
            outcome["phone"] = run_local_agent(url, link.session_id, lambda c: b"\x9f\x7f\x90\x00", SE, retry_for_s=0)
        except LocalAgentError as exc:
            outcome["phone"] = exc

    threads = [threading.Thread(target=tsm_side, daemon=True), threading.Thread(target=phone, daemon=True)]
    for t in threads:
        t.start()
    threads[0].join(15)
    link.close("x/done/OK", wait_s=0 if taken else 5)  # nobody collects a taken session's Stop
    threads[1].join(15)
    if taken:
        assert isinstance(outcome["phone"], LocalAgentError) and "HTTP 409" in str(outcome["phone"])
        assert isinstance(outcome["answer"], SeramLinkError)
    else:
        assert outcome["answer"] == b"\x9f\x7f\x90\x00" and outcome["phone"].stopped


@pytest.fixture(scope="module")
def served_hub():
    hub = SeramHub(poll_wait_s=0.2, answer_timeout_s=1, connect_timeout_s=2)
    with seram_endpoint(_free_listen(), hub=hub) as endpoint:
        yield hub, endpoint.url


def test_over_the_air_on_sqlite_and_postgresql(home, db_url, phone, monkeypatch):
    """The same provisioning over the air, with lost answers, on each database: on
    PostgreSQL the job holds its SE's row lock (and so one pooled connection) for the length
    of the session, network waits included."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home, database=db_url)
    pid, phone_home = phone
    lossy = Lossy(drop_request={4}, drop_answer={7})
    with seram_endpoint(_free_listen()) as endpoint, httpx.Client(transport=lossy, timeout=40) as client:
        result, agent = _provision_over_the_air(ctx, endpoint, pid, phone_home, client=client)
    assert agent.result.notifications == ["provision/done/OK"]
    assert agent.link.apdus == agent.result.apdus == len(agent.sent)
    _assert_provisioned(ctx, result, pid, phone_home)
    ctx.engine.dispose()


def test_a_model_change_at_the_shop_wipes_the_old_phone_over_the_air_too(ctx, phone):
    """Both phones at the shop: `--wipe-over-the-air` reaches the old phone in a session of
    its own (S-2 beside S), and the workflow's wipe empties its SE through its agent."""
    from typer.testing import CliRunner

    from mcred.cli.main import app

    old, phone_home = phone
    with seram_endpoint(_free_listen()) as endpoint:
        _provision_over_the_air(ctx, endpoint, old, phone_home)
    new = wallet_sim.create_phone(phone_home)
    listen = _free_listen()
    agents = {pid: PhoneThread(f"http://{listen}/gp/seram", pid, phone_home) for pid in (new, old)}
    agents[new].start_session("shop-session-1")
    agents[old].start_session("shop-session-1-2")
    r = CliRunner().invoke(app, ["handover", "--phone", old, "--to", new, "--key-type", "p384", "--over-the-air",
                                 "--wipe-over-the-air", "--listen", listen, "--session-id", "shop-session-1", "--json"])
    assert r.exit_code == 0, r.output
    lines = r.output.split("\n")
    assert [json.loads(line)["seram"]["phone"] for line in lines[:2]] == [new, old]
    assert json.loads("\n".join(lines[2:]))["state"] == "done"
    for pid in (new, old):
        assert agents[pid].join().notifications == ["handover/done/OK"]
    assert wallet_sim.describe(old, phone_home)["secure_element"]["applets"] == []  # wiped through its agent
    assert len(wallet_sim.describe(new, phone_home)["secure_element"]["applets"]) == 2
    r = CliRunner().invoke(app, ["handover", "--phone", new, "--to", old, "--wipe-over-the-air"])
    assert r.exit_code == 2 and "goes with --over-the-air" in " ".join(r.output.split())


def test_the_documented_bodies_hold_what_the_parties_write_and_the_standards_examples():
    """The OpenAPI document's schemas for the two routes (tsm/seram_http.py) accept every
    message our parties write and the standard's examples, and refuse what the decoders
    refuse by type (jsonschema-rs, Draft 2020-12)."""
    import jsonschema_rs

    from tsm.seram_http import _HANDSHAKE, _HANDSHAKE_ANSWER, _ORDER, _REPORT

    fixed = json.loads(ALL_COMMANDS_EXAMPLE.replace("00A40400OA0001020304050607080900A",
                                                    "00A404000A0001020304050607080900"))
    cases = {
        "handshake": (_HANDSHAKE, [HandshakeCommand((SE,)).to_json(), json.loads(HANDSHAKE_EXAMPLE)]),
        "answer": (_HANDSHAKE_ANSWER, [seram.HandshakeResponse().to_json()]),
        "report": (_REPORT, [Report().to_json(), Report("PROCESSED", 1, (SeRamResponse((b"\x90\x00",)),)).to_json(),
                             Report("UNKNOWN_FAILURE", 0, (), "x").to_json(), json.loads(REPORT_EXAMPLE)]),
        "order": (_ORDER, [Order((StartCommand(), SeRamCommand((b"\x80\xca\x9f\x7f",)), NotificationCommand("a"),
                                  StopCommand()), 0, SE).to_json(), Order().to_json(), fixed]),
    }
    for name, (schema, values) in cases.items():
        for value in values:
            assert jsonschema_rs.is_valid(schema, value), (name, value)
    assert not jsonschema_rs.is_valid(_REPORT, {"localAgentStatus": {"localAgentStatusEnum": "DONE"}})
    assert not jsonschema_rs.is_valid(_ORDER, json.loads(ALL_COMMANDS_EXAMPLE))  # the letter O


def test_on_postgresql_a_notification_wakes_the_relay_side_that_waits(db_url):
    """The relay's waits poll the tables; on PostgreSQL a write's pg_notify (at its commit)
    also wakes the waiting side at once, through each process's listener."""
    import asyncio

    from mcred.db import make_engine, migrate
    from tsm.seram_relay import SeramRelay

    if not db_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    engine = make_engine(db_url)
    migrate(engine)
    relay = SeramRelay(engine, SeramHub())
    assert relay.notifies
    relay.start()
    try:
        async def wait_for_answer_note() -> float:
            woken = asyncio.Event()
            relay._waiters[4242] = (asyncio.get_running_loop(), woken)
            await asyncio.sleep(0.3)  # the listener is up
            t0 = time.monotonic()
            with engine.begin() as conn:
                relay._notify(conn, "a:4242")
            await asyncio.wait_for(woken.wait(), 5)
            return time.monotonic() - t0

        assert asyncio.run(wait_for_answer_note()) < 1.0
    finally:
        relay.stop()
        engine.dispose()


@pytest.fixture(scope="module")
def relayed_pair(tmp_path_factory):
    """Two services on one SQLite database, as two worker processes: a session opened on
    the first, reached through the second."""
    from fastapi.testclient import TestClient

    from mcred.service import create_app

    home = tmp_path_factory.mktemp("relayed")
    url = f"sqlite:///{home / 'relay.sqlite3'}"
    apps = [create_app(Context.open(home, url), job_workers=1, seram_relay=True) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        link = apps[0].state.seram_open("ph-relayed")
        yield a, b, link.session_id


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(["handshake", "remoteManagement"]),
       body=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)))
def test_a_relayed_request_is_answered_as_the_holder_answers_it(relayed_pair, route, body):
    """Whatever a phone sends, the process that does not hold its session answers what the
    holder answers: the same status and the same problem (bodies that move the session on,
    a valid report, are left to the end-to-end tests)."""
    a, b, sid = relayed_pair
    assume(not _moves_the_session(route, body))
    headers = {"content-type": "application/json"}
    direct = a.post(f"/gp/seram/{route}", params={"sessionId": sid}, content=body, headers=headers)
    relayed = b.post(f"/gp/seram/{route}", params={"sessionId": sid}, content=body, headers=headers)
    assert (relayed.status_code, relayed.json()) == (direct.status_code, direct.json())


def _moves_the_session(route: str, body: bytes) -> bool:
    try:
        (seram.parse_handshake_command if route == "handshake" else seram.parse_report)(body)
    except SeramError:
        return False
    return True


def test_a_relayed_request_whose_phone_goes_away_leaves_no_message(tmp_path):
    """A phone that drops its connection while its relayed poll waits (the request is
    cancelled) takes its message with it: nobody would take the answer."""
    import asyncio

    from mcred.db import make_engine, migrate
    from tsm.db import SeramMessageRow
    from tsm.seram_relay import SeramRelay

    engine = make_engine(f"sqlite:///{tmp_path / 'relay.sqlite3'}")
    migrate(engine)
    holder, other = SeramRelay(engine, SeramHub()), SeramRelay(engine, SeramHub())
    link = holder.open("ph-gone")  # its pump is not started: no answer comes

    def messages() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(SeramMessageRow)).scalar_one()

    async def go_away() -> int:
        task = asyncio.create_task(other.forward("remoteManagement", link.session_id, b"{}", None))
        # the relay writes its message from a thread: wait until it is there (a fixed 0.2 s
        # was too short on a loaded machine), not past the forward's own wait
        for _ in range(200):
            await asyncio.sleep(0.05)
            waiting = await asyncio.to_thread(messages)
            if waiting or task.done():
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return waiting

    assert asyncio.run(go_away()) == 1
    assert messages() == 0
    engine.dispose()


def test_a_phone_agent_waiting_on_no_remote_agent_says_so(phone, monkeypatch):
    """``mcred phone agent --remote URL`` with nothing answering there (a typo, the TSM not
    started yet) retried silently for up to 5 minutes: the first retry is said on stderr,
    naming the URL and the failure, --json or not; then the exit 1 as before."""
    import functools

    from typer.testing import CliRunner

    import wallet_sim.seram_agent as agent_module
    from mcred.cli.main import app

    pid, phone_home = phone
    monkeypatch.setenv("MCRED_HOME", str(phone_home))  # the phone's machine
    monkeypatch.setattr(agent_module, "run_local_agent",
                        functools.partial(agent_module.run_local_agent, retry_for_s=0.5))
    remote = f"http://{_free_listen()}/gp/seram"
    for json_flag in ([], ["--json"]):
        r = CliRunner().invoke(app, ["phone", "agent", pid, "--remote", remote, "--session", "s-1", *json_flag])
        assert r.exit_code == 1, r.output
        said = " ".join(r.stderr.split())
        assert f"no answer from the Remote Agent at {remote}/handshake (ConnectError" in said, r.stderr
        assert "trying again for up to 0.5 s" in said and said.count("no answer from") == 1, r.stderr


def test_every_over_the_air_command_gives_up_on_a_phone_after_its_connect_timeout(ctx, phone, tmp_path):
    """--connect-timeout on the single-phone commands as on the bulk re-issue: a phone whose
    agent never joins is given up after that many seconds (not the binding's 5 minutes),
    with the timeout named; without --over-the-air the option is refused."""
    import time

    from typer.testing import CliRunner

    from mcred.cli.main import app

    pid, _ = phone
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps(dict(HOLDER, pin="1234", password="ABC123"), ensure_ascii=False), encoding="utf-8")
    t0 = time.monotonic()
    r = CliRunner().invoke(app, ["provision", "--phone", pid, "--holder", str(holder), "--key-type", "p384",
                                 "--over-the-air", "--listen", _free_listen(), "--connect-timeout", "1"])
    assert time.monotonic() - t0 < 60, "the phone was waited for longer than --connect-timeout asked"
    assert r.exit_code not in (0, 2), r.output
    said = " ".join(r.output.split())
    assert "the phone did not poll SERAM session" in said and "within 1 s" in said, said
    for args in (["provision", "--phone", pid, "--holder", str(holder)], ["jpki", "pin", "reset", "--phone", pid],
                 ["mdoc", "refresh", "--phone", pid], ["tsm", "rotate-kloc", "--phone", pid]):
        r = CliRunner().invoke(app, [*args, "--connect-timeout", "5"])
        assert r.exit_code == 2 and "--connect-timeout goes with --over-the-air" in " ".join(r.output.split()), \
            (args, r.output)
