"""The user agent core at its edges: where a URI sends a request (RFC 3263 reduced), which
host is the proxy, merged requests at the 32-s window (RFC 3261 §8.2.2.2), the 487 a
CANCEL brings (§9.2), a 2xx retransmitted after its transaction ended (§13.2.2.4) and the
answers to malformed requests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sipxcc.sip.message import Request, make_branch
from sipxcc.sip.transaction import T1
from sipxcc.sip.transport import Source, Target
from sipxcc.sip.uri import URI
from sipxcc.sip.useragent import MERGE_WINDOW, uri_target
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer
from tests.unit.test_sip_transactions import incoming

PHONE = ("127.0.0.1", 5071)


@pytest.mark.parametrize("uri, target", [
    ("sips:alice@h.example", Target("TLS", "h.example", 5061)),
    ("sip:alice@h.example;transport=tls", Target("TLS", "h.example", 5061)),
    ("sip:alice@h.example;transport=tcp", Target("TCP", "h.example", 5060)),
    ("sip:alice@h.example;transport=sctp", Target("SCTP", "h.example", 5060)),
    ("sip:alice@[::1]:5070", Target("UDP", "::1", 5070)),
    ("sip:alice@localhost", Target("UDP", "127.0.0.1", 5060)),
    ("sip:alice@BOX", Target("UDP", "BOX", 5060)),
])
def test_where_a_uri_sends_a_request(uri, target):
    assert uri_target(URI.parse(uri)) == target


def test_a_dialog_without_a_transport_parameter_keeps_the_proxys_transport():
    net = FakeNetwork(proxy="sip:127.0.0.1:5080;transport=tcp;lr")
    dialog = SimpleNamespace(route_set=[], remote_target="sip:user1@192.0.2.7")
    assert net.ua.dialog_target(dialog) == Target("TCP", "192.0.2.7", 5060)


def test_the_proxy_is_its_address_by_value_or_its_name_in_any_case():
    ua = FakeNetwork(proxy="sip:[::1]:5080;lr").ua
    assert ua.is_proxy("0:0::1", 5080) and ua.is_proxy("[::1]", 5080)
    assert not ua.is_proxy("::2", 5080) and not ua.is_proxy("::1", 5081)
    named = FakeNetwork(proxy="sip:Proxy.Example:5080;lr").ua
    assert named.is_proxy("proxy.example", 5080)
    assert not named.is_proxy("other.example", 5080)
    assert not named.is_proxy("10.0.0.1", 5080)  # its name has not been resolved
    assert FakeNetwork(proxy="sip:BOX:5080;lr").ua.is_proxy("box", 5080)
    assert FakeNetwork(proxy="sip:box:5080;lr").ua.is_proxy("BOX", 5080)


def again(first: Request, port: int, cseq: str | None = None, branch: str | None = None):
    """C{first} as it would arrive by another path (another branch, another port)."""
    second = Request(first.method, first.uri)
    for name, value in first.headers.items():
        if name == "Via":
            value = f"SIP/2.0/UDP 127.0.0.1:{port};branch={branch or make_branch()}"
        elif name == "CSeq" and cseq is not None:
            value = cseq
        second.headers.add(name, value)
    return second


def test_a_merged_request_is_refused_within_32_s_and_taken_at_32_s():
    for late in (MERGE_WINDOW - 0.01, MERGE_WINDOW):
        net = FakeNetwork()
        net.clock.advance(1000)
        first = incoming("OPTIONS")
        net.deliver(first, PHONE)
        net.clock.advance(late)
        net.deliver(again(first, 5072), ("127.0.0.1", 5072))
        statuses = [m.status for m, _ in net.sent()]
        assert statuses == ([200, 482] if late < MERGE_WINDOW else [200, 200])


def test_the_next_cseq_or_the_same_branch_is_no_merged_request():
    net = FakeNetwork()
    first = incoming("OPTIONS")
    net.deliver(first, PHONE)
    net.deliver(again(first, 5072, cseq="2 OPTIONS"), ("127.0.0.1", 5072))
    assert [m.status for m, _ in net.sent()] == [200, 200]
    net.clock.advance(64 * T1 + 1)  # Timer J forgets the first transaction
    invite = incoming("INVITE")
    net.deliver(invite, PHONE)
    [rejected] = [m for m, _ in net.sent() if m.cseq[1] == "INVITE"]
    ack = incoming("ACK", branch=invite.branch, to_tag=rejected.to_tag)
    ack.headers.set("From", invite.headers.get("From"))
    net.deliver(ack, PHONE)
    net.clock.advance(6)  # Timer I forgets the INVITE's transaction
    net.deliver(invite, PHONE)  # the same branch again: a new transaction, not merged
    assert [(m.status, m.cseq[1]) for m, _ in net.sent()] == [(405, "INVITE")]


def test_a_cancel_answers_the_pending_invite_487_request_terminated():
    net = FakeNetwork()
    invite = incoming("INVITE")
    net.ua.transactions.server(invite, Source("UDP", *PHONE, None))
    cancel = Request("CANCEL", invite.uri)
    for name in ("Via", "Max-Forwards", "From", "To", "Call-ID"):
        cancel.headers.add(name, invite.headers.get(name))
    cancel.headers.add("CSeq", "1 CANCEL")
    net.deliver(cancel, PHONE)
    assert [(m.status, m.reason, m.cseq[1]) for m, _ in net.sent()] == [
        (200, "OK", "CANCEL"), (487, "Request Terminated", "INVITE")]


def test_a_2xx_retransmitted_after_its_transaction_ended_gets_the_ack_again():
    net = FakeNetwork()
    invite = net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                "<sip:user1@sipx.test>")
    outgoing = net.ua.invite(invite)
    [sent] = net.sent_messages()
    phone = FarEnd(sent)
    ok = phone.ok()
    net.deliver(ok)
    outgoing.dialog.ack()
    [ack] = net.sent_messages()
    assert ack.method == "ACK"
    net.clock.advance(64 * T1 + 1)  # Timer M: the transaction is gone
    assert not net.ua.transactions.clients
    stray = net.ua.counters["stray_responses"]
    net.deliver(ok)
    assert [m.method for m in net.sent_messages()] == ["ACK"]
    assert net.ua.counters["stray_responses"] == stray
    for status in (180, 300):  # no 2xx: no ACK, a stray response
        net.deliver(answer(sent, status, "Other", phone.tag, [("Contact", phone.contact)]))
    assert net.sent_messages() == []
    assert net.ua.counters["stray_responses"] == stray + 2


def test_an_unparseable_request_gets_400_but_an_unparseable_ack_gets_nothing():
    net = FakeNetwork()
    for method in ("OPTIONS", "ACK", "OPTIONS"):
        bad = incoming(method)
        bad.headers.set("CSeq", "1 BYE")  # CSeq method does not match
        net.deliver(bad, PHONE)
    assert [(m.status, m.reason) for m, _ in net.sent()] == [(400, "Bad Request")] * 2
    assert net.ua.counters["bad"] == net.layer.dropped == 3


def test_a_request_we_build_has_an_empty_body_and_our_call_id_host_unless_given_them():
    ua = FakeNetwork().ua
    request = ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                             "<sip:user1@sipx.test>")
    assert request.body == b"" and request.headers.get("Content-Length") in (None, "0")
    assert request.call_id.endswith("@127.0.0.1")


def test_a_response_goes_back_on_the_stream_its_request_came_on():
    net = FakeNetwork()
    sent = []
    net.layer.send = lambda data, target, on_error=None, connection=None: sent.append(
        (target, connection))
    stream = object()
    net.ua.send_response(b"SIP/2.0 400 Bad Request\r\n\r\n", incoming("OPTIONS"),
                         Source("TCP", *PHONE, stream))
    [(target, connection)] = sent
    assert connection is stream and target.transport == "TCP"


def test_the_route_to_a_proxy_configured_without_lr_says_lr_and_one_with_it_keeps_one():
    # RFC 3261 §16.12: we only loose-route; a Route to a strict router would rewrite the URI
    for proxy in ("sip:127.0.0.1:5080", "sip:127.0.0.1:5080;lr"):
        net = FakeNetwork(proxy=proxy)
        net.ua.invite(net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                         "<sip:user1@sipx.test>"))
        [invite] = net.sent_messages()
        assert invite.headers.values("Route") == ["<sip:127.0.0.1:5080;lr>"], proxy


def test_each_stray_response_is_counted_from_zero():
    net = FakeNetwork()
    assert net.ua.counters == {"bad": 0, "stray_responses": 0, "udp_oversize": 0}
    request = net.ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                 "<sip:user1@sipx.test>")
    net.deliver(answer(request, 200, "OK", "t1"))  # no transaction sent it
    assert net.ua.counters["stray_responses"] == 1


def test_a_3xx_to_an_invite_with_an_unreadable_to_still_ends_it_only_a_2xx_needs_the_tags():
    net = FakeNetwork()
    outgoing = net.ua.invite(net.ua.new_request("INVITE", "sip:user1@sipx.test",
                                                "<sip:u@sipx.test>", "<sip:user1@sipx.test>"))
    [invite] = net.sent_messages()
    redirect = answer(invite, 300, "Multiple Choices", "t1",
                      [("Contact", "<sip:user1@192.0.2.9>")])
    redirect.headers.set("To", "<sip:user1@sipx.test;tag=t1")  # no closing '>'
    net.deliver(redirect)
    assert outgoing.final_status == 300
    [(ack, _)] = net.socket.written[-1:]
    assert ack.startswith(b"ACK sip:user1@sipx.test SIP/2.0\r\n")
    assert b"\r\nTo: <sip:user1@sipx.test;tag=t1\r\n" in ack  # as the far end wrote it
