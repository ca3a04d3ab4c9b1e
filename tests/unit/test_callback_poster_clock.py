"""The status-callback poster's timeout runs on the reactor it was given, not the global one."""

from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from sipxcc.calls.callbacks import CallbackPolicy, treq_poster


def test_a_post_that_gets_no_answer_times_out_on_the_injected_clock():
    reactor = MemoryReactorClock()
    post = treq_poster(reactor, CallbackPolicy(["192.0.2.10"]), timeout=5.0)
    outcome = []
    post("http://192.0.2.10/hook", b"{}").addBoth(outcome.append)
    assert [c[:2] for c in reactor.tcpClients] == [("192.0.2.10", 80)]  # connecting, no answer
    reactor.advance(4.9)
    assert outcome == []
    reactor.advance(0.2)
    assert len(outcome) == 1 and isinstance(outcome[0], Failure)  # given up, not left hanging
