"""Where status callbacks may go: listed hosts and ports, checked addresses, no redirects."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport

from sipxcc.calls.call import Call, CallRequest
from sipxcc.calls.callbacks import (
    BACKOFF,
    CallbackPolicy,
    CallbackRefused,
    StatusCallbacks,
    treq_poster,
)
from sipxcc.users import User

USER1 = User("user1@sipx.test", "user1", (), None, None, None)

POLICY = CallbackPolicy(("crm.example", "10.1.2.3", "hooks.example", "::1"), (80, 443, 8443))


@pytest.mark.parametrize("url, target", [
    ("https://crm.example/hook", ("crm.example", 443)),
    ("http://CRM.example./hook", ("crm.example", 80)),
    ("https://crm.example:8443/hook", ("crm.example", 8443)),
    ("http://10.1.2.3/hook", ("10.1.2.3", 80)),
    ("http://[::1]:443/hook", ("::1", 443)),
])
def test_listed_hosts_on_listed_ports_are_allowed(url, target):
    assert POLICY.target(url) == target


@pytest.mark.parametrize("url, why", [
    ("https://crm.example:8080/hook", "port 8080 is not in calls.callback_ports"),
    ("http://crm.example:443/hook", None),  # allowed: 443 is listed, whatever the scheme
    ("https://internal.example/hook", "host internal.example is not in calls.callback_hosts"),
    ("https://10.1.2.4/hook", "host 10.1.2.4 is not in calls.callback_hosts"),
    ("ftp://crm.example/hook", "not an http(s) URL"),
    ("https://crm.example:99999/hook", "not a valid URL"),
])
def test_other_ports_hosts_and_schemes_are_refused(url, why):
    if why is None:
        POLICY.target(url)
        return
    with pytest.raises(CallbackRefused) as refused:
        POLICY.target(url)
    assert str(refused.value) == why


@pytest.mark.parametrize("resolved", [
    ["127.0.0.1"], ["10.0.0.5"], ["192.168.1.1"], ["172.16.0.1"], ["169.254.169.254"],
    ["100.64.0.1"], ["0.0.0.0"], ["224.0.0.1"], ["::1"], ["fe80::1"], ["fc00::1"],
    ["::ffff:127.0.0.1"], ["::ffff:169.254.169.254"], [],
])
def test_a_listed_name_resolving_to_an_internal_address_is_refused(resolved):
    names_only = CallbackPolicy(("crm.example",))
    with pytest.raises(CallbackRefused, match="resolves to no allowed address"):
        names_only.choose("crm.example", resolved)


def test_a_listed_name_may_resolve_to_a_public_or_an_explicitly_listed_address():
    assert POLICY.choose("crm.example", ["127.0.0.1", "93.184.215.14"]) == "93.184.215.14"
    assert POLICY.choose("crm.example", ["2606:2800:21f:cb07::1"]) == "2606:2800:21f:cb07::1"
    assert POLICY.choose("crm.example", ["192.168.1.1", "10.1.2.3"]) == "10.1.2.3"
    assert POLICY.choose("crm.example", ["::ffff:10.1.2.3"]) == "10.1.2.3"


def test_a_listed_address_is_used_as_it_is_even_if_internal():
    assert POLICY.choose("10.1.2.3", ["10.1.2.3"]) == "10.1.2.3"
    assert POLICY.choose("::1", ["::1"]) == "::1"


class FakePoster:
    """Answers each POST with the next of C{answers}: a status or an exception."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.posted: list[dict] = []

    def __call__(self, url, body, headers=None):
        self.posted.append(json.loads(body))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


def attach(post):
    clock = Clock()
    callbacks = StatusCallbacks(clock, post)
    call = Call(CallRequest(USER1, "user1@sipx.test", "user2@sipx.test",
                            status_callback="https://crm.example/hook"), 0)
    callbacks.attach(call)
    return clock, callbacks, call


def test_a_redirect_is_a_failed_delivery_retried_then_given_up():
    post = FakePoster(303)
    clock, callbacks, call = attach(post)
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    for delay in BACKOFF:
        clock.advance(delay)
    assert len(post.posted) == 1 + len(BACKOFF)
    assert all(doc["status-line"] == "SIP/2.0 180 Ringing" for doc in post.posted)
    assert (callbacks.delivered, callbacks.failed, callbacks.dropped) == (0, 6, 1)


def test_a_refused_target_is_never_retried_and_the_calls_other_events_are_not_sent():
    post = FakePoster(CallbackRefused("port 8080 is not in calls.callback_ports"))
    clock, callbacks, call = attach(post)
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    call.record(1001, "cid", "INVITE", "SIP/2.0 200 OK")
    call.finish("ended")
    clock.advance(sum(BACKOFF) + 1)
    assert len(post.posted) == 1
    assert (callbacks.delivered, callbacks.dropped) == (0, 3)


