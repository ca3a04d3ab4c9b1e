"""Where status callbacks may go: listed hosts and ports, checked addresses, no redirects."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

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
