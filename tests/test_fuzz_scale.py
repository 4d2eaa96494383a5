"""``MCRED_FUZZ_SCALE=N`` (tests/conftest.py) multiplies the examples of every property test:
the ``@given`` functions and the state machines collected as their ``TestCase`` too, whose
``runTest`` reads the class's settings when it runs (tests/test_reader_sessions_model.py ran
its 60 examples at any scale before)."""

from __future__ import annotations

from types import SimpleNamespace

import conftest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule


class _Machine(RuleBasedStateMachine):
    @rule()
    def step(self):
        pass


def _items():
    @settings(max_examples=7)
    @given(st.integers())
    def prop(x):
        pass

    machine = type("Machine", (_Machine,), {})
    case = machine.TestCase
    case.settings = settings(max_examples=5, stateful_step_count=3)
    # as pytest collects them: a Function whose obj is the test, a TestCaseFunction whose
    # obj is the class's runTest and cls the class; a state machine's two items share it
    return prop, case, [SimpleNamespace(obj=prop, cls=None),
                        SimpleNamespace(obj=case.runTest, cls=case),
                        SimpleNamespace(obj=case.runTest, cls=case)]


def test_the_scale_multiplies_given_tests_and_state_machines_once(monkeypatch):
    prop, case, items = _items()
    monkeypatch.setenv("MCRED_FUZZ_SCALE", "10")
    conftest.pytest_collection_modifyitems(None, items)
    assert prop._hypothesis_internal_use_settings.max_examples == 70
    assert case.settings.max_examples == 50
    assert case.settings.stateful_step_count == 3
    assert case.settings.deadline is None


def test_scale_one_changes_nothing(monkeypatch):
    prop, case, items = _items()
    monkeypatch.setenv("MCRED_FUZZ_SCALE", "1")
    conftest.pytest_collection_modifyitems(None, items)
    assert prop._hypothesis_internal_use_settings.max_examples == 7
    assert case.settings.max_examples == 5
