"""The reader session's answers to well-formed SessionData it cannot use: a wallet that ends
the session with a status, data that does not decrypt under SKDevice, a second message
after the verdict, and a verifier that raises. Raw-bytes fuzzing (test_reader_robustness)
rarely builds a SessionData map, so these branches are driven here with SessionData-shaped
input; each is a failed check with its reason, never an exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_present_kit import DOCTYPE, NS, reader_world

import wallet_sim
from protocols.mdoc import SessionData
from reader.session import ReaderSession, RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False}})
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return reader_world(tmp_path_factory.mktemp("home"))


def _started(world, verifier=None) -> ReaderSession:
    reader = ReaderSession([REQUEST], verifier or world["pipeline"])
    reader.start(Engagement.new().bytes)
    return reader


@pytest.mark.parametrize("status", [10, 11, 20])
def test_wallet_ending_the_session_is_a_failed_session_check_with_its_status(world, status):
    outcome = _started(world).receive(SessionData(status=status).encode())
    assert not outcome.valid and outcome.wallet_status == status
    check = outcome.result.checks[0]
    assert check.name == "session" and not check.passed and f"status {status}" in check.reason


@FUZZ
@given(data=st.binary(max_size=300), status=st.none() | st.sampled_from([10, 11, 20]))
def test_session_data_that_does_not_decrypt_is_a_failed_session_check(world, data, status):
    outcome = _started(world).receive(SessionData(data=data, status=status).encode())
    assert not outcome.valid and outcome.device_response is None
    check = outcome.result.checks[0]
    assert check.name == "session" and not check.passed and check.reason.startswith("SessionData:")


def _real_exchange(world, verifier=None):
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    wallet = Wallet(se.transmit, RulesConsent.allow_all(), clock=world["clock"]).start()
    reader = ReaderSession([REQUEST], verifier or world["pipeline"])
    return reader, wallet.receive(reader.start(wallet.engagement.bytes))


def test_a_message_after_the_verdict_gets_the_verdict_again_not_a_second_verification(world):
    calls = []

    class Counting:
        def verify(self, response, **kwargs):
            calls.append(response)
            return world["pipeline"].verify(response, **kwargs)

    reader, message = _real_exchange(world, Counting())
    first = reader.receive(message)
    assert first.valid and len(calls) == 1
    assert reader.receive(message) is first  # replayed
    assert reader.receive(SessionData(status=20).encode()) is first  # anything else, too
    assert len(calls) == 1


def test_a_verifier_that_raises_is_a_failed_verdict_not_a_crash(world):
    class Broken:
        def verify(self, response, **kwargs):
            raise RuntimeError("trust store unavailable")

    reader, message = _real_exchange(world, Broken())
    outcome = reader.receive(message)
    assert not outcome.valid
    names = {c.name: c for c in outcome.result.checks}
    assert names["session"].passed  # it decrypted: the failure is the verifier's
    assert not names["response_status"].passed
    assert "verifier error: RuntimeError: trust store unavailable" in names["response_status"].reason
