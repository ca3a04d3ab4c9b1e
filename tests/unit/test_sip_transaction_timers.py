"""RFC 3261 §17.1 client transaction timers as the far end sees them (retransmissions, how
long a finished transaction absorbs repeats), §18.1.1 large requests over TCP, and that
stopping the user agent and the shared timers silences everything."""

from __future__ import annotations

from twisted.internet.task import Clock

from sipxcc.sip.transport import TransportLayer
from sipxcc.sip.useragent import UASettings, UserAgent
from sipxcc.timers import SLACK, FixedDelayTimers
from tests.unit.sipfakes import FakeNetwork, answer


def options(net, body=b""):
    request = net.ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                 "<sip:user1@sipx.test>", body=body)
    results = []
    net.ua.send(request, net.ua.proxy_target).deferred.addBoth(results.append)
    [sent] = net.sent_messages()
    return sent, results


def send_times(net, until, step=0.25):
    """The clock readings at which something went out, stepping C{step}s up to C{until}."""
    times = []
    while net.clock.seconds() < until:
        net.clock.advance(step)
        if net.sent():
            times.append(net.clock.seconds())
    return times


def resent_within(net, seconds, step=0.25):
    """How many messages went out while the clock moved C{seconds} in C{step}s."""
    count = 0
    for _ in range(round(seconds / step)):
        net.clock.advance(step)
        count += len(net.sent())
    return count


def test_non_invite_retransmits_at_t2_once_a_provisional_arrived():
    net = FakeNetwork()
    sent, results = options(net)
    net.deliver(answer(sent, 100, "Trying"))
    # Timer E, already running, fires at T1; then every T2 (4 s), not doubling from T1
    assert send_times(net, 13) == [0.5, 4.5, 8.5, 12.5]


def test_non_invite_retransmits_double_up_to_t2_without_a_provisional():
    net = FakeNetwork()
    options(net)
    assert send_times(net, 20) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5]


def test_a_non_invite_in_proceeding_still_times_out_after_64_t1():
    net = FakeNetwork()
    sent, results = options(net)
    net.deliver(answer(sent, 100, "Trying"))
    net.clock.advance(31.9)
    assert results == []
    net.clock.advance(0.1)
    [failure] = results
    assert failure.value.status == 408


def test_a_final_response_stops_retransmissions_and_repeats_are_absorbed_for_t4():
    net = FakeNetwork()
    sent, results = options(net)
    ok = answer(sent, 200, "OK", "t1")
    net.deliver(ok)
    assert [r.status for r in results] == [200]
    assert resent_within(net, 4) == 0
    assert net.ua.transactions.clients  # Timer K: still there to absorb repeats
    net.deliver(ok)
    assert len(results) == 1
    net.clock.advance(1 + SLACK)
    assert not net.ua.transactions.clients


def invite(net):
    request = net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                 "<sip:user1@sipx.test>")
    outgoing = net.ua.invite(request)
    results = []
    outgoing.deferred.addBoth(results.append)
    [sent] = net.sent_messages()
    return outgoing, sent, results


def test_a_failed_invite_acks_each_repeat_of_its_final_for_32_seconds():
    net = FakeNetwork()
    outgoing, sent, results = invite(net)
    busy = answer(sent, 486, "Busy Here", "t1")
    net.deliver(busy)
    [ack] = net.sent_messages()
    assert resent_within(net, 10) == 0  # no INVITE retransmission after the final
    net.deliver(busy)
    [again] = net.sent_messages()
    assert again.to_bytes() == ack.to_bytes()
    net.clock.advance(21.9)
    assert net.ua.transactions.clients
    net.clock.advance(0.1 + SLACK)  # Timer D: 32 s in all
    assert not net.ua.transactions.clients
    assert [r.status for r in results] == [486]


def test_an_accepted_invite_waits_64_t1_for_repeated_2xx():
    net = FakeNetwork()
    outgoing, sent, results = invite(net)
    net.deliver(answer(sent, 200, "OK", "t1", [("Contact", "<sip:user1@127.0.0.1:5071>")]))
    assert [r.status for r in results] == [200]
    net.clock.advance(31.9)
    assert net.ua.transactions.clients
    net.clock.advance(0.1 + SLACK)
    assert not net.ua.transactions.clients


def test_an_invite_that_rang_retransmits_no_more():
    net = FakeNetwork()
    outgoing, sent, results = invite(net)
    net.deliver(answer(sent, 180, "Ringing", "t1"))
    assert resent_within(net, 40) == 0
    assert results == []  # no Timer B once proceeding


def test_a_connection_lost_fails_a_transaction_in_proceeding_with_503():
    net = FakeNetwork()
    sent, results = options(net)
    net.deliver(answer(sent, 100, "Trying"))
    net.ua.transactions.connection_lost(net.ua.proxy_target)
    [failure] = results
    assert failure.value.status == 503


def test_stopping_the_user_agent_silences_every_transaction():
    net = FakeNetwork()
    options(net)
    invite(net)
    net.ua.stop()
    assert resent_within(net, 40) == 0
    assert not net.ua.transactions.clients


def test_stopped_shared_timers_never_fire():
    clock = Clock()
    timers = FixedDelayTimers(clock, 10)
    fired = []
    timers.call_later(fired.append, "one")
    timers.stop()
    clock.advance(20)
    assert fired == [] and clock.getDelayedCalls() == []
    timers.stop()  # twice is fine


def ua_with(transports):
    clock = Clock()
    layer = TransportLayer(clock, "127.0.0.1", 6050, transports)
    sent = []
    layer.send = lambda data, target, on_error=None, connection=None: sent.append(target)
    ua = UserAgent(clock, layer, UASettings("sip:127.0.0.1:5080;lr", "127.0.0.1", 6050,
                                            "callcontroller", transports))
    return ua, sent


def big_options(ua, body_size):
    request = ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                             "<sip:user1@sipx.test>", body=b"x" * body_size)
    ua.send(request, ua.proxy_target)
    return request


def test_a_large_request_goes_over_tcp_when_we_have_it():
    ua, sent = ua_with(("udp", "tcp"))
    request = big_options(ua, 1200)
    assert sent[-1].transport == "TCP"
    assert request.headers.get("Via").startswith("SIP/2.0/TCP 127.0.0.1:6050;branch=z9hG4bK")
    small = big_options(ua, 100)
    assert sent[-1].transport == "UDP"
    assert small.headers.get("Via").startswith("SIP/2.0/UDP ")


def test_a_large_request_stays_on_udp_without_tcp():
    ua, sent = ua_with(("udp",))
    big_options(ua, 1500)
    assert sent[-1].transport == "UDP"


def test_the_size_that_moves_a_request_to_tcp():
    ua, sent = ua_with(("udp", "tcp"))
    # the whole serialised request decides: more than 1300 bytes go over TCP
    request = ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                             "<sip:user1@sipx.test>", body=b"")
    head = len(request.to_bytes())
    body = 1300 - head  # Content-Length grows by digits as the body does
    for size in range(body - 8, body + 8):
        request = big_options(ua, size)
        over = len(request.to_bytes()) > 1300
        assert (sent[-1].transport == "TCP") == over, size
