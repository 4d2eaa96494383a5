"""The two session stores against one model, under any sequence of what the reader service
does (hypothesis stateful testing): sessions opened, claimed by a worker, finished,
interrupted through the result route past the processing limit, looked up, and the clock
moving on. Both stores answer exactly as the model says: a SessionData is claimed once, a
verdict once given never changes, a session expires after its TTL, and a verification
that never finished is ended once, with the interrupted verdict."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mcred.db import make_engine, migrate
from protocols.mdoc import Check, VerificationResult
from reader.http import session_result, verdict_json
from reader.session import DEFAULT_REQUEST, ReaderOutcome, ReaderSession
from reader.sessions import AWAITING, DONE, PROCESSING, MemorySessionStore, SqlSessionStore
from wallet_sim.engagement import Engagement

TTL = dt.timedelta(seconds=300)
LIMIT = dt.timedelta(seconds=60)
T0 = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)


class _NoVerifier:
    def verify(self, response, **kwargs):  # never called: nothing is decrypted here
        raise AssertionError


def _session() -> ReaderSession:
    session = ReaderSession([DEFAULT_REQUEST], _NoVerifier())
    session.start(Engagement.new().bytes)
    return session


def _outcome(tag: int) -> tuple[ReaderOutcome, bytes]:
    outcome = ReaderOutcome(VerificationResult((Check("session", True, f"verdict {tag}"),)))
    return outcome, verdict_json(outcome)


class Stores(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.engine = make_engine(f"sqlite:///{self.dir.name}/s.sqlite3")
        migrate(self.engine, "reader@head")
        self.stores = [MemorySessionStore(TTL, 1000),
                       SqlSessionStore(self.engine, TTL, 1000, resume=lambda key, transcript, request: "resumed")]
        self.now = T0
        self.model: dict[str, dict] = {}
        self.tags = 0

    def teardown(self):
        if hasattr(self, "engine"):
            self.engine.dispose()
            self.dir.cleanup()

    def _live(self, sid: str) -> dict | None:
        m = self.model.get(sid)
        return m if m is not None and self.now - m["created"] < TTL else None

    @precondition(lambda self: len(self.model) < 6)
    @rule()
    def open(self):
        session = _session()
        sid = f"s{len(self.model)}"
        for store in self.stores:
            store.add(sid, session, self.now)
        self.model[sid] = {"created": self.now, "state": AWAITING, "claimed_at": None, "verdict": None}

    @rule(seconds=st.sampled_from([0.5, 1, 30, 59, 60, 61, 120, 299, 301]))
    def wait(self, seconds):
        self.now += dt.timedelta(seconds=seconds)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def claim(self, data):
        sid = data.draw(st.sampled_from(sorted(self.model)))
        got = [store.claim(sid, self.now) for store in self.stores]
        m = self._live(sid)
        if m is None:
            assert got == [None, None]
        elif m["state"] == AWAITING:
            assert got[0] is not None and not isinstance(got[0], str) and got[1] == "resumed"
            m["state"], m["claimed_at"] = PROCESSING, self.now
        else:
            assert got == [m["state"], m["state"]]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def finish(self, data):
        """The worker keeps its verdict (only a session it claimed, as the service does)."""
        sid = data.draw(st.sampled_from(sorted(self.model)))
        m = self._live(sid)
        if m is None or m["claimed_at"] is None:
            return
        self.tags += 1
        outcome, verdict = _outcome(self.tags)
        for store in self.stores:
            store.finish(sid, outcome, verdict)
        if m["state"] == PROCESSING:
            m["state"], m["verdict"] = DONE, verdict

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def result(self, data):
        sid = data.draw(st.sampled_from(sorted(self.model)))
        got = [session_result(store, sid, self.now, LIMIT) for store in self.stores]
        m = self._live(sid)
        if m is None:
            assert got == [None, None]
            return
        if m["state"] == PROCESSING and self.now - m["claimed_at"] > LIMIT:
            m["state"], m["verdict"] = DONE, got[0]
            assert b"verification interrupted" in got[0]
        expected = m["verdict"] if m["state"] == DONE else m["state"]
        assert got == [expected, expected]

    @invariant()
    def views_agree(self):
        if not hasattr(self, "model"):
            return
        for sid, m in self.model.items():
            views = [store.view(sid, self.now) for store in self.stores]
            if self._live(sid) is None:
                assert views == [None, None]
                continue
            for v in views:
                assert (v.state, v.claimed_at) == (m["state"], m["claimed_at"])
                if m["state"] == DONE:
                    assert v.verdict == m["verdict"]


Stores.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
test_session_stores_follow_the_model = Stores.TestCase
