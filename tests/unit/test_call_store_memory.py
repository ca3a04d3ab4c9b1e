"""The in-process call store (MemoryCallStore) as the CallStore contract states it: False for
a call it does not know, True once it acted, and what /health is told of it."""

from __future__ import annotations

from sipxcc.calls.store import MemoryCallStore
from tests.unit.test_registry import make, req


def result(deferred):
    got = []
    deferred.addBoth(got.append)
    [value] = got
    return value


def test_hangup_and_transfer_of_an_unknown_call_answer_false():
    _, registry = make()
    store = MemoryCallStore(registry)
    assert result(store.hangup("no-such-call")) is False
    assert result(store.transfer("no-such-call", "user3@sipx.test")) is False


def test_hangup_of_a_known_call_ends_it_and_answers_true():
    _, registry = make()
    store = MemoryCallStore(registry)
    call = result(store.place(req()))
    assert result(store.hangup(call.id)) is True
    assert call.ended


def test_the_memory_store_is_always_up():
    _, registry = make()
    assert MemoryCallStore(registry).health() == {"backend": "memory", "state": "up"}
