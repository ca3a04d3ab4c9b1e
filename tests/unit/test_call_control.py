"""CallControl assembled on a memory reactor: what it binds, which flow a call gets, how it
stops; the registry's shutdown wait; status webhooks POSTed over HTTP by treq."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
)
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from zope.interface import implementer

from sipxcc.calls.call import CallRequest
from sipxcc.calls.callbacks import BACKOFF, CallbackPolicy, StatusCallbacks, treq_poster
from sipxcc.calls.control import CallControl
from sipxcc.calls.invite import InviteFlow
from sipxcc.calls.refer import ReferFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.users import User
from tests.unit.test_registry import FakeFlow, req
from tests.unit.test_sip_transport_binding import Reactor

AGENT = User("user1@sipx.test", "user1", ("201",), None, None, None)


class ControlReactor(Reactor):
    """UDP sockets that accept datagrams (to nowhere)."""

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        listening = super().listenUDP(port, protocol, interface, maxPacketSize)
        protocol.makeConnection(FakeDatagramTransport())
        return listening


def control(**kw):
    reactor = ControlReactor()
    settings = dict(domain="sipx.test", proxy="sip:192.0.2.5:5080;lr", address="192.0.2.10",
                    port=5070)
    settings.update(kw)
    return reactor, CallControl(reactor, **settings)


def test_listen_binds_the_configured_transports_and_builds_the_user_agent():
    reactor, cc = control(transports=("udp", "tcp"), contact_user="c2c")
    assert cc.ua is None
    cc.listen()
    assert [(kind, port, interface) for kind, port, interface, *_ in reactor.listened] == [
        ("UDP", 5070, "192.0.2.10"), ("TCP", 5070, "192.0.2.10")]
    settings = cc.ua.settings
    assert (settings.proxy, settings.address, settings.port, settings.contact_user) == (
        "sip:192.0.2.5:5080;lr", "192.0.2.10", 5070, "c2c")
    assert settings.transports == ("udp", "tcp")
    assert (cc.context.ua, cc.context.clock, cc.context.domain, cc.context.address) == (
        cc.ua, reactor, "sipx.test", "192.0.2.10")


def test_port_zero_gives_the_user_agent_the_bound_port():
    reactor, cc = control(port=0, transports=("udp",))
    cc.listen()
    assert cc.ua.settings.port == 40000
    assert (cc.ua.settings.address, cc.ua.settings.contact_user) == ("192.0.2.10",
                                                                     "callcontroller")
    assert cc.ua.settings.proxy == "sip:192.0.2.5:5080;lr"


def test_calls_get_the_flow_of_their_mode_and_the_limits_hold():
    reactor, cc = control(max_calls=7, max_calls_per_agent=3)
    cc.listen()
    assert (cc.registry.max_calls, cc.registry.max_calls_per_agent) == (7, 3)
    refer = cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test"))
    invite = cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user3@sipx.test",
                                           method="INVITE"))
    assert isinstance(refer.flow, ReferFlow) and isinstance(invite.flow, InviteFlow)
    assert refer.flow.ctx is cc.context and invite.flow.ctx is cc.context


def test_status_callbacks_are_attached_to_each_new_call():
    reactor, cc = control()
    cc.listen()
    posted = []
    cc.callbacks.post = lambda url, body, headers: posted.append((url, json.loads(body))) or 200
    call = cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test",
                                         status_callback="https://crm.example/hook"))
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    assert posted and posted[0][0] == "https://crm.example/hook"
    assert posted[0][1]["status-line"] == "SIP/2.0 180 Ringing"


def test_stopping_hangs_up_the_calls_then_closes_the_ports():
    reactor, cc = control(shutdown_timeout=3)
    cc.listen()
    cc.startService()
    call = cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test"))
    ports = list(cc.transport.ports)
    done = []
    cc.stopService().addCallback(done.append)
    assert not cc.running
    assert call.state == "cancelling"  # no answer yet: CANCEL pending, the call waits
    reactor.advance(2.9)
    assert not done and not any(port.stopped for port in ports)
    reactor.advance(0.1)
    assert done and all(port.stopped for port in ports)
    assert cc.registry.get(call.id) is None  # cleared
    assert not cc.ua.transactions.clients


def test_stopping_before_listening_closes_nothing():
    reactor, cc = control()
    done = []
    cc.stopService().addCallback(done.append)
    assert done and reactor.listened == []


def test_shutdown_waits_for_calls_that_end_late_but_not_past_the_timeout():
    class Slow(FakeFlow):
        ends_on_hangup = False

    clock = Clock()
    registry = CallRegistry(clock, {"REFER": Slow})
    first, second = registry.place(req()), registry.place(req(called="u9@sipx.test"))
    done = []
    registry.shutdown(5).addCallback(done.append)
    assert first.flow.hangups == second.flow.hangups == ["shutdown"]
    first.flow.end()
    assert not done
    second.flow.end()
    assert done == [None]
    assert [c for c in clock.getDelayedCalls() if c.func.__name__ == "<lambda>"] == []

    registry = CallRegistry(clock, {"REFER": Slow})
    registry.place(req())
    done = []
    registry.shutdown(5).addCallback(done.append)
    clock.advance(4.9)
    assert not done
    clock.advance(0.1)
    assert done == [None]


def test_a_call_ending_after_the_wait_was_given_up_ends_as_usual():
    class Slow(FakeFlow):
        ends_on_hangup = False

    clock = Clock()
    registry = CallRegistry(clock, {"REFER": Slow})
    call = registry.place(req())
    done = []
    registry.shutdown(5).addCallback(done.append)
    registry.idle(1).addCallback(done.append)  # a second waiter (the Redis node's)
    clock.advance(5)
    assert done == [None, None]
    call.flow.end()  # late: the waiters are not fired twice
    assert registry.active_count == 0 and done == [None, None]


def test_shutdown_with_no_call_is_at_once():
    registry = CallRegistry(Clock(), {"REFER": FakeFlow})
    done = []
    registry.shutdown(5).addCallback(done.append)
    assert done == [None]


@implementer(IHostResolution)
class Resolution:
    def __init__(self, name):
        self.name = name

    def cancel(self):
        pass


@implementer(IHostnameResolver)
class LiteralResolver:
    """Resolves a host to itself: the URLs here hold IP addresses."""

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):
        resolution = Resolution(hostName)
        receiver.resolutionBegan(resolution)
        receiver.addressResolved(IPv4Address("TCP", hostName, portNumber))
        receiver.resolutionComplete()
        return resolution


@implementer(IReactorPluggableNameResolver)
class HTTPReactor(Reactor):
    """A memory reactor whose TCP connections get a StringTransport on request."""

    def __init__(self):
        super().__init__()
        self.nameResolver = LiteralResolver()

    def installNameResolver(self, resolver):
        self.nameResolver, old = resolver, self.nameResolver
        return old

    def connect(self, index=0):
        host, port, factory, timeout, _ = self.tcpClients[index]
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        proto.makeConnection(transport)
        return proto, transport


def test_the_webhook_is_a_json_post_and_gives_the_http_status():
    reactor = HTTPReactor()
    post = treq_poster(reactor, CallbackPolicy(["192.0.2.9"], ports=(8080,)), timeout=4)
    results = []
    post("http://192.0.2.9:8080/hook", b'{"id": "x"}').addBoth(results.append)
    [(host, port, _, timeout, _)] = reactor.tcpClients
    assert (host, port, timeout) == ("192.0.2.9", 8080, 4)
    proto, transport = reactor.connect()
    sent = transport.value()
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /hook HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json" in head
    assert b"\r\nContent-Length: 11" in head  # the body itself follows from a producer
    proto.dataReceived(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    assert results == [204]


def test_a_failing_webhook_is_retried_after_each_back_off_then_the_next_event_goes():
    clock = Clock()
    statuses = iter([503] * (len(BACKOFF) + 1) + [200])
    posted = []

    def post(url, body, headers):
        posted.append(json.loads(body)["status-line"] if b"status-line" in body else "end")
        return next(statuses)

    callbacks = StatusCallbacks(clock, post)
    registry = CallRegistry(clock, {"REFER": FakeFlow}, observers=(callbacks.attach,))
    call = registry.place(req(status_callback="https://crm.example/hook"))
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    call.record(1001, "cid", "INVITE", "SIP/2.0 200 OK")
    for delay in BACKOFF:
        assert len(posted) == BACKOFF.index(delay) + 1
        clock.advance(delay - 0.01)
        assert len(posted) == BACKOFF.index(delay) + 1  # not before the back-off
        clock.advance(0.01)
    assert posted == ["SIP/2.0 180 Ringing"] * (len(BACKOFF) + 1) + ["SIP/2.0 200 OK"]
    assert (callbacks.dropped, callbacks.delivered) == (1, 1)


def test_a_webhook_status_of_300_or_199_is_a_failure():
    for status in (199, 300):
        clock = Clock()
        callbacks = StatusCallbacks(clock, lambda url, body, headers, s=status: s)
        registry = CallRegistry(clock, {"REFER": FakeFlow}, observers=(callbacks.attach,))
        call = registry.place(req(status_callback="https://crm.example/hook"))
        call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
        assert callbacks.delivered == 0
    callbacks = StatusCallbacks(Clock(), lambda url, body, headers: 299)
    registry = CallRegistry(Clock(), {"REFER": FakeFlow}, observers=(callbacks.attach,))
    call = registry.place(req(status_callback="https://crm.example/hook"))
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    assert callbacks.delivered == 1


def test_the_event_document_names_the_call_and_its_parties():
    posted = []
    callbacks = StatusCallbacks(Clock(), lambda url, body, headers:
                                posted.append(json.loads(body)) or 200)
    registry = CallRegistry(Clock(), {"INVITE": FakeFlow}, observers=(callbacks.attach,))
    call = registry.place(req(method="INVITE", status_callback="https://crm.example/hook"))
    call.record(1000, "cid-1", "INVITE", "SIP/2.0 180 Ringing")
    call.flow.end()
    assert posted == [
        {"id": call.id, "sequence": 1, "event": "ringing", "state": "ringing",
         "mode": "INVITE", "calling": "user1@sipx.test", "called": "user2@sipx.test",
         "timestamp": 1000, "call-id": "cid-1",
         "method": "INVITE", "status-line": "SIP/2.0 180 Ringing"},
        {"id": call.id, "sequence": 2, "event": "completed", "state": "ended",
         "mode": "INVITE", "calling": "user1@sipx.test", "called": "user2@sipx.test",
         "ended": True}]


def test_calls_without_a_callback_post_nothing():
    posted = []
    callbacks = StatusCallbacks(Clock(), lambda url, body, headers: posted.append(body) or 200)
    registry = CallRegistry(Clock(), {"REFER": FakeFlow}, observers=(callbacks.attach,))
    call = registry.place(req())
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    assert posted == []


class ControlHTTPReactor(HTTPReactor, ControlReactor):
    """SIP sockets that swallow datagrams and HTTP connections a test can inspect."""


def test_the_calls_section_sets_which_hosts_and_ports_status_webhooks_may_reach():
    from sipxcc.config import CallsConfig
    reactor = ControlHTTPReactor()
    limits = CallsConfig(180, 180, 10, 3, ("192.0.2.9",), callback_ports=(8080,))
    cc = CallControl(reactor, domain="sipx.test", proxy="sip:192.0.2.5:5080;lr",
                     address="192.0.2.10", port=5070, calls_config=limits)
    cc.listen()
    allowed = cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test",
                                            status_callback="http://192.0.2.9:8080/hook"))
    allowed.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("192.0.2.9", 8080)]
    for called, url in (("user3@sipx.test", "http://192.0.2.9:80/hook"),
                        ("user4@sipx.test", "http://192.0.2.77:8080/hook")):
        refused = cc.registry.place(CallRequest(AGENT, "user1@sipx.test", called,
                                                status_callback=url))
        refused.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("192.0.2.9", 8080)]


def test_the_calls_section_sets_how_many_finished_calls_are_kept_and_how_long():
    from sipxcc.config import CallsConfig
    limits = CallsConfig(180, 180, 10, 3, (), max_retained=7, max_retained_per_owner=2,
                         max_result_cache_time=60)
    _, cc = control(calls_config=limits)
    assert (cc.registry.max_retained, cc.registry.max_retained_per_owner,
            cc.registry.max_result_cache_time) == (7, 2, 60)
    _, cc = control()  # no [calls] section: the registry's own bounds
    assert (cc.registry.max_retained, cc.registry.max_retained_per_owner,
            cc.registry.max_result_cache_time) == (100_000, 1000, 86400)


def test_the_proxy_realm_is_the_domain_unless_configured():
    for kw, realm in (({}, "sipx.test"), ({"realm": "proxy.sipx.test"}, "proxy.sipx.test")):
        for port in (5070, 0):  # a bound port other than the configured one keeps it too
            _, cc = control(port=port, transports=("udp",), **kw)
            cc.listen()
            assert (cc.ua.settings.realm, cc.ua.settings.transports) == (realm, ("udp",))


def test_outgoing_tls_uses_the_client_context_and_connections_are_bounded_by_default():
    context = object()
    _, cc = control(tls_client_context=context)
    assert cc.transport.client_tls is context
    _, cc = control()
    assert cc.transport.client_tls is None  # no context: outgoing TLS is refused
    assert (cc.transport.limits.total, cc.transport.limits.per_host) == (1000, 64)


def test_a_call_whose_invite_times_out_frees_the_agents_place_in_both_modes():
    from sipxcc.calls.errors import AgentLimit
    for method in ("REFER", "INVITE"):
        reactor, cc = control(max_calls_per_agent=1)
        cc.listen()
        first = cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test",
                                              method=method))
        with pytest.raises(AgentLimit):
            cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user3@sipx.test",
                                          method=method))
        reactor.advance(40)  # no answer from the proxy: Timer B (64*T1) fails the INVITE
        assert first.state == "failed"
        second = cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user3@sipx.test",
                                               method=method))
        assert second.state != "failed"
