"""SIP codec details a peer's message can rely on: list splitting around quotes, escapes and
angle brackets, URI equality (RFC 3261 §19.1.4), TCP keep-alive pongs, and which final
responses make a dialog or get an ACK from the transaction."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sipxcc.sip.transport import SIPStreamProtocol, Target, TransportLayer
from sipxcc.sip.uri import URI, split_list
from tests.unit.sipfakes import FakeNetwork, answer


def test_lists_split_only_at_top_level_commas():
    assert split_list('"A \\"q, r\\"" <sip:a@h>, <sip:b@h;x=1,2>, c') == [
        '"A \\"q, r\\"" <sip:a@h>', "<sip:b@h;x=1,2>", "c"]
    assert split_list('"x\\\\", y') == ['"x\\\\"', "y"]
    assert split_list("a,b") == ["a", "b"]


def test_uri_equality_ignores_host_case_and_parameter_order():
    a = URI.parse("sip:bob@HOST.example;transport=udp;lr")
    b = URI.parse("sip:bob@host.example;lr;transport=udp")
    assert a == b and hash(a) == hash(b)
    assert a != URI.parse("sip:bob@host.example;lr")
    assert URI.parse("sip:bob@h;b=1;a=2") == URI.parse("sip:bob@h;a=2;b=1")


def test_a_double_crlf_ping_on_tcp_gets_a_crlf_pong():
    layer = TransportLayer(MemoryReactorClock(), "127.0.0.1", 6050, ("tcp",))
    proto = SIPStreamProtocol(layer, "TCP")
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.5", 40000))
    proto.makeConnection(transport)
    proto.dataReceived(b"\r\n\r\n")
    assert transport.value() == b"\r\n"
    assert proto._source() == ("TCP", "192.0.2.5", 40000, proto)


def test_a_resolved_name_reports_connection_errors_to_the_sender():
    reactor = MemoryReactorClock()
    reactor.resolve = lambda host: defer.succeed("192.0.2.7")
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("tcp",))
    errors = []
    layer.send(b"one", Target("TCP", "proxy.example", 5080), errors.append)
    reactor.tcpClients[-1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    layer.send(b"two", Target("TCP", "proxy.example", 5080), errors.append)  # cached name
    reactor.tcpClients[-1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert len(errors) == 2
    failed = []
    reactor.resolve = lambda host: defer.fail(OSError("no such host"))
    layer.send(b"three", Target("TCP", "other.example", 5080), failed.append)
    assert len(failed) == 1 and isinstance(failed[0], OSError)


def new(net, method):
    request = net.ua.new_request(method, "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                 "<sip:user1@sipx.test>")
    sent = net.ua.send(request, net.ua.proxy_target)
    results = []
    sent.deferred.addBoth(results.append)
    [out] = net.sent_messages()
    return out, results


def test_only_a_2xx_to_an_invite_makes_a_dialog():
    net = FakeNetwork()
    out, results = new(net, "OPTIONS")
    net.deliver(answer(out, 200, "OK", "t1", [("Contact", "<sip:x@127.0.0.1:5071>")]))
    assert [r.status for r in results] == [200] and not net.ua.dialogs
    out, results = new(net, "INVITE")
    net.deliver(answer(out, 300, "Multiple Choices", "t2",
                       [("Contact", "<sip:x@127.0.0.1:5071>")]))
    [ack] = net.sent_messages()  # the transaction ACKs any non-2xx final itself
    assert ack.method == "ACK" and ack.to_tag == "t2"
    assert results[0].status == 300 and not net.ua.dialogs