class Resolver:
    """A name resolver answering each name from C{answers}, counting the look-ups."""

    def __init__(self, answers):
        self.answers = answers
        self.lookups: list[str] = []

    def resolveHostName(self, receiver, name, port=0, *args, **kwargs):
        self.lookups.append(name)
        receiver.resolutionBegan(None)
        for address in self.answers[name]:
            receiver.addressResolved(IPv4Address("TCP", address, port))
        receiver.resolutionComplete()


def test_the_poster_connects_to_the_address_it_checked_once_per_delivery():
    reactor = MemoryReactorClock()
    reactor.nameResolver = Resolver({"crm.example": ["10.9.9.9", "93.184.215.14"]})
    post = treq_poster(reactor, POLICY)
    post("https://crm.example:8443/hook", b"{}")
    assert reactor.nameResolver.lookups == ["crm.example"]
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("93.184.215.14", 8443)]


def test_the_poster_refuses_before_connecting():
    reactor = MemoryReactorClock()
    reactor.nameResolver = Resolver({"crm.example": ["127.0.0.1"]})
    post = treq_poster(reactor, POLICY)
    failures = []
    post("https://crm.example/hook", b"{}").addErrback(failures.append)
    assert failures[0].check(CallbackRefused) and not reactor.tcpClients
    with pytest.raises(CallbackRefused):
        post("https://crm.example:8080/hook", b"{}")
    assert reactor.nameResolver.lookups == ["crm.example"]


def test_configured_hosts_match_whatever_their_case_trailing_dot_or_brackets():
    policy = CallbackPolicy(("Hooks.Example.COM.", "[2001:db8::9]"))
    assert policy.target("https://hooks.example.com/x") == ("hooks.example.com", 443)
    assert policy.target("http://[2001:db8::9]/x") == ("2001:db8::9", 80)
    assert policy.choose("2001:db8::9", ["2001:db8::9"]) == "2001:db8::9"


def test_a_resolved_name_that_is_no_address_is_skipped_not_the_end_of_the_list():
    assert POLICY.choose("crm.example", ["not-an-address", "93.184.215.14"]) == "93.184.215.14"


def test_a_refusal_drops_the_events_waiting_behind_the_refused_one():
    pending = defer.Deferred()
    posted = []

    def post(url, body, headers=None):
        posted.append(json.loads(body)["sequence"])
        if pending.called:
            return defer.fail(CallbackRefused("port 8080 is not in calls.callback_ports"))
        return pending

    clock = Clock()
    callbacks = StatusCallbacks(clock, post)
    call = Call(CallRequest(USER1, "user1@sipx.test", "user2@sipx.test",
                            status_callback="https://crm.example/hook"), 0)
    callbacks.attach(call)
    call.record(1000, "cid", "INVITE", "SIP/2.0 100 Trying")
    call.record(1001, "cid", "INVITE", "SIP/2.0 180 Ringing")
    call.record(1002, "cid", "INVITE", "SIP/2.0 200 OK")
    assert posted == [1]  # one at a time: two wait
    pending.errback(CallbackRefused("port 8080 is not in calls.callback_ports"))
    assert (callbacks.delivered, callbacks.failed, callbacks.dropped) == (0, 1, 3)
    call.finish("ended")
    assert posted == [1] and callbacks.dropped == 4
    posted.clear()
    other = Call(CallRequest(USER1, "user1@sipx.test", "user3@sipx.test",
                             status_callback="https://crm.example/hook"), 0)
    callbacks.attach(other)
    other.record(1000, "cid2", "INVITE", "SIP/2.0 100 Trying")  # the same refusal
    assert posted == [1] and callbacks.dropped == 5  # counted over all calls


def test_a_redirect_is_returned_as_it_is_and_not_followed():
    from tests.unit.test_call_control import HTTPReactor
    reactor = HTTPReactor()
    post = treq_poster(reactor, CallbackPolicy(["192.0.2.9"], ports=(8080,)))
    results = []
    post("http://192.0.2.9:8080/hook", b"{}").addBoth(results.append)
    [(_, _, _, timeout, _)] = reactor.tcpClients
    assert timeout == 5  # the default connection timeout, in seconds
    proto, _ = reactor.connect()
    proto.dataReceived(b"HTTP/1.1 302 Found\r\nLocation: http://192.0.2.9:8080/other\r\n"
                       b"Content-Length: 0\r\n\r\n")
    assert results == [302]
    assert len(reactor.tcpClients) == 1


def test_an_https_webhook_speaks_tls_from_the_first_byte():
    from tests.unit.test_call_control import HTTPReactor
    reactor = HTTPReactor()
    post = treq_poster(reactor, CallbackPolicy(["192.0.2.9"], ports=(8443,)))
    post("https://192.0.2.9:8443/hook", b"{}")
    [(host, port, factory, _, _)] = reactor.tcpClients

    class TCPTransport(StringTransport):
        def setTcpNoDelay(self, enabled):
            pass

    transport = TCPTransport(peerAddress=IPv4Address("TCP", host, port))
    factory.buildProtocol(IPv4Address("TCP", host, port)).makeConnection(transport)
    sent = transport.value()
    assert sent[:1] == b"\x16"  # a TLS handshake record (RFC 8446 §5.1), not "POST"
